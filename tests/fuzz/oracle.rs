//! What a mutation does to a request, and the answer the node owes it: the status
//! codes it may give (from the order of checks in docs/ARCHITECTURE.md §2 and the
//! explain parameters of docs/hooks.md), and what an OK answer must hold.

use bytes::Bytes;
use tonic::Code;
use troupe_client::troupe_proto::DataType;
use troupe_client::troupe_proto::explain::param;
use troupe_client::troupe_proto::inference::{
    self as pb, InferParameter, InferTensorContents,
    infer_parameter::ParameterChoice,
    model_infer_request::{InferInputTensor, InferRequestedOutputTensor},
};

use crate::cases::{
    Base, BytesFault, Field, Knob, MAX_BATCH, MAX_TENSOR_BYTES, MODELS, Model, Mutation, f32_bytes,
    string,
};

/// Every status the node may answer a call with (OK included).
pub const ALLOWED: &[Code] = &[
    Code::Ok,
    Code::InvalidArgument,
    Code::NotFound,
    Code::FailedPrecondition,
    Code::ResourceExhausted,
    Code::Unavailable,
    Code::DeadlineExceeded,
    Code::Unauthenticated,
    Code::PermissionDenied,
];

const INVALID: &[Code] = &[Code::InvalidArgument];
const OK: &[Code] = &[Code::Ok];

/// Most model evaluations one explanation may take (node/src/hooks/explain/mod.rs).
const MAX_EVALUATIONS: u64 = 16_384;

fn raw_of(base: &Base) -> Bytes {
    Base {
        typed: false,
        ..base.clone()
    }
    .request()
    .raw_input_contents
    .remove(0)
}

fn contents_of(base: &Base) -> InferTensorContents {
    Base {
        typed: true,
        ..base.clone()
    }
    .request()
    .inputs
    .remove(0)
    .contents
    .unwrap_or_default()
}

/// Sends the first input's data raw.
fn make_raw(req: &mut pb::ModelInferRequest, base: &Base) {
    if let Some(i) = req.inputs.first_mut() {
        i.contents = None;
    }
    if req.raw_input_contents.is_empty() {
        req.raw_input_contents = vec![raw_of(base); req.inputs.len().max(1)];
    }
}

/// Sends the first input's data typed.
fn make_typed(req: &mut pb::ModelInferRequest, base: &Base) {
    req.raw_input_contents.clear();
    if let Some(i) = req.inputs.first_mut()
        && i.contents.is_none()
    {
        i.contents = Some(contents_of(base));
    }
}

/// The first input's typed contents (made typed first).
fn contents<'a>(
    req: &'a mut pb::ModelInferRequest,
    base: &Base,
) -> Option<&'a mut InferTensorContents> {
    make_typed(req, base);
    req.inputs.first_mut().and_then(|i| i.contents.as_mut())
}

fn checked_numel(shape: &[i64]) -> Option<u64> {
    shape.iter().try_fold(1u64, |acc, &d| {
        u64::try_from(d).ok().and_then(|d| acc.checked_mul(d))
    })
}

/// Data that fits `shape` for the base's model, when it is small enough to send.
fn fitted(base: &Base, shape: &[i64]) -> Option<(Bytes, InferTensorContents)> {
    let n = checked_numel(shape)?;
    if n > 1 << 18 {
        return None;
    }
    let n = n as usize;
    if base.model().text {
        let texts: Vec<String> = (0..n).map(|i| format!("word{}", i % 7)).collect();
        let raw =
            troupe_client::troupe_proto::bytes::encode_bytes(texts.iter().map(|t| t.as_bytes()));
        let typed = InferTensorContents {
            bytes_contents: texts.iter().map(|t| t.as_bytes().to_vec()).collect(),
            ..Default::default()
        };
        Some((raw, typed))
    } else {
        let v: Vec<f32> = (0..n).map(|i| (i % 5) as f32 * 0.25 - 0.5).collect();
        let typed = InferTensorContents {
            fp32_contents: v.clone(),
            ..Default::default()
        };
        Some((Bytes::from(f32_bytes(&v)), typed))
    }
}

