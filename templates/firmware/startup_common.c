/*
 * startup_common.c - what every core's reset code does alike: .data from flash,
 * .bss zeroed, and the painted stack that stack_high_water() scans.
 *
 * Part of the mnist-edge firmware; generated, do not edit.
 */
#include <stdint.h>

#include "startup.h"

/* Defined by the linker script. */
extern uint32_t __data_load__[], __data_start__[], __data_end__[];
extern uint32_t __bss_start__[], __bss_end__[];
extern uint32_t __stack_limit__[], __stack_top__[];

#define STACK_PAINT 0xa5a5a5a5u

void startup_init_memory(void)
{
    const uint32_t *src = __data_load__;
    uint32_t *dst;
    for (dst = __data_start__; dst < __data_end__; dst++) {
        *dst = *src++;
    }
    for (dst = __bss_start__; dst < __bss_end__; dst++) {
        *dst = 0u;
    }
}

void startup_paint_stack(void)
{
    /* From the stack limit up to 64 bytes below this frame (here is in it). */
    volatile uint32_t here = 0u;
    uint32_t *dst;
    for (dst = __stack_limit__; (uintptr_t)dst < (uintptr_t)&here - 64u; dst++) {
        *dst = STACK_PAINT;
    }
}

uint32_t stack_high_water(void)
{
    const uint32_t *p = __stack_limit__;
    while (p < __stack_top__ && *p == STACK_PAINT) {
        p++;
    }
    return (uint32_t)((const uint8_t *)__stack_top__ - (const uint8_t *)p);
}
