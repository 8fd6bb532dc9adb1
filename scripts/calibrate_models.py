#!/usr/bin/env python3
"""Calibrates every shipped model on training images, never on the test images the tests use.

Builds one calibration set per dataset under target/calibration/ (200 training images, the
first 20 of each class, in the formats `tessera calibrate` reads) from the real data in
../shared/data, then runs `tessera calibrate MODEL SET --samples 200` for each MODEL given
(default: every shipped model), which rewrites MODEL.calibration.json.

    python3 scripts/calibrate_models.py [MODEL ...] [--data ../shared/data] [--fashion-train DIR]

Training images per dataset:
- MNIST: the 5,000-image training subset (mnist/mnist_5k_train_subset.csv.gz).
- Fashion-MNIST: the full training set from the Debian package `dataset-fashion-mnist`
  (`apt-get download dataset-fashion-mnist && dpkg-deb -x dataset-fashion-mnist_*.deb out/`,
  then --fashion-train out/usr/share/datasets/fashion-mnist).
- CIFAR-10: the training JPEGs (cifar10/train_jpeg.tar.gz), decoded with Pillow.
- PneumoniaMNIST: the `train_images` split of medmnist/pneumoniamnist_balanced_3166.npz.

Needs numpy and Pillow (training/requirements.txt) and a release build of the CLI.
"""

import argparse
import csv
import gzip
import io
import struct
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
PER_CLASS = 20
CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]

# Every shipped model and the calibration set of its dataset.
MODELS = {
    "minionn-mnist": "mnist",
    "lenet-mnist": "mnist",
    "bayes-minionn-mnist": "mnist",
    "minionn-fashion": "fashion-mnist",
    "pneumonia-cnn": "pneumoniamnist",
    "bayes-pneumonia-cnn": "pneumoniamnist",
    "minionn-cifar": "cifar10",
    "resnet20-cifar": "cifar10",
    "vgg-mnist": "mnist",
    "mobilenet-cifar": "cifar10",
}


def first_per_class(labels, per_class=PER_CLASS):
    """Indices of the first `per_class` images of every class, round-robin over the classes."""
    by_class = {}
    for i, label in enumerate(labels):
        by_class.setdefault(int(label), [])
        if len(by_class[int(label)]) < per_class:
            by_class[int(label)].append(i)
    return [by_class[c][k] for k in range(per_class) for c in sorted(by_class)]


def write_idx(stem, images, labels):
    """Writes `stem`-images.idx and `stem`-labels.idx (28×28 grayscale)."""
    images = np.asarray(images, dtype=np.uint8).reshape(-1, 28, 28)
    with open(f"{stem}-images.idx", "wb") as f:
        f.write(struct.pack(">IIII", 0x803, len(images), 28, 28) + images.tobytes())
    with open(f"{stem}-labels.idx", "wb") as f:
        f.write(struct.pack(">II", 0x801, len(labels)) + np.asarray(labels, dtype=np.uint8).tobytes())
    return Path(f"{stem}-images.idx")


def read_idx_gz(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic, n = struct.unpack(">II", data[:8])
    if magic == 0x803:
        return np.frombuffer(data[16:], dtype=np.uint8).reshape(n, 28, 28)
    return np.frombuffer(data[8:], dtype=np.uint8)


def mnist(data, out):
    rows = list(csv.reader(io.TextIOWrapper(gzip.open(data / "mnist/mnist_5k_train_subset.csv.gz"))))
    labels = [int(r[-1]) for r in rows]
    pick = first_per_class(labels)
    return write_idx(out / "mnist-train-200", [[int(v) for v in rows[i][:784]] for i in pick], [labels[i] for i in pick])


def fashion(train_dir, out):
    images = read_idx_gz(train_dir / "train-images-idx3-ubyte.gz")
    labels = read_idx_gz(train_dir / "train-labels-idx1-ubyte.gz")
    pick = first_per_class(labels)
    return write_idx(out / "fashion-mnist-train-200", images[pick], labels[pick])


def pneumonia(data, out):
    npz = np.load(data / "medmnist/pneumoniamnist_balanced_3166.npz")
    labels = npz["train_labels"].reshape(-1)
    pick = first_per_class(labels, 100)
    return write_idx(out / "pneumoniamnist-train-200", npz["train_images"][pick], labels[pick])


def cifar(data, out):
    """The first 20 training images of every class as CIFAR-10 binary records."""
    wanted = {f"train/{c}/{k:04d}.jpg": label for label, c in enumerate(CIFAR_CLASSES) for k in range(PER_CLASS)}
    records = {}
    with tarfile.open(data / "cifar10/train_jpeg.tar.gz") as tar:
        for member in tar:
            if member.name in wanted:
                rgb = np.asarray(Image.open(tar.extractfile(member)).convert("RGB"), dtype=np.uint8)
                records[member.name] = bytes([wanted[member.name]]) + rgb.transpose(2, 0, 1).tobytes()
    missing = sorted(set(wanted) - set(records))
    if missing:
        sys.exit(f"cifar10/train_jpeg.tar.gz lacks {missing[:3]}…")
    names = [f"train/{c}/{k:04d}.jpg" for k in range(PER_CLASS) for c in CIFAR_CLASSES]
    path = out / "cifar10-train-200.bin"
    path.write_bytes(b"".join(records[n] for n in names))
    return path


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="*", metavar="MODEL", help=f"one of {', '.join(MODELS)}; default: every one")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared/data")
    parser.add_argument("--fashion-train", type=Path, help="folder with Fashion-MNIST's train-*-idx?-ubyte.gz")
    parser.add_argument("--tessera", type=Path, default=REPO / "target/release/tessera")
    args = parser.parse_args()
    unknown = [m for m in args.models if m not in MODELS]
    if unknown:
        parser.error(f"not a shipped model: {', '.join(unknown)}")
    models = args.models or list(MODELS)
    needed = {MODELS[m] for m in models}
    if "fashion-mnist" in needed and args.fashion_train is None:
        sys.exit("--fashion-train DIR: Fashion-MNIST's training set (see this script's help)")
    out = REPO / "target/calibration"
    out.mkdir(parents=True, exist_ok=True)
    builders = {
        "mnist": lambda: mnist(args.data, out),
        "fashion-mnist": lambda: fashion(args.fashion_train, out),
        "pneumoniamnist": lambda: pneumonia(args.data, out),
        "cifar10": lambda: cifar(args.data, out),
    }
    sets = {dataset: builders[dataset]() for dataset in sorted(needed)}
    for model in models:
        dataset = MODELS[model]
        print(f"{model}: calibrating on {sets[dataset].relative_to(REPO)}", flush=True)
        subprocess.run(
            [args.tessera, "calibrate", REPO / f"models/{model}.onnx", sets[dataset], "--samples", "200"],
            check=True,
        )


if __name__ == "__main__":
    main()
