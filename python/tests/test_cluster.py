"""Queries across parties: every suite in process, the CLI's local cluster, running servers
over TLS."""

import json
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

import tessera
from conftest import BAYES, MNIST, REPO, SEVEN, run_cli


def within(logits, reference, tolerance):
    error = float(np.abs(np.asarray(logits, dtype=np.float64) - reference).max())
    assert error <= tolerance, f"max |logit - reference| {error} > {tolerance}"


@pytest.mark.parametrize("suite", ["serpens-n", "serpens-2", "verify", "clientserver", "seco"])
def test_exact_suites_compute_the_fixed_point_reference(model, mnist_pixels, suite):
    images = mnist_pixels[:2]
    reference = model.infer(images)
    with tessera.local_cluster(model, suite=suite, holders=3) as cluster:
        assert cluster.suite == suite
        r = cluster.infer(images)
    assert r.suite == suite and r.logits.shape == (2, 10) and r.logits.dtype == np.float32
    within(r.logits, reference.logits, model.logit_tolerance)
    assert r.labels.tolist() == reference.labels.tolist()
    assert r.elapsed_ms > 0 and r.recomputed == [] and r.sample_logits is None
    # Every layer of the merged model has its row, and the rows add up to the totals.
    assert r.cost.bytes == sum(row["bytes"] for row in r.cost.layers) > 0
    assert r.cost.rounds == sum(row["rounds"] for row in r.cost.layers) > 0
    assert {p["party"] for p in r.cost.parties} >= {"user"}


def test_plain_suite_returns_the_f32_engine(model, mnist_pixels):
    images = mnist_pixels[:3]
    with tessera.local_cluster(model, suite="plain") as cluster:
        r = cluster.infer(images)
    np.testing.assert_array_equal(r.logits, model.infer(images).f32_logits)


def test_bayes_averages_sampled_passes():
    bayes = tessera.load(BAYES)
    assert bayes.has_posterior
    reference = bayes.infer(SEVEN)
    with tessera.local_cluster(bayes, suite="bayes", samples=2) as cluster:
        r = cluster.infer(SEVEN)
    assert r.sample_logits.shape == (2, 1, 10)
    # The prediction is the samples' mean softmax; a clear 7 stays a 7.
    assert r.label == reference.label == 7
    # A model without a posterior is refused for bayes.
    with pytest.raises(tessera.ModelError, match="no posterior"):
        tessera.local_cluster(tessera.load(MNIST), suite="bayes")


def test_a_batch_of_16_in_one_query_labels_as_16_queries(model, mnist_pixels):
    images = mnist_pixels[:16]
    with tessera.local_cluster(model, suite="serpens-n") as cluster:
        batch = cluster.infer(images)
        singles = cluster.infer_each(images)
    assert batch.logits.shape == (16, 10)
    assert [s.label for s in singles] == batch.labels.tolist()
    assert batch.labels.tolist() == model.infer(images).labels.tolist()


def test_logits_match_the_cli_local_cluster(model, cli):
    out = json.loads(run_cli(cli, "infer", "--suite", "serpens-n", "--json", str(MNIST), str(SEVEN)).stdout)
    cli_logits = np.asarray(out["results"][0]["logits"], dtype=np.float32)
    with tessera.local_cluster(model, suite="serpens-n") as cluster:
        r = cluster.infer(SEVEN)
    # Both are the fixed-point reference up to the rounding of secure truncations (fresh
    # randomness per query): within the model's logit tolerance of it and of each other.
    tolerance = model.logit_tolerance
    reference = model.infer(SEVEN).logits[0]
    within(cli_logits, reference, tolerance)
    within(r.logits[0], reference, tolerance)
    within(r.logits[0], cli_logits, tolerance)
    assert r.label == out["results"][0]["label"] == 7


def test_server_processes_over_tls(model, cli, mnist_pixels, tmp_path):
    images = mnist_pixels[:2]
    reference = model.infer(images)
    with tessera.local_cluster(model, suite="serpens-n", processes=True, server=cli) as cluster:
        r = cluster.infer(images)
    within(r.logits, reference.logits, model.logit_tolerance)
    assert r.labels.tolist() == reference.labels.tolist() and r.connect_ms > 0
    # The servers read the calibration beside the file: one only in memory is refused.
    copy = tmp_path / "m.onnx"
    copy.write_bytes(MNIST.read_bytes())
    fresh = tessera.load(copy)
    fresh.calibrate(images, samples=2)
    with pytest.raises(tessera.CalibrationError, match="save it first"):
        tessera.local_cluster(fresh, processes=True, server=cli)
    fresh.save_calibration()
    with tessera.local_cluster(fresh, suite="plain", processes=True, server=cli) as cluster:
        np.testing.assert_array_equal(cluster.infer(images).logits, fresh.infer(images).f32_logits)


