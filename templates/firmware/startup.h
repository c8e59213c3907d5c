/*
 * startup.h - what the startup code offers the application.
 *
 * Part of the mnist-edge firmware; generated, do not edit.
 */
#ifndef STARTUP_H
#define STARTUP_H

#include <stdint.h>

/* Deepest stack use so far, in bytes, found by scanning the painted stack. */
uint32_t stack_high_water(void);

#endif /* STARTUP_H */
