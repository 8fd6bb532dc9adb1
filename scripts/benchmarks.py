#!/usr/bin/env python3
"""Regenerates docs/benchmarks.md: every shipped model under every suite, from `tessera bench --json`.

    python3 scripts/benchmarks.py [--runs 10] [--nets loopback,lan,wan] [--models models/a.onnx ...]

Builds the release binary, then, model by model in one run: `tessera bench MODEL --json` (every
suite as separate processes, with Tessera's f32 engine, the fixed-point reference and the plain
suite measured in the same invocation) and onnxruntime on the same model, batch and thread count.
Writes the figures (SVG) to docs/figures/ and the tables to docs/benchmarks.md. The raw JSON goes
to target/benchmarks/ for inspection.

Needs `onnxruntime` and `numpy` (pip; training/requirements.txt pins them). Nothing in the build
or the tests needs Python.
"""
import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np
import onnxruntime as ort

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESSERA = os.path.join(ROOT, "target", "release", "tessera")
SUITES = "serpens-n,serpens-2,verify,bayes"
# The real test images each model's queries carry (in-repo, drawn across the classes).
DATA = {
    "lenet-mnist": "data/mnist-test-200-images.idx",
    "minionn-mnist": "data/mnist-test-200-images.idx",
    "bayes-minionn-mnist": "data/mnist-test-200-images.idx",
    "minionn-fashion": "data/fashion-mnist-test-200-images.idx",
    "minionn-cifar": "data/cifar10-test-200.bin",
    "resnet20-cifar": "data/cifar10-test-200.bin",
    "pneumonia-cnn": "data/pneumoniamnist-test-200-images.idx",
    "bayes-pneumonia-cnn": "data/pneumoniamnist-test-200-images.idx",
    "vgg-mnist": "data/mnist-test-200-images.idx",
    "mobilenet-cifar": "data/cifar10-test-200.bin",
}
# Models drawn as figures: the CIFAR pair the papers use, and a Bayesian model (all four suites).
PLOTTED = ("minionn-cifar", "resnet20-cifar", "bayes-minionn-mnist")
NAMES = {
    "lenet-mnist": "LeNet-5 (MNIST)",
    "minionn-mnist": "MiniONN-MNIST",
    "minionn-fashion": "MiniONN (Fashion-MNIST)",
    "minionn-cifar": "MiniONN-CIFAR",
    "resnet20-cifar": "ResNet-20 (CIFAR-10)",
    "pneumonia-cnn": "PneumoniaMNIST CNN",
    "bayes-minionn-mnist": "Bayesian MiniONN-MNIST",
    "bayes-pneumonia-cnn": "Bayesian PneumoniaMNIST CNN",
    "vgg-mnist": "VGG-style MNIST",
    "mobilenet-cifar": "MobileNet-style CIFAR-10",
}


class Onnxruntime:
    """One onnxruntime CPU session and a random input, after 10 untimed calls; timed call by call."""

    def __init__(self, model, batch, threads):
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self.sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
        inp = self.sess.get_inputs()[0]
        dims = [d if isinstance(d, int) else 1 for d in inp.shape[1:]]
        self.feed = {inp.name: np.random.default_rng(0).standard_normal([batch] + dims).astype(np.float32)}
        for _ in range(10):
            self.sess.run(None, self.feed)

    def times_ms(self, runs):
        """`runs` latencies in milliseconds, sorted."""
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            self.sess.run(None, self.feed)
            times.append((time.perf_counter() - t) * 1e3)
        return sorted(times)


