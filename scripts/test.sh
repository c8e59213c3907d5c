#!/usr/bin/env bash
# One command from a fresh checkout to the whole test suite: set up, lint, test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
if [ -z "${MNIST_EDGE_DATA:-}" ] && [ -d ../shared/mnist ]; then
  MNIST_EDGE_DATA="$(cd ../shared/mnist && pwd)"; export MNIST_EDGE_DATA
fi
ruff check mnist_edge tests scripts
# Two workers (the machine's two cores); each test file stays on one worker, so a module's
# fixtures (trained runs, generated trees) are built once; files go out in collection
# order, the longest first (tests/conftest.py: LONGEST_FIRST); the 20 slowest tests are
# listed at the end, to keep the suite inside its budget.
exec python3 -m pytest -q -rs -n 2 --dist loadfile --no-loadscope-reorder --durations=20 "$@"
