"""Loading, calibration and in-process inference in the clear."""

import json

import numpy as np
import pytest

import tessera
from conftest import MNIST, SEVEN, run_cli


def test_load_reads_the_metadata_and_the_shipped_calibration(model):
    assert model.input_shape == (1, 28, 28)
    assert model.classes == [str(i) for i in range(10)]
    assert len(model.hash) == 64
    assert not model.has_posterior
    calibration = model.calibration
    assert calibration is not None and calibration["logit_tolerance"] > 0
    assert model.logit_tolerance == calibration["logit_tolerance"]
    assert "calibrated" in repr(model)
    assert set(tessera.SUITES) == {"plain", "serpens-n", "serpens-2", "verify", "bayes", "clientserver", "seco"}


def test_plain_inference_equals_the_cli(model, cli):
    out = json.loads(run_cli(cli, "infer", "--plain", "--json", str(MNIST), str(SEVEN)).stdout)
    r = model.infer(SEVEN)
    assert r.label == out["label"] == 7
    # Fixed point: the same f64 values; f32 engine: the same f32 values.
    assert r.logits.shape == (1, 10) and r.logits.dtype == np.float64
    assert r.logits[0].tolist() == out["logits"]
    assert r.f32_logits.dtype == np.float32
    np.testing.assert_array_equal(r.f32_logits[0], np.asarray(out["f32_logits"], dtype=np.float32))
    assert r.f32_labels.tolist() == [out["f32_label"]]


def test_arrays_paths_and_pixels_are_the_same_input(model, mnist_pixels, mnist_labels):
    pixels = mnist_pixels[:8]
    normalized = model.prepare(pixels)
    assert normalized.shape == (8, 1, 28, 28) and normalized.dtype == np.float32
    by_pixels, by_values = model.infer(pixels), model.infer(normalized)
    np.testing.assert_array_equal(by_pixels.logits, by_values.logits)
    # float64 arrays are converted; H×W is one image of a one-channel model.
    np.testing.assert_array_equal(model.infer(normalized.astype(np.float64)).logits, by_values.logits)
    np.testing.assert_array_equal(model.infer(pixels[0, 0]).logits, by_pixels.logits[:1])
    np.testing.assert_array_equal(model.prepare(SEVEN), model.prepare(str(SEVEN)))
    # Lists of arrays keep their dtype (pixels stay pixels); strided views are copied.
    np.testing.assert_array_equal(model.prepare(list(pixels)), normalized)
    np.testing.assert_array_equal(model.prepare(mnist_pixels[:16:2]), model.prepare(mnist_pixels[:16][::2].copy()))
    # A batch runs as its images one by one do.
    for i in range(8):
        np.testing.assert_array_equal(model.infer(pixels[i]).logits[0], by_pixels.logits[i])
    assert (by_pixels.labels == mnist_labels[:8]).mean() >= 0.75


def test_calibration_from_arrays_and_npy_agree_and_stay_in_memory(mnist_pixels, tmp_path):
    sidecar = MNIST.with_suffix(".calibration.json")
    before = sidecar.read_bytes()
    fresh = tessera.load(MNIST)
    from_pixels = fresh.calibrate(mnist_pixels[:32], samples=32)
    assert fresh.calibration == from_pixels
    assert from_pixels["samples"] == 32
    assert 1 <= from_pixels["f"] <= from_pixels["f_w"] and from_pixels["logit_tolerance"] > 0
    values = fresh.prepare(mnist_pixels[:32])
    assert tessera.load(MNIST).calibrate(values, samples=32) == from_pixels
    npy = tmp_path / "samples.npy"
    np.save(npy, mnist_pixels[:40])
    # `samples` keeps the first images.
    assert tessera.load(MNIST).calibrate(npy, samples=32) == from_pixels
    assert sidecar.read_bytes() == before
    # After calibrating, the fixed-point reference runs with the new parameters.
    r = fresh.infer(mnist_pixels[:4])
    assert r.logits is not None and r.labels.shape == (4,)


def test_calibration_is_saved_beside_the_model_on_request(tmp_path, mnist_pixels):
    copy = tmp_path / "m.onnx"
    copy.write_bytes(MNIST.read_bytes())
    m = tessera.load(copy)
    assert m.calibration is None
    with pytest.raises(tessera.CalibrationError, match="has no calibration"):
        m.logit_tolerance
    uncalibrated = m.infer(SEVEN)
    assert uncalibrated.logits is None and uncalibrated.label == 7
    m.calibrate(mnist_pixels[:16], samples=16, save=True)
    assert (tmp_path / "m.calibration.json").exists()
    assert tessera.load(copy).calibration == m.calibration


def test_a_bad_model_file_raises_the_cli_message(cli, tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(tessera.ModelError) as caught:
        tessera.load(bad)
    cli_error = run_cli(cli, "inspect", str(bad), check=False)
    assert cli_error.returncode == 1
    assert cli_error.stderr.strip() == f"error: {caught.value}"
    assert str(caught.value).startswith(f"loading {bad}: ")
    with pytest.raises(tessera.ModelError, match="loading"):
        tessera.load(tmp_path / "missing.onnx")


def test_a_bad_image_raises_the_cli_message(model, cli, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(tessera.InputError) as caught:
        model.infer(bad)
    cli_error = run_cli(cli, "infer", "--plain", str(MNIST), str(bad), check=False)
    assert cli_error.stderr.strip() == f"error: {caught.value}"
    with pytest.raises(tessera.InputError, match="is not a 1×28×28 image"):
        model.infer(np.zeros((3, 28, 28), dtype=np.float32))
    with pytest.raises(tessera.InputError, match="non-finite"):
        model.infer(np.full((1, 28, 28), np.nan, dtype=np.float32))
    with pytest.raises(tessera.InputError, match="nonexistent.png: cannot read"):
        model.infer(tmp_path.parent / "nonexistent.png")
    # Every Tessera error is a TesseraError.
    assert issubclass(tessera.InputError, tessera.TesseraError)
