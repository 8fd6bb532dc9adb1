"""Tessera from Python: private CNN inference over secret-shared images.

The same Rust crates as the ``tessera`` command run underneath; NumPy arrays go in, labels,
logits and per-layer costs come out::

    import tessera
    model = tessera.load("models/minionn-mnist.onnx")
    model.calibrate(train_images)                  # N×C×H×W float32, a folder of images, an .npy
    print(model.infer(image).label)                # in the clear, in this process
    with tessera.local_cluster(model, suite="serpens-n", holders=3) as cluster:
        result = cluster.infer(images)             # one query for the whole batch
    print(result.labels, result.logits, result.cost.to_pandas())

Images are paths (PNG, JPEG or ``.npy``), lists of paths, arrays of ``uint8`` pixels (scaled
and normalized with the model's mean and standard deviation) or arrays of normalized values
(any real dtype, converted to ``float32``), shaped ``C×H×W``, ``N×C×H×W`` or, for one-channel
models, ``H×W``.

Long calls release the GIL. Cluster queries are interruptible: Ctrl-C (``KeyboardInterrupt``)
abandons the query within 50 ms. Loading, calibration and in-process inference run to the end
once started; :meth:`Cluster.infer_each` checks for Ctrl-C between images.

Every error is a :class:`TesseraError` whose message is the one the CLI prints.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import weakref
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, List, Optional, Sequence, Union

import numpy as np

from . import _native
from ._native import (
    CalibrationError,
    ConfigError,
    InputError,
    ModelError,
    ProtocolError,
    TesseraError,
)

__all__ = [
    "SUITES",
    "CalibrationError",
    "Cluster",
    "ConfigError",
    "Cost",
    "InferenceResult",
    "InputError",
    "Model",
    "ModelError",
    "PlainResult",
    "ProtocolError",
    "TesseraError",
    "connect",
    "from_torch",
    "load",
    "local_cluster",
]

#: Every suite's name: ``plain``, ``serpens-n``, ``serpens-2``, ``verify``, ``bayes``, ``clientserver``.
SUITES = tuple(_native.suites())

PathLike = Union[str, "os.PathLike[str]"]
#: What an image argument takes: a path, paths, or an array (see the module's documentation).
Images = Union[PathLike, Sequence[PathLike], np.ndarray]


@dataclass(frozen=True)
class PlainResult:
    """In-process inference in the clear: the fixed-point reference and the ``f32`` engine.

    ``logits`` is what the secure suites compute (``None`` when the model is not calibrated);
    all logit arrays are ``N × classes``.
    """

    labels: Optional[np.ndarray]
    logits: Optional[np.ndarray]
    f32_labels: np.ndarray
    f32_logits: np.ndarray

    @property
    def label(self) -> int:
        """The first image's label (fixed point if calibrated, else ``f32``)."""
        labels = self.labels if self.labels is not None else self.f32_labels
        return int(labels[0])


def _stage_rows(report: dict) -> Iterator[dict]:
    for stage in report["stages"]:
        base = {
            "party": report["party"],
            "node": stage["layer"],
            "stage": stage["name"],
            "kind": stage["kind"],
            "wall_ms": stage["wall_us"] / 1e3,
            "cpu_ms": stage["cpu_us"] / 1e3,
        }
        if not stage["links"]:
            yield {**base, "peer": None, "bytes_sent": 0, "bytes_received": 0, "messages": 0, "rounds": 0}
        for t in stage["links"]:
            yield {
                **base,
                "peer": t["peer"],
                "bytes_sent": t["bytes_sent"],
                "bytes_received": t["bytes_received"],
                "messages": t["messages_sent"] + t["messages_received"],
                "rounds": t["rounds"],
            }


