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

int main(void);
void Reset_Handler(void) __attribute__((noreturn, used));
void Trap_Handler(void) __attribute__((noreturn, used, aligned(4)));

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
    startup_init_memory();
#if defined(__riscv_flen)
    /* mstatus.FS = initial: the FPU is off at reset */
    __asm__ volatile(".option push\n\t.option arch, +zicsr\n\t"
                     "csrs mstatus, %0\n\tcsrw fcsr, zero\n\t.option pop" ::"r"(1u << 13));
#endif
    startup_paint_stack();
    console_init();
    console_halt(main() == 0);
}

void Trap_Handler(void)
{
    console_write("mnist-edge firmware: trap (illegal instruction or bad access)\n");
    console_halt(0);
}
