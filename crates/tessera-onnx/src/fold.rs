//! Constant folding at import: the integer and float arithmetic that exporters emit to compute
//! shapes, evaluated once from constants and the graph's static shapes. PyTorch's
//! `x.view(x.size(0), -1)`, for one, exports as `Shape → Gather → Unsqueeze → Concat → Reshape`:
//! after folding, the `Reshape` reads a constant shape like any other.
//!
//! Written here because the ONNX crates for Rust either run whole graphs (an inference engine
//! is far more than the dozen small tensor ops needed) or only parse.

use crate::proto::{TensorProto, data_type};

/// The ops folded when every input is a constant (`Shape` when its input's shape is known).
pub const FOLDABLE: &[&str] = &[
    "Shape",
    "Gather",
    "Unsqueeze",
    "Squeeze",
    "Concat",
    "Slice",
    "Cast",
    "ConstantOfShape",
    "Range",
    "Transpose",
    "Reshape",
    "Add",
    "Sub",
    "Mul",
    "Div",
];

/// The elements of a folded tensor.
#[derive(Debug, Clone, PartialEq)]
pub enum Values {
    /// Integers (ONNX int64 and int32).
    Int(Vec<i64>),
    /// Floats (ONNX float and double).
    Float(Vec<f32>),
}

impl Values {
    fn len(&self) -> usize {
        match self {
            Values::Int(v) => v.len(),
            Values::Float(v) => v.len(),
        }
    }

    /// The elements at `indices`, in that order.
    fn pick(&self, indices: impl Iterator<Item = usize>) -> Values {
        match self {
            Values::Int(v) => Values::Int(indices.map(|i| v[i]).collect()),
            Values::Float(v) => Values::Float(indices.map(|i| v[i]).collect()),
        }
    }
}

/// A constant tensor during folding.
#[derive(Debug, Clone, PartialEq)]
pub struct Folded {
    /// Dimensions (empty for a scalar).
    pub dims: Vec<usize>,
    /// Elements, row-major.
    pub values: Values,
}

/// What one folding step needs besides its inputs: the node's attributes and the element limit.
pub struct Step<'a> {
    /// The op.
    pub op: &'a str,
    /// An integer attribute, if set.
    pub int: &'a dyn Fn(&str) -> Option<i64>,
    /// An integer-list attribute, if set.
    pub ints: &'a dyn Fn(&str) -> Option<Vec<i64>>,
    /// A tensor attribute, already read, if set.
    pub tensor: Option<Folded>,
    /// The largest tensor allowed, in elements.
    pub max_elements: u64,
}

type Fold<T> = std::result::Result<T, String>;

impl Folded {
    /// A tensor of `dims` holding `values`.
    pub fn new(dims: Vec<usize>, values: Values) -> Self {
        Self { dims, values }
    }

    fn ints(&self, what: &str) -> Fold<&[i64]> {
        match &self.values {
            Values::Int(v) => Ok(v),
            Values::Float(_) => Err(format!("{what} must be integers")),
        }
    }

    fn scalar(&self, what: &str) -> Fold<Values> {
        match self.values.len() {
            1 => Ok(self.values.clone()),
            n => Err(format!("{what} must be one value, not {n}")),
        }
    }

    /// The tensor as an ONNX initializer named `name`.
    pub fn into_proto(self, name: &str) -> TensorProto {
        let dims = self.dims.iter().map(|&d| d as i64).collect();
        let mut t = TensorProto { dims, name: Some(name.to_string()), ..Default::default() };
        match self.values {
            Values::Int(v) => {
                t.data_type = Some(data_type::INT64);
                t.int64_data = v;
            }
            Values::Float(v) => {
                t.data_type = Some(data_type::FLOAT);
                t.float_data = v;
            }
        }
        t
    }
}

