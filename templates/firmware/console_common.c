/*
 * console_common.c - integer printing on top of console_write().
 *
 * Part of the mnist-edge firmware; generated, do not edit.
 */
#include "console.h"

void console_write_uint(uint32_t value)
{
    char text[11];
    int i = 10;
    text[i] = '\0';
    do {
        text[--i] = (char)('0' + value % 10u);
        value /= 10u;
    } while (value != 0u);
    console_write(&text[i]);
}

void console_write_int(int32_t value)
{
    if (value < 0) {
        console_write("-");
        console_write_uint(0u - (uint32_t)value);
    } else {
        console_write_uint((uint32_t)value);
    }
}
