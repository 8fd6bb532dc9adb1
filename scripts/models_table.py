#!/usr/bin/env python3
"""Regenerates docs/models.md from `tessera inspect --json` and `tessera eval --plain --json`.

    cargo build --release && python3 scripts/models_table.py > docs/models.md

Each model is evaluated on its full real test set from ../shared/data when present, otherwise on
the 200-image set in data/. Nothing in the table is typed by hand.
"""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(ROOT, "..", "shared", "data")
TESSERA = os.path.join(ROOT, "target", "release", "tessera")

MODELS = [
    ("minionn-mnist", "MiniONN-MNIST", "mnist/t10k-images-idx3-ubyte.gz", "mnist-test-200-images.idx",
     "conv5×5 1→16, ReLU, maxpool2, conv5×5 16→16, ReLU, maxpool2, FC 256→100, ReLU, FC 100→10"),
    ("lenet-mnist", "LeNet (Caffe style)", "mnist/t10k-images-idx3-ubyte.gz", "mnist-test-200-images.idx",
     "conv5×5 1→20, maxpool2, ReLU, conv5×5 20→50, maxpool2, ReLU, FC 800→500, ReLU, FC 500→10"),
    ("minionn-fashion", "Fashion-MNIST (MiniONN-MNIST architecture)", "fashion-mnist/t10k-images-idx3-ubyte.gz",
     "fashion-mnist-test-200-images.idx", "as MiniONN-MNIST"),
    ("pneumonia-cnn", "PneumoniaMNIST CNN", "medmnist/pneumoniamnist_balanced_3166.npz",
     "pneumoniamnist-test-200-images.idx",
     "3 × (conv3×3 pad1, BatchNorm, ReLU, maxpool2): 1→16→32→32, FC 288→64, ReLU, FC 64→2"),
    ("minionn-cifar", "MiniONN-CIFAR (7 conv)", "cifar10/test_batch_from_jpeg.bin", "cifar10-test-200.bin",
     "conv3×3 3→64, ReLU, conv3×3 64→64, ReLU, avgpool2, 2 × (conv3×3 64→64, ReLU), avgpool2, "
     "conv3×3 64→64, ReLU, conv1×1 64→64, ReLU, conv1×1 64→16, ReLU, FC 1024→10 (all 3×3 with pad 1)"),
    ("resnet20-cifar", "ResNet-20", "cifar10/test_batch_from_jpeg.bin", "cifar10-test-200.bin",
     "conv3×3 3→16, BN, ReLU; 3 stages × 3 basic blocks (16/32/64 channels, BN, residual adds, 1×1 "
     "projection shortcuts at stage changes); global average pool; FC 64→10"),
    ("vgg-mnist", "VGG-style MNIST", "mnist/t10k-images-idx3-ubyte.gz", "mnist-test-200-images.idx",
     "2 × (conv3×3 1→8→8, BN, ReLU), maxpool2, 2 × (conv3×3 8→16→16, BN, ReLU), maxpool2, "
     "`x.view(x.size(0), -1)`, FC 256→64, ReLU, FC 64→10 (convolutions unpadded)"),
    ("mobilenet-cifar", "MobileNet-style CIFAR-10", "cifar10/test_batch_from_jpeg.bin", "cifar10-test-200.bin",
     "conv3×3 3→16, BN, ReLU; 4 depthwise-separable blocks (depthwise conv3×3, BN, ReLU, pointwise "
     "conv1×1, BN, ReLU): 16→32 stride 2, 32→64 stride 2, 64→64, 64→128 stride 2; global average "
     "pool; FC 128→10"),
]


BAYESIAN = [
    ("bayes-minionn-mnist", "Bayesian MiniONN-MNIST", "mnist/t10k-images-idx3-ubyte.gz", "mnist-test-200-images.idx"),
    ("bayes-pneumonia-cnn", "Bayesian PneumoniaMNIST CNN", "medmnist/pneumoniamnist_balanced_3166.npz",
     "pneumoniamnist-test-200-images.idx"),
]
SAMPLES = [1, 2, 4, 8]

