"""The Python binding's overhead per query, against the Rust side's latency.

    python python/bench_overhead.py [--suite serpens-n] [--queries 200] [--tls CLUSTER_TOML | --server TESSERA]

For each query, the wall time of `cluster.infer(image)` seen from Python is set against the
query's latency measured in Rust (`result.elapsed_ms`: the suite's query, connections included).
The difference is what the binding adds: reading the NumPy array, releasing and taking back the
GIL, waiting on the runtime, converting the logits, labels and cost reports. The image is a
preloaded normalized `float32` array (no file reading). Prints min and median of each, and the overhead as a
share of the Rust latency.
"""

import argparse
import statistics
import time
from pathlib import Path

import tessera

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=str(REPO / "models" / "minionn-mnist.onnx"))
    p.add_argument("--image", default=str(REPO / "examples" / "images" / "mnist-test00000-7.png"))
    p.add_argument("--suite", default="serpens-n")
    p.add_argument("--holders", type=int, default=2)
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--tls", help="a running cluster's configuration: measure over TLS instead of in process")
    p.add_argument("--server", help="the tessera binary: start server processes, queried over TLS")
    args = p.parse_args()

    model = tessera.load(args.model)
    # The normalized 1×C×H×W float32 array a notebook passes, read once before measuring.
    image = model.prepare(args.image)
    if args.tls:
        cluster = tessera.connect(args.tls, model=args.model)
    elif args.server:
        cluster = tessera.local_cluster(model, suite=args.suite, holders=args.holders, processes=True, server=args.server)
    else:
        cluster = tessera.local_cluster(model, suite=args.suite, holders=args.holders)
    wall, rust = [], []
    with cluster:
        for i in range(args.warmup + args.queries):
            start = time.perf_counter()
            r = cluster.infer(image)
            seconds = time.perf_counter() - start
            if i >= args.warmup:
                wall.append(seconds * 1e3)
                rust.append(r.elapsed_ms)
    overhead = [w - r for w, r in zip(wall, rust)]
    share = [o / r for o, r in zip(overhead, rust)]
    where = "TLS" if args.tls or args.server else "in process"
    print(f"{Path(args.model).name}, suite {cluster.suite} ({where}), {args.queries} queries after {args.warmup} warm-up")
    print(f"{'':24}{'min':>10}{'median':>10}")
    for name, v in [("Python wall (ms)", wall), ("Rust latency (ms)", rust), ("overhead (ms)", overhead)]:
        print(f"{name:24}{min(v):10.3f}{statistics.median(v):10.3f}")
    print(f"{'overhead / latency':24}{100 * min(share):9.2f}%{100 * statistics.median(share):9.2f}%")


if __name__ == "__main__":
    main()
