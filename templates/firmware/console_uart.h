/*
 * console_uart.h - the one thing a board's UART file provides: blocking
 * output of a single byte. console_uart.c builds console_write() on it.
 *
 * Part of the mnist-edge firmware; generated, do not edit.
 */
#ifndef CONSOLE_UART_H
#define CONSOLE_UART_H

void uart_put_char(char c);

#endif /* CONSOLE_UART_H */