fn bad_bytes(base: &Base, f: &BytesFault) -> (Bytes, Vec<Vec<u8>>) {
    let mut rows: Vec<Vec<u8>> = if base.texts.is_empty() {
        vec![b"a".to_vec(), b"b".to_vec()]
    } else {
        base.texts.iter().map(|t| t.as_bytes().to_vec()).collect()
    };
    match f {
        BytesFault::Fewer => {
            rows.pop();
        }
        BytesFault::More(k) => rows.extend((0..*k).map(|_| b"extra".to_vec())),
        BytesFault::NotUtf8(b) => rows[0] = b.clone(),
        BytesFault::Empty => rows[0] = Vec::new(),
        BytesFault::TruncatedPrefix(_) | BytesFault::Overlong(_) => {}
    }
    let mut raw =
        troupe_client::troupe_proto::bytes::encode_bytes(rows.iter().map(|r| r.as_slice()))
            .to_vec();
    match f {
        BytesFault::TruncatedPrefix(k) => raw.extend(std::iter::repeat_n(7u8, usize::from(*k))),
        BytesFault::Overlong(n) => {
            // The last element's prefix claims n more bytes than it has.
            let last = rows.last().map_or(0, Vec::len);
            let at = raw.len() - last - 4;
            let claim = (last as u32).saturating_add(*n);
            raw[at..at + 4].copy_from_slice(&claim.to_le_bytes());
        }
        _ => {}
    }
    (Bytes::from(raw), rows)
}

