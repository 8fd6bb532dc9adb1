#!/usr/bin/env python3
"""Tessera's f32 engine against onnxruntime on the same model, batch and thread count, in one run.

    python3 scripts/bench_plain.py MODEL.onnx [--runs 200] [--batch 1] [--threads 2]

Needs `onnxruntime` and `numpy` (pip); builds nothing: run `cargo build --release` first.
Prints min/median latency of both and the ratio of medians (Tessera / onnxruntime).
"""
import argparse
import json
import os
import subprocess

import onnxruntime as ort

from benchmarks import onnxruntime_ms

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model")
    p.add_argument("--runs", type=int, default=200)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    a = p.parse_args()
    env = dict(os.environ, RAYON_NUM_THREADS=str(a.threads))
    out = subprocess.run([os.path.join(ROOT, "target", "release", "tessera"), "bench", "plain", a.model, "--runs",
                          str(a.runs), "--batch", str(a.batch), "--json"], check=True, capture_output=True, text=True,
                         env=env)
    t = json.loads(out.stdout)
    o = onnxruntime_ms(a.model, a.batch, a.runs, a.threads)
    o_min, o_med = o["min"], o["median"]
    result = dict(model=a.model, batch=a.batch, threads=a.threads, runs=a.runs,
                  onnxruntime_ms=dict(min=o_min, median=o_med, version=ort.__version__),
                  tessera_f32_ms=t["f32_ms"], tessera_fixed_ms=t["fixed_ms"],
                  tessera_over_onnxruntime=t["f32_ms"]["median"] / o_med)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