class Cost:
    """What a query cost, from every party's report.

    * :attr:`rows`: one dict per party, stage (model layer or protocol step) and link, with the
      party's wall and CPU time in that stage (repeated on each of its links) and the link's
      bytes, messages and round trips; a stage without traffic has one row with ``peer`` None.
    * :attr:`layers`: the per-layer breakdown the CLI's benchmarks print (time of the pacing
      party, CPU of all parties, bytes, rounds, phase), in protocol order.
    * :attr:`parties`: each party's wall and CPU time and traffic per link.
    * totals: :attr:`bytes`, :attr:`rounds`, :attr:`preprocess_ms`, :attr:`pacing_party`.
    """

    def __init__(self, native: "_native.Reports") -> None:
        self._native = native
        self._cached: Optional[dict] = None

    @property
    def reports(self) -> List[dict]:
        """Every party's raw report (stages, links, microseconds), the user's first."""
        return json.loads(self._native.reports_json())

    @property
    def rows(self) -> List[dict]:
        """One dict per party, stage and link (see the class documentation)."""
        return [row for report in self.reports for row in _stage_rows(report)]

    @property
    def _summary(self) -> dict:
        if self._cached is None:
            self._cached = json.loads(self._native.cost_json())
        return self._cached

    @property
    def layers(self) -> List[dict]:
        """Per-layer rows: ``node``, ``name``, ``kind``, ``phase``, ``time_ms``, ``cpu_ms``,
        ``bytes``, ``rounds``."""
        return self._summary["layers"]

    @property
    def parties(self) -> List[dict]:
        """Per party: ``party``, ``wall_ms``, ``cpu_ms``, ``preprocess_cpu_ms``, ``links``."""
        return self._summary["parties"]

    @property
    def bytes(self) -> int:
        """Bytes sent by all parties."""
        return int(self._summary["bytes"])

    @property
    def rounds(self) -> int:
        """Sequential round trips (the sum over layers of the busiest link's)."""
        return int(self._summary["rounds"])

    @property
    def preprocess_ms(self) -> float:
        """Wall time of the input-independent stages, in milliseconds."""
        return float(self._summary["preprocess_ms"])

    @property
    def pacing_party(self) -> str:
        """The party whose wall time the per-layer rows give."""
        return str(self._summary["pacing_party"])

    def to_pandas(self, table: str = "rows") -> Any:
        """The ``rows`` (default), ``layers`` or ``parties`` table as a pandas DataFrame.

        Raises ImportError when pandas is not installed (``pip install pandas``).
        """
        try:
            import pandas as pd
        except ImportError as e:
            raise ImportError(
                "Cost.to_pandas needs pandas (pip install pandas); Cost.rows has the same table as dicts"
            ) from e
        if table not in ("rows", "layers", "parties"):
            raise ValueError(f"table {table!r}: one of 'rows', 'layers', 'parties'")
        return pd.DataFrame(getattr(self, table))

    def __repr__(self) -> str:
        return f"Cost({self.bytes} bytes, {self.rounds} rounds, pacing party {self.pacing_party})"


@dataclass(frozen=True)
class InferenceResult:
    """What one query across parties returned.

    ``logits`` is ``N × classes`` (``float32``), ``labels`` their argmax. ``elapsed_ms`` is the
    query's wall time in Rust (connections included), ``connect_ms`` that of the connection
    setup. bayes: ``sample_logits`` is ``samples × N × classes``; verify: ``recomputed`` lists
    the layers whose products failed their check and were recomputed by the client.
    """

    suite: str
    labels: np.ndarray
    logits: np.ndarray
    elapsed_ms: float
    connect_ms: float
    cost: Cost = field(repr=False)
    sample_logits: Optional[np.ndarray] = field(default=None, repr=False)
    recomputed: List[int] = field(default_factory=list)

    @property
    def label(self) -> int:
        """The first image's label."""
        return int(self.labels[0])

    @classmethod
    def _from_native(cls, suite: str, raw: dict) -> "InferenceResult":
        return cls(
            suite=suite,
            labels=np.asarray(raw["labels"], dtype=np.int64),
            logits=raw["logits"],
            elapsed_ms=raw["elapsed_s"] * 1e3,
            connect_ms=raw["connect_s"] * 1e3,
            cost=Cost(raw["reports"]),
            sample_logits=raw["sample_logits"],
            recomputed=list(raw["recomputed"]),
        )