/// Applies a mutation to `req` (a base's request, perhaps already mutated). Never
/// panics, whatever state earlier mutations left.
pub fn apply(m: &Mutation, req: &mut pb::ModelInferRequest, base: &Base) {
    let model = base.model();
    match m {
        Mutation::ModelName(s) => req.model_name = s.clone(),
        Mutation::Version(s) => req.model_version = s.clone(),
        Mutation::Shape(s) => {
            if let Some(i) = req.inputs.first_mut() {
                i.shape = s.clone();
            }
        }
        Mutation::ShapeFitted(s) => {
            let fit = fitted(base, s);
            let typed = req.raw_input_contents.is_empty();
            if let Some(i) = req.inputs.first_mut() {
                i.shape = s.clone();
                if let Some((raw, contents)) = fit {
                    if typed {
                        i.contents = Some(contents);
                    } else if let Some(r) = req.raw_input_contents.first_mut() {
                        *r = raw;
                    }
                }
            }
        }
        Mutation::Datatype(d) => {
            if let Some(i) = req.inputs.first_mut() {
                i.datatype = d.clone();
            }
        }
        Mutation::RawLen(d) => {
            make_raw(req, base);
            let r = &mut req.raw_input_contents[0];
            let mut v = r.to_vec();
            if *d > 0 || v.is_empty() {
                v.extend(std::iter::repeat_n(0xabu8, d.unsigned_abs() as usize));
            } else {
                v.truncate(v.len().saturating_sub(d.unsigned_abs() as usize));
            }
            *r = Bytes::from(v);
        }
        Mutation::TypedField(f) => {
            if let Some(c) = contents(req, base) {
                let floats: Vec<f32> = std::mem::take(&mut c.fp32_contents);
                let texts: Vec<Vec<u8>> = std::mem::take(&mut c.bytes_contents);
                let xs: Vec<f64> = if model.text {
                    texts.iter().map(|t| t.len() as f64).collect()
                } else {
                    floats.iter().map(|&x| f64::from(x)).collect()
                };
                match f {
                    Field::Bool => c.bool_contents = xs.iter().map(|&x| x > 0.0).collect(),
                    Field::Int => c.int_contents = xs.iter().map(|&x| x as i32).collect(),
                    Field::Int64 => c.int64_contents = xs.iter().map(|&x| x as i64).collect(),
                    Field::Uint => c.uint_contents = xs.iter().map(|&x| x as u32).collect(),
                    Field::Uint64 => c.uint64_contents = xs.iter().map(|&x| x as u64).collect(),
                    Field::Fp64 => c.fp64_contents = xs.clone(),
                    Field::Fp32 if model.text => {
                        c.fp32_contents = xs.iter().map(|&x| x as f32).collect()
                    }
                    Field::Fp32 => c.fp32_contents = floats,
                    Field::Bytes if model.text => c.bytes_contents = texts,
                    Field::Bytes => {
                        c.bytes_contents = floats.iter().map(|x| x.to_le_bytes().to_vec()).collect()
                    }
                }
            }
        }
        Mutation::TypedCount(d) => {
            if let Some(c) = contents(req, base) {
                let n = d.unsigned_abs() as usize;
                if model.text {
                    let v = &mut c.bytes_contents;
                    if *d > 0 {
                        v.extend(std::iter::repeat_n(b"x".to_vec(), n));
                    } else {
                        v.truncate(v.len().saturating_sub(n));
                    }
                } else {
                    let v = &mut c.fp32_contents;
                    if *d > 0 {
                        v.extend(std::iter::repeat_n(1.0, n));
                    } else {
                        v.truncate(v.len().saturating_sub(n));
                    }
                }
            }
        }
        Mutation::BothRawAndTyped => {
            if req.raw_input_contents.is_empty() {
                req.raw_input_contents = vec![raw_of(base); req.inputs.len().max(1)];
            }
            if let Some(i) = req.inputs.first_mut() {
                i.contents = Some(contents_of(base));
            }
        }
        Mutation::NoData => {
            req.raw_input_contents.clear();
            for i in &mut req.inputs {
                i.contents = None;
            }
        }
        Mutation::ExtraRawBuffers(n) => {
            for _ in 0..*n {
                req.raw_input_contents
                    .push(Bytes::from_static(&[0, 0, 0, 0]));
            }
        }
        Mutation::Duplicate => {
            if let Some(i) = req.inputs.first().cloned() {
                req.inputs.push(i);
                if let Some(r) = req.raw_input_contents.first().cloned() {
                    req.raw_input_contents.push(r);
                }
            }
        }
        Mutation::NoInputs => {
            req.inputs.clear();
            req.raw_input_contents.clear();
        }
        Mutation::UnknownInputs(names) => {
            let raw = !req.raw_input_contents.is_empty();
            for n in names {
                let name = if n == model.input() {
                    format!("{n}_")
                } else {
                    n.clone()
                };
                req.inputs.push(InferInputTensor {
                    name,
                    datatype: "FP32".into(),
                    shape: vec![1, 1],
                    contents: (!raw).then(|| InferTensorContents {
                        fp32_contents: vec![0.0],
                        ..Default::default()
                    }),
                    ..Default::default()
                });
                if raw {
                    req.raw_input_contents
                        .push(Bytes::from_static(&[0, 0, 0, 0]));
                }
            }
        }
        Mutation::UnknownOutput(name) => req.outputs.push(InferRequestedOutputTensor {
            name: name.clone(),
            ..Default::default()
        }),
        Mutation::BadBytes(f) => {
            let (raw, rows) = bad_bytes(base, f);
            let prefix_fault =
                matches!(f, BytesFault::TruncatedPrefix(_) | BytesFault::Overlong(_));
            if req.raw_input_contents.is_empty() && !prefix_fault {
                if let Some(i) = req.inputs.first_mut() {
                    i.contents = Some(InferTensorContents {
                        bytes_contents: rows,
                        ..Default::default()
                    });
                }
            } else {
                make_raw(req, base);
                req.raw_input_contents[0] = raw;
            }
        }
        Mutation::Fault => {
            req.parameters
                .insert("troupe.fault".into(), string("crash"));
        }
        Mutation::Timeout(p) => {
            req.parameters.insert("timeout".into(), p.clone());
        }
        // Metadata: set by the sender (see `grpc_timeouts`).
        Mutation::GrpcTimeout(_) => {}
        Mutation::Junk(ps) => req.parameters.extend(ps.iter().cloned()),
        Mutation::Method(p) => {
            req.parameters.insert(param::METHOD.into(), p.clone());
        }
        Mutation::Knob(k, p) => {
            req.parameters.insert(k.name().into(), p.clone());
        }
    }
}

/// The node's reading of a numeric parameter (`param_num` in hooks/explain/params.rs).
fn number(p: &InferParameter) -> Option<f64> {
    match &p.parameter_choice {
        Some(ParameterChoice::Int64Param(v)) => Some(*v as f64),
        Some(ParameterChoice::Uint64Param(v)) => Some(*v as f64),
        Some(ParameterChoice::DoubleParam(v)) => Some(*v),
        Some(ParameterChoice::StringParam(s)) => s.trim().parse().ok(),
        _ => None,
    }
}

