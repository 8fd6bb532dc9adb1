//! Python bindings of the `tessera` library: the `tessera._native` extension module, which the
//! `tessera` Python package (`python/src/tessera`) wraps with its public classes.
//!
//! Everything here calls the library as the CLI does; no protocol logic lives in the binding.
//! Calls that compute release the GIL; queries poll for Ctrl-C (`KeyboardInterrupt`) while
//! they wait, and dropping a query's future abandons it.

use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use numpy::{PyArray1, PyArrayMethods, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};
use tessera::cluster::{ClusterConfig, PartyConfig};
use tessera::cost::QueryCost;
use tessera::dataset::Dataset;
use tessera::error::{Error, InputProblem};
use tessera::eval::argmax;
use tessera::field::kernels::ImageShape;
use tessera::input::{load_input, load_samples, normalize};
use tessera::local::{LocalCluster, LocalOptions};
use tessera::model::plain::PlainEngine;
use tessera::suites::verify;
use tessera::{InProcessCluster, LoadedModel, QueryOptions, QueryResult, ServeOptions, Suite};

create_exception!(tessera, TesseraError, PyException, "Base class of every error Tessera raises.");
create_exception!(tessera, ModelError, TesseraError, "A model that cannot be imported, merged or run.");
create_exception!(tessera, InputError, TesseraError, "An unusable image, array or dataset.");
create_exception!(tessera, CalibrationError, TesseraError, "A missing or unusable fixed-point calibration.");
create_exception!(tessera, ConfigError, TesseraError, "An unusable cluster configuration or query option.");
create_exception!(tessera, ProtocolError, TesseraError, "A query across parties failed (network or protocol).");

/// The Python exception for `e`, its message the one the CLI prints (after `context: `, if any).
fn py_error(e: Error, context: Option<&str>) -> PyErr {
    let message = match context {
        Some(c) => format!("{c}: {e}"),
        None => e.to_string(),
    };
    match e {
        Error::Import(_) | Error::Model(_) | Error::NoPosterior { .. } => ModelError::new_err(message),
        Error::Input { .. } => InputError::new_err(message),
        Error::NotCalibrated { .. } | Error::Calibration { .. } => CalibrationError::new_err(message),
        Error::Config { .. } | Error::RoleNotInSuite { .. } | Error::ModelMismatch { .. } => {
            ConfigError::new_err(message)
        }
        _ => ProtocolError::new_err(message),
    }
}

/// `e` as its Python exception, without context.
fn err(e: Error) -> PyErr {
    py_error(e, None)
}

/// The runtime every query of this process runs on.
fn runtime() -> PyResult<&'static tokio::runtime::Runtime> {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    if let Some(rt) = RUNTIME.get() {
        return Ok(rt);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| ProtocolError::new_err(format!("cannot start the async runtime: {e}")))?;
    Ok(RUNTIME.get_or_init(|| rt))
}

/// Runs `query` without the GIL, checking every 50 ms for a pending signal (Ctrl-C): a signal's
/// exception drops the query and is raised.
fn wait<T: Send>(py: Python<'_>, query: impl Future<Output = tessera::Result<T>> + Send) -> PyResult<T> {
    let rt = runtime()?;
    py.detach(|| {
        rt.block_on(async {
            let mut query = std::pin::pin!(query);
            loop {
                tokio::select! {
                    result = &mut query => return result.map_err(err),
                    () = tokio::time::sleep(Duration::from_millis(50)) => {
                        Python::attach(|py| py.check_signals())?;
                    }
                }
            }
        })
    })
}

/// An input error about an array passed from Python.
fn array_error(problem: String) -> PyErr {
    err(Error::Input { path: "<array>".into(), problem: InputProblem::Corrupt(problem) })
}