SUPPORTED_OPS = """## Supported ONNX operators

What `tessera_onnx` imports (opset 13–20), and where each op runs. Subgraphs of constants and the
static input shape (`Shape`, `Gather`, `Unsqueeze`, `Squeeze`, `Concat`, `Slice`, `Cast`,
`ConstantOfShape`, `Range`, `Reshape`, `Transpose`, arithmetic on them) are evaluated at import.
A refusal names the node. *f32* is the plaintext engine (and the `plain` suite). *Fixed point* is
the `Z_t` reference: what it runs, every secure suite runs — linear ops locally on shares in
serpens-n and serpens-2, in verify's client (convolutions and FC layers offloaded and checked),
in bayes' user (convolutions and FC layers under BFV on the server). What it refuses, every
secure suite refuses, by the node's name (`NotFixedPoint`).

| ONNX op | f32 | fixed point and every secure suite |
|---|---|---|
| `Conv` | yes | yes |
| `Conv` with `group` > 1 (grouped, depthwise) | yes | yes: one product per group; verify checks it and bayes evaluates it as the ordinary convolution it equals (a depthwise layer then costs bayes `C` times its multiplications) |
| `Gemm`, `MatMul` with constant weights | yes | yes |
| `BatchNormalization`; `Add`, `Sub`, `Mul`, `Div` by a per-channel constant | yes | folded into the linear layer before it; refused where none precedes it (normalizing the input belongs in the model's mean and std metadata) |
| `Add` of two activations | yes | yes |
| `Concat` of activations along channels (`axis` 1) | yes | yes (local on shares) |
| `Reshape`, `Flatten` (`axis` 1), `Transpose`, `Squeeze`, `Unsqueeze` that move no data (batch axis first, axes longer than 1 in their order; ranks 2 and 4) | yes | yes; others are refused at import |
| `Pad` (constant zeros, spatial) | yes | yes (folded into the next convolution) |
| `Relu` | yes | yes |
| `MaxPool` (window ≤ 16) | yes | yes |
| `AveragePool`, `GlobalAveragePool` | yes | `1/k` folded into the next linear layer (or the previous one) |
| `AveragePool` with `count_include_pad` = 0 over padding | yes | each position's divisor folded into the FC layer reached through ReLUs and reshapes; refused otherwise ([arithmetic.md](arithmetic.md)) |
| `LeakyRelu` | yes | refused: the suites' nonlinear protocols select slope 0 or 1 |
| `Identity`, `Dropout` (inference), `Constant` | yes | yes |"""

BAYESIAN_INTRO = """## Bayesian models (suite bayes)

Trained by Bayes-by-backprop (`python training/bayes.py all`, in a PyTorch virtualenv outside the
repository: `pip install -r training/requirements.txt`), with the architectures, data, normalization
and augmentation of MiniONN-MNIST and the PneumoniaMNIST CNN above. The posterior is a factorized
Gaussian per weight and bias, with prior N(0, 0.1²) and a KL term weighted 0.1 (tempered: the
5,000-image MNIST training subset makes the untempered posterior too wide for single samples). Batch
normalization stays deterministic. The ONNX file is the mean network. Beside each Bayesian
initializer `<name>` sits an initializer `<name>.sigma` with its standard deviations, laid out like
it; the exporter's folding of batch normalization into the convolutions is applied to the
deviations too. `tessera_onnx::import_file_with_posterior` reads them. Other tools see an ordinary
model, because the extra initializers are unused.

Accuracy on the full test sets: the mean network in PyTorch (from `training/bayes.py`), the mean
network in Tessera's `f32` engine and fixed-point reference, and the meta-prediction (mean softmax
of S sampled forward passes, as the suite computes it) with Tessera's `f32` engine on weights it
samples from the posterior (`tessera eval --plain --samples 1,2,4,8`; one draw per run, so these
columns move by a few tenths of a point between runs). The suite's default is S = 4."""