/// The method a name stands for (aliases as docs/hooks.md lists them).
fn method(s: &str) -> Option<&'static str> {
    Some(match s.to_ascii_lowercase().replace('-', "_").as_str() {
        "saliency" | "gradient" => "saliency",
        "integrated_gradients" | "ig" => "integrated_gradients",
        "occlusion" => "occlusion",
        "shapley" | "shapley_sampling" => "shapley",
        _ => return None,
    })
}

/// What a valid explanation with method `m` on `model` gets: FAILED_PRECONDITION when
/// the model cannot do it.
fn method_verdict(model: &Model, m: &str) -> &'static [Code] {
    let gradients = matches!(m, "saliency" | "integrated_gradients");
    if (model.text && m != "occlusion")
        || (gradients && model.backend == crate::cases::Backend::Onnx)
    {
        &[Code::FailedPrecondition]
    } else {
        OK
    }
}

fn count_ok(v: f64, max: f64) -> bool {
    v >= 1.0 && v <= max && v.fract() == 0.0
}

/// Whether a Shapley explanation of `base` with these counts stays within the budget.
fn shapley_fits(base: &Base, samples: u64, window: u64) -> bool {
    let groups = (base.model().features as u64).div_ceil(window.max(1));
    samples.saturating_mul(groups + 1) <= MAX_EVALUATIONS
}

fn knob_verdict(base: &Base, k: Knob, p: &InferParameter) -> &'static [Code] {
    let model = base.model();
    let e = base.explain.as_ref().expect("explained base");
    let method = e.method;
    if k == Knob::Output {
        return match &p.parameter_choice {
            Some(ParameterChoice::StringParam(s)) if !s.is_empty() && s != model.output() => {
                INVALID
            }
            _ => OK,
        };
    }
    let Some(v) = number(p) else {
        return INVALID;
    };
    match k {
        Knob::Steps => {
            if count_ok(v, 1024.0) {
                OK
            } else {
                INVALID
            }
        }
        Knob::Window | Knob::Samples => {
            let max = if k == Knob::Window {
                f64::from(1u32 << 24)
            } else {
                1024.0
            };
            if !count_ok(v, max) {
                return INVALID;
            }
            let (samples, window) = if k == Knob::Window {
                (e.samples.unwrap_or(16).into(), v as u64)
            } else {
                (v as u64, e.window.unwrap_or(1).into())
            };
            if method == "shapley" && !model.text && !shapley_fits(base, samples, window) {
                INVALID
            } else {
                OK
            }
        }
        Knob::Target => {
            if v < 0.0 {
                OK
            } else if v.fract() != 0.0 || v as usize >= model.outputs {
                INVALID
            } else {
                OK
            }
        }
        Knob::Baseline => {
            if (v as f32).is_finite() {
                OK
            } else {
                INVALID
            }
        }
        Knob::Seed => OK,
        Knob::Output => unreachable!(),
    }
}

/// What the node must answer a shape the data holds `data_numel` elements for.
fn shape_verdict(model: &Model, shape: &[i64], data_numel: Option<u64>) -> &'static [Code] {
    if shape.iter().any(|&d| d < 0) {
        return INVALID;
    }
    let Some(n) = checked_numel(shape) else {
        return INVALID;
    };
    if !model.text {
        match n.checked_mul(4) {
            None => return INVALID,
            Some(b) if b > MAX_TENSOR_BYTES => return &[Code::ResourceExhausted],
            _ => {}
        }
    }
    if data_numel != Some(n) {
        return INVALID;
    }
    let fits = shape.len() == 2
        && (1..=MAX_BATCH as i64).contains(&shape[0])
        && shape[1] == model.features as i64;
    if fits { OK } else { INVALID }
}

