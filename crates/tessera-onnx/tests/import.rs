//! Import of hand-built ONNX graphs: every supported op, BatchNorm folding equivalence, and each
//! refusal as a typed error naming the node and op.

use prost::Message;
use tessera_model::passes::merge;
use tessera_model::plain::PlainEngine;
use tessera_onnx::proto::*;
use tessera_onnx::{ImportError, Limits, import_bytes};

fn tensor(name: &str, dims: &[i64], values: &[f32]) -> TensorProto {
    TensorProto {
        dims: dims.to_vec(),
        data_type: Some(data_type::FLOAT),
        name: Some(name.into()),
        raw_data: Some(values.iter().flat_map(|v| v.to_le_bytes()).collect()),
        ..Default::default()
    }
}

fn ints_tensor(name: &str, values: &[i64]) -> TensorProto {
    TensorProto {
        dims: vec![values.len() as i64],
        data_type: Some(data_type::INT64),
        name: Some(name.into()),
        int64_data: values.to_vec(),
        ..Default::default()
    }
}

fn attr_ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto { name: Some(name.into()), ints: v.to_vec(), r#type: Some(7), ..Default::default() }
}

fn attr_int(name: &str, v: i64) -> AttributeProto {
    AttributeProto { name: Some(name.into()), i: Some(v), r#type: Some(2), ..Default::default() }
}

fn node(name: &str, op: &str, inputs: &[&str], output: &str, attrs: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        name: Some(name.into()),
        op_type: Some(op.into()),
        attribute: attrs,
        domain: None,
    }
}

fn value_info(name: &str, dims: &[Dimension]) -> ValueInfoProto {
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            tensor_type: Some(TypeProtoTensor {
                elem_type: Some(data_type::FLOAT),
                shape: Some(TensorShapeProto { dim: dims.to_vec() }),
            }),
        }),
    }
}

fn dim(v: i64) -> Dimension {
    Dimension { dim_value: Some(v), dim_param: None }
}

fn batch() -> Dimension {
    Dimension { dim_value: None, dim_param: Some("batch".into()) }
}

fn ramp(n: usize, scale: f32) -> Vec<f32> {
    (0..n).map(|i| ((i * 37 % 23) as f32 - 11.0) * scale).collect()
}

/// Conv(1→2, 3×3, pad 1) → BatchNorm → Relu → MaxPool 2 → Flatten → Gemm(32→3) on 1×8×8.
fn small_graph() -> ModelProto {
    let graph = GraphProto {
        node: vec![
            node(
                "conv",
                "Conv",
                &["x", "w", "b"],
                "c",
                vec![
                    attr_ints("kernel_shape", &[3, 3]),
                    attr_ints("pads", &[1, 1, 1, 1]),
                    attr_ints("strides", &[1, 1]),
                ],
            ),
            node("bn", "BatchNormalization", &["c", "g", "beta", "mean", "var"], "n", vec![]),
            node("relu", "Relu", &["n"], "r", vec![]),
            node(
                "pool",
                "MaxPool",
                &["r"],
                "p",
                vec![attr_ints("kernel_shape", &[2, 2]), attr_ints("strides", &[2, 2])],
            ),
            node("flat", "Flatten", &["p"], "f", vec![attr_int("axis", 1)]),
            node("fc", "Gemm", &["f", "fw", "fb"], "y", vec![attr_int("transB", 1)]),
        ],
        name: Some("small".into()),
        initializer: vec![
            tensor("w", &[2, 1, 3, 3], &ramp(18, 0.1)),
            tensor("b", &[2], &[0.1, -0.2]),
            tensor("g", &[2], &[1.5, 0.5]),
            tensor("beta", &[2], &[0.3, -0.1]),
            tensor("mean", &[2], &[0.2, 0.1]),
            tensor("var", &[2], &[2.0, 0.5]),
            tensor("fw", &[3, 32], &ramp(96, 0.05)),
            tensor("fb", &[3], &[0.0, 0.1, 0.2]),
        ],
        input: vec![value_info("x", &[batch(), dim(1), dim(8), dim(8)])],
        output: vec![value_info("y", &[batch(), dim(3)])],
    };
    ModelProto {
        ir_version: Some(8),
        producer_name: Some("test".into()),
        graph: Some(graph),
        opset_import: vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(17) }],
        metadata_props: vec![],
    }
}

