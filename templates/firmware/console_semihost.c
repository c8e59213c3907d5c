/*
 * console_semihost.c - console text through semihosting (QEMU or a debugger).
 *
 * Part of the mnist-edge firmware; generated, do not edit.
 */
#include "console.h"
#include "semihost.h"

void console_init(void)
{
}

void console_write(const char *text)
{
    sh_write0(text);
}

void console_halt(int ok)
{
    sh_exit(ok);
}