/// The codes a base with one mutation may get.
pub fn expect(m: &Mutation, base: &Base) -> &'static [Code] {
    let model = base.model();
    match m {
        Mutation::ModelName(s) if s == model.name => OK,
        Mutation::ModelName(s) if MODELS.iter().any(|m| m.name == s) => ALLOWED,
        Mutation::ModelName(_) => &[Code::NotFound],
        Mutation::Version(s) if s.is_empty() || s.parse::<u64>() == Ok(1) => OK,
        Mutation::Version(_) => &[Code::NotFound],
        Mutation::Shape(s) => shape_verdict(model, s, Some((base.rows * model.features) as u64)),
        Mutation::ShapeFitted(s) => {
            let n = fitted(base, s).map(|_| checked_numel(s).unwrap_or(0));
            shape_verdict(model, s, n.or(Some((base.rows * model.features) as u64)))
        }
        Mutation::Datatype(d) => {
            let want = if model.text {
                DataType::Bytes
            } else {
                DataType::F32
            };
            if d.parse::<DataType>().ok() == Some(want) {
                OK
            } else {
                INVALID
            }
        }
        Mutation::TypedField(f) => match (f, model.text) {
            (Field::Fp32, false) | (Field::Bytes, true) => OK,
            _ => INVALID,
        },
        Mutation::RawLen(_)
        | Mutation::TypedCount(_)
        | Mutation::BothRawAndTyped
        | Mutation::NoData
        | Mutation::ExtraRawBuffers(_)
        | Mutation::Duplicate
        | Mutation::NoInputs
        | Mutation::UnknownInputs(_)
        | Mutation::BadBytes(_) => INVALID,
        Mutation::UnknownOutput(n) if n == model.output() => OK,
        Mutation::UnknownOutput(_) => INVALID,
        Mutation::Fault => &[Code::FailedPrecondition],
        Mutation::Timeout(p) => match p.parameter_choice {
            Some(ParameterChoice::Int64Param(us)) if (1..5_000_000).contains(&us) => {
                &[Code::Ok, Code::DeadlineExceeded]
            }
            Some(ParameterChoice::Uint64Param(us)) if (1..5_000_000).contains(&us) => {
                &[Code::Ok, Code::DeadlineExceeded]
            }
            _ => OK,
        },
        Mutation::GrpcTimeout(v) => {
            match troupe_client::troupe_proto::parse_grpc_timeout(v.trim()) {
                Some(d) if d < std::time::Duration::from_secs(5) => {
                    &[Code::Ok, Code::DeadlineExceeded]
                }
                _ => OK,
            }
        }
        Mutation::Junk(_) => OK,
        Mutation::Method(p) => match &p.parameter_choice {
            Some(ParameterChoice::StringParam(s)) => match method(s) {
                None => INVALID,
                Some(m) => {
                    let e = base.explain.as_ref().expect("explained base");
                    let fits = m != "shapley"
                        || model.text
                        || shapley_fits(
                            base,
                            e.samples.unwrap_or(16).into(),
                            e.window.unwrap_or(1).into(),
                        );
                    if fits {
                        method_verdict(model, m)
                    } else {
                        INVALID
                    }
                }
            },
            _ => INVALID,
        },
        Mutation::Knob(k, p) => knob_verdict(base, *k, p),
    }
}

/// Why an OK answer is malformed: one output entry per raw buffer, each buffer as long as
/// its shape and data type say.
pub fn well_formed(resp: &pb::ModelInferResponse) -> Result<(), String> {
    if resp.outputs.len() != resp.raw_output_contents.len() {
        return Err(format!(
            "{} outputs but {} raw buffers",
            resp.outputs.len(),
            resp.raw_output_contents.len()
        ));
    }
    for (o, raw) in resp.outputs.iter().zip(&resp.raw_output_contents) {
        let dtype: DataType = o
            .datatype
            .parse()
            .map_err(|_| format!("output '{}' has datatype '{}'", o.name, o.datatype))?;
        let n = checked_numel(&o.shape)
            .ok_or_else(|| format!("output '{}' has shape {:?}", o.name, o.shape))?;
        match dtype.size() {
            Some(s) if raw.len() as u64 != n * s as u64 => {
                return Err(format!(
                    "output '{}' {:?} {} has {} bytes",
                    o.name,
                    o.shape,
                    o.datatype,
                    raw.len()
                ));
            }
            None => troupe_client::troupe_proto::bytes::check_bytes_layout(raw, n as usize)
                .map_err(|e| format!("output '{}': {e}", o.name))?,
            _ => {}
        }
    }
    Ok(())
}

