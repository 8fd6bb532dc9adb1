//! What a model carries besides its layers: dataset, classes, normalization.

use serde::{Deserialize, Serialize};

/// Metadata stored with a model (in the ONNX file under the key `tessera`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ModelMeta {
    /// Short model name.
    #[serde(default)]
    pub name: String,
    /// Dataset it was trained on.
    #[serde(default)]
    pub dataset: String,
    /// Class names, in logit order.
    #[serde(default)]
    pub classes: Vec<String>,
    /// Per-channel mean subtracted from pixels scaled to `[0, 1]`.
    #[serde(default)]
    pub mean: Vec<f32>,
    /// Per-channel standard deviation.
    #[serde(default)]
    pub std: Vec<f32>,
    /// Test accuracy of the float model as measured by the training script.
    #[serde(default)]
    pub pytorch_test_accuracy: Option<f64>,
    /// How it was trained.
    #[serde(default)]
    pub recipe: Option<String>,
}
