//! Layer shapes the kernel benchmarks run on.

use super::conv::ConvGeometry;
use super::geometry::{ImageShape, Window2d};

/// The distinct convolution and FC shapes of MiniONN-CIFAR (the 7-conv net), with a label.
pub fn minionn_cifar() -> Vec<(&'static str, ConvGeometry)> {
    let conv = |c, hw, o, k: usize| ConvGeometry {
        input: ImageShape::new(c, hw, hw),
        out_channels: o,
        window: Window2d { kernel: [k, k], stride: [1, 1], pads: [k / 2; 4] },
    };
    vec![
        ("conv3x3 3→64 @32", conv(3, 32, 64, 3)),
        ("conv3x3 64→64 @32", conv(64, 32, 64, 3)),
        ("conv3x3 64→64 @16", conv(64, 16, 64, 3)),
        ("conv3x3 64→64 @8", conv(64, 8, 64, 3)),
        ("conv1x1 64→64 @8", conv(64, 8, 64, 1)),
        ("conv1x1 64→16 @8", conv(64, 8, 16, 1)),
        ("fc 1024→10", ConvGeometry::dense(1024, 10)),
    ]
}