def bayesian_section():
    rows = []
    for name, title, full, small in BAYESIAN:
        model = os.path.join(ROOT, "models", f"{name}.onnx")
        data = os.path.join(SHARED, full)
        if not os.path.exists(data):
            data = os.path.join(ROOT, "data", small)
        info = run("inspect", model, "--json")
        ev = run("eval", "--plain", model, data, "--json", "--samples", ",".join(map(str, SAMPLES)))
        r, cal = ev["report"], info["calibration"]
        sampled = {s["samples"]: s["accuracy"] for s in ev["sampled"]}
        rows.append(
            f"| {title} | `models/{name}.onnx` | {r['images']} | {pct(info['meta'].get('pytorch_test_accuracy'))} | "
            f"{pct(r['f32_accuracy'])} / {pct(r['fixed_accuracy'])} | "
            + " | ".join(pct(sampled[s]) for s in SAMPLES)
            + f" | {cal['f']}/{cal['f_w']}/{cal['bound_bits']}/{cal['statistical_security']} | "
            f"{info['posterior']['median_sigma']:.3f} |")
    header = ("| model | file | test images | mean (PyTorch) | mean, Tessera f32 / fixed point | "
              + " | ".join(f"S = {s}" for s in SAMPLES) + " | f/f_w/ℓx/σ | median posterior σ |")
    rule = "|" + "---|" * (7 + len(SAMPLES))
    return "\n".join([BAYESIAN_INTRO, "", header, rule, *rows])


def run(*args):
    return json.loads(subprocess.run([TESSERA, *args], check=True, capture_output=True, text=True).stdout)


def pct(v):
    return "–" if v is None else f"{100 * v:.2f}%"


def count(v):
    return f"{v / 1e6:.2f} M" if v >= 1e6 else f"{v / 1e3:.1f} k"


def main():
    rows, details = [], []
    for name, title, full, small, arch in MODELS:
        model = os.path.join(ROOT, "models", f"{name}.onnx")
        if not os.path.exists(model):
            print(f"skipping {name}: not trained yet", file=sys.stderr)
            continue
        data = os.path.join(SHARED, full)
        if not os.path.exists(data):
            data = os.path.join(ROOT, "data", small)
        info = run("inspect", model, "--json")
        ev = run("eval", "--plain", model, data, "--json")["report"]
        meta, cal, total = info["meta"], info["calibration"], info["total"]
        rows.append(
            f"| {title} | {meta['dataset']} | {count(total['params'])} | {count(total['macs'])} | "
            f"{count(total['relus'])} | {pct(meta.get('pytorch_test_accuracy'))} | {pct(ev['f32_accuracy'])} | "
            f"{pct(ev['fixed_accuracy'])} | {pct(ev['label_agreement'])} | "
            f"{ev['max_logit_difference']:.3f} / {ev['mean_logit_difference']:.4f} | "
            f"{cal['f']}/{cal['f_w']}/{cal['bound_bits']}/{cal['statistical_security']} | {ev['images']} |")
        r = info["merge_report"]
        details.append(
            f"### {title} (`models/{name}.onnx`)\n\n{arch}.\n\n"
            f"- Training: {meta.get('recipe', '–')}.\n"
            f"- Merging pass: {r['layers_before']} → {r['layers_after']} layers; {r['batchnorms_folded']} BatchNorm "
            f"and {r['avgpools_folded']} average pools folded, {r['relus_fused']} ReLUs fused with max pools; "
            f"ReLUs per image {r['relus_before']} → {r['relus_after']}.\n"
            f"- Fixed point: f = {cal['f']}, f_w = {cal['f_w']}, ℓx = {cal['bound_bits']} bits, σ = "
            f"{cal['statistical_security']} bits; largest calibration activation {cal['max_abs_activation']:.2f}.\n"
            f"- Evaluated on `{os.path.relpath(data, ROOT)}`.\n")
    print("# Shipped models\n")
    print("Generated by `scripts/models_table.py` from `tessera inspect --json` and `tessera eval --plain "
          "--json`; do not edit by hand. Accuracy is top-1 on the full real test set (the number of images "
          "is in the last column). *PyTorch* is the float model as measured by `training/train.py`; "
          "*Tessera f32* is Tessera's `f32` engine on the merged model; *fixed point* is the `Z_t` "
          "reference that every secure suite reproduces. *Δlogit* is max / mean |fixed − f32| over all "
          "logits; the tests hold it to ≤ 1.0 / ≤ 0.15. Parameters, MACs and ReLUs are per image after "
          "the merging pass. *f/f_w/ℓx/σ*: activation and weight fractional bits, activation bound at "
          "product scale, statistical security.\n")
    print("| model | dataset | params | MACs | ReLUs | PyTorch | Tessera f32 | fixed point | f32 = fixed label | "
          "Δlogit max / mean | f/f_w/ℓx/σ | test images |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    print("\n## Models\n")
    print("\n".join(details))
    print()
    print(bayesian_section())
    print()
    print(SUPPORTED_OPS)


if __name__ == "__main__":
    main()