/// The number of images in an array of `dims` holding `shape`-sized images: `C×H×W`,
/// `N×C×H×W`, or `H×W` for one-channel models.
fn batch_of(dims: &[usize], shape: ImageShape) -> PyResult<usize> {
    let n = match *dims {
        [h, w] if (shape.c, shape.h, shape.w) == (1, h, w) => 1,
        [c, h, w] if (shape.c, shape.h, shape.w) == (c, h, w) => 1,
        [n, c, h, w] if n > 0 && (shape.c, shape.h, shape.w) == (c, h, w) => n,
        _ => {
            return Err(array_error(format!(
                "array of shape {dims:?} is not a {c}×{h}×{w} image or an N×{c}×{h}×{w} batch",
                c = shape.c,
                h = shape.h,
                w = shape.w
            )));
        }
    };
    Ok(n)
}

/// Normalized model inputs, with their count, from what Python passes: a path (PNG, JPEG or
/// `.npy`), a list of paths, an array of `u8` pixels, or an array of normalized values (any
/// real dtype, converted to `float32`).
fn read_images(model: &LoadedModel, images: &Bound<'_, PyAny>) -> PyResult<(Vec<f32>, usize)> {
    let shape = model.merged.input_shape();
    if let Ok(path) = images.extract::<PathBuf>() {
        return Ok((load_input(&path, shape, model.meta()).map_err(err)?, 1));
    }
    if (images.is_instance_of::<PyList>() || images.is_instance_of::<PyTuple>())
        && let Ok(paths) = images.extract::<Vec<PathBuf>>()
    {
        if paths.is_empty() {
            return Err(array_error("no images".into()));
        }
        let mut x = Vec::with_capacity(paths.len() * shape.len());
        for path in &paths {
            x.extend(load_input(path, shape, model.meta()).map_err(err)?);
        }
        return Ok((x, paths.len()));
    }
    // Anything else NumPy makes an array of (nested lists, arrays of arrays): `uint8` holds
    // pixels, any other dtype normalized values.
    let numpy = images.py().import("numpy")?;
    let array = numpy.call_method1("ascontiguousarray", (images,))?;
    if let Ok(pixels) = array.extract::<PyReadonlyArrayDyn<'_, u8>>() {
        let n = batch_of(pixels.shape(), shape)?;
        let pixels = pixels.as_slice().map_err(|e| array_error(e.to_string()))?;
        return Ok((normalize(pixels, shape, model.meta()), n));
    }
    let values = numpy.call_method1("ascontiguousarray", (array, "float32"))?;
    let values = values.extract::<PyReadonlyArrayDyn<'_, f32>>()?;
    let n = batch_of(values.shape(), shape)?;
    let values = values.as_slice().map_err(|e| array_error(e.to_string()))?;
    if values.iter().any(|v| !v.is_finite()) {
        return Err(array_error("non-finite values".into()));
    }
    Ok((values.to_vec(), n))
}

/// The images of one query and their count, which must fit the query's `u32` batch.
fn query_batch(model: &LoadedModel, images: &Bound<'_, PyAny>) -> PyResult<(Vec<f32>, u32)> {
    let (x, n) = read_images(model, images)?;
    let batch = u32::try_from(n).map_err(|_| array_error(format!("{n} images in one query")))?;
    Ok((x, batch))
}

/// The cluster in `slot`, unless it was closed.
fn running<T>(slot: &Mutex<Option<Arc<T>>>) -> PyResult<Arc<T>> {
    slot.lock().expect("not poisoned").clone().ok_or_else(|| ConfigError::new_err("the cluster is closed"))
}

/// `rows × columns` values as a 2-D NumPy array.
fn matrix<'py, T: numpy::Element>(py: Python<'py>, values: Vec<T>, columns: usize) -> PyResult<Bound<'py, PyAny>> {
    let rows = values.len() / columns.max(1);
    Ok(PyArray1::from_vec(py, values).reshape([rows, columns])?.into_any())
}

/// A model: the imported ONNX graph, its merged form and its fixed-point calibration.
#[pyclass(module = "tessera._native", name = "Model")]
struct PyModel {
    model: LoadedModel,
}

impl PyModel {
    fn logits_per_image(&self) -> usize {
        self.model.merged.output_len()
    }
}

#[pymethods]
impl PyModel {
    /// The model file.
    #[getter]
    fn path(&self) -> PathBuf {
        self.model.path.clone()
    }

    /// BLAKE3 of the model file, in hex.
    #[getter]
    fn hash(&self) -> String {
        tessera::cluster::hex(&self.model.hash)
    }

