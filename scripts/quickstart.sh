#!/usr/bin/env bash
# One command from a fresh checkout to a validated int8 model: set up, then `mnist-edge build`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
if [ -z "${MNIST_EDGE_DATA:-}" ] && [ -d ../shared/mnist ]; then export MNIST_EDGE_DATA=../shared/mnist; fi
exec mnist-edge build "$@"