class Model:
    """An ONNX model after Tessera's merging pass, with its fixed-point calibration.

    Made by :func:`load` or :func:`from_torch`. Calibration stays in memory until
    :meth:`save_calibration` writes it beside the model file.
    """

    def __init__(self, native: "_native.Model") -> None:
        self._native = native

    @property
    def path(self) -> str:
        """The model file."""
        return os.fspath(self._native.path)

    @property
    def hash(self) -> str:
        """BLAKE3 of the model file, in hex (every party of a cluster checks it)."""
        return self._native.hash

    @property
    def name(self) -> str:
        """The model's name from its metadata."""
        return self._native.name

    @property
    def dataset(self) -> str:
        """The dataset it was trained on, from its metadata."""
        return self._native.dataset

    @property
    def classes(self) -> List[str]:
        """Class names in logit order."""
        return self._native.classes

    @property
    def input_shape(self) -> tuple:
        """``(C, H, W)`` of one image."""
        return self._native.input_shape

    @property
    def has_posterior(self) -> bool:
        """Whether the model is Bayesian (suite ``bayes`` needs a posterior)."""
        return self._native.has_posterior

    @property
    def calibration(self) -> Optional[dict]:
        """The fixed-point calibration (``f``, ``f_w``, ``bound_bits``, ``logit_tolerance``, …),
        or None if the model has none."""
        text = self._native.calibration_json()
        return None if text is None else json.loads(text)

    @property
    def logit_tolerance(self) -> float:
        """How far the secure suites' logits may be from the fixed-point reference."""
        calibration = self.calibration
        if calibration is None:
            raise CalibrationError(f"{self.path} has no calibration: call Model.calibrate first")
        return float(calibration["logit_tolerance"])

    def calibrate(self, images: Union[Images, PathLike], samples: int = 64, save: bool = False) -> dict:
        """Chooses ``f``, ``f_w`` and the activation bound from up to ``samples`` images.

        ``images``: an ``N×C×H×W`` array (``float32`` normalized values or ``uint8`` pixels), a
        folder of PNG or JPEG images, an ``.npy`` batch, or a dataset file (IDX, CIFAR-10
        ``.bin``, MedMNIST ``.npz``), as ``tessera calibrate`` takes. With ``save``, writes the
        calibration beside the model (``NAME.calibration.json``). Returns the calibration.
        """
        calibration = json.loads(self._native.calibrate(images, samples))
        if save:
            self.save_calibration()
        return calibration

    def save_calibration(self) -> str:
        """Writes the calibration beside the model file; returns the file's path."""
        return os.fspath(self._native.save_calibration())

    def infer(self, images: Images) -> PlainResult:
        """Classifies images in the clear, in this process: the ``f32`` engine and, if
        calibrated, the fixed-point reference the secure suites compute (``tessera infer
        --plain``)."""
        raw = self._native.infer(images)
        fixed = raw.get("labels")
        return PlainResult(
            labels=None if fixed is None else np.asarray(fixed, dtype=np.int64),
            logits=raw.get("logits"),
            f32_labels=np.asarray(raw["f32_labels"], dtype=np.int64),
            f32_logits=raw["f32_logits"],
        )

    def prepare(self, images: Images) -> np.ndarray:
        """The normalized ``N×C×H×W`` ``float32`` inputs every engine receives for ``images``."""
        return self._native.prepare(images)

    def __repr__(self) -> str:
        return repr(self._native)


def load(path: PathLike) -> Model:
    """Imports the ONNX model at ``path`` (merging pass included) with the calibration stored
    beside it (``NAME.calibration.json``), if any. Raises :class:`ModelError` when the import
    refuses the model."""
    return Model(_native.load(os.fspath(path)))


def from_torch(module: Any, example_input: Any, path: Optional[PathLike] = None, **export_kwargs: Any) -> Model:
    """Exports a PyTorch ``module`` through ``torch.onnx`` and loads the result.

    ``example_input`` is one input batch (``1×C×H×W``). The ONNX file goes to ``path``, or to a
    temporary folder removed with the model. Extra keywords go to ``torch.onnx.export``. The
    model is not calibrated: call :meth:`Model.calibrate`. Raises ImportError without PyTorch,
    and :class:`ModelError` naming the node when Tessera refuses the exported graph.
    """
    try:
        import torch
    except ImportError as e:
        raise ImportError("tessera.from_torch needs PyTorch: pip install torch onnx") from e
    import inspect

    folder = None
    if path is None:
        folder = tempfile.mkdtemp(prefix="tessera-torch-")
        path = os.path.join(folder, "model.onnx")
    # The TorchScript exporter writes the plain operator set Tessera imports; newer PyTorch
    # defaults to the dynamo exporter, which needs onnxscript.
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        export_kwargs.setdefault("dynamo", False)
    export_kwargs.setdefault("input_names", ["input"])
    export_kwargs.setdefault("output_names", ["logits"])
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            torch.onnx.export(module, (example_input,), os.fspath(path), **export_kwargs)
        model = load(path)
    except ModelError as e:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
        raise ModelError(f"{type(module).__name__}: Tessera refuses its ONNX export: {e}") from e
    finally:
        module.train(was_training)
    if folder is not None:
        weakref.finalize(model, shutil.rmtree, folder, True)
    return model


