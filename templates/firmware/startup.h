/*
 * startup.h - what the startup code offers the application.
 *
 * Part of the mnist-edge firmware; generated, do not edit.
 */
#ifndef STARTUP_H
#define STARTUP_H

#include <stdint.h>

/* Reset code, in this order: .data from flash and .bss zeroed, then (after the core's
 * own set-up, such as its FPU) the stack painted up to just below the caller's frame. */
void startup_init_memory(void);
void startup_paint_stack(void);

/* Deepest stack use so far, in bytes, found by scanning the painted stack. */
uint32_t stack_high_water(void);

#endif /* STARTUP_H */
