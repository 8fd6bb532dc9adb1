"""Classify a shipped MNIST image with a shipped model under two suites, from Python.

    pip install ./python
    python examples/python/quickstart.py

Trains nothing: models/minionn-mnist.onnx ships with its fixed-point calibration.
"""

from pathlib import Path

import numpy as np

import tessera

repo = Path(__file__).resolve().parents[2]
model = tessera.load(repo / "models" / "minionn-mnist.onnx")
image = repo / "examples" / "images" / "mnist-test00000-7.png"

reference = model.infer(image)  # in the clear, in this process
print(f"fixed-point reference: label {reference.label}")
np.set_printoptions(precision=3, suppress=True)

for suite in ("serpens-n", "serpens-2"):
    with tessera.local_cluster(model, suite=suite, holders=2) as cluster:
        result = cluster.infer(image)
    print(f"{suite}: label {result.label}, {result.elapsed_ms:.1f} ms, {result.cost.bytes} bytes")
    print(f"  logits {result.logits[0]}")
