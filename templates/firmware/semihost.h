/*
 * semihost.h - Arm semihosting: file and console I/O through the debugger.
 *
 * Each call is a `bkpt 0xab` with the operation in r0 and a pointer to its
 * argument block in r1; RISC-V semihosting is the same protocol with
 * `slli; ebreak; srai` and a0, a1. QEMU (-semihosting-config
 * enable=on,target=native) and debug probes (pyOCD, OpenOCD) serve it on the
 * host. Without a debugger attached, a real chip stops at the first call: use
 * the UART console there.
 *
 * Part of the mnist-edge firmware; generated, do not edit.
 */
#ifndef SEMIHOST_H
#define SEMIHOST_H

#include <stdint.h>

#define SH_MODE_RB 1 /* fopen "rb" */
#define SH_MODE_WB 5 /* fopen "wb" */

int32_t sh_open(const char *path, int32_t mode);
int32_t sh_close(int32_t fd);
/* Both return the number of bytes NOT transferred (0 on success), as the spec says. */
int32_t sh_read(int32_t fd, void *buf, uint32_t len);
int32_t sh_write(int32_t fd, const void *buf, uint32_t len);
int32_t sh_flen(int32_t fd);
void sh_write0(const char *text);
/* Ends the emulation: QEMU exits with status 0 when ok is nonzero, else 1. */
void sh_exit(int ok) __attribute__((noreturn));

#endif /* SEMIHOST_H */
