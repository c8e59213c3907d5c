/*
 * startup_riscv.c - reset code and trap handler for a bare-metal rv32 core
 * (machine mode, no firmware underneath).
 *
 * _start sets the stack and global pointers and calls Reset_Handler, which
 * copies .data, zeroes .bss, turns the FPU on when the build uses it, paints the
 * stack (so stack_high_water() can tell how deep it went) and calls main().
 * A trap prints one line on the console and stops.
 *
 * Part of the mnist-edge firmware; generated, do not edit.
 */
#include <stdint.h>

#include "console.h"
#include "startup.h"

/* Defined by the linker script. */
extern uint32_t __data_load__[], __data_start__[], __data_end__[];
extern uint32_t __bss_start__[], __bss_end__[];
extern uint32_t __stack_limit__[], __stack_top__[];

int main(void);
void Reset_Handler(void) __attribute__((noreturn, used));
void Trap_Handler(void) __attribute__((noreturn, used, aligned(4)));

#define STACK_PAINT 0xa5a5a5a5u

__asm__(".section .text.start, \"ax\", @progbits\n"
        ".globl _start\n"
        "_start:\n"
        ".option push\n"
        ".option norelax\n"
        "    la gp, __global_pointer$\n"
        ".option pop\n"
        "    la sp, __stack_top__\n"
        "    la t0, Trap_Handler\n"
        ".option push\n"
        ".option arch, +zicsr\n"
        "    csrw mtvec, t0\n"
        ".option pop\n"
        "    j Reset_Handler\n"
        ".text\n");

void Reset_Handler(void)
{
    uint32_t *src = __data_load__;
    uint32_t *dst;
    for (dst = __data_start__; dst < __data_end__; dst++) {
        *dst = *src++;
    }
    for (dst = __bss_start__; dst < __bss_end__; dst++) {
        *dst = 0u;
    }
#if defined(__riscv_flen)
    /* mstatus.FS = initial: the FPU is off at reset */
    __asm__ volatile(".option push\n\t.option arch, +zicsr\n\t"
                     "csrs mstatus, %0\n\tcsrw fcsr, zero\n\t.option pop" ::"r"(1u << 13));
#endif
    {
        /* Paint from the stack limit up to 64 bytes below this frame. */
        uint32_t sp;
        __asm__ volatile("mv %0, sp" : "=r"(sp));
        for (dst = __stack_limit__; (uint32_t)dst < sp - 64u; dst++) {
            *dst = STACK_PAINT;
        }
    }
    console_init();
    console_halt(main() == 0);
}

uint32_t stack_high_water(void)
{
    const uint32_t *p = __stack_limit__;
    while (p < __stack_top__ && *p == STACK_PAINT) {
        p++;
    }
    return (uint32_t)((const uint8_t *)__stack_top__ - (const uint8_t *)p);
}

void Trap_Handler(void)
{
    console_write("mnist-edge firmware: trap (illegal instruction or bad access)\n");
    console_halt(0);
}
