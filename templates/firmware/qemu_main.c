/*
 * qemu_main.c - semihosting runner: runs the model on every input the host provides.
 *
 * Reads images.bin (N inputs of MNIST_EDGE_INPUT_SIZE bytes, the C API's encoding and
 * layout) from the host's working directory, runs mnist_edge_predict() on each and writes the int8 logits to
 * logits.bin (N x MNIST_EDGE_CLASSES bytes). Exits with status 0 when done;
 * any I/O error prints one line and exits with status 1.
 *
 * Part of the mnist-edge firmware; generated, do not edit.
 */
#include <stdint.h>

#include "console.h"
#include "mnist_edge.h"
#include "semihost.h"

/* Images per semihosting read: fewer host round trips. The build sets it from
 * the board (1 on the 16 KB Cortex-M0, where 32 images would not fit in RAM). */
#ifndef RUNNER_BATCH
#define RUNNER_BATCH 32
#endif
#define BATCH RUNNER_BATCH

static mnist_edge_input_t inputs[BATCH][MNIST_EDGE_INPUT_SIZE];
static int8_t logits[BATCH][MNIST_EDGE_CLASSES];

static int fail(const char *what)
{
    console_write("mnist-edge runner: ");
    console_write(what);
    console_write("\n");
    return 1;
}

int main(void)
{
    int32_t in, out, size, count, done;
    in = sh_open("images.bin", SH_MODE_RB);
    if (in < 0) {
        return fail("cannot open images.bin");
    }
    size = sh_flen(in);
    if (size < 0 || size % MNIST_EDGE_INPUT_SIZE != 0) {
        return fail("images.bin is not a whole number of inputs");
    }
    out = sh_open("logits.bin", SH_MODE_WB);
    if (out < 0) {
        return fail("cannot create logits.bin");
    }
    count = size / MNIST_EDGE_INPUT_SIZE;
    for (done = 0; done < count;) {
        const int32_t n = count - done < BATCH ? count - done : BATCH;
        int32_t i;
        if (sh_read(in, inputs, (uint32_t)(n * MNIST_EDGE_INPUT_SIZE)) != 0) {
            return fail("short read from images.bin");
        }
        for (i = 0; i < n; i++) {
            (void)mnist_edge_predict(inputs[i], logits[i]);
        }
        if (sh_write(out, logits, (uint32_t)(n * MNIST_EDGE_CLASSES)) != 0) {
            return fail("short write to logits.bin");
        }
        done += n;
    }
    if (sh_close(out) != 0 || sh_close(in) != 0) {
        return fail("close failed");
    }
    return 0;
}
