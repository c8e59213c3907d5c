#!/usr/bin/env python3
"""Preprocessing quality through the full browser path, without hand-drawn data.

Each MNIST test image is drawn onto the static page's 280x280 canvas (nearest-neighbour
upscaled, as an ink bitmap), then the page itself preprocesses it in JS and classifies it
with the WebAssembly model, in headless Chromium. Two placements:

  full    upscaled 10x, filling the canvas (the digit at its real drawn size)
  corner  upscaled 5x (half size) in the top-left corner: preprocessing must bring it back

Reports the share classified as the label, the accuracy on the original 28x28 images
(golden), and checks that every page logit equals golden on the page's own 28x28 input.

  PYTHONPATH=$PWD python3 scripts/bench_demo_preprocessing.py [--run generated/edge] [--limit 1000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from mnist_edge import data, golden, qgraph  # noqa: E402
from mnist_edge.backends.web import generate_web  # noqa: E402
from mnist_edge.targets.browser import chromium, file_url  # noqa: E402

CHUNK = 100
PLACEMENTS = {"full": (10, 0, 0), "corner": (5, 0, 0)}   # factor, x, y

DRAW_JS = """
const [images, factor, x, y] = arguments;
return images.map((img) => {
  const r = MnistEdge.drawDigit(img, factor, x, y);
  return r === null ? null : [r.cls, r.logits, r.input];
});
"""


def run_placement(driver, images: np.ndarray, factor: int, x: int, y: int):
    classes, logits, inputs = [], [], []
    for start in range(0, len(images), CHUNK):
        chunk = [im.reshape(-1).tolist() for im in images[start:start + CHUNK]]
        for r in driver.execute_script(DRAW_JS, chunk, factor, x, y):
            if r is None:
                raise SystemExit("the page refused a drawing (empty after preprocessing?)")
            classes.append(r[0])
            logits.append(r[1])
            inputs.append(r[2])
    return (np.array(classes), np.array(logits, np.int8),
            np.array(inputs, np.uint8).reshape(-1, 28, 28))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default=str(REPO / "generated" / "edge"),
                        help="run folder holding the QGraph (default: the committed edge model)")
    parser.add_argument("--data", help="MNIST folder (else $MNIST_EDGE_DATA)")
    parser.add_argument("--limit", type=int, default=1000, help="test images (first N)")
    args = parser.parse_args()

    graph = qgraph.load_run(Path(args.run))
    images, labels = data.load_mnist("test", args.data)
    images, labels = images[:args.limit], labels[:args.limit]
    original = float(np.mean(golden.predict(golden.run_int8(graph, images)) == labels))
    print(f"model {graph.name} ({graph.content_hash()[:12]}), {len(images)} test images")
    print(f"original 28x28 (golden): {original:.2%}")
    with tempfile.TemporaryDirectory(prefix="mnist-edge-bench-web-") as tmp:
        site = generate_web(graph, Path(tmp) / "site")
        driver = chromium()
        try:
            driver.get(file_url(site / "index.html"))
            for _ in range(300):
                if driver.execute_script("return document.body.dataset.ready === '1'"):
                    break
                time.sleep(0.1)
            for name, (factor, x, y) in PLACEMENTS.items():
                start = time.time()
                cls, logits, inputs = run_placement(driver, images, factor, x, y)
                seconds = time.time() - start
                reference = golden.run_int8(graph, inputs)
                exact = bool(np.array_equal(logits, reference))
                share = float(np.mean(cls == labels))
                print(f"{name:6s} ({factor}x at ({x},{y}) on 280x280): classified as the label "
                      f"{share:.2%}; page logits = golden on the page's 28x28 input: {exact} "
                      f"({seconds:.1f} s in Chromium)")
                if not exact:
                    return 1
        finally:
            driver.quit()
    return 0


if __name__ == "__main__":
    sys.exit(main())