    /// The model's name from its metadata.
    #[getter]
    fn name(&self) -> String {
        self.model.meta().name.clone()
    }

    /// The dataset it was trained on.
    #[getter]
    fn dataset(&self) -> String {
        self.model.meta().dataset.clone()
    }

    /// Class names, in logit order.
    #[getter]
    fn classes(&self) -> Vec<String> {
        let meta = self.model.meta();
        (0..self.logits_per_image()).map(|i| meta.classes.get(i).cloned().unwrap_or_else(|| i.to_string())).collect()
    }

    /// `(C, H, W)` of one input image.
    #[getter]
    fn input_shape(&self) -> (usize, usize, usize) {
        let s = self.model.merged.input_shape();
        (s.c, s.h, s.w)
    }

    /// Whether the model carries a posterior (suite bayes needs one).
    #[getter]
    fn has_posterior(&self) -> bool {
        self.model.posterior.is_some()
    }

    /// The calibration as JSON, or `None` if the model has none.
    fn calibration_json(&self) -> Option<String> {
        self.model.calibration().map(|c| serde_json::to_string(c).expect("calibration serializes"))
    }

    /// Chooses the fixed-point parameters from up to `samples` images (an array, a folder of
    /// images, an `.npy` batch or a dataset file), in memory; returns the calibration as JSON.
    fn calibrate(&mut self, py: Python<'_>, images: &Bound<'_, PyAny>, samples: usize) -> PyResult<String> {
        let samples = samples.max(1);
        let shape = self.model.merged.input_shape();
        let (x, n) = match images.extract::<PathBuf>() {
            Ok(path) => {
                let is_npy = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("npy"));
                let meta = self.model.meta().clone();
                py.detach(|| {
                    if path.is_dir() || is_npy {
                        load_samples(&path, shape, &meta, samples)
                    } else {
                        let set = Dataset::open(&path)?;
                        let n = samples.min(set.len());
                        Ok((normalize(set.pixels(0..n), set.shape, &meta), n))
                    }
                })
                .map_err(err)?
            }
            Err(_) => {
                let (mut x, n) = read_images(&self.model, images)?;
                let n = n.min(samples);
                x.truncate(n * shape.len());
                (x, n)
            }
        };
        let model = &mut self.model;
        let calibration = py.detach(|| model.calibrate(&x, n).cloned()).map_err(err)?;
        Ok(serde_json::to_string(&calibration).expect("calibration serializes"))
    }

    /// Writes the calibration beside the model (`NAME.calibration.json`); returns its path.
    fn save_calibration(&self) -> PyResult<PathBuf> {
        self.model.save_calibration().map_err(err)
    }

    /// Runs images in the clear in this process: a dict of `f32_logits` (the `f32` engine) and,
    /// if calibrated, `logits` (the fixed-point reference the suites compute), both `N × classes`.
    fn infer<'py>(&self, py: Python<'py>, images: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyDict>> {
        let (x, n) = read_images(&self.model, images)?;
        let model = &self.model;
        let (f32_logits, fixed) = py
            .detach(|| {
                let f32_logits = PlainEngine::new(&model.merged).run(&x, n).map_err(Error::from)?;
                let fixed = match model.calibration() {
                    Some(_) => Some(model.fixed()?.run(&x, n).map_err(Error::from)?),
                    None => None,
                };
                Ok::<_, Error>((f32_logits, fixed))
            })
            .map_err(err)?;
        let k = self.logits_per_image();
        let out = PyDict::new(py);
        out.set_item("f32_labels", f32_logits.chunks(k).map(argmax).collect::<Vec<_>>())?;
        out.set_item("f32_logits", matrix(py, f32_logits, k)?)?;
        if let Some(fixed) = fixed {
            out.set_item("labels", fixed.chunks(k).map(argmax).collect::<Vec<_>>())?;
            out.set_item("logits", matrix(py, fixed, k)?)?;
        }
        Ok(out)
    }

    /// Normalized model inputs (`N × C × H × W` `float32`) from paths or pixel arrays, as every
    /// engine receives them.
    fn prepare<'py>(&self, py: Python<'py>, images: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let (x, n) = read_images(&self.model, images)?;
        let (c, h, w) = self.input_shape();
        Ok(PyArray1::from_vec(py, x).reshape([n, c, h, w])?.into_any())
    }

    fn __repr__(&self) -> String {
        let (c, h, w) = self.input_shape();
        format!(
            "Model('{}', {} classes, input {c}×{h}×{w}, {})",
            self.model.path.display(),
            self.logits_per_image(),
            if self.model.calibration().is_some() { "calibrated" } else { "not calibrated" }
        )
    }
}

