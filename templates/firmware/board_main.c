/*
 * board_main.c - on-board self-test: runs the images of test_vectors.h,
 * compares every logit with the golden model's and prints, per image, the
 * class and the cycles one inference took (DWT cycle counter), then a
 * PASS/FAIL line with the stack high-water mark.
 *
 * Part of the mnist-edge firmware; generated, do not edit.
 */
#include <stdint.h>
#include <string.h>

#include "console.h"
#include "mnist_edge.h"
#include "startup.h"
#include "test_vectors.h"

#define DEMCR (*(volatile uint32_t *)0xe000edfcu)
#define DWT_CTRL (*(volatile uint32_t *)0xe0001000u)
#define DWT_CYCCNT (*(volatile uint32_t *)0xe0001004u)

int main(void)
{
    int i, failures = 0;
    uint32_t total = 0u;
    DEMCR |= 1u << 24; /* TRCENA: turn the DWT on */
    DWT_CYCCNT = 0u;
    DWT_CTRL |= 1u;    /* CYCCNTENA */
    console_write("mnist-edge " MNIST_EDGE_MODEL_NAME ": on-board self-test\n");
    for (i = 0; i < ME_TEST_VECTORS; i++) {
        int8_t logits[MNIST_EDGE_CLASSES];
        const uint32_t start = DWT_CYCCNT;
        const int cls = mnist_edge_predict(me_test_inputs[i], logits);
        const uint32_t cycles = DWT_CYCCNT - start;
        const int same = memcmp(logits, me_test_logits[i], sizeof logits) == 0 &&
                         cls == me_test_classes[i];
        total += cycles;
        failures += !same;
        console_write("image ");
        console_write_int(i);
        console_write(": class ");
        console_write_int(cls);
        console_write(same ? ", logits exact, " : ", logits DIFFER from golden, ");
        console_write_uint(cycles);
        console_write(" cycles\n");
    }
    console_write(failures ? "FAIL: " : "PASS: ");
    console_write_int(ME_TEST_VECTORS - failures);
    console_write("/");
    console_write_int(ME_TEST_VECTORS);
    console_write(" images bit-exact; ");
    console_write_uint(total / ME_TEST_VECTORS);
    console_write(" cycles per inference; stack ");
    console_write_uint(stack_high_water());
    console_write(" bytes; arena ");
    console_write_uint(MNIST_EDGE_ARENA_SIZE);
    console_write(" bytes\n");
    return failures ? 1 : 0;
}