class Cluster:
    """A cluster of one suite, ready for queries; a context manager that closes it.

    Made by :func:`local_cluster` (every party in this process, or local server processes) or
    :func:`connect` (running servers over mutual TLS).
    """

    def __init__(self, native: Any, suite: str) -> None:
        self._native = native
        self._suite = suite

    @property
    def suite(self) -> str:
        """The suite's name."""
        return self._suite

    def infer(self, images: Images) -> InferenceResult:
        """Runs one query holding every image of ``images`` (a batch is one query).

        Interruptible: Ctrl-C abandons the query and raises KeyboardInterrupt.
        """
        return InferenceResult._from_native(self._suite, self._native.query(images))

    def infer_each(self, images: Union[Iterable[PathLike], np.ndarray], progress: bool = False) -> List[InferenceResult]:
        """Runs one query per image (Ctrl-C stops between and during queries); with
        ``progress``, shows a tqdm progress bar if tqdm is installed."""
        items = list(images) if not isinstance(images, np.ndarray) else [images[i : i + 1] for i in range(len(images))]
        if progress:
            try:
                from tqdm.auto import tqdm

                items = tqdm(items, unit="image")
            except ImportError:
                pass
        return [self.infer(item) for item in items]

    def close(self) -> None:
        """Stops the cluster's local parties (nothing to stop for a remote cluster)."""
        close = getattr(self._native, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> "Cluster":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Cluster(suite={self._suite!r})"


def _options(samples: int, challenge_bits: int, repetitions: int, recompute: bool) -> "_native.QueryOptions":
    return _native.QueryOptions(samples, challenge_bits, repetitions, recompute)


def local_cluster(
    model: Model,
    suite: str = "serpens-n",
    holders: int = 2,
    *,
    processes: bool = False,
    server: Optional[PathLike] = None,
    samples: int = 4,
    challenge_bits: int = 0,
    repetitions: int = 1,
    recompute: bool = False,
) -> Cluster:
    """Starts every server party of ``suite`` on this machine, running ``model`` (calibrated;
    with a posterior for ``bayes``).

    By default the parties run in this process on in-memory channels, on a copy of ``model``
    (its in-memory calibration included): the same party code as ``tessera serve``, without
    certificates, ports or processes. With ``processes``, each server party is a ``tessera
    serve`` process on loopback with fresh certificates, queried over mutual TLS, as
    ``tessera infer --suite`` does: ``server`` is the ``tessera`` binary (default:
    ``$TESSERA_CLI``, else ``tessera`` on the PATH), and the servers read the model file and
    the calibration stored beside it, which must be the model's (:meth:`Model.save_calibration`).

    ``holders``: share-holders of ``serpens-n`` (2 to 8). ``samples``: bayes' sampled forward
    passes. ``challenge_bits``, ``repetitions``, ``recompute``: how verify checks the cloud
    (the CLI's flags of the same names).
    """
    options = _options(samples, challenge_bits, repetitions, recompute)
    if not processes:
        native = _native.InProcessCluster(model._native, suite, holders, options)
        return Cluster(native, native.suite)
    if server is None:
        server = os.environ.get("TESSERA_CLI") or shutil.which("tessera")
    if server is None:
        raise ConfigError(
            "local_cluster(processes=True) runs `tessera serve`: pass server=PATH, set TESSERA_CLI, "
            "or put the tessera binary on the PATH (cargo install --path crates/tessera-cli)"
        )
    native = _native.ProcessCluster(model._native, suite, holders, os.fspath(server), options)
    return Cluster(native, native.suite)


def connect(
    config: PathLike,
    model: Optional[PathLike] = None,
    *,
    samples: int = 4,
    challenge_bits: int = 0,
    repetitions: int = 1,
    recompute: bool = False,
) -> Cluster:
    """Reaches running servers (``tessera serve``) as the user party of the cluster
    configuration ``config`` (``cluster.toml``), over mutual TLS.

    The model is the one the configuration names (its hash checked); with ``model``, that file
    must be the same. Options as for :func:`local_cluster`.
    """
    options = _options(samples, challenge_bits, repetitions, recompute)
    native = _native.RemoteCluster(
        os.fspath(config), None if model is None else os.fspath(model), options
    )
    return Cluster(native, native.suite)