/// Imports the ONNX model at `path` with the calibration stored beside it, if any.
#[pyfunction]
fn load(py: Python<'_>, path: PathBuf) -> PyResult<PyModel> {
    let model = py
        .detach(|| LoadedModel::load(&path))
        .map_err(|e| py_error(e, Some(&format!("loading {}", path.display()))))?;
    Ok(PyModel { model })
}

/// The names of every suite.
#[pyfunction]
fn suites() -> Vec<&'static str> {
    Suite::ALL.iter().map(|s| s.name()).collect()
}

/// How queries run beyond their input (the CLI's `infer` flags).
#[pyclass(module = "tessera._native", name = "QueryOptions", frozen)]
struct PyQueryOptions {
    options: QueryOptions,
}

#[pymethods]
impl PyQueryOptions {
    /// bayes: `samples` sampled forward passes (1 to 16); verify: `challenge_bits` of the
    /// challenge set (0: all of Z_t), `repetitions` challenges per layer, and whether to
    /// `recompute` a layer whose product fails its check.
    #[new]
    #[pyo3(signature = (samples=4, challenge_bits=0, repetitions=1, recompute=false))]
    fn new(samples: usize, challenge_bits: u32, repetitions: usize, recompute: bool) -> PyResult<Self> {
        let challenge = match challenge_bits {
            0 => verify::Challenge::Field,
            b if verify::CHALLENGE_BITS.contains(&b) => verify::Challenge::Bits(b),
            b => {
                return Err(ConfigError::new_err(format!(
                    "challenge_bits {b}: at most {} (0 for all of Z_t)",
                    verify::CHALLENGE_BITS.end()
                )));
            }
        };
        let max = tessera::suites::bayes::MAX_SAMPLES;
        if !(1..=max).contains(&samples) {
            return Err(ConfigError::new_err(format!("samples {samples}: 1 to {max}")));
        }
        let verify = verify::ClientSettings {
            disguise: verify::Disguise::Pad,
            challenge,
            repetitions: repetitions.max(1),
            recompute_on_failure: recompute,
            // The pad in Z_p wherever a layer fits, as the CLI's default (`--wide-pad` is a
            // measurement option the package leaves out).
            narrow_pad: true,
        };
        Ok(Self { options: QueryOptions { verify, samples, ..QueryOptions::default() } })
    }
}

fn parse_suite(name: &str) -> PyResult<Suite> {
    name.parse::<Suite>()
        .map_err(|_| ConfigError::new_err(format!("unknown suite `{name}`: one of {}", suites().join(", "))))
}

/// A query's result as a dict: `labels`, `logits` (`N × classes`), `elapsed_s`, `connect_s`,
/// `sample_logits` (bayes: `samples × N × classes`, else `None`), `recomputed` (verify), and the
/// cost (`reports`, put together as JSON on request).
fn result_dict<'py>(py: Python<'py>, model: &LoadedModel, r: QueryResult) -> PyResult<Bound<'py, PyDict>> {
    let k = model.merged.output_len();
    let out = PyDict::new(py);
    out.set_item("labels", r.logits.chunks(k).map(argmax).collect::<Vec<_>>())?;
    out.set_item("elapsed_s", r.elapsed.as_secs_f64())?;
    out.set_item("connect_s", r.connect.as_secs_f64())?;
    out.set_item("recomputed", r.recomputed().to_vec())?;
    let samples = r.sample_logits();
    if samples.is_empty() {
        out.set_item("sample_logits", py.None())?;
    } else {
        let per_sample = samples.first().map_or(0, Vec::len);
        let flat: Vec<f32> = samples.iter().flatten().copied().collect();
        let array = PyArray1::from_vec(py, flat).reshape([samples.len(), per_sample / k.max(1), k])?;
        out.set_item("sample_logits", array)?;
    }
    let fixed = model.fixed().map_err(err)?;
    out.set_item("reports", Reports { reports: r.reports, connect: r.connect, fixed })?;
    out.set_item("logits", matrix(py, r.logits, k)?)?;
    Ok(out)
}

