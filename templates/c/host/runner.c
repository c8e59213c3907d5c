/*
 * runner.c - host harness for validating generated C (not part of the generated tree).
 *
 *   runner INPUTS LOGITS [TIMING_IMAGES] [REPEATS]
 *
 * Reads N inputs of MNIST_EDGE_INPUT_SIZE bytes (the C API's encoding and layout) from
 * INPUTS and writes N x MNIST_EDGE_CLASSES int8 logits to LOGITS (this pass also warms the
 * caches). Then it times every mnist_edge_predict call on its own, batch 1 on one thread:
 * REPEATS passes over the first TIMING_IMAGES inputs, and prints
 *
 *   latency_us MEDIAN p10 P10 p90 P90 calls CALLS
 *
 * in microseconds per call. The median of single calls is what onnxruntime's figure is
 * (targets/onnxrt.py): a time slice lost to another process lands in the slow tail, where
 * a pass's mean would spread it over every image.
 */
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "mnist_edge.h"

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The q-quantile (0 <= q <= 1) of n sorted values, nearest rank below. */
static double quantile(const double *sorted, long n, double q)
{
    return sorted[(long)(q * (double)(n - 1))];
}

int main(int argc, char **argv)
{
    FILE *f;
    long n, i, timed, r, repeats, calls;
    mnist_edge_input_t *inputs;
    int8_t *logits;
    double *runs;
    volatile int sink = 0;
    if (argc < 3) {
        fprintf(stderr, "usage: %s INPUTS LOGITS [TIMING_IMAGES] [REPEATS]\n", argv[0]);
        return 2;
    }
    f = fopen(argv[1], "rb");
    if (f == NULL || fseek(f, 0, SEEK_END) != 0) {
        perror(argv[1]);
        return 2;
    }
    n = ftell(f) / MNIST_EDGE_INPUT_SIZE;
    rewind(f);
    inputs = malloc((size_t)(n * MNIST_EDGE_INPUT_SIZE) + 1);
    logits = malloc((size_t)(n * MNIST_EDGE_CLASSES) + 1);
    if (inputs == NULL || logits == NULL ||
        fread(inputs, MNIST_EDGE_INPUT_SIZE, (size_t)n, f) != (size_t)n) {
        fprintf(stderr, "%s: cannot read %ld images\n", argv[1], n);
        return 2;
    }
    fclose(f);
    for (i = 0; i < n; i++) {
        sink += mnist_edge_predict(inputs + i * MNIST_EDGE_INPUT_SIZE,
                                   logits + i * MNIST_EDGE_CLASSES);
    }
    f = fopen(argv[2], "wb");
    if (f == NULL || fwrite(logits, MNIST_EDGE_CLASSES, (size_t)n, f) != (size_t)n) {
        perror(argv[2]);
        return 2;
    }
    fclose(f);
    timed = argc > 3 ? atol(argv[3]) : 0;
    repeats = argc > 4 ? atol(argv[4]) : 5;
    if (timed > n) {
        timed = n;
    }
    if (timed > 0 && repeats > 0) {
        int8_t out[MNIST_EDGE_CLASSES];
        calls = timed * repeats;
        runs = malloc(sizeof(double) * (size_t)calls);
        if (runs == NULL) {
            fprintf(stderr, "cannot allocate %ld timings\n", calls);
            return 2;
        }
        for (r = 0; r < repeats; r++) {
            for (i = 0; i < timed; i++) {
                const double t0 = now_us();
                sink += mnist_edge_predict(inputs + i * MNIST_EDGE_INPUT_SIZE, out);
                runs[r * timed + i] = now_us() - t0;
            }
        }
        qsort(runs, (size_t)calls, sizeof(double), cmp_double);
        printf("latency_us %.3f p10 %.3f p90 %.3f calls %ld\n", quantile(runs, calls, 0.5),
               quantile(runs, calls, 0.1), quantile(runs, calls, 0.9), calls);
        free(runs);
    }
    free(inputs);
    free(logits);
    return sink < 0;
}