def onnxruntime_ms(model, batch, runs, threads):
    """Min / median / max latency of onnxruntime's CPU provider, after 10 untimed runs."""
    times = Onnxruntime(model, batch, threads).times_ms(runs)
    return dict(min=times[0], median=times[len(times) // 2], max=times[-1])


def tessera_bench(model, args, plot):
    stem = os.path.splitext(os.path.basename(model))[0]
    cmd = [TESSERA, "bench", model, "--suites", SUITES, "--net", args.nets, "--runs", str(args.runs), "--json",
           "--data", os.path.join(ROOT, DATA[stem])]
    if plot:
        cmd += ["--plot", plot]
    print("+", " ".join(os.path.relpath(c, ROOT) if c.startswith(ROOT) else c for c in cmd), file=sys.stderr)
    return run_json(cmd)


def run_json(cmd):
    """Runs a `--json` command, passing its stderr through, and reads its one JSON object."""
    out = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    if out.returncode != 0:
        sys.exit(f"failed ({out.returncode}): {' '.join(cmd)}")
    return json.loads(out.stdout)


def spread(s, digits=None):
    d = digits if digits is not None else (3 if s["median"] < 1 else 2 if s["median"] < 100 else 1)
    return f"{s['min']:.{d}f} / **{s['median']:.{d}f}** / {s['max']:.{d}f}"


def ratio(v):
    return "–" if v is None else f"{v:,.0f}×" if v >= 100 else f"{v:.1f}×"


def size(b):
    return f"{b / 1e6:.2f} MB" if b >= 1e6 else f"{b / 1e3:.1f} kB" if b >= 1e3 else f"{b} B"


def machine():
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{os.cpu_count()} cores ({cpu}), {platform.system()} {platform.release()}"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--nets", default="loopback,lan,wan")
    p.add_argument("--models", nargs="*")
    p.add_argument("--ort-runs", type=int, default=200)
    p.add_argument("--users", type=int, default=4, help="concurrent users in the throughput run")
    p.add_argument("--out", default=os.path.join(ROOT, "docs", "benchmarks.md"))
    p.add_argument("--render", metavar="RUN.json", help="write the page from a saved run instead of measuring")
    a = p.parse_args()
    if a.render:
        with open(a.render) as f:
            run = json.load(f)
        with open(a.out, "w") as f:
            f.write(render(run))
        return
    subprocess.run(["cargo", "build", "--release", "--locked", "-p", "tessera-cli"], check=True, cwd=ROOT)
    models = a.models or sorted(
        os.path.join("models", f) for f in os.listdir(os.path.join(ROOT, "models")) if f.endswith(".onnx"))
    if not models:
        sys.exit("no models to benchmark")
    os.makedirs(os.path.join(ROOT, "docs", "figures"), exist_ok=True)
    os.makedirs(os.path.join(ROOT, "target", "benchmarks"), exist_ok=True)
    threads = os.cpu_count()
    started = datetime.datetime.now(datetime.timezone.utc)
    reports = []
    for model in models:
        stem = os.path.splitext(os.path.basename(model))[0]
        plot = os.path.join(ROOT, "docs", "figures", f"bench-{stem}.svg") if stem in PLOTTED else None
        r = tessera_bench(model, a, plot)
        # Same thread count as Tessera's f32 engine in that run.
        r["onnxruntime_ms"] = onnxruntime_ms(os.path.join(ROOT, model), r["batch"], a.ort_runs, r["threads"])
        r["plot"] = plot
        with open(os.path.join(ROOT, "target", "benchmarks", f"{stem}.json"), "w") as f:
            json.dump(r, f, indent=1)
        reports.append(r)
    # Throughput: concurrent users against running servers.
    cmd = [TESSERA, "bench", "models/minionn-mnist.onnx", "--suites", "serpens-n,serpens-2,verify", "--runs", "3",
           "--users", str(a.users), "--queries", "100", "--json", "--data", DATA["minionn-mnist"]]
    print("+", " ".join(cmd[1:]), file=sys.stderr)
    throughput = run_json(cmd)
    print("+ bench kernels --runs 20 --json", file=sys.stderr)
    kernels = run_json([TESSERA, "bench", "kernels", "--runs", "20", "--json"])
    run = dict(reports=reports, throughput=throughput, kernels=kernels, nets=a.nets, runs=a.runs, users=a.users,
               threads=threads, started=started.isoformat(), machine=machine(), onnxruntime=ort.__version__)
    saved = os.path.join(ROOT, "target", "benchmarks", "run.json")
    with open(saved, "w") as f:
        json.dump(run, f)
    with open(a.out, "w") as f:
        f.write(render(run))
    print(f"wrote {os.path.relpath(a.out, ROOT)} (the run: {os.path.relpath(saved, ROOT)})", file=sys.stderr)


def result(r, suite, net, **match):
    for s in r["results"]:
        if s["suite"] == suite and s["net"] == net and all(s.get(k) == v for k, v in match.items()):
            return s
    return None


def f32_engine_table():
    """The ratio table of docs/f32-engine.md, as that page last wrote it."""
    try:
        with open(os.path.join(ROOT, "docs", "f32-engine.md")) as f:
            return "".join(line for line in f if line.startswith("|"))
    except OSError:
        return "(not measured yet)\n"


def render(run):
    """The page, from one run's measurements."""
    reports, throughput, kernels = run["reports"], run["throughput"], run["kernels"]
    nets = run["nets"].split(",")
    started = datetime.datetime.fromisoformat(run["started"])
    out = []
    w = out.append
    w("# Benchmarks\n")
    w("Generated by `python3 scripts/benchmarks.py` (do not edit by hand) on "
      f"{started:%Y-%m-%d}: {run['machine']}, onnxruntime {run['onnxruntime']}, {run['threads']} threads. "
      f"Every model ran `tessera bench MODEL --suites {SUITES} --net {run['nets']} --runs {run['runs']} --json`: "
      "each party of each suite is its own process, every link is mutual TLS 1.3, and the plaintext "
      "baselines (Tessera's `f32` engine, the fixed-point reference, the `plain` suite) were measured in "
      "the same invocation; onnxruntime ran in the same script run, right after it. Latencies are "
      f"min / **median** / max of {run['runs']} timed queries after {reports[0]['warmup']} untimed ones, batch 1. The machine "
      "is shared and noisy: compare ratios within one table, not across days.\n")
    w("Definitions (`crates/tessera/src/cost.rs`): *bytes* counts every protocol frame once, at its "
      "sender, all parties together; *rounds* adds, layer by layer, the most round trips any one link "
      "made in that layer; *preprocessing* is the input-independent work (serpens-2's permutation "
      "correlations, keys and encrypted pads, verify's pads, bayes' weight sampling) that a "
      "deployment would run ahead of the query, and "
      "*online* is the latency without it. `bayes` runs only on the Bayesian models (it needs a "
      "posterior); the other suites run their mean network. The `plain` suite sends the image in "
      "the clear to one server over the same transport. The user of a timed query runs on one thread "
      "(a current-thread async runtime), as a client device would; *CPU* is a process's CPU time, "
      "all its threads together.\n")
    w("Changes of protocol are measured against the build before them, interleaved in one session, "
      "in the suite's own document (*Cost*): the privacy fixes of serpens-n (re-randomizers, offsets, "
      "comparisons under their own masks) in docs/suites/serpens-n.md, the permutation correlations "
      "of serpens-2 in docs/suites/serpens-2.md.\n")

    w("## Plaintext baselines\n")
    w("| model | MACs | ReLUs | Tessera f32 ms | Tessera f32 CPU ms | fixed-point reference ms | onnxruntime ms "
      "| f32 ÷ onnxruntime |")
    w("|---|---|---|---|---|---|---|---|")
    for r in reports:
        b, o = r["baselines"], r["onnxruntime_ms"]
        w(f"| {NAMES.get(r['model'], r['model'])} | {r['macs']:,} | {r['relus']:,} | {spread(b['f32_ms'])} | "
          f"{spread(b['f32_cpu_ms'])} | {spread(b['fixed_ms'])} | {spread(o)} | {b['f32_ms']['median'] / o['median']:.2f} |")
    w("")
    w("The f32 engine alone against onnxruntime, at batch 1 and 16 in rounds that alternate the two, from "
      "docs/f32-engine.md (`python3 scripts/bench_plain.py --all --markdown docs/f32-engine.md`; its date and "
      "method are there):\n")
    w(f32_engine_table())

    for net in nets:
        w(f"## Every suite on {net}\n")
        if net == "lan":
            w("Emulated LAN: 1 Gbit/s, 0.5 ms round trip on every connection to a server.\n")
        elif net == "wan":
            w("Emulated WAN: 100 Mbit/s, 40 ms round trip on every connection to a server.\n")
        else:
            w("All parties on this machine's loopback, sharing its cores.\n")
        w("| model | suite | latency ms | × f32 | × onnxruntime | × plain suite | preprocessing ms | online ms "
          "| bytes | rounds |")
        w("|---|---|---|---|---|---|---|---|---|---|")
        for r in reports:
            ort_median = r["onnxruntime_ms"]["median"]
            for s in (s for s in r["results"] if s["net"] == net):
                w(f"| {NAMES.get(r['model'], r['model'])} | {s['label']} | {spread(s['latency_ms'])} | "
                  f"{ratio(s['vs_f32'])} | {ratio(s['latency_ms']['median'] / ort_median)} | "
                  f"{ratio(s['vs_plain_suite'])} | {s['preprocess_median_ms']:.2f} | {s['online_median_ms']:.2f} | "
                  f"{size(s['bytes'])} | {s['rounds']} |")
        w("")

    w("## Against the published anchors\n")
    w("The papers' figures come from their own machines, networks and baselines; what carries over is "
      "the shape of the claim, checked here on this machine with Tessera's own baselines.\n")
    w("| claim | published | Tessera, this run | reading |")
    w("|---|---|---|---|")
    for name in ("minionn-cifar", "resnet20-cifar", "minionn-mnist"):
        r = next((r for r in reports if r["model"] == name), None)
        s = r and result(r, "serpens-n", "loopback")
        plain = r and result(r, "plain", "loopback")
        if s and plain:
            by_min = s["latency_ms"]["min"] / plain["latency_ms"]["min"]
            met = ("met" if max(s["vs_plain_suite"], by_min) < 10 else "not met" if min(s["vs_plain_suite"], by_min) >= 10
                   else "met by one measure only (noise)")
            w(f"| Serpens: n-server inference within 10× of plaintext | < 10× | {NAMES[name]}: "
              f"{ratio(s['vs_plain_suite'])} the plain suite by medians, {ratio(by_min)} by minima; "
              f"{ratio(s['vs_f32'])} local f32 (loopback) | {met} against the plain suite |")
    for name in ("minionn-cifar", "resnet20-cifar"):
        r = next((r for r in reports if r["model"] == name), None)
        s = r and result(r, "verify", "loopback")
        c = s and s.get("client")
        if c:
            met = "met" if c["macs_per_online_op"] >= 26 else "not met"
            w(f"| Lu et al.: the client saves 26–87× by offloading | 26–87× | {NAMES[name]}: the model's "
              f"{c['macs']:,} multiply-accumulates against the client's "
              f"{c['ops']['online']['mul'] + c['ops']['online']['add']:,} online multiplications and additions, "
              f"{c['macs_per_online_op']:.1f}× ({c['ops_ratio']:.1f}× counting every operation on both sides); "
              f"online CPU {c['cpu_ms']['total']:.2f} ms against {r['baselines']['f32_one_thread_ms']['median']:.2f} ms "
              f"for local f32 on one thread ({c['vs_f32_one_thread_cpu']:.2f}×) | {met} in operations; in CPU time, sending every "
              "activation through TLS is a floor that a fast local engine keeps close (*Verify's client* below) |")
    for r in reports:
        s = result(r, "bayes", "loopback", samples=1)
        s2 = result(r, "serpens-2", "loopback")
        if s and s2:
            w(f"| BAYHENN: ≈ 5× faster than GAZELLE | ≈ 5× | {NAMES[r['model']]}: bayes (S = 1) "
              f"{s['latency_ms']['median']:.1f} ms, {ratio(s['vs_f32'])} local f32; serpens-2, Tessera's other "
              f"two-party HE design, {s2['latency_ms']['median']:.1f} ms on the same model | GAZELLE is not "
              "reproduced here; bayes does not hide the weights from the user (docs/suites/bayes.md) |")
    w("")

    w("## Verify's client\n")
    w("What the `verify` client computes online per query (batch 1, loopback), counted where it runs, "
      "and its online CPU time by part (medians over the timed queries; each part on the client's "
      "thread, the transport is the rest of the process's time), beside running the model itself "
      "(its operations in the fixed-point runner; the `f32` engine's CPU time on one thread, the client's "
      "own thread count). Preprocessing (the pads, "
      "`K·M` and the challenges' weights) runs before the input exists. docs/suites/verify.md explains "
      "the parts and the floor.\n")
    for r in reports:
        s = result(r, "verify", nets[0])
        c = s and s.get("client")
        if not c:
            continue
        o, cpu = c["ops"], c["cpu_ms"]
        w(f"### {NAMES.get(r['model'], r['model'])}\n")
        w("| part | mul | add | other | CPU ms |")
        w("|---|---|---|---|---|")
        rows = [("pads (the message)", o["pad"], cpu["pads"]), ("checks", o["check"], cpu["checks"]),
                ("decode and unpad", o["unpad"], cpu["unpad"]), ("own layers", o["local"], cpu["local"]),
                ("TLS, framing, runtime", None, cpu["transport"]), ("**online**", o["online"], cpu["total"]),
                ("preprocessing, ahead", o["preprocess"], None),
                ("the model run locally (f32 CPU, one thread)", c["local_model"],
                 r["baselines"]["f32_one_thread_ms"]["median"])]
        for name, ops, ms in rows:
            counts = " | ".join("–" if ops is None else f"{ops[k]:,}" for k in ("mul", "add", "other"))
            w(f"| {name} | {counts} | {'–' if ms is None else f'{ms:.3f}'} |")
        w(f"\nThe model's multiply-accumulates are **{c['macs_per_online_op']:.1f}×** the client's online "
          f"multiplications and additions ({c['ops_ratio']:.1f}× counting every operation on both sides); the "
          f"client's online CPU is **{c['vs_f32_one_thread_cpu']:.2f}×** the f32 engine's on one thread, "
          f"{(cpu['total'] - cpu['transport']) / r['baselines']['f32_one_thread_ms']['median']:.2f}× without the "
          "transport.\n")

    w("## Where the time and bytes go\n")
    w("Each row of a breakdown is a stage of the protocol: setup, input, a run of linear layers ending "
      "at the named node, one nonlinear layer, output. *Time* is the wall time of the pacing party (the "
      "one in every stage: serpens-n holder 1, serpens-2 server 1, the user elsewhere), plus the user's "
      "connection, so a column adds up to nearly its query (what happens before the pacing party starts "
      "and after it ends is left out); setup rows take the longest party's time and come first whenever "
      "they ran (bayes samples its weights while the user waits in its first layer). *Bytes* and "
      "*rounds* as above. The figures stack the same rows per suite.\n")
    for r in reports:
        if not r.get("plot"):
            continue
        rel = os.path.relpath(r["plot"], os.path.join(ROOT, "docs"))
        w(f"### {NAMES.get(r['model'], r['model'])}\n")
        w(f"![{r['model']}: per-layer time and bytes per suite, latency per network]({rel})\n")
        net = nets[0]
        secure = [s for s in r["results"] if s["net"] == net and s["suite"] != "plain"]
        w(f"The median query on {net}, per stage: time ms · bytes · rounds.\n")
        rows = []
        for s in secure:
            for l in s["layers"]:
                key = (l["node"] if l["node"] is not None else -1, l["name"])
                if key not in [k for k, _ in rows]:
                    rows.append((key, l["kind"]))
        order = {"preprocess": 0, "keys": 0, "connect": 1, "input": 2, "query": 8, "output": 9}
        rows.sort(key=lambda k: (order.get(k[0][1], 5), k[0][0]))
        w("| stage | " + " | ".join(s["label"] for s in secure) + " |")
        w("|---|" + "---|" * len(secure))
        for (node, name), _ in rows:
            cells = []
            for s in secure:
                l = next((l for l in s["layers"] if (l["node"] if l["node"] is not None else -1, l["name"]) == (node, name)), None)
                cells.append("" if l is None else f"{l['time_ms']:.2f} · {size(l['bytes']) if l['bytes'] else '0'} · {l['rounds']} ({l['kind']})")
            w(f"| {name} | " + " | ".join(cells) + " |")
        w("| **query** | " + " | ".join(f"**{s['latency_ms']['median']:.2f} · {size(s['bytes'])} · {s['rounds']}**" for s in secure) + " |")
        w("")

    w("## Throughput\n")
    w(f"`tessera bench models/minionn-mnist.onnx --suites serpens-n,serpens-2,verify --users {run['users']} "
      "--queries 100`: the users share one running cluster per suite (loopback) and send queries back to "
      "back; every result of these exact suites is checked against the fixed-point reference.\n")
    w("| suite | queries/s | latency p50 ms | p99 ms | max ms | wrong |")
    w("|---|---|---|---|---|---|")
    for s in throughput["results"]:
        t = s["throughput"]
        lat = t["latency_ms"]
        wrong = "–" if t["wrong"] is None else t["wrong"]
        w(f"| {s['label']} | {t['queries_per_second']:.1f} | {lat['p50']:.2f} | {lat['p99']:.2f} | {lat['max']:.2f} | {wrong} |")
    w("")

    w("## Kernels\n")
    w("`tessera bench kernels --runs 20`: the exact `Z_t` convolution that the share-holders and the "
      f"fixed-point reference run, against `f32`, on MiniONN-CIFAR's layer shapes ({kernels['threads']} "
      "threads; medians).\n")
    w("| layer | MACs | Z_t ms | f32 ms | Z_t GMAC/s | f32 GMAC/s | Z_t ÷ f32 time |")
    w("|---|---|---|---|---|---|---|")
    for l in kernels["layers"] + [dict(kernels["total"], layer="**all layers**", macs=None)]:
        macs = "" if l["macs"] is None else f"{l['macs']:,}"
        w(f"| {l['layer']} | {macs} | {l['zt_ms'] if isinstance(l['zt_ms'], float) else l['zt_ms']['median']:.3f} | "
          f"{l['f32_ms'] if isinstance(l['f32_ms'], float) else l['f32_ms']['median']:.3f} | {l['zt_gmacs']:.1f} | "
          f"{l['f32_gmacs']:.1f} | {1 / l['ratio_of_f32']:.2f}× |")
    w("")

    w("## Link emulation\n")
    w("`--net lan` / `--net wan` put a relay in front of every server party: each direction of each "
      "connection is paced at the profile's rate and delayed by half its round trip, on OS threads "
      "(sub-millisecond sleeps). The kernel's `netem` qdisc would be the usual tool, but this machine's "
      "kernel lacks it, so the relay is the substitute; it adds one copy per chunk, small next to the "
      "emulated delays. Its test (`crates/tessera/src/emulate.rs`) sends 1 MiB over a 100 Mbit/s, 40 ms "
      "profile and checks the 124 ms the link implies.\n")
    w("## Reproducing one row\n")
    w("```sh\ntessera bench models/minionn-cifar.onnx --suites serpens-n,serpens-2 --net loopback,lan "
      "--runs 20 --plot cifar.png\ntessera bench models/minionn-mnist.onnx --config cluster.toml --users 8   "
      "# a running cluster\ntessera bench kernels; tessera bench plain models/minionn-cifar.onnx   "
      "# Z_t kernels, the plaintext engines\n```\n")
    return "\n".join(out)


if __name__ == "__main__":
    main()
