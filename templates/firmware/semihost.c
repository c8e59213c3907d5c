/*
 * semihost.c - the few semihosting operations the firmware needs.
 *
 * Part of the mnist-edge firmware; generated, do not edit.
 */
#include "semihost.h"

#include <string.h>

enum {
    SYS_OPEN = 0x01,
    SYS_CLOSE = 0x02,
    SYS_WRITE0 = 0x04,
    SYS_WRITE = 0x05,
    SYS_READ = 0x06,
    SYS_FLEN = 0x0c,
    SYS_EXIT = 0x18,
};

/* Reasons for SYS_EXIT (on 32-bit cores the argument is the reason itself, not a block). */
#define ADP_STOPPED_APPLICATION_EXIT 0x20026
#define ADP_STOPPED_RUNTIME_ERROR 0x20023

#if defined(__riscv)
/* RISC-V semihosting: op in a0, argument in a1, and EBREAK between two marker
 * instructions, uncompressed and 16-byte aligned (so never split across pages)
 * for the host to recognise the sequence. A plain function: a0, a1 in, a0 out. */
int32_t sh_call_riscv(int32_t op, const void *arg);
__asm__(".section .text.sh_call_riscv, \"ax\", @progbits\n"
        ".balign 16\n"
        ".globl sh_call_riscv\n"
        "sh_call_riscv:\n"
        ".option push\n"
        ".option norvc\n"
        ".option norelax\n"
        "    slli zero, zero, 0x1f\n"
        "    ebreak\n"
        "    srai zero, zero, 7\n"
        ".option pop\n"
        "    ret\n"
        ".text\n");

static int32_t sh_call(int32_t op, const void *arg)
{
    return sh_call_riscv(op, arg);
}
#else
static int32_t sh_call(int32_t op, const void *arg)
{
    register int32_t r0 __asm__("r0") = op;
    register const void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}
#endif

int32_t sh_open(const char *path, int32_t mode)
{
    const uint32_t args[3] = {(uint32_t)path, (uint32_t)mode, (uint32_t)strlen(path)};
    return sh_call(SYS_OPEN, args);
}

int32_t sh_close(int32_t fd)
{
    const uint32_t args[1] = {(uint32_t)fd};
    return sh_call(SYS_CLOSE, args);
}

int32_t sh_read(int32_t fd, void *buf, uint32_t len)
{
    const uint32_t args[3] = {(uint32_t)fd, (uint32_t)buf, len};
    return sh_call(SYS_READ, args);
}

int32_t sh_write(int32_t fd, const void *buf, uint32_t len)
{
    const uint32_t args[3] = {(uint32_t)fd, (uint32_t)buf, len};
    return sh_call(SYS_WRITE, args);
}

int32_t sh_flen(int32_t fd)
{
    const uint32_t args[1] = {(uint32_t)fd};
    return sh_call(SYS_FLEN, args);
}

void sh_write0(const char *text)
{
    (void)sh_call(SYS_WRITE0, text);
}

void sh_exit(int ok)
{
    (void)sh_call(SYS_EXIT, (const void *)(uintptr_t)(ok ? ADP_STOPPED_APPLICATION_EXIT
                                                        : ADP_STOPPED_RUNTIME_ERROR));
    for (;;) {
    }
}
