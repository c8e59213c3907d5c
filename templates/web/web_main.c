/* WebAssembly entry points around the generated C: the page writes MNIST_EDGE_INPUT_SIZE
 * input bytes into web_input(), calls web_predict() and reads the int8 logits at
 * web_logits(). Static buffers, no malloc: the module imports nothing. */
#include <stdint.h>

#include "mnist_edge.h"

static mnist_edge_input_t input[MNIST_EDGE_INPUT_SIZE];
static int8_t logits[MNIST_EDGE_CLASSES];

mnist_edge_input_t *web_input(void) { return input; }

int8_t *web_logits(void) { return logits; }

int web_predict(void) { return mnist_edge_predict(input, logits); }