/// Evaluates `step` on `inputs` (an empty optional input is `None`).
pub fn fold(step: &Step<'_>, inputs: &[Option<Folded>]) -> Fold<Folded> {
    let input = |i: usize| inputs.get(i).and_then(Option::as_ref).ok_or_else(|| format!("missing input {i}"));
    let out = match step.op {
        "Gather" => gather(input(0)?, input(1)?, (step.int)("axis").unwrap_or(0))?,
        "Unsqueeze" => unsqueeze(input(0)?, input(1)?.ints("axes")?)?,
        "Squeeze" => squeeze(input(0)?, inputs.get(1).and_then(Option::as_ref).map(|a| a.ints("axes")).transpose()?)?,
        "Concat" => {
            let parts: Vec<&Folded> = inputs.iter().flatten().collect();
            concat(&parts, (step.int)("axis").ok_or("no axis")?)?
        }
        "Slice" => slice(input(0)?, inputs)?,
        "Cast" => cast(input(0)?, (step.int)("to").ok_or("no target type")?)?,
        "ConstantOfShape" => constant_of_shape(input(0)?, step.tensor.as_ref(), step.max_elements)?,
        "Range" => range(input(0)?, input(1)?, input(2)?, step.max_elements)?,
        "Transpose" => transpose(input(0)?, (step.ints)("perm"))?,
        "Reshape" => reshape(input(0)?, input(1)?.ints("the shape")?, (step.int)("allowzero").unwrap_or(0) != 0)?,
        "Add" | "Sub" | "Mul" | "Div" => arithmetic(step.op, input(0)?, input(1)?)?,
        other => return Err(format!("`{other}` is not folded")),
    };
    if out.values.len() as u64 > step.max_elements {
        return Err(format!("a result of {} elements (at most {})", out.values.len(), step.max_elements));
    }
    Ok(out)
}

/// `axis` in `-rank..rank` as an index.
fn axis_index(axis: i64, rank: usize) -> Fold<usize> {
    let r = rank as i64;
    if (-r..r).contains(&axis) {
        Ok(axis.rem_euclid(r.max(1)) as usize)
    } else {
        Err(format!("axis {axis} of rank {rank}"))
    }
}

/// Row-major strides of `dims`.
fn strides(dims: &[usize]) -> Vec<usize> {
    let mut s = vec![1; dims.len()];
    for i in (0..dims.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * dims[i + 1];
    }
    s
}

fn gather(data: &Folded, indices: &Folded, axis: i64) -> Fold<Folded> {
    let axis = axis_index(axis, data.dims.len())?;
    let n = data.dims[axis] as i64;
    let picks = indices
        .ints("indices")?
        .iter()
        .map(|&i| if (-n..n).contains(&i) { Ok(i.rem_euclid(n) as usize) } else { Err(format!("index {i} of {n}")) })
        .collect::<Fold<Vec<usize>>>()?;
    let outer: usize = data.dims[..axis].iter().product();
    let inner: usize = data.dims[axis + 1..].iter().product();
    let order = (0..outer)
        .flat_map(|o| picks.iter().flat_map(move |&p| (0..inner).map(move |i| (o * n as usize + p) * inner + i)));
    let mut dims = data.dims[..axis].to_vec();
    dims.extend(&indices.dims);
    dims.extend(&data.dims[axis + 1..]);
    Ok(Folded::new(dims, data.values.pick(order)))
}

fn unsqueeze(data: &Folded, axes: &[i64]) -> Fold<Folded> {
    let rank = data.dims.len() + axes.len();
    let mut at = axes.iter().map(|&a| axis_index(a, rank)).collect::<Fold<Vec<usize>>>()?;
    at.sort_unstable();
    if at.windows(2).any(|w| w[0] == w[1]) {
        return Err(format!("repeated axes {axes:?}"));
    }
    let mut dims = data.dims.clone();
    for a in at {
        dims.insert(a, 1);
    }
    Ok(Folded::new(dims, data.values.clone()))
}