fn output<'a>(
    resp: &'a pb::ModelInferResponse,
    name: &str,
) -> Result<(&'a pb::model_infer_response::InferOutputTensor, &'a Bytes), String> {
    resp.outputs
        .iter()
        .zip(&resp.raw_output_contents)
        .find(|(o, _)| o.name == name)
        .ok_or_else(|| {
            let names: Vec<&str> = resp.outputs.iter().map(|o| o.name.as_str()).collect();
            format!("no output '{name}' in {names:?}")
        })
}

fn floats(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// The request's FP32 input values (raw or typed).
fn input_values(req: &pb::ModelInferRequest) -> Vec<f32> {
    match req.raw_input_contents.first() {
        Some(r) => floats(r),
        None => req
            .inputs
            .first()
            .and_then(|i| i.contents.as_ref())
            .map(|c| c.fp32_contents.clone())
            .unwrap_or_default(),
    }
}

/// The linear models' weights and bias (`models/reference/linear.json`).
pub struct Linear {
    pub w: Vec<f32>,
    pub b: f32,
}

/// What an OK answer to a request the oracle called valid must hold: the model's output
/// `[rows, outputs]` (x · w + b for linear models), and for explained calls the
/// attributions, targets and values.
pub fn check_answer(
    model: &Model,
    req: &pb::ModelInferRequest,
    resp: &pb::ModelInferResponse,
    linear: &Linear,
) -> Result<(), String> {
    well_formed(resp)?;
    let shape = &req.inputs[0].shape;
    let rows = shape[0] as usize;
    let (o, raw) = output(resp, model.output())?;
    if o.datatype != "FP32" || o.shape != [rows as i64, model.outputs as i64] {
        return Err(format!(
            "output {} {:?} for {rows} rows",
            o.datatype, o.shape
        ));
    }
    if resp.id != req.id {
        return Err(format!("id {:?} echoed as {:?}", req.id, resp.id));
    }
    if model.linear {
        let x = input_values(req);
        let y = floats(raw);
        for r in 0..rows {
            let xs = &x[r * model.features..(r + 1) * model.features];
            if xs.iter().any(|v| !v.is_finite()) {
                continue;
            }
            let terms: Vec<f64> = xs
                .iter()
                .zip(&linear.w)
                .map(|(a, b)| f64::from(*a) * f64::from(*b))
                .collect();
            let want = terms.iter().sum::<f64>() + f64::from(linear.b);
            let scale = terms.iter().map(|t| t.abs()).sum::<f64>() + 1.0;
            if scale > 1e37 {
                // The model sums in f32, which may overflow where f64 does not.
                continue;
            }
            if (f64::from(y[r]) - want).abs() > 1e-5 * scale {
                return Err(format!("row {r}: {} where x · w + b = {want}", y[r]));
            }
        }
    }
    let Some(m) = req.parameters.get(param::METHOD) else {
        return Ok(());
    };
    let (t, traw) = output(resp, "attribution.target")?;
    let (v, _) = output(resp, "attribution.value")?;
    if t.shape != [rows as i64] || v.shape != [rows as i64] || t.datatype != "INT64" {
        return Err(format!(
            "attribution.target {} {:?}, attribution.value {:?}",
            t.datatype, t.shape, v.shape
        ));
    }
    let targets: Vec<i64> = traw
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")))
        .collect();
    let asked = req
        .parameters
        .get(param::TARGET)
        .and_then(number)
        .filter(|v| *v >= 0.0);
    for &t in &targets {
        if t < 0 || t as usize >= model.outputs || asked.is_some_and(|a| a as i64 != t) {
            return Err(format!("targets {targets:?} (asked {asked:?})"));
        }
    }
    if model.text {
        let (a, _) = output(resp, "attribution.text")?;
        let (n, _) = output(resp, "attribution.tokens")?;
        if a.shape.first() != Some(&(rows as i64)) || a.shape != n.shape {
            return Err(format!(
                "attribution.text {:?}, tokens {:?}",
                a.shape, n.shape
            ));
        }
    } else {
        let (a, _) = output(resp, "attribution.input")?;
        if &a.shape != shape || a.datatype != "FP32" {
            return Err(format!(
                "attribution.input {} {:?} for input {shape:?} ({m:?})",
                a.datatype, a.shape
            ));
        }
    }
    Ok(())
}