fn import(m: &ModelProto) -> Result<tessera_model::Model, ImportError> {
    import_bytes(&m.encode_to_vec(), &Limits::default())
}

#[test]
fn imports_and_merges_equivalently() {
    let model = import(&small_graph()).unwrap();
    assert_eq!(model.nodes().len(), 6);
    let (merged, report) = merge(&model).unwrap();
    assert_eq!(report.batchnorms_folded, 1);
    assert_eq!(report.relus_fused, 1);
    assert!(merged.nodes().iter().all(|n| n.op.kind() != "BatchNorm" && n.op.kind() != "Relu"));
    let x = ramp(2 * 64, 0.3);
    let a = PlainEngine::new(&model).run(&x, 2).unwrap();
    let b = PlainEngine::new(&merged).run(&x, 2).unwrap();
    for (p, q) in a.iter().zip(&b) {
        assert!((p - q).abs() <= 1e-4 * p.abs().max(1.0), "{p} vs {q}");
    }
}

#[test]
fn reshape_pad_avgpool_matmul_add_identity() {
    let mut m = small_graph();
    let g = m.graph.as_mut().unwrap();
    g.node = vec![
        node("pad", "Pad", &["x", "pads"], "xp", vec![]),
        node("conv", "Conv", &["xp", "w"], "c", vec![attr_ints("kernel_shape", &[3, 3])]),
        node("id", "Identity", &["c"], "ci", vec![]),
        node("relu", "Relu", &["ci"], "r", vec![]),
        node("res", "Add", &["r", "r"], "p", vec![]),
        node(
            "avg",
            "AveragePool",
            &["p"],
            "q",
            vec![attr_ints("kernel_shape", &[2, 2]), attr_ints("strides", &[2, 2])],
        ),
        node("reshape", "Reshape", &["q", "shape"], "f", vec![]),
        node("mm", "MatMul", &["f", "mw"], "mmo", vec![]),
        node("bias", "Add", &["mmo", "fb"], "y", vec![]),
    ];
    g.initializer.push(ints_tensor("pads", &[0, 0, 1, 1, 0, 0, 1, 1]));
    g.initializer.push(ints_tensor("shape", &[-1, 32]));
    g.initializer.push(tensor("mw", &[32, 3], &ramp(96, 0.05)));
    let model = import(&m).unwrap();
    let kinds: Vec<_> = model.nodes().iter().map(|n| n.op.kind()).collect();
    assert_eq!(kinds, ["Pad", "Conv", "Relu", "Add", "AvgPool", "Reshape", "Dense"]);
    let (merged, report) = merge(&model).unwrap();
    assert_eq!((report.pads_folded, report.avgpools_folded), (1, 1));
    let x = ramp(64, 0.2);
    let a = PlainEngine::new(&model).run(&x, 1).unwrap();
    let b = PlainEngine::new(&merged).run(&x, 1).unwrap();
    for (p, q) in a.iter().zip(&b) {
        assert!((p - q).abs() <= 1e-4 * p.abs().max(1.0), "{p} vs {q}");
    }
}

/// Applies `edit` to the small graph and returns the import error.
fn refused(edit: impl FnOnce(&mut ModelProto)) -> ImportError {
    let mut m = small_graph();
    edit(&mut m);
    import(&m).expect_err("must be refused")
}

fn graph(m: &mut ModelProto) -> &mut GraphProto {
    m.graph.as_mut().unwrap()
}