fn squeeze(data: &Folded, axes: Option<&[i64]>) -> Fold<Folded> {
    let rank = data.dims.len();
    let drop: Vec<usize> = match axes {
        Some(axes) => axes.iter().map(|&a| axis_index(a, rank)).collect::<Fold<_>>()?,
        None => (0..rank).filter(|&i| data.dims[i] == 1).collect(),
    };
    if let Some(&a) = drop.iter().find(|&&a| data.dims[a] != 1) {
        return Err(format!("axis {a} has size {}, not 1", data.dims[a]));
    }
    let dims = (0..rank).filter(|i| !drop.contains(i)).map(|i| data.dims[i]).collect();
    Ok(Folded::new(dims, data.values.clone()))
}

fn concat(parts: &[&Folded], axis: i64) -> Fold<Folded> {
    let first = parts.first().ok_or("no inputs")?;
    let axis = axis_index(axis, first.dims.len())?;
    let same = |p: &Folded| {
        p.dims.len() == first.dims.len()
            && (0..first.dims.len()).all(|i| i == axis || p.dims[i] == first.dims[i])
            && matches!(
                (&p.values, &first.values),
                (Values::Int(_), Values::Int(_)) | (Values::Float(_), Values::Float(_))
            )
    };
    if !parts.iter().all(|p| same(p)) {
        return Err("inputs of different ranks, sizes or types".into());
    }
    let outer: usize = first.dims[..axis].iter().product();
    let inner: usize = first.dims[axis + 1..].iter().product();
    let mut dims = first.dims.clone();
    dims[axis] = parts.iter().map(|p| p.dims[axis]).sum();
    let mut values = match first.values {
        Values::Int(_) => Values::Int(Vec::new()),
        Values::Float(_) => Values::Float(Vec::new()),
    };
    for o in 0..outer {
        for p in parts {
            let run = p.dims[axis] * inner;
            match (&mut values, &p.values) {
                (Values::Int(out), Values::Int(v)) => out.extend_from_slice(&v[o * run..(o + 1) * run]),
                (Values::Float(out), Values::Float(v)) => out.extend_from_slice(&v[o * run..(o + 1) * run]),
                _ => unreachable!("types checked above"),
            }
        }
    }
    Ok(Folded::new(dims, values))
}

fn slice(data: &Folded, inputs: &[Option<Folded>]) -> Fold<Folded> {
    let list = |i: usize, what: &str| -> Fold<Option<Vec<i64>>> {
        inputs.get(i).and_then(Option::as_ref).map(|t| t.ints(what).map(<[i64]>::to_vec)).transpose()
    };
    let starts = list(1, "starts")?.ok_or("no starts")?;
    let ends = list(2, "ends")?.ok_or("no ends")?;
    let rank = data.dims.len();
    let axes = match list(3, "axes")? {
        Some(a) => a.iter().map(|&a| axis_index(a, rank)).collect::<Fold<Vec<usize>>>()?,
        None => (0..starts.len()).collect(),
    };
    let steps = list(4, "steps")?.unwrap_or_else(|| vec![1; starts.len()]);
    if ends.len() != starts.len() || axes.len() != starts.len() || steps.len() != starts.len() {
        return Err("starts, ends, axes and steps of different lengths".into());
    }
    // Per dimension, the indices kept, in order.
    let mut kept: Vec<Vec<usize>> = data.dims.iter().map(|&d| (0..d).collect()).collect();
    for (((&start, &end), &axis), &step) in starts.iter().zip(&ends).zip(&axes).zip(&steps) {
        let d = data.dims[axis] as i64;
        let resolve = |v: i64| if v < 0 { v + d } else { v };
        kept[axis] = match step {
            0 => return Err("a step of 0".into()),
            s if s > 0 => {
                let (a, b) = (resolve(start).clamp(0, d), resolve(end).clamp(0, d));
                (a..b).step_by(s as usize).map(|i| i as usize).collect()
            }
            _ if d == 0 => Vec::new(),
            s => {
                let (a, b) = (resolve(start).clamp(0, d - 1), resolve(end).clamp(-1, d - 1));
                let mut v = Vec::new();
                let mut i = a;
                while i > b {
                    v.push(i as usize);
                    i += s;
                }
                v
            }
        };
    }
    let st = strides(&data.dims);
    let mut offsets = vec![0usize];
    for (k, s) in kept.iter().zip(&st) {
        offsets = offsets.iter().flat_map(|&o| k.iter().map(move |&i| o + i * s)).collect();
    }
    Ok(Folded::new(kept.iter().map(Vec::len).collect(), data.values.pick(offsets.into_iter())))
}

