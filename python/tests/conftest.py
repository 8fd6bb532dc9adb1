"""Shared fixtures: the repository's models and images, the MNIST sample set, the CLI binary."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import tessera

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "models"
MNIST = REPO / "models" / "minionn-mnist.onnx"
BAYES = REPO / "models" / "bayes-minionn-mnist.onnx"
SEVEN = REPO / "examples" / "images" / "mnist-test00000-7.png"


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (big-endian header: magic, then one u32 per dimension) as a uint8 array."""
    data = path.read_bytes()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


@pytest.fixture(scope="session")
def mnist_pixels() -> np.ndarray:
    """The 200 MNIST test images of data/, as N×1×28×28 uint8 pixels."""
    images = read_idx(REPO / "data" / "mnist-test-200-images.idx")
    return images.reshape(len(images), 1, 28, 28)


@pytest.fixture(scope="session")
def mnist_labels() -> np.ndarray:
    return read_idx(REPO / "data" / "mnist-test-200-labels.idx")


@pytest.fixture(scope="session")
def model() -> tessera.Model:
    """MiniONN-MNIST with its shipped calibration."""
    return tessera.load(MNIST)


@pytest.fixture(scope="session")
def cli() -> Path:
    """The `tessera` binary: $TESSERA_CLI, or the workspace's debug build (built if missing)."""
    if os.environ.get("TESSERA_CLI"):
        return Path(os.environ["TESSERA_CLI"])
    cargo = shutil.which("cargo")
    if cargo is None:
        pytest.fail("cargo is needed to build the tessera CLI (or set TESSERA_CLI)")
    subprocess.run([cargo, "build", "-q", "-p", "tessera-cli"], cwd=REPO, check=True)
    meta = subprocess.run(
        [cargo, "metadata", "-q", "--format-version", "1", "--no-deps"],
        cwd=REPO, capture_output=True, text=True, check=True,
    )
    return Path(json.loads(meta.stdout)["target_directory"]) / "debug" / "tessera"


def run_cli(cli: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Runs the CLI from the repository root, capturing its output."""
    return subprocess.run([str(cli), *args], cwd=REPO, capture_output=True, text=True, check=check, timeout=300)
