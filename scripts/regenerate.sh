#!/usr/bin/env bash
# Refresh generated/<model>/ from a run: copy its QGraph, then regenerate the C and HLS trees.
# CI (tests/test_generated.py) regenerates from the committed QGraph and fails on any byte change.
# Usage: scripts/regenerate.sh [RUN_DIR]   (default runs/edge; generated/edge regenerates
#        the trees from the committed QGraph alone)
set -euo pipefail
cd "$(dirname "$0")/.."
run=${1:-runs/edge}
model=$(basename "$run")
out=generated/$model
if [ "$(cd "$run" 2>/dev/null && pwd)" != "$(mkdir -p "$out" && cd "$out" && pwd)" ]; then
  # Only a run that has a QGraph replaces the committed one.
  compgen -G "$run/*.qgraph.json" >/dev/null || { echo "regenerate: $run has no QGraph" >&2; exit 2; }
  rm -f "$out"/*.qgraph.json "$out"/*.qgraph.npz
  cp "$run"/*.qgraph.json "$run"/*.qgraph.npz "$out"/
fi
mnist-edge generate c "$out" --out "$out/c" --force
mnist-edge generate hls "$out" --out "$out/hls" --force
echo "regenerated $out"
