/*
 * startup.c - reset handler and vector table for Cortex-M3/M4/M7/M33/M55.
 *
 * Reset copies .data from flash, zeroes .bss, turns the FPU on when the build
 * uses it, paints the stack (so stack_high_water() can tell how deep it went)
 * and calls main(). Faults print one line on the console and stop.
 *
 * Part of the mnist-edge firmware; generated, do not edit.
 */
#include <stdint.h>

#include "console.h"
#include "startup.h"

/* Defined by the linker script: the initial stack pointer. */
extern uint32_t __stack_top__[];

int main(void);

#define SCB_CPACR (*(volatile uint32_t *)0xe000ed88u)

void Reset_Handler(void) __attribute__((noreturn));
void Default_Handler(void) __attribute__((noreturn));
void HardFault_Handler(void) __attribute__((noreturn));

void Reset_Handler(void)
{
    startup_init_memory();
#if defined(__ARM_FP)
    SCB_CPACR |= 15u << 20; /* CP10 and CP11: full access (the FPU, and Helium on an M55) */
    __asm__ volatile("dsb\n\tisb" ::: "memory");
#endif
    startup_paint_stack();
    console_init();
    console_halt(main() == 0);
}

void HardFault_Handler(void)
{
    console_write("mnist-edge firmware: HardFault\n");
    console_halt(0);
}

void Default_Handler(void)
{
    console_write("mnist-edge firmware: unexpected exception\n");
    console_halt(0);
}

/* Core exceptions only: the firmware enables no interrupts. Entry 0 is the initial
 * stack pointer, a data address: a union keeps the table ISO C (no object-to-function
 * pointer cast). */
typedef union {
    void (*handler)(void);
    const void *stack_top;
} vector_entry;

__attribute__((section(".isr_vector"), used))
static const vector_entry vector_table[16] = {
    {.stack_top = __stack_top__},
    {Reset_Handler},
    {Default_Handler}, /* NMI */
    {HardFault_Handler},
    {HardFault_Handler}, /* MemManage */
    {HardFault_Handler}, /* BusFault */
    {HardFault_Handler}, /* UsageFault */
    {0}, {0}, {0}, {0},
    {Default_Handler}, /* SVCall */
    {Default_Handler}, /* DebugMonitor */
    {0},
    {Default_Handler}, /* PendSV */
    {Default_Handler}, /* SysTick */
};