/// Every party's cost report of one query; JSON only when asked for (most queries never are).
#[pyclass(module = "tessera._native", name = "Reports", frozen)]
struct Reports {
    reports: Vec<tessera::net::PartyReport>,
    connect: Duration,
    /// Names the model's nodes.
    fixed: Arc<tessera::model::fixed::FixedModel>,
}

#[pymethods]
impl Reports {
    /// Every party's report (stages, links, microseconds), the user's first, as JSON.
    fn reports_json(&self) -> String {
        serde_json::to_string(&self.reports).expect("reports serialize")
    }

    /// The query's cost per layer and party, with its totals, as JSON.
    fn cost_json(&self) -> String {
        let fixed = &self.fixed;
        let cost = QueryCost::from_reports(&self.reports, self.connect, |n| fixed.node_name(n as usize).to_string());
        serde_json::to_string(&cost).expect("cost serializes")
    }
}

/// A whole cluster of one suite in this process, on in-memory channels.
#[pyclass(module = "tessera._native", name = "InProcessCluster")]
struct PyInProcess {
    suite: Suite,
    options: QueryOptions,
    cluster: Mutex<Option<Arc<InProcessCluster>>>,
}

#[pymethods]
impl PyInProcess {
    /// Starts `suite`'s server parties on a copy of `model` (with `holders` share-holders where
    /// the suite has them).
    #[new]
    fn new(py: Python<'_>, model: &PyModel, suite: &str, holders: usize, options: &PyQueryOptions) -> PyResult<Self> {
        let suite = parse_suite(suite)?;
        let options = options.options;
        let model = model.model.clone();
        // The parties quantize the model when they start: it must be calibrated.
        model.fixed().map_err(err)?;
        let cluster =
            py.detach(|| InProcessCluster::start(suite, model, holders, ServeOptions::default())).map_err(err)?;
        Ok(Self { suite, options, cluster: Mutex::new(Some(Arc::new(cluster))) })
    }

    /// The suite's name.
    #[getter]
    fn suite(&self) -> &'static str {
        self.suite.name()
    }

    /// Runs one query holding every image of `images`; see `result_dict` for what it returns.
    fn query<'py>(&self, py: Python<'py>, images: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyDict>> {
        let cluster = running(&self.cluster)?;
        let (x, batch) = query_batch(cluster.model(), images)?;
        let r = wait(py, cluster.query(&x, batch, &self.options))?;
        result_dict(py, cluster.model(), r)
    }

    /// Stops the parties (queries already running finish first).
    fn close(&self) {
        self.cluster.lock().expect("not poisoned").take();
    }
}

/// A cluster of `tessera serve` processes on loopback with fresh certificates, queried over
/// mutual TLS: what `tessera infer --suite` starts.
#[pyclass(module = "tessera._native", name = "ProcessCluster")]
struct PyProcesses {
    suite: Suite,
    /// The model as the servers load it (file and calibration beside it).
    model: LoadedModel,
    options: QueryOptions,
    cluster: Mutex<Option<Arc<LocalCluster>>>,
}