def free_port_run(count: int) -> int:
    """A first port with `count` free ports from it."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            first = s.getsockname()[1]
        if first + count > 65535:
            continue
        try:
            for port in range(first, first + count):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
            return first
        except OSError:
            continue
    raise RuntimeError("no free ports")


@pytest.fixture
def tls_cluster(cli, tmp_path):
    """A serpens-n cluster of `tessera serve` processes on loopback, with fresh certificates."""
    out = run_cli(
        cli, "certs", "--out", str(tmp_path), "--model", str(MNIST), "--suite", "serpens-n",
        "--holders", "2", "--port", str(free_port_run(3)),
    ).stdout
    config = tmp_path / "cluster.toml"
    servers = []
    try:
        for line in out.splitlines():
            if "tessera serve" not in line:
                continue
            args = line.split("tessera ", 1)[1].split("(")[0].split()
            proc = subprocess.Popen([str(cli), *args], cwd=REPO, stdout=subprocess.PIPE, text=True)
            servers.append(proc)
            assert proc.stdout.readline().startswith("listening on"), "a server did not start"
        assert len(servers) == 3
        yield config
    finally:
        for proc in servers:
            proc.kill()
            proc.wait()


def test_connect_queries_running_servers_over_tls(model, cli, tls_cluster):
    with tessera.connect(tls_cluster, model=MNIST) as cluster:
        assert cluster.suite == "serpens-n"
        r = cluster.infer(SEVEN)
        batch = cluster.infer([SEVEN, SEVEN])
    within(r.logits, model.infer(SEVEN).logits, model.logit_tolerance)
    assert r.label == 7 and batch.labels.tolist() == [7, 7]
    assert r.connect_ms > 0
    out = json.loads(
        run_cli(cli, "infer", "--suite", "serpens-n", "--config", str(tls_cluster), "--json", str(MNIST), str(SEVEN)).stdout
    )
    within(r.logits[0], np.asarray(out["results"][0]["logits"]), model.logit_tolerance)
    # Another model file than the one served is refused, as by the CLI.
    with pytest.raises(tessera.ConfigError, match="is not the model the cluster serves"):
        tessera.connect(tls_cluster, model=BAYES)


def test_cost_rows_cover_every_party_and_link(model):
    with tessera.local_cluster(model, suite="serpens-n", holders=2) as cluster:
        cost = cluster.infer(SEVEN).cost
    rows = cost.rows
    parties = {row["party"] for row in rows}
    assert parties == {"user", "holder-1", "holder-2", "central"}
    assert {row["peer"] for row in rows if row["party"] == "user"} >= {"holder-1", "holder-2"}
    # Each party's per-stage link traffic adds up to its per-link totals.
    for party in cost.parties:
        for link in party["links"]:
            sent = sum(
                r["bytes_sent"] for r in rows if r["party"] == party["party"] and r["peer"] == link["peer"]
            )
            assert sent == link["bytes_sent"]
    assert cost.pacing_party == "holder-1"
    assert "pacing party holder-1" in repr(cost)


def test_to_pandas_or_a_clear_import_error(model, monkeypatch):
    with tessera.local_cluster(model, suite="plain") as cluster:
        cost = cluster.infer(SEVEN).cost
    try:
        import pandas  # noqa: F401

        frame = cost.to_pandas()
        assert len(frame) == len(cost.rows) and "bytes_sent" in frame.columns
        assert len(cost.to_pandas("layers")) == len(cost.layers)
    except ImportError:
        pass
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match="pip install pandas"):
        cost.to_pandas()


def test_bad_options_and_a_closed_cluster_raise(model, tmp_path):
    with pytest.raises(tessera.ConfigError, match="unknown suite `serpens-3`"):
        tessera.local_cluster(model, suite="serpens-3")
    with pytest.raises(tessera.ConfigError, match="samples 0: 1 to 16"):
        tessera.local_cluster(model, suite="bayes", samples=0)
    with pytest.raises(tessera.ConfigError, match="holder"):
        tessera.local_cluster(model, suite="serpens-n", holders=9)
    with pytest.raises(tessera.ConfigError, match="cannot read"):
        tessera.connect(REPO / "no-such-cluster.toml")
    cluster = tessera.local_cluster(model, suite="plain")
    cluster.close()
    with pytest.raises(tessera.ConfigError, match="closed"):
        cluster.infer(SEVEN)
    uncalibrated = tmp_path / "uncalibrated.onnx"
    uncalibrated.write_bytes(MNIST.read_bytes())
    with pytest.raises(tessera.CalibrationError, match="no calibration"):
        tessera.local_cluster(tessera.load(uncalibrated), suite="serpens-n")


def test_ctrl_c_abandons_a_query_and_the_cluster_serves_on(model, mnist_pixels):
    import _thread
    import signal
    import threading

    images = mnist_pixels[:2]
    # A shell starts its background jobs with SIGINT ignored, and `interrupt_main` then does
    # nothing: Python's own handler stands for the test's duration.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with tessera.local_cluster(model, suite="serpens-2") as cluster:
            full = cluster.infer(images).elapsed_ms / 1e3
            # Ctrl-C (SIGINT's KeyboardInterrupt) a tenth of the way into the next query.
            timer = threading.Timer(full / 10, _thread.interrupt_main)
            timer.start()
            start = time.perf_counter()
            with pytest.raises(KeyboardInterrupt):
                cluster.infer(images)
            assert time.perf_counter() - start < full / 10 + 0.5 * full
            timer.join()
            r = cluster.infer(images[:1])
    finally:
        signal.signal(signal.SIGINT, previous)
    assert r.label == model.infer(images[:1]).label
