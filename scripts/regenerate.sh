#!/usr/bin/env bash
# Refresh generated/<model>/ from a run: copy its QGraph, then regenerate the C and HLS trees.
# CI (tests/test_generated.py) regenerates from the committed QGraph and fails on any byte change.
# Usage: scripts/regenerate.sh [RUN_DIR]   (default runs/edge)
set -euo pipefail
cd "$(dirname "$0")/.."
run=${1:-runs/edge}
model=$(basename "$run")
out=generated/$model
mkdir -p "$out"
rm -f "$out"/*.qgraph.json "$out"/*.qgraph.npz
cp "$run"/*.qgraph.json "$run"/*.qgraph.npz "$out"/
mnist-edge generate c "$out" --out "$out/c" --force
mnist-edge generate hls "$out" --out "$out/hls" --force
echo "regenerated $out"