#[pymethods]
impl PyProcesses {
    /// Starts `suite`'s server parties as `server serve …` processes on `model`'s file (with
    /// `holders` share-holders where the suite has them). The servers read the calibration
    /// stored beside the file: it must be the model's.
    #[new]
    fn new(
        py: Python<'_>,
        model: &PyModel,
        suite: &str,
        holders: usize,
        server: PathBuf,
        options: &PyQueryOptions,
    ) -> PyResult<Self> {
        let suite = parse_suite(suite)?;
        let path = model.model.path.clone();
        let served = py.detach(|| LoadedModel::load(&path)).map_err(err)?;
        if served.calibration() != model.model.calibration() {
            return Err(CalibrationError::new_err(format!(
                "the servers read the calibration beside {}, which is not the model's: save it first (Model.save_calibration)",
                path.display()
            )));
        }
        served.fixed().map_err(err)?;
        let launch = move |party: &PartyConfig, config: &std::path::Path| {
            let mut command = std::process::Command::new(&server);
            command.args(["serve", "--role", party.role.name(), "--name", &party.name, "--config"]).arg(config);
            command
        };
        let local = LocalOptions { holders, ..LocalOptions::default() };
        let cluster = py.detach(|| LocalCluster::start(launch, suite, &path, &local)).map_err(err)?;
        Ok(Self { suite, model: served, options: options.options, cluster: Mutex::new(Some(Arc::new(cluster))) })
    }

    /// The suite's name.
    #[getter]
    fn suite(&self) -> &'static str {
        self.suite.name()
    }

    /// Runs one query holding every image of `images`; see `result_dict` for what it returns.
    fn query<'py>(&self, py: Python<'py>, images: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyDict>> {
        let cluster = running(&self.cluster)?;
        let (x, batch) = query_batch(&self.model, images)?;
        let r = wait(py, tessera::query_with(&cluster.config, &self.model, &x, batch, &self.options))?;
        result_dict(py, &self.model, r)
    }

    /// Stops the server processes.
    fn close(&self) {
        self.cluster.lock().expect("not poisoned").take();
    }
}

/// A running cluster reached over mutual TLS, as its configuration's user party.
#[pyclass(module = "tessera._native", name = "RemoteCluster")]
struct PyRemote {
    config: ClusterConfig,
    model: LoadedModel,
    options: QueryOptions,
}

#[pymethods]
impl PyRemote {
    /// Reads the configuration at `config` and the model it names (checking its hash); with
    /// `model`, also checks that that file is the one the cluster serves.
    #[new]
    fn new(py: Python<'_>, config: PathBuf, model: Option<PathBuf>, options: &PyQueryOptions) -> PyResult<Self> {
        let options = options.options;
        let (config, served) = py
            .detach(|| {
                let config = ClusterConfig::load(&config)?;
                let served = config.load_model()?;
                Ok::<_, Error>((config, served))
            })
            .map_err(err)?;
        if let Some(path) = model {
            let expected = py.detach(|| LoadedModel::load(&path)).map_err(err)?;
            if expected.hash != served.hash {
                return Err(ConfigError::new_err(format!("{} is not the model the cluster serves", path.display())));
            }
        }
        served.fixed().map_err(err)?;
        Ok(Self { config, model: served, options })
    }

    /// The suite's name.
    #[getter]
    fn suite(&self) -> &'static str {
        self.config.suite.name()
    }

    /// The model the cluster serves.
    #[getter]
    fn model_path(&self) -> PathBuf {
        self.model.path.clone()
    }

    /// Runs one query holding every image of `images`; see `result_dict` for what it returns.
    fn query<'py>(&self, py: Python<'py>, images: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyDict>> {
        let (x, batch) = query_batch(&self.model, images)?;
        let r = wait(py, tessera::query_with(&self.config, &self.model, &x, batch, &self.options))?;
        result_dict(py, &self.model, r)
    }
}

/// The `tessera._native` module.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("TesseraError", py.get_type::<TesseraError>())?;
    m.add("ModelError", py.get_type::<ModelError>())?;
    m.add("InputError", py.get_type::<InputError>())?;
    m.add("CalibrationError", py.get_type::<CalibrationError>())?;
    m.add("ConfigError", py.get_type::<ConfigError>())?;
    m.add("ProtocolError", py.get_type::<ProtocolError>())?;
    m.add_class::<PyModel>()?;
    m.add_class::<PyQueryOptions>()?;
    m.add_class::<PyInProcess>()?;
    m.add_class::<PyProcesses>()?;
    m.add_class::<PyRemote>()?;
    m.add_class::<Reports>()?;
    m.add_function(wrap_pyfunction!(load, m)?)?;
    m.add_function(wrap_pyfunction!(suites, m)?)?;
    Ok(())
}
