/*
 * console_uart.c - console_write() for every UART console: serial terminals
 * expect CR LF line endings, so each '\n' goes out as "\r\n".
 *
 * Part of the mnist-edge firmware; generated, do not edit.
 */
#include "console.h"
#include "console_uart.h"

void console_write(const char *text)
{
    for (; *text != '\0'; text++) {
        if (*text == '\n') {
            uart_put_char('\r');
        }
        uart_put_char(*text);
    }
}