fn cast(data: &Folded, to: i64) -> Fold<Folded> {
    let values = match (to as i32, &data.values) {
        (data_type::INT64, Values::Int(v)) => Values::Int(v.clone()),
        (data_type::INT32, Values::Int(v)) => Values::Int(v.iter().map(|&x| x as i32 as i64).collect()),
        (data_type::INT64 | data_type::INT32, Values::Float(v)) => {
            if v.iter().any(|x| !x.is_finite()) {
                return Err("a non-finite value cast to an integer".into());
            }
            Values::Int(v.iter().map(|&x| x.trunc() as i64).collect())
        }
        (data_type::FLOAT | data_type::DOUBLE, Values::Int(v)) => Values::Float(v.iter().map(|&x| x as f32).collect()),
        (data_type::FLOAT | data_type::DOUBLE, Values::Float(v)) => Values::Float(v.clone()),
        (other, _) => return Err(format!("cast to data type {other}")),
    };
    Ok(Folded::new(data.dims.clone(), values))
}

fn constant_of_shape(shape: &Folded, value: Option<&Folded>, max: u64) -> Fold<Folded> {
    let dims = shape
        .ints("the shape")?
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| format!("negative dimension {d}")))
        .collect::<Fold<Vec<usize>>>()?;
    let n = dims.iter().try_fold(1u64, |n, &d| n.checked_mul(d as u64)).filter(|&n| n <= max);
    let n = n.ok_or_else(|| format!("a shape {dims:?} over {max} elements"))? as usize;
    let values = match value.map(|v| v.scalar("the value")).transpose()? {
        None => Values::Float(vec![0.0; n]),
        Some(Values::Int(v)) => Values::Int(vec![v[0]; n]),
        Some(Values::Float(v)) => Values::Float(vec![v[0]; n]),
    };
    Ok(Folded::new(dims, values))
}

fn range(start: &Folded, limit: &Folded, delta: &Folded, max: u64) -> Fold<Folded> {
    match (start.scalar("start")?, limit.scalar("limit")?, delta.scalar("delta")?) {
        (Values::Int(s), Values::Int(l), Values::Int(d)) => {
            let (s, l, d) = (s[0], l[0], d[0]);
            if d == 0 {
                return Err("a delta of 0".into());
            }
            let n = ((l as i128 - s as i128) as f64 / d as f64).ceil().max(0.0);
            if n > max as f64 {
                return Err(format!("{n} elements (at most {max})"));
            }
            Ok(Folded::new(vec![n as usize], Values::Int((0..n as i64).map(|i| s + i * d).collect())))
        }
        (Values::Float(s), Values::Float(l), Values::Float(d)) => {
            let (s, l, d) = (s[0], l[0], d[0]);
            let n = ((l - s) / d).ceil();
            if d == 0.0 || !n.is_finite() {
                return Err("a delta of 0 or a non-finite bound".into());
            }
            let n = n.max(0.0);
            if n > max as f32 {
                return Err(format!("{n} elements (at most {max})"));
            }
            Ok(Folded::new(vec![n as usize], Values::Float((0..n as usize).map(|i| s + i as f32 * d).collect())))
        }
        _ => Err("start, limit and delta of different types".into()),
    }
}

