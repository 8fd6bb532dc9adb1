#!/usr/bin/env python3
"""Writes the ONNX import fixtures in crates/tessera-onnx/tests/fixtures/: small graphs in the
shapes PyTorch's exporter emits (the `x.view(x.size(0), -1)` flatten, `torch.flatten` through a
sliced shape, `F.pad` with its computed pads, a grouped convolution behind folded shape
arithmetic, reshapes and transposes that only relabel, channel concatenation, average pooling
that excludes the padding, a depthwise-separable block, LeakyReLU), each with one input and
onnxruntime's logits for it.

    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install numpy onnx onnxruntime
    /tmp/venv/bin/python scripts/import_fixtures.py

The Rust test `crates/tessera-onnx/tests/fixtures.rs` imports each graph and compares Tessera's
`f32` logits with onnxruntime's (or checks the refusal).
"""

import json
import os

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "crates", "tessera-onnx", "tests", "fixtures")
OPSET = 17
rng = np.random.default_rng(7)


def weights(name, *shape):
    return numpy_helper.from_array((rng.standard_normal(shape) * 0.3).astype(np.float32), name)


def ints(name, values):
    return numpy_helper.from_array(np.array(values, dtype=np.int64), name)


def features(nodes, inits, channels=1, groups=1):
    """Conv 3×3 (4 filters) → ReLU → MaxPool 2 on a N×channels×8×8 input: output `pool`."""
    inits += [weights("conv.w", 4, channels // groups, 3, 3), weights("conv.b", 4)]
    nodes += [
        helper.make_node("Conv", ["x", "conv.w", "conv.b"], ["conv"], name="/features/conv/Conv",
                         kernel_shape=[3, 3], pads=[1, 1, 1, 1], group=groups),
        helper.make_node("Relu", ["conv"], ["relu"], name="/features/relu/Relu"),
        helper.make_node("MaxPool", ["relu"], ["pool"], name="/features/pool/MaxPool", kernel_shape=[2, 2],
                         strides=[2, 2]),
    ]


def classifier(nodes, inits, flat):
    inits += [weights("fc.w", 10, 64), weights("fc.b", 10)]
    nodes.append(helper.make_node("Gemm", [flat, "fc.w", "fc.b"], ["logits"], name="/fc/Gemm", transB=1))


def view_flatten():
    """`x.view(x.size(0), -1)`: Shape → Gather(0) → Unsqueeze → Concat with -1 → Reshape."""
    nodes, inits = [], []
    features(nodes, inits)
    inits += [ints("zero", 0), ints("axes0", [0]), ints("minus_one", [-1])]
    nodes += [
        helper.make_node("Shape", ["pool"], ["shape"], name="/Shape"),
        helper.make_node("Gather", ["shape", "zero"], ["n"], name="/Gather", axis=0),
        helper.make_node("Unsqueeze", ["n", "axes0"], ["n1"], name="/Unsqueeze"),
        helper.make_node("Concat", ["n1", "minus_one"], ["target"], name="/Concat", axis=0),
        helper.make_node("Reshape", ["pool", "target"], ["flat"], name="/Reshape"),
    ]
    classifier(nodes, inits, "flat")
    return nodes, inits, 1


def sliced_flatten():
    """`x.reshape(x.shape[:1] + (-1,))`: Shape → Slice [0:1] → Concat with -1 → Reshape; the
    sizes also pass through Cast and Mul, as shape arithmetic often does."""
    nodes, inits = [], []
    features(nodes, inits)
    inits += [ints("s0", [0]), ints("s1", [1]), ints("minus_one", [-1]), ints("one", [1])]
    nodes += [
        helper.make_node("Shape", ["pool"], ["shape"], name="/Shape"),
        helper.make_node("Slice", ["shape", "s0", "s1"], ["batch"], name="/Slice"),
        helper.make_node("Cast", ["batch"], ["batch_f"], name="/Cast", to=TensorProto.FLOAT),
        helper.make_node("Cast", ["batch_f"], ["batch_i"], name="/Cast_1", to=TensorProto.INT64),
        helper.make_node("Mul", ["batch_i", "one"], ["batch_m"], name="/Mul"),
        helper.make_node("Concat", ["batch_m", "minus_one"], ["target"], name="/Concat", axis=0),
        helper.make_node("Reshape", ["pool", "target"], ["flat"], name="/Reshape"),
    ]
    classifier(nodes, inits, "flat")
    return nodes, inits, 1


def computed_pads():
    """`F.pad(x, (1, 1, 1, 1))`: the pads come from ConstantOfShape, Concat, Reshape, a
    reversing Slice, Transpose and Cast before the Pad node; then the view idiom."""
    nodes, inits = [], []
    inits += [ints("pads_given", [1, 1, 1, 1]), ints("four", [4]), ints("pairs", [-1, 2]),
              ints("start", [-1]), ints("end", [-(2**63) + 1]), ints("axis0", [0]), ints("step", [-1]),
              ints("flat_shape", [-1])]
    nodes += [
        helper.make_node("ConstantOfShape", ["four"], ["zeros"], name="/ConstantOfShape",
                         value=helper.make_tensor("value", TensorProto.INT64, [1], [0])),
        helper.make_node("Concat", ["pads_given", "zeros"], ["pads8"], name="/Concat_pads", axis=0),
        helper.make_node("Reshape", ["pads8", "pairs"], ["pads2"], name="/Reshape_pads"),
        helper.make_node("Slice", ["pads2", "start", "end", "axis0", "step"], ["rev"], name="/Slice_pads"),
        helper.make_node("Transpose", ["rev"], ["tr"], name="/Transpose", perm=[1, 0]),
        helper.make_node("Reshape", ["tr", "flat_shape"], ["pads_flat"], name="/Reshape_pads_1"),
        helper.make_node("Cast", ["pads_flat"], ["pads"], name="/Cast_pads", to=TensorProto.INT64),
        helper.make_node("Pad", ["x", "pads"], ["xp"], name="/Pad", mode="constant"),
    ]
    # The convolution reads the padded input, without its own padding.
    inits += [weights("conv.w", 4, 1, 3, 3), weights("conv.b", 4), ints("zero", 0), ints("axes0", [0]),
              ints("minus_one", [-1])]
    nodes += [
        helper.make_node("Conv", ["xp", "conv.w", "conv.b"], ["conv"], name="/features/conv/Conv", kernel_shape=[3, 3]),
        helper.make_node("Relu", ["conv"], ["relu"], name="/features/relu/Relu"),
        helper.make_node("MaxPool", ["relu"], ["pool"], name="/features/pool/MaxPool", kernel_shape=[2, 2],
                         strides=[2, 2]),
        helper.make_node("Shape", ["pool"], ["shape"], name="/Shape"),
        helper.make_node("Gather", ["shape", "zero"], ["n"], name="/Gather", axis=0),
        helper.make_node("Unsqueeze", ["n", "axes0"], ["n1"], name="/Unsqueeze"),
        helper.make_node("Concat", ["n1", "minus_one"], ["target"], name="/Concat", axis=0),
        helper.make_node("Reshape", ["pool", "target"], ["flat"], name="/Reshape"),
    ]
    classifier(nodes, inits, "flat")
    return nodes, inits, 1


def in_model_affine():
    """Per-channel constants after linear layers (`y * g - b`, `logits / T`): folded into the
    layers before them, so the fixed-point model exists too."""
    nodes, inits = [], []
    inits += [weights("conv.w", 4, 1, 3, 3), numpy_helper.from_array(
        (rng.random((4, 1, 1)) + 0.5).astype(np.float32), "gain"), numpy_helper.from_array(
        np.array(0.1, dtype=np.float32), "offset"), numpy_helper.from_array(np.array([2.0], dtype=np.float32), "temperature")]
    nodes += [
        helper.make_node("Conv", ["x", "conv.w"], ["conv"], name="/features/conv/Conv", kernel_shape=[3, 3],
                         pads=[1, 1, 1, 1]),
        helper.make_node("Mul", ["conv", "gain"], ["scaled"], name="/features/Mul"),
        helper.make_node("Sub", ["scaled", "offset"], ["shifted"], name="/features/Sub"),
        helper.make_node("Relu", ["shifted"], ["relu"], name="/features/relu/Relu"),
        helper.make_node("MaxPool", ["relu"], ["pool"], name="/features/pool/MaxPool", kernel_shape=[2, 2],
                         strides=[2, 2]),
        helper.make_node("Flatten", ["pool"], ["flat"], name="/Flatten"),
    ]
    inits += [weights("fc.w", 10, 64), weights("fc.b", 10)]
    nodes += [helper.make_node("Gemm", ["flat", "fc.w", "fc.b"], ["fc"], name="/fc/Gemm", transB=1),
              helper.make_node("Div", ["fc", "temperature"], ["logits"], name="/Div")]
    return nodes, inits, 1


def input_normalization():
    """`(x - mean) / std` inside the model, on its input: the f32 engine runs it; the fixed-point
    model refuses it by name (it belongs in the model's mean and std metadata)."""
    nodes, inits = [], []
    inits += [numpy_helper.from_array(np.array([[[0.5]]], dtype=np.float32), "mean"),
              numpy_helper.from_array(np.array([[[0.25]]], dtype=np.float32), "std")]
    nodes += [helper.make_node("Sub", ["x0", "mean"], ["centred"], name="/normalize/Sub"),
              helper.make_node("Div", ["centred", "std"], ["x"], name="/normalize/Div")]
    features(nodes, inits)
    nodes.append(helper.make_node("Flatten", ["pool"], ["flat"], name="/Flatten"))
    classifier(nodes, inits, "flat")
    return nodes, inits, 1


def grouped_conv():
    """A grouped convolution behind folded shape arithmetic: the refusal must name the
    convolution and its `group`, not an auxiliary op."""
    nodes, inits = [], []
    inits += [ints("four", [4])]
    nodes.append(helper.make_node("ConstantOfShape", ["four"], ["unused"], name="/ConstantOfShape",
                                  value=helper.make_tensor("value", TensorProto.INT64, [1], [0])))
    features(nodes, inits, channels=2, groups=2)
    nodes.append(helper.make_node("Flatten", ["pool"], ["flat"], name="/Flatten"))
    classifier(nodes, inits, "flat")
    return nodes, inits, 2


def relabel_layout():
    """Reshapes, transposes, squeezes and unsqueezes that move no data: `x.view(n, 4, 16, 1)`,
    `.transpose(2, 3)`, a 1×1 convolution on the relabelled image, `torch.flatten`, then
    `[:, :, None, None]`, `.permute(0, 2, 3, 1)` and `.squeeze(1).squeeze(1)` before the FC layer."""
    nodes, inits = [], []
    features(nodes, inits)
    inits += [ints("unflat", [-1, 4, 16, 1]), weights("mix.w", 3, 4, 1, 1), weights("mix.b", 3),
              ints("axes23", [2, 3]), ints("axes12", [1, 2]), weights("fc.w", 10, 48), weights("fc.b", 10)]
    nodes += [
        helper.make_node("Reshape", ["pool", "unflat"], ["rows"], name="/Reshape"),
        helper.make_node("Transpose", ["rows"], ["cols"], name="/Transpose", perm=[0, 1, 3, 2]),
        helper.make_node("Conv", ["cols", "mix.w", "mix.b"], ["mix"], name="/mix/Conv", kernel_shape=[1, 1]),
        helper.make_node("Relu", ["mix"], ["mix_r"], name="/mix/Relu"),
        helper.make_node("Flatten", ["mix_r"], ["flat"], name="/Flatten"),
        helper.make_node("Unsqueeze", ["flat", "axes23"], ["img"], name="/Unsqueeze"),
        helper.make_node("Transpose", ["img"], ["nhwc"], name="/Transpose_1", perm=[0, 2, 3, 1]),
        helper.make_node("Squeeze", ["nhwc", "axes12"], ["vec"], name="/Squeeze"),
        helper.make_node("Gemm", ["vec", "fc.w", "fc.b"], ["logits"], name="/fc/Gemm", transB=1),
    ]
    return nodes, inits, 1


def channel_concat():
    """`torch.cat([b(a), a, c(a)], dim=1)` with `a = relu(conv(x))`: two convolution outputs and
    the activation they read, one after another along channels."""
    nodes, inits = [], []
    inits += [weights("a.w", 4, 1, 3, 3), weights("a.b", 4), weights("b.w", 3, 4, 3, 3), weights("b.b", 3),
              weights("c.w", 2, 4, 3, 3), weights("c.b", 2), weights("fc.w", 10, 144), weights("fc.b", 10)]
    conv = lambda i, w, o, name: helper.make_node("Conv", [i, f"{w}.w", f"{w}.b"], [o], name=name,
                                                  kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    nodes += [
        conv("x", "a", "a", "/a/Conv"),
        helper.make_node("Relu", ["a"], ["a_r"], name="/a/Relu"),
        conv("a_r", "b", "b", "/b/Conv"),
        conv("a_r", "c", "c", "/c/Conv"),
        helper.make_node("Concat", ["b", "a_r", "c"], ["cat"], name="/Concat", axis=1),
        helper.make_node("Relu", ["cat"], ["cat_r"], name="/Relu"),
        helper.make_node("MaxPool", ["cat_r"], ["pool"], name="/MaxPool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["pool"], ["flat"], name="/Flatten"),
        helper.make_node("Gemm", ["flat", "fc.w", "fc.b"], ["logits"], name="/fc/Gemm", transB=1),
    ]
    return nodes, inits, 1


def avgpool_exclude_pad(then_conv=False):
    """`nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)` after conv and ReLU, then
    the FC layer (or, with `then_conv`, a convolution first: no layer to fold the per-position
    divisors into, which the fixed-point model refuses by the pool's name)."""
    nodes, inits = [], []
    inits += [weights("conv.w", 4, 1, 3, 3), weights("conv.b", 4)]
    nodes += [
        helper.make_node("Conv", ["x", "conv.w", "conv.b"], ["conv"], name="/features/conv/Conv",
                         kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["conv"], ["relu"], name="/features/relu/Relu"),
        helper.make_node("AveragePool", ["relu"], ["pool"], name="/features/pool/AveragePool", kernel_shape=[3, 3],
                         strides=[2, 2], pads=[1, 1, 1, 1], count_include_pad=0),
    ]
    if then_conv:
        inits += [weights("conv2.w", 4, 4, 3, 3), weights("conv2.b", 4)]
        nodes += [
            helper.make_node("Conv", ["pool", "conv2.w", "conv2.b"], ["conv2"], name="/features/conv2/Conv",
                             kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["conv2"], ["pooled"], name="/features/relu2/Relu"),
        ]
    nodes.append(helper.make_node("Flatten", ["pooled" if then_conv else "pool"], ["flat"], name="/Flatten"))
    classifier(nodes, inits, "flat")
    return nodes, inits, 1


def depthwise_separable():
    """A MobileNet block on a 3-channel input: conv 3→8, ReLU, depthwise 3×3 (`groups=8`), ReLU,
    pointwise 1×1 8→6, ReLU, max pool, FC."""
    nodes, inits = [], []
    inits += [weights("stem.w", 8, 3, 3, 3), weights("stem.b", 8), weights("dw.w", 8, 1, 3, 3), weights("dw.b", 8),
              weights("pw.w", 6, 8, 1, 1), weights("pw.b", 6), weights("fc.w", 10, 96), weights("fc.b", 10)]
    nodes += [
        helper.make_node("Conv", ["x", "stem.w", "stem.b"], ["stem"], name="/stem/Conv", kernel_shape=[3, 3],
                         pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["stem"], ["stem_r"], name="/stem/Relu"),
        helper.make_node("Conv", ["stem_r", "dw.w", "dw.b"], ["dw"], name="/block/dw/Conv", kernel_shape=[3, 3],
                         pads=[1, 1, 1, 1], group=8),
        helper.make_node("Relu", ["dw"], ["dw_r"], name="/block/dw/Relu"),
        helper.make_node("Conv", ["dw_r", "pw.w", "pw.b"], ["pw"], name="/block/pw/Conv", kernel_shape=[1, 1]),
        helper.make_node("Relu", ["pw"], ["pw_r"], name="/block/pw/Relu"),
        helper.make_node("MaxPool", ["pw_r"], ["pool"], name="/pool/MaxPool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["pool"], ["flat"], name="/Flatten"),
        helper.make_node("Gemm", ["flat", "fc.w", "fc.b"], ["logits"], name="/fc/Gemm", transB=1),
    ]
    return nodes, inits, 3


def leaky_relu():
    """`nn.LeakyReLU(0.1)` in place of the ReLU: the f32 engine runs it; the fixed-point model
    refuses it by name."""
    nodes, inits = [], []
    inits += [weights("conv.w", 4, 1, 3, 3), weights("conv.b", 4)]
    nodes += [
        helper.make_node("Conv", ["x", "conv.w", "conv.b"], ["conv"], name="/features/conv/Conv",
                         kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("LeakyRelu", ["conv"], ["act"], name="/features/act/LeakyRelu", alpha=0.1),
        helper.make_node("MaxPool", ["act"], ["pool"], name="/features/pool/MaxPool", kernel_shape=[2, 2],
                         strides=[2, 2]),
        helper.make_node("Flatten", ["pool"], ["flat"], name="/Flatten"),
    ]
    classifier(nodes, inits, "flat")
    return nodes, inits, 1


def main():
    os.makedirs(OUT, exist_ok=True)
    # New fixtures go at the end: each draws from the one generator, so the earlier files stay
    # byte for byte as they were.
    for name, build in [("view_flatten", view_flatten), ("sliced_flatten", sliced_flatten),
                        ("computed_pads", computed_pads), ("in_model_affine", in_model_affine),
                        ("input_normalization", input_normalization), ("grouped_conv", grouped_conv),
                        ("relabel_layout", relabel_layout), ("channel_concat", channel_concat),
                        ("avgpool_exclude_pad", avgpool_exclude_pad),
                        ("avgpool_exclude_pad_conv", lambda: avgpool_exclude_pad(then_conv=True)),
                        ("depthwise_separable", depthwise_separable), ("leaky_relu", leaky_relu)]:
        nodes, inits, channels = build()
        # The graph input: the one name read but neither initialized nor produced.
        known = {t.name for t in inits} | {o for n in nodes for o in n.output}
        first = next(i for n in nodes for i in n.input if i and i not in known)
        x = helper.make_tensor_value_info(first, TensorProto.FLOAT, ["N", channels, 8, 8])
        y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])
        graph = helper.make_graph(nodes, name, [x], [y], inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="fixtures")
        onnx.checker.check_model(model, full_check=True)
        path = os.path.join(OUT, f"{name}.onnx")
        onnx.save(model, path)
        image = rng.random((1, channels, 8, 8), dtype=np.float32)
        logits = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {first: image})[0]
        with open(os.path.join(OUT, f"{name}.json"), "w") as f:
            json.dump({"input": image.ravel().tolist(), "logits": logits.ravel().tolist()}, f)
        print(f"wrote {os.path.relpath(path, ROOT)}: logits {np.round(logits.ravel()[:3], 4)}…")


if __name__ == "__main__":
    main()
