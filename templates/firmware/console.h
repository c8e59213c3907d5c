/*
 * console.h - where the firmware's text goes: semihosting (QEMU, a debugger)
 * or a board's UART (the probe's virtual COM port). One implementation is
 * linked per build: console_semihost.c, or console_uart.c with the board's
 * console_uart_<board>.c.
 *
 * Part of the mnist-edge firmware; generated, do not edit.
 */
#ifndef CONSOLE_H
#define CONSOLE_H

#include <stdint.h>

void console_init(void);
void console_write(const char *text);
/* Stop the program: under semihosting this ends QEMU (status 0 when ok). */
void console_halt(int ok) __attribute__((noreturn));

/* Small formatting helpers, so that no printf (and no heap) is linked. */
void console_write_int(int32_t value);
void console_write_uint(uint32_t value);

#endif /* CONSOLE_H */