fn transpose(data: &Folded, perm: Option<Vec<i64>>) -> Fold<Folded> {
    let rank = data.dims.len();
    let perm: Vec<usize> = match perm {
        Some(p) => p.iter().map(|&a| axis_index(a, rank)).collect::<Fold<_>>()?,
        None => (0..rank).rev().collect(),
    };
    let mut sorted = perm.clone();
    sorted.sort_unstable();
    if sorted != (0..rank).collect::<Vec<_>>() {
        return Err(format!("{perm:?} is not a permutation of {rank} axes"));
    }
    let st = strides(&data.dims);
    let dims: Vec<usize> = perm.iter().map(|&a| data.dims[a]).collect();
    let mut offsets = vec![0usize];
    for &a in &perm {
        let stride = st[a];
        offsets = offsets.iter().flat_map(|&o| (0..data.dims[a]).map(move |i| o + i * stride)).collect();
    }
    Ok(Folded::new(dims, data.values.pick(offsets.into_iter())))
}

/// The same elements under new dims: `-1` stands for what is left, `0` (unless `allow_zero`)
/// for the input's size on that axis.
fn reshape(data: &Folded, shape: &[i64], allow_zero: bool) -> Fold<Folded> {
    let n = data.values.len();
    let mut dims = Vec::with_capacity(shape.len());
    let mut free = None;
    for (i, &d) in shape.iter().enumerate() {
        dims.push(match d {
            -1 if free.is_none() => {
                free = Some(i);
                1
            }
            0 if !allow_zero => *data.dims.get(i).ok_or_else(|| format!("no axis {i} to copy"))?,
            d if d >= 0 => d as usize,
            _ => return Err(format!("shape {shape:?}")),
        });
    }
    let known: usize = dims.iter().product();
    if let Some(i) = free {
        if known == 0 || !n.is_multiple_of(known) {
            return Err(format!("{n} elements do not fit {shape:?}"));
        }
        dims[i] = n / known;
    } else if known != n {
        return Err(format!("{n} elements do not fit {shape:?}"));
    }
    Ok(Folded::new(dims, data.values.clone()))
}