#[test]
fn malformed_bytes_are_refused() {
    let bytes = small_graph().encode_to_vec();
    assert!(matches!(import_bytes(&bytes[..bytes.len() / 2], &Limits::default()), Err(ImportError::NotProtobuf(_))));
    assert!(matches!(
        import_bytes(b"\xff\xff\xff\xff not a protobuf", &Limits::default()),
        Err(ImportError::NotProtobuf(_))
    ));
    let tiny = Limits { max_file_bytes: 100, ..Limits::default() };
    assert!(matches!(import_bytes(&bytes, &tiny), Err(ImportError::TooLarge { .. })));
    assert!(matches!(import_bytes(&[], &Limits::default()), Err(ImportError::UnsupportedOpset { version: 0, .. })));
}

#[test]
fn refusals_name_the_problem() {
    assert_eq!(
        refused(|m| m.opset_import[0].version = Some(9)),
        ImportError::UnsupportedOpset { version: 9, min: 13, max: 20 }
    );
    assert_eq!(refused(|m| m.graph = None), ImportError::NoGraph);
    assert_eq!(
        refused(|m| graph(m).node[2].op_type = Some("Softmax".into())),
        ImportError::UnsupportedOp { node: "relu".into(), op: "Softmax".into() }
    );
    // An op that folds on constants is refused by name where it is not linear in activations.
    assert_eq!(
        refused(|m| graph(m).node[2] = node("square", "Mul", &["n", "n"], "r", vec![])),
        ImportError::UnsupportedOp { node: "square".into(), op: "Mul".into() }
    );
    let err = refused(|m| graph(m).node[2] = node("inverse", "Div", &["g", "n"], "r", vec![]));
    assert!(matches!(&err, ImportError::Shape { node, .. } if node == "inverse"), "{err}");
    let err = refused(|m| {
        graph(m).initializer.push(tensor("row", &[8], &ramp(8, 1.0)));
        graph(m).node[2] = node("per_column", "Mul", &["n", "row"], "r", vec![]);
    });
    assert!(matches!(&err, ImportError::Tensor { tensor, .. } if tensor == "row"), "{err}");
    // Folding that cannot compute names the node.
    let err = refused(|m| {
        graph(m).initializer.push(ints_tensor("big", &[1 << 20, 1 << 20]));
        graph(m).node.insert(0, node("zeros", "ConstantOfShape", &["big"], "z", vec![]));
    });
    assert!(matches!(&err, ImportError::Shape { node, .. } if node == "zeros"), "{err}");
    assert!(
        matches!(refused(|m| { graph(m).initializer.remove(0); }), ImportError::MissingInput { node, input, .. } if node == "conv" && input == "w")
    );
    assert!(
        matches!(refused(|m| graph(m).node[0].attribute.push(attr_ints("dilations", &[2, 2]))), ImportError::Attribute { node, attribute, .. } if node == "conv" && attribute == "dilations")
    );
    assert!(
        matches!(refused(|m| graph(m).node[0].attribute.push(attr_int("group", 3))), ImportError::Attribute { node, attribute, .. } if node == "conv" && attribute == "group")
    );
    assert!(
        matches!(refused(|m| graph(m).node[0].attribute.push(attr_int("group", 2))), ImportError::Shape { node, .. } if node == "conv")
    );
    // Layout ops on activations: only those that relabel.
    let err =
        refused(|m| graph(m).node[4] = node("nhwc", "Transpose", &["p"], "f", vec![attr_ints("perm", &[0, 2, 3, 1])]));
    assert!(
        matches!(&err, ImportError::Attribute { node, attribute, .. } if node == "nhwc" && attribute == "perm"),
        "{err}"
    );
    let err = refused(|m| {
        graph(m).initializer.push(ints_tensor("rank3", &[1, 2, 16]));
        graph(m).node[4] = node("rows", "Reshape", &["p", "rank3"], "f", vec![]);
    });
    assert!(matches!(&err, ImportError::Shape { node, .. } if node == "rows"), "{err}");
    let err = refused(|m| graph(m).node[4] = node("cat", "Concat", &["p", "p"], "f", vec![attr_int("axis", 2)]));
    assert!(
        matches!(&err, ImportError::Attribute { node, attribute, .. } if node == "cat" && attribute == "axis"),
        "{err}"
    );
    let err = refused(|m| graph(m).node[4] = node("squeeze", "Squeeze", &["p"], "f", vec![]));
    assert!(
        matches!(&err, ImportError::Attribute { node, attribute, .. } if node == "squeeze" && attribute == "axes"),
        "{err}"
    );
    assert!(
        matches!(refused(|m| graph(m).node[3].attribute.push(attr_int("ceil_mode", 1))), ImportError::Attribute { node, attribute, .. } if node == "pool" && attribute == "ceil_mode")
    );
    assert!(
        matches!(refused(|m| graph(m).node[3].attribute[0] = attr_ints("kernel_shape", &[5, 4])), ImportError::Attribute { node, attribute, .. } if node == "pool" && attribute == "kernel_shape")
    );
    assert!(
        matches!(refused(|m| graph(m).initializer[6] = tensor("fw", &[3, 31], &ramp(93, 0.05))), ImportError::Shape { node, .. } if node == "fc")
    );
    assert!(
        matches!(refused(|m| graph(m).initializer[0] = tensor("w", &[2, 1, 3], &ramp(6, 0.1))), ImportError::Tensor { tensor, .. } if tensor == "w")
    );
    assert!(
        matches!(refused(|m| graph(m).initializer[0] = tensor("w", &[2, 1, 3, 3], &ramp(17, 0.1))), ImportError::Tensor { tensor, .. } if tensor == "w")
    );
    assert!(matches!(
        refused(|m| graph(m).initializer[0] = tensor("w", &[1 << 20, 1 << 20, 3, 3], &[])),
        ImportError::Oversized { .. }
    ));
    assert!(
        matches!(refused(|m| graph(m).initializer[1] = tensor("b", &[2], &[f32::NAN, 0.0])), ImportError::Tensor { tensor, .. } if tensor == "b")
    );
    assert!(matches!(
        refused(|m| graph(m).initializer[1] = tensor("b", &[2], &[f32::INFINITY, 0.0])),
        ImportError::Tensor { .. }
    ));
    assert!(matches!(
        refused(|m| graph(m).input[0] =
            value_info("x", &[batch(), dim(1), Dimension { dim_value: None, dim_param: Some("h".into()) }, dim(8)])),
        ImportError::Input(_)
    ));
    assert!(matches!(
        refused(|m| graph(m).input[0] = value_info("x", &[batch(), dim(1), dim(1 << 30), dim(8)])),
        ImportError::Input(_)
    ));
    assert!(matches!(
        refused(|m| graph(m).input[0] = value_info("x", &[batch(), dim(1), dim(8)])),
        ImportError::Input(_)
    ));
    assert!(
        matches!(refused(|m| graph(m).input[0] = value_info("x", &[batch(), dim(3), dim(8), dim(8)])), ImportError::Shape { node, .. } if node == "conv")
    );
    assert!(
        matches!(refused(|m| graph(m).node[4].attribute[0] = attr_int("axis", 2)), ImportError::Attribute { attribute, .. } if attribute == "axis")
    );
    assert!(matches!(refused(|m| graph(m).node[0].input[1] = "c".into()), ImportError::MissingInput { .. }));
    assert!(matches!(refused(|m| graph(m).output[0].name = Some("nowhere".into())), ImportError::MissingInput { .. }));
    assert!(matches!(
        refused(|m| m
            .metadata_props
            .push(StringStringEntryProto { key: Some("tessera".into()), value: Some("{not json".into()) })),
        ImportError::Metadata(_)
    ));
}