/// Element-wise arithmetic with NumPy broadcasting; integer division truncates, as ONNX's.
fn arithmetic(op: &str, a: &Folded, b: &Folded) -> Fold<Folded> {
    let rank = a.dims.len().max(b.dims.len());
    let padded = |d: &[usize]| [vec![1; rank - d.len()], d.to_vec()].concat();
    let (da, db) = (padded(&a.dims), padded(&b.dims));
    let dims = da
        .iter()
        .zip(&db)
        .map(|(&x, &y)| {
            if x == y || y == 1 {
                Ok(x)
            } else if x == 1 {
                Ok(y)
            } else {
                Err(format!("{da:?} and {db:?} do not broadcast"))
            }
        })
        .collect::<Fold<Vec<usize>>>()?;
    let (sa, sb) = (strides(&da), strides(&db));
    let n: usize = dims.iter().product();
    let index = |flat: usize, s: &[usize], d: &[usize]| {
        let mut rest = flat;
        let mut at = 0;
        for (axis, &size) in dims.iter().enumerate().rev() {
            let i = rest % size;
            rest /= size;
            if d[axis] != 1 {
                at += i * s[axis];
            }
        }
        at
    };
    let pairs = (0..n).map(|k| (index(k, &sa, &da), index(k, &sb, &db)));
    let values = match (&a.values, &b.values) {
        (Values::Int(x), Values::Int(y)) => Values::Int(
            pairs
                .map(|(i, j)| {
                    let (p, q) = (x[i], y[j]);
                    match op {
                        "Add" => p.checked_add(q),
                        "Sub" => p.checked_sub(q),
                        "Mul" => p.checked_mul(q),
                        _ => p.checked_div(q),
                    }
                    .ok_or_else(|| format!("{p} {op} {q} overflows or divides by zero"))
                })
                .collect::<Fold<_>>()?,
        ),
        (Values::Float(x), Values::Float(y)) => Values::Float(
            pairs
                .map(|(i, j)| match op {
                    "Add" => x[i] + y[j],
                    "Sub" => x[i] - y[j],
                    "Mul" => x[i] * y[j],
                    _ => x[i] / y[j],
                })
                .collect(),
        ),
        _ => return Err("integer and float operands".into()),
    };
    Ok(Folded::new(dims, values))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ints(dims: &[usize], v: &[i64]) -> Folded {
        Folded::new(dims.to_vec(), Values::Int(v.to_vec()))
    }

    #[test]
    fn the_view_idiom_folds_to_a_flatten_shape() {
        // Shape of a 1×16×4×4 activation, gather index 0, unsqueeze, concat with -1.
        let shape = ints(&[4], &[1, 16, 4, 4]);
        let n = gather(&shape, &ints(&[], &[0]), 0).unwrap();
        assert_eq!(n, ints(&[], &[1]));
        let n = unsqueeze(&n, &[0]).unwrap();
        assert_eq!(concat(&[&n, &ints(&[1], &[-1])], 0).unwrap(), ints(&[2], &[1, -1]));
    }

    #[test]
    fn slices_gathers_and_transposes_match_numpy() {
        let x = ints(&[2, 3], &[0, 1, 2, 3, 4, 5]);
        // x[:, ::-1][:, 1:]
        let s = slice(
            &x,
            &[
                None,
                Some(ints(&[1], &[-1])),
                Some(ints(&[1], &[i64::MIN])),
                Some(ints(&[1], &[1])),
                Some(ints(&[1], &[-1])),
            ],
        )
        .unwrap();
        assert_eq!(s, ints(&[2, 3], &[2, 1, 0, 5, 4, 3]));
        let s =
            slice(&x, &[None, Some(ints(&[1], &[1])), Some(ints(&[1], &[100])), Some(ints(&[1], &[1])), None]).unwrap();
        assert_eq!(s, ints(&[2, 2], &[1, 2, 4, 5]));
        assert_eq!(gather(&x, &ints(&[2], &[2, -3]), 1).unwrap(), ints(&[2, 2], &[2, 0, 5, 3]));
        assert_eq!(transpose(&x, None).unwrap(), ints(&[3, 2], &[0, 3, 1, 4, 2, 5]));
        assert_eq!(squeeze(&ints(&[1, 3, 1], &[7, 8, 9]), None).unwrap(), ints(&[3], &[7, 8, 9]));
        assert_eq!(reshape(&x, &[-1, 2], false).unwrap(), ints(&[3, 2], &[0, 1, 2, 3, 4, 5]));
        assert_eq!(reshape(&x, &[0, -1], false).unwrap(), ints(&[2, 3], &[0, 1, 2, 3, 4, 5]));
        assert!(reshape(&x, &[4, -1], false).is_err());
    }

    #[test]
    fn arithmetic_broadcasts_and_refuses_what_it_cannot_compute() {
        let x = ints(&[2, 2], &[1, 2, 3, 4]);
        assert_eq!(arithmetic("Mul", &x, &ints(&[2], &[10, 100])).unwrap(), ints(&[2, 2], &[10, 200, 30, 400]));
        assert_eq!(arithmetic("Div", &ints(&[1], &[-7]), &ints(&[1], &[2])).unwrap(), ints(&[1], &[-3]));
        assert!(arithmetic("Div", &x, &ints(&[1], &[0])).is_err());
        assert!(arithmetic("Add", &x, &ints(&[3], &[1, 2, 3])).is_err());
        assert!(arithmetic("Add", &x, &Folded::new(vec![1], Values::Float(vec![1.0]))).is_err());
        assert!(constant_of_shape(&ints(&[2], &[1 << 20, 1 << 20]), None, 1 << 26).is_err());
        assert!(range(&ints(&[], &[0]), &ints(&[], &[1 << 40]), &ints(&[], &[1]), 1 << 26).is_err());
        assert_eq!(range(&ints(&[], &[5]), &ints(&[], &[0]), &ints(&[], &[-2]), 100).unwrap(), ints(&[3], &[5, 3, 1]));
    }
}
