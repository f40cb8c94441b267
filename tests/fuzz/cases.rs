//! What the fuzz sends: the models of its node, valid requests for them, and mutations of
//! those requests (one at a time, with a known answer, or piled up), as proptest
//! strategies; raw protobuf bytes and hand-made gRPC frames.

use std::collections::HashMap;

use bytes::Bytes;
use proptest::prelude::*;
use troupe_client::troupe_proto::inference::{
    self as pb, InferParameter, InferTensorContents,
    infer_parameter::ParameterChoice,
    model_infer_request::{InferInputTensor, InferRequestedOutputTensor},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Onnx,
    Candle,
    Torch,
}

/// A model of the fuzzed node: one client input (FP32 `[-1, features]`, or BYTES
/// `[-1, 1]` text) and one output of `outputs` values per row.
#[derive(Debug)]
pub struct Model {
    pub name: &'static str,
    pub backend: Backend,
    pub features: usize,
    pub outputs: usize,
    pub text: bool,
    /// Output = x · w + b with `models/reference/linear.json`'s w and b.
    pub linear: bool,
}

impl Model {
    pub fn input(&self) -> &'static str {
        if self.text { "text" } else { "input" }
    }
    pub fn output(&self) -> &'static str {
        if self.text { "embedding" } else { "output" }
    }
    pub fn datatype(&self) -> &'static str {
        if self.text { "BYTES" } else { "FP32" }
    }
    /// The explanation methods this model serves.
    pub fn methods(&self) -> &'static [&'static str] {
        match (self.text, self.backend) {
            (true, _) => &["occlusion"],
            (false, Backend::Onnx) => &["occlusion", "shapley"],
            _ => &["saliency", "integrated_gradients", "occlusion", "shapley"],
        }
    }
}

const fn model(
    name: &'static str,
    backend: Backend,
    features: usize,
    outputs: usize,
    text: bool,
    linear: bool,
) -> Model {
    Model {
        name,
        backend,
        features,
        outputs,
        text,
        linear,
    }
}

/// The node's models (copies of `models/repository` and `models/testing`).
pub const MODELS: &[Model] = &[
    model("mlp_onnx", Backend::Onnx, 16, 4, false, false),
    model("mlp_candle", Backend::Candle, 16, 4, false, false),
    model("linear_onnx", Backend::Onnx, 8, 1, false, true),
    model("linear_candle", Backend::Candle, 8, 1, false, true),
    model("linear_torch", Backend::Torch, 8, 1, false, true),
    model("bag_of_words", Backend::Onnx, 1, 2, true, false),
    // Copies with [dynamic_batching] and two instances (made by the test's setup).
    model("mlp_batched", Backend::Onnx, 16, 4, false, false),
    model("linear_batched", Backend::Candle, 8, 1, false, true),
];

/// The batched copies: (name, the model copied).
pub const BATCHED: &[(&str, &str)] = &[
    ("mlp_batched", "mlp_onnx"),
    ("linear_batched", "linear_candle"),
];

/// Every model's `max_batch_size`.
pub const MAX_BATCH: usize = 64;
/// The node's `--max-tensor-bytes` (its default).
pub const MAX_TENSOR_BYTES: u64 = 64 << 20;

/// A valid explanation request for the base's model.
#[derive(Debug, Clone)]
pub struct Explain {
    pub method: &'static str,
    pub steps: Option<u32>,
    pub window: Option<u32>,
    pub samples: Option<u32>,
    pub target: Option<usize>,
    pub baseline: Option<f64>,
    pub seed: Option<u64>,
}

/// A valid request: the node must answer it OK, with the right outputs.
#[derive(Debug, Clone)]
pub struct Base {
    pub model: usize,
    pub rows: usize,
    /// FP32 models: rows × features values; text models: one text per row.
    pub values: Vec<f32>,
    pub texts: Vec<String>,
    /// Typed `contents` instead of `raw_input_contents`.
    pub typed: bool,
    pub version: &'static str,
    pub request_output: bool,
    /// Parameters the node ignores.
    pub junk: Vec<(String, InferParameter)>,
    pub explain: Option<Explain>,
}

impl Base {
    pub fn model(&self) -> &'static Model {
        &MODELS[self.model]
    }

    pub fn request(&self) -> pb::ModelInferRequest {
        let m = self.model();
        let shape = vec![self.rows as i64, m.features as i64];
        let (raw, contents) = match (m.text, self.typed) {
            (false, false) => (vec![Bytes::from(f32_bytes(&self.values))], None),
            (false, true) => (
                vec![],
                Some(InferTensorContents {
                    fp32_contents: self.values.clone(),
                    ..Default::default()
                }),
            ),
            (true, false) => (
                vec![troupe_client::troupe_proto::bytes::encode_bytes(
                    self.texts.iter().map(|t| t.as_bytes()),
                )],
                None,
            ),
            (true, true) => (
                vec![],
                Some(InferTensorContents {
                    bytes_contents: self.texts.iter().map(|t| t.as_bytes().to_vec()).collect(),
                    ..Default::default()
                }),
            ),
        };
        let mut parameters: HashMap<String, InferParameter> = self.junk.iter().cloned().collect();
        if let Some(e) = &self.explain {
            use troupe_client::troupe_proto::explain::param;
            parameters.insert(param::METHOD.into(), string(e.method));
            let ints = [
                (param::STEPS, e.steps.map(u64::from)),
                (param::WINDOW, e.window.map(u64::from)),
                (param::SAMPLES, e.samples.map(u64::from)),
                (param::TARGET, e.target.map(|t| t as u64)),
                (param::SEED, e.seed),
            ];
            for (name, v) in ints {
                if let Some(v) = v {
                    parameters.insert(name.into(), int(v as i64));
                }
            }
            if let Some(b) = e.baseline {
                parameters.insert(param::BASELINE.into(), double(b));
            }
        }
        pb::ModelInferRequest {
            model_name: m.name.into(),
            model_version: self.version.into(),
            id: format!("fuzz-{}", self.rows),
            parameters,
            inputs: vec![InferInputTensor {
                name: m.input().into(),
                datatype: m.datatype().into(),
                shape,
                parameters: HashMap::new(),
                contents,
            }],
            outputs: if self.request_output {
                vec![InferRequestedOutputTensor {
                    name: m.output().into(),
                    parameters: HashMap::new(),
                }]
            } else {
                vec![]
            },
            raw_input_contents: raw,
        }
    }
}

/// The request's protobuf encoding, its parameters in name order (prost writes a map in
/// the HashMap's order, which changes from one map to the next): concatenated messages
/// merge, so each parameter goes in a message of its own.
pub fn encode(req: &pb::ModelInferRequest) -> Vec<u8> {
    use prost::Message;
    let mut head = req.clone();
    let params = std::mem::take(&mut head.parameters);
    let mut out = head.encode_to_vec();
    let mut names: Vec<&String> = params.keys().collect();
    names.sort();
    for n in names {
        let one = pb::ModelInferRequest {
            parameters: HashMap::from([(n.clone(), params[n].clone())]),
            ..Default::default()
        };
        out.extend(one.encode_to_vec());
    }
    out
}

/// Little-endian FP32 bytes, as raw_input_contents carries them.
pub fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

pub fn string(s: &str) -> InferParameter {
    InferParameter {
        parameter_choice: Some(ParameterChoice::StringParam(s.into())),
    }
}
pub fn int(v: i64) -> InferParameter {
    InferParameter {
        parameter_choice: Some(ParameterChoice::Int64Param(v)),
    }
}
pub fn double(v: f64) -> InferParameter {
    InferParameter {
        parameter_choice: Some(ParameterChoice::DoubleParam(v)),
    }
}

/// Which explain option a mutation sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Knob {
    Steps,
    Window,
    Samples,
    Target,
    Baseline,
    Seed,
    Output,
}

impl Knob {
    pub fn name(self) -> &'static str {
        use troupe_client::troupe_proto::explain::param;
        match self {
            Knob::Steps => param::STEPS,
            Knob::Window => param::WINDOW,
            Knob::Samples => param::SAMPLES,
            Knob::Target => param::TARGET,
            Knob::Baseline => param::BASELINE,
            Knob::Seed => param::SEED,
            Knob::Output => param::OUTPUT,
        }
    }
}

/// A typed contents field, for data sent in the wrong one.
#[derive(Debug, Clone, Copy)]
pub enum Field {
    Bool,
    Int,
    Int64,
    Uint,
    Uint64,
    Fp32,
    Fp64,
    Bytes,
}

/// A broken BYTES buffer (text models).
#[derive(Debug, Clone)]
pub enum BytesFault {
    /// The last length prefix cut short (1–3 bytes of it).
    TruncatedPrefix(u8),
    /// An element claims more bytes than the buffer holds.
    Overlong(u32),
    /// One element fewer than the shape holds.
    Fewer,
    /// Extra elements after the shape's.
    More(u8),
    /// A row that is not UTF-8.
    NotUtf8(Vec<u8>),
    /// A row that is the empty string.
    Empty,
}

/// One change to a valid request.
#[derive(Debug, Clone)]
pub enum Mutation {
    ModelName(String),
    Version(String),
    /// The shape replaced, the data kept.
    Shape(Vec<i64>),
    /// The shape replaced and the data made to fit it (when it is small).
    ShapeFitted(Vec<i64>),
    Datatype(String),
    /// Raw data made longer or shorter by this many bytes (never 0).
    RawLen(i64),
    /// Typed data moved to the wrong field.
    TypedField(Field),
    /// Typed values added (> 0) or removed (< 0).
    TypedCount(i64),
    BothRawAndTyped,
    NoData,
    ExtraRawBuffers(u8),
    Duplicate,
    NoInputs,
    UnknownInputs(Vec<String>),
    UnknownOutput(String),
    BadBytes(BytesFault),
    Fault,
    Timeout(InferParameter),
    /// The call's `grpc-timeout` header (metadata, not the message).
    GrpcTimeout(String),
    Junk(Vec<(String, InferParameter)>),
    /// `explain` = this parameter (any type).
    Method(InferParameter),
    /// An explain option set to this parameter.
    Knob(Knob, InferParameter),
}

/// Everything the fuzz sends.
#[derive(Debug, Clone)]
pub enum Case {
    Valid(Base),
    One(Base, Mutation),
    Chaos(Base, Vec<Mutation>),
    /// Bytes that are mostly not a ModelInferRequest.
    RandomBytes(Vec<u8>),
    /// A valid request's encoding with bytes flipped, cut, inserted or dropped.
    EditedBytes(Base, Vec<Edit>),
    /// A hand-made gRPC frame around a valid request's encoding.
    Frame(Base, Frame),
    /// Valid and mutated requests sent at once (batched together where the model
    /// batches), each judged as if sent alone.
    Burst(Vec<Case>),
}

#[derive(Debug, Clone)]
pub enum Edit {
    Flip(usize, u8),
    Set(usize, u8),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    Truncate(usize),
    Append(Vec<u8>),
    /// A varint replaced by a 10-byte one of this value.
    BigVarint(usize, u64),
}

impl Edit {
    pub fn apply(&self, b: &mut Vec<u8>) {
        let at = |p: usize, len: usize| if len == 0 { 0 } else { p % len };
        match self {
            Edit::Flip(p, bit) => {
                if !b.is_empty() {
                    let i = at(*p, b.len());
                    b[i] ^= 1 << (bit % 8);
                }
            }
            Edit::Set(p, v) => {
                if !b.is_empty() {
                    let i = at(*p, b.len());
                    b[i] = *v;
                }
            }
            Edit::Insert(p, v) => {
                let i = at(*p, b.len() + 1);
                b.splice(i..i, v.iter().copied());
            }
            Edit::Delete(p, n) => {
                if !b.is_empty() {
                    let i = at(*p, b.len());
                    let end = (i + n).min(b.len());
                    b.drain(i..end);
                }
            }
            Edit::Truncate(n) => {
                let keep = at(*n, b.len() + 1);
                b.truncate(keep);
            }
            Edit::Append(v) => b.extend_from_slice(v),
            Edit::BigVarint(p, v) => {
                if !b.is_empty() {
                    let i = at(*p, b.len());
                    // Skip the varint at i (continuation bits), write a maximal one.
                    let mut end = i;
                    while end < b.len() && b[end] & 0x80 != 0 {
                        end += 1;
                    }
                    let end = (end + 1).min(b.len());
                    let mut enc = Vec::with_capacity(10);
                    let mut x = *v;
                    for _ in 0..9 {
                        enc.push((x as u8 & 0x7f) | 0x80);
                        x >>= 7;
                    }
                    enc.push(x as u8 & 0x7f);
                    b.splice(i..end, enc);
                }
            }
        }
    }
}

/// A gRPC frame: the compressed flag, the declared length against the true one, and
/// bytes after the message.
#[derive(Debug, Clone)]
pub struct Frame {
    pub flag: u8,
    pub length: FrameLength,
    pub tail: Vec<u8>,
}

#[derive(Debug, Clone)]
pub enum FrameLength {
    True,
    Plus(u32),
    Minus(u32),
    Exactly(u32),
    /// Only the first n (< 5) bytes of the 5-byte header, no message.
    ShortHeader(u8),
}

impl Frame {
    /// A correct frame: the node must answer it as it answers the request itself.
    pub fn is_plain(&self) -> bool {
        self.flag == 0 && matches!(self.length, FrameLength::True) && self.tail.is_empty()
    }

    pub fn body(&self, msg: &[u8]) -> Vec<u8> {
        let len = msg.len() as u32;
        let declared = match self.length {
            FrameLength::True => len,
            FrameLength::Plus(d) => len.saturating_add(d),
            FrameLength::Minus(d) => len.saturating_sub(d),
            FrameLength::Exactly(n) => n,
            FrameLength::ShortHeader(_) => len,
        };
        let mut out = vec![self.flag];
        out.extend_from_slice(&declared.to_be_bytes());
        if let FrameLength::ShortHeader(n) = self.length {
            out.truncate(usize::from(n % 5));
            return out;
        }
        out.extend_from_slice(msg);
        out.extend_from_slice(&self.tail);
        out
    }
}

/// Cases every run sends first, whatever the seed: calls whose deadline passes while
/// they run (an explanation of some milliseconds under a shorter `grpc-timeout`), which
/// must get DEADLINE_EXCEEDED. Thirty of them, as the node's deadline and tonic's own
/// timer on the same header race (tokio's timers tick in milliseconds).
pub fn fixed() -> Vec<Case> {
    let m = MODELS
        .iter()
        .position(|m| m.name == "mlp_candle")
        .expect("mlp_candle");
    ["1m", "2m", "3m"]
        .into_iter()
        .cycle()
        .take(30)
        .map(|t| {
            let base = Base {
                model: m,
                rows: 4,
                values: (0..64).map(|i| (i % 9) as f32 * 0.25 - 1.0).collect(),
                texts: vec![],
                typed: false,
                version: "",
                request_output: false,
                junk: vec![],
                explain: Some(Explain {
                    method: "integrated_gradients",
                    steps: Some(1024),
                    window: None,
                    samples: None,
                    target: None,
                    baseline: None,
                    seed: None,
                }),
            };
            Case::One(base, Mutation::GrpcTimeout(t.into()))
        })
        .collect()
}

// ---- strategies ----

fn f32_value() -> impl Strategy<Value = f32> {
    prop_oneof![
        8 => -4.0f32..4.0,
        1 => -1e6f32..1e6,
        1 => prop::sample::select(vec![0.0, -0.0, f32::NAN, f32::INFINITY, f32::NEG_INFINITY, f32::MIN_POSITIVE, f32::MAX]),
    ]
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-z]{1,8}( [a-z]{1,8}){0,6}",
        1 => "\\PC{1,40}",
        1 => "([a-z]{1,6} ){20,60}",
    ]
}

pub fn any_param() -> impl Strategy<Value = InferParameter> {
    let choice = prop_oneof![
        any::<bool>().prop_map(ParameterChoice::BoolParam),
        any::<i64>().prop_map(ParameterChoice::Int64Param),
        any::<u64>().prop_map(ParameterChoice::Uint64Param),
        any::<f64>().prop_map(ParameterChoice::DoubleParam),
        "\\PC{0,12}".prop_map(ParameterChoice::StringParam),
    ];
    prop::option::weighted(0.9, choice)
        .prop_map(|parameter_choice| InferParameter { parameter_choice })
}

/// Numbers and non-numbers for an explain option: small, large, negative, fractional,
/// non-finite, numeric and other strings, bools, nothing.
fn knob_param() -> impl Strategy<Value = InferParameter> {
    let p = |c| InferParameter {
        parameter_choice: Some(c),
    };
    prop_oneof![
        4 => (-3i64..40).prop_map(move |v| p(ParameterChoice::Int64Param(v))),
        2 => prop::sample::select(vec![0i64, -1, 1024, 1025, 1 << 24, (1 << 24) + 1, i64::MAX, i64::MIN])
            .prop_map(move |v| p(ParameterChoice::Int64Param(v))),
        1 => prop::sample::select(vec![0u64, 1, 1024, u64::MAX]).prop_map(move |v| p(ParameterChoice::Uint64Param(v))),
        2 => prop::sample::select(vec![0.5, 1.0, 2.0, 3.5, -0.5, 1e300, -1e300, 1e9, f64::NAN, f64::INFINITY, f64::NEG_INFINITY])
            .prop_map(move |v| p(ParameterChoice::DoubleParam(v))),
        1 => any::<f64>().prop_map(move |v| p(ParameterChoice::DoubleParam(v))),
        2 => prop::sample::select(vec!["3", " 2 ", "1e2", "0.5", "nan", "inf", "-1", "", "abc", "input", "output", "embedding", "0x10"])
            .prop_map(move |s| p(ParameterChoice::StringParam(s.into()))),
        1 => any::<bool>().prop_map(move |b| p(ParameterChoice::BoolParam(b))),
        1 => Just(InferParameter { parameter_choice: None }),
    ]
}

fn junk_name() -> impl Strategy<Value = String> {
    "[a-z_.]{1,12}".prop_filter("not a parameter the node reads", |n| {
        !(n == "timeout" || n.starts_with("troupe.") || n.starts_with("explain"))
    })
}

fn explain_for(m: &'static Model) -> impl Strategy<Value = Explain> {
    (
        prop::sample::select(m.methods()),
        prop::option::of(1u32..64),
        prop::option::of(1u32..20),
        prop::option::of(1u32..16),
        prop::option::of(0..m.outputs),
        prop::option::of(-2.0f64..2.0),
        prop::option::of(any::<u64>()),
    )
        .prop_map(
            |(method, steps, window, samples, target, baseline, seed)| Explain {
                method,
                steps,
                window,
                samples,
                target,
                baseline,
                seed,
            },
        )
}

/// A valid request for model `m` (explained when `explained`).
fn base_for(m: usize, explained: bool) -> impl Strategy<Value = Base> {
    let model = &MODELS[m];
    let max_rows: usize = if explained { 4 } else { 12 };
    let rows = prop_oneof![9 => 1..=max_rows, 1 => Just(if explained { 4 } else { MAX_BATCH })];
    rows.prop_flat_map(move |rows| {
        let n = if model.text { 0 } else { rows * model.features };
        (
            prop::collection::vec(f32_value(), n),
            prop::collection::vec(text(), if model.text { rows } else { 0 }),
            any::<bool>(),
            prop::sample::select(vec!["", "1"]),
            any::<bool>(),
            prop::collection::vec((junk_name(), any_param()), 0..3),
            if explained {
                explain_for(model).prop_map(Some).boxed()
            } else {
                Just(None).boxed()
            },
        )
            .prop_map(
                move |(values, texts, typed, version, request_output, junk, explain)| Base {
                    model: m,
                    rows,
                    values,
                    texts,
                    typed,
                    version,
                    request_output,
                    junk,
                    explain,
                },
            )
    })
}

pub fn base() -> impl Strategy<Value = Base> {
    (0..MODELS.len(), prop::bool::weighted(0.25)).prop_flat_map(|(m, e)| base_for(m, e))
}

fn text_base() -> impl Strategy<Value = Base> {
    let m = MODELS.iter().position(|m| m.text).expect("a text model");
    (Just(m), any::<bool>()).prop_flat_map(|(m, e)| base_for(m, e))
}

fn explained_base() -> impl Strategy<Value = Base> {
    (0..MODELS.len()).prop_flat_map(|m| base_for(m, true))
}

fn shape() -> impl Strategy<Value = Vec<i64>> {
    prop_oneof![
        // Small, mostly wrong.
        3 => prop::collection::vec(0i64..80, 0..4),
        // A negative dimension somewhere.
        2 => (prop::collection::vec(0i64..20, 0..3), i64::MIN..0, any::<prop::sample::Index>())
            .prop_map(|(mut v, d, at)| { let i = at.index(v.len() + 1); v.insert(i, d); v }),
        // A product that overflows 64 bits.
        2 => prop::sample::select(vec![
            vec![i64::MAX, i64::MAX],
            vec![1 << 32, 1 << 32],
            vec![1, 1 << 62, 4],
            vec![3037000500, 3037000500],
            vec![1 << 31, 1 << 31, 1 << 31],
        ]),
        // Huge but representable.
        2 => (1i64..=64, prop::sample::select(vec![1i64 << 22, 1 << 24, 1 << 30, 1 << 40, 4_611_686_018_427_387_903 / 64]))
            .prop_map(|(r, f)| vec![r, f]),
        // The batch dimension at 0 or over max_batch_size.
        1 => (prop::sample::select(vec![0i64, 65, 1000, i64::MAX]), 0i64..20).prop_map(|(b, f)| vec![b, f]),
    ]
}

fn datatype() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16",
            "BF16", "FP32", "FP64", "BYTES", "STRING", "TYPE_FP32", "TYPE_STRING", "fp32", "bytes", "",
            "FP128", "float32", "FP32 ", " FP32",
        ])
        .prop_map(String::from),
        1 => "\\PC{0,10}",
    ]
}

fn field() -> impl Strategy<Value = Field> {
    prop::sample::select(vec![
        Field::Bool,
        Field::Int,
        Field::Int64,
        Field::Uint,
        Field::Uint64,
        Field::Fp32,
        Field::Fp64,
        Field::Bytes,
    ])
}

fn version() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => "[a-zA-Z .\\-]{1,8}",
        1 => "\\PC{1,10}",
        2 => any::<u64>().prop_map(|v| v.to_string()),
        1 => prop::sample::select(vec!["0", "2", "01", "+1", "1 ", " 1", "-1", "1.0", "18446744073709551616", "１"])
            .prop_map(String::from),
    ]
}

fn grpc_timeout() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => (0u64..100_000_000, prop::sample::select(vec!["H", "M", "S", "m", "u", "n"]))
            .prop_map(|(n, u)| format!("{n}{u}")),
        2 => (0u64..2000, prop::sample::select(vec!["m", "u", "n"])).prop_map(|(n, u)| format!("{n}{u}")),
        1 => prop::sample::select(vec![
            "99999999H", "999999999H", "18446744073709551615H", "18446744073709551616S", "1", "H",
            "-1S", "1.5S", "0n", "1n", " 1S", "1S ", "1s", "",
        ])
        .prop_map(String::from),
        1 => "[ -~]{0,14}",
    ]
}

fn bytes_fault() -> impl Strategy<Value = BytesFault> {
    prop_oneof![
        (1u8..4).prop_map(BytesFault::TruncatedPrefix),
        prop_oneof![1u32..64, Just(u32::MAX), Just(1 << 31)].prop_map(BytesFault::Overlong),
        Just(BytesFault::Fewer),
        (1u8..5).prop_map(BytesFault::More),
        prop::sample::select(vec![
            vec![0xff],
            vec![0xc3, 0x28],
            vec![b'a', 0xe2, 0x82],
            vec![0xed, 0xa0, 0x80],
            vec![0xf8, 0x88, 0x80, 0x80, 0x80],
        ])
        .prop_map(BytesFault::NotUtf8),
        Just(BytesFault::Empty),
    ]
}

fn knob() -> impl Strategy<Value = Knob> {
    prop::sample::select(vec![
        Knob::Steps,
        Knob::Window,
        Knob::Samples,
        Knob::Target,
        Knob::Baseline,
        Knob::Seed,
        Knob::Output,
    ])
}

fn method_param() -> impl Strategy<Value = InferParameter> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "saliency", "gradient", "integrated_gradients", "IG", "integrated-gradients", "occlusion",
            "Occlusion", "shapley", "shapley_sampling", "SHAPLEY", "lime", "", "occlusion ", "deeplift",
        ])
        .prop_map(string),
        1 => "\\PC{0,16}".prop_map(|s| string(&s)),
        1 => any_param(),
    ]
}

/// A mutation of any kind (for piling up).
pub fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        "\\PC{0,40}".prop_map(Mutation::ModelName),
        version().prop_map(Mutation::Version),
        shape().prop_map(Mutation::Shape),
        shape().prop_map(Mutation::ShapeFitted),
        datatype().prop_map(Mutation::Datatype),
        prop_oneof![-64i64..0, 1i64..64, Just(1 << 20)].prop_map(Mutation::RawLen),
        field().prop_map(Mutation::TypedField),
        prop_oneof![-8i64..0, 1i64..8, Just(100_000)].prop_map(Mutation::TypedCount),
        Just(Mutation::BothRawAndTyped),
        Just(Mutation::NoData),
        (1u8..5).prop_map(Mutation::ExtraRawBuffers),
        Just(Mutation::Duplicate),
        Just(Mutation::NoInputs),
        prop_oneof![
            4 => prop::collection::vec("[a-z_]{1,10}", 1..4),
            1 => (200usize..1000).prop_map(|n| (0..n).map(|i| format!("x{i}")).collect()),
        ]
        .prop_map(Mutation::UnknownInputs),
        "\\PC{0,20}".prop_map(Mutation::UnknownOutput),
        bytes_fault().prop_map(Mutation::BadBytes),
        Just(Mutation::Fault),
        prop_oneof![knob_param(), (1i64..200).prop_map(int), any_param(),]
            .prop_map(Mutation::Timeout),
        grpc_timeout().prop_map(Mutation::GrpcTimeout),
        prop::collection::vec((junk_name(), any_param()), 1..6).prop_map(Mutation::Junk),
        method_param().prop_map(Mutation::Method),
        (knob(), knob_param()).prop_map(|(k, p)| Mutation::Knob(k, p)),
    ]
}

/// One mutation on a base it applies to (explain mutations on explained bases, bad
/// BYTES on the text model).
fn one() -> impl Strategy<Value = (Base, Mutation)> {
    prop_oneof![
        6 => (base(), mutation()).prop_filter_map("applies to this base", |(b, m)| {
            let fits = match &m {
                Mutation::BadBytes(_) => b.model().text,
                Mutation::Method(_) | Mutation::Knob(..) => b.explain.is_some(),
                _ => true,
            };
            fits.then_some((b, m))
        }),
        1 => (text_base(), bytes_fault()).prop_map(|(b, f)| (b, Mutation::BadBytes(f))),
        2 => (explained_base(), (knob(), knob_param())).prop_map(|(b, (k, p))| (b, Mutation::Knob(k, p))),
        1 => (explained_base(), method_param()).prop_map(|(b, p)| (b, Mutation::Method(p))),
    ]
}

fn edit() -> impl Strategy<Value = Edit> {
    let pos = any::<usize>();
    prop_oneof![
        3 => (pos, any::<u8>()).prop_map(|(p, b)| Edit::Flip(p, b)),
        2 => (pos, any::<u8>()).prop_map(|(p, b)| Edit::Set(p, b)),
        1 => (pos, prop::collection::vec(any::<u8>(), 1..16)).prop_map(|(p, v)| Edit::Insert(p, v)),
        1 => (pos, 1usize..16).prop_map(|(p, n)| Edit::Delete(p, n)),
        1 => pos.prop_map(Edit::Truncate),
        1 => prop::collection::vec(any::<u8>(), 1..32).prop_map(Edit::Append),
        1 => (pos, prop_oneof![Just(u64::MAX), Just(1u64 << 40), Just(u64::MAX >> 1), any::<u64>()])
            .prop_map(|(p, v)| Edit::BigVarint(p, v)),
    ]
}

fn frame() -> impl Strategy<Value = Frame> {
    (
        prop_oneof![6 => Just(0u8), 2 => Just(1u8), 1 => any::<u8>()],
        prop_oneof![
            3 => Just(FrameLength::True),
            2 => (1u32..64).prop_map(FrameLength::Plus),
            2 => (1u32..64).prop_map(FrameLength::Minus),
            2 => prop::sample::select(vec![0u32, 1, u32::MAX, 256 << 20, (256 << 20) + 1, 4 << 20])
                .prop_map(FrameLength::Exactly),
            1 => (0u8..5).prop_map(FrameLength::ShortHeader),
        ],
        prop_oneof![3 => Just(Vec::new()), 1 => prop::collection::vec(any::<u8>(), 1..12)],
    )
        .prop_map(|(flag, length, tail)| Frame { flag, length, tail })
}

/// Every kind of case, weighted.
pub fn case() -> impl Strategy<Value = Case> {
    prop_oneof![
        3 => base().prop_map(Case::Valid),
        8 => one().prop_map(|(b, m)| Case::One(b, m)),
        2 => (base(), prop::collection::vec(mutation(), 2..5)).prop_map(|(b, m)| Case::Chaos(b, m)),
        1 => prop_oneof![
            prop::collection::vec(any::<u8>(), 0..64),
            prop::collection::vec(any::<u8>(), 0..1024),
        ]
        .prop_map(Case::RandomBytes),
        3 => (base(), prop::collection::vec(edit(), 1..4)).prop_map(|(b, e)| Case::EditedBytes(b, e)),
        1 => (base(), frame()).prop_map(|(b, f)| Case::Frame(b, f)),
        1 => prop::collection::vec(
            prop_oneof![
                2 => base().prop_map(Case::Valid),
                1 => one().prop_map(|(b, m)| Case::One(b, m)),
            ],
            2..10,
        )
        .prop_map(Case::Burst),
    ]
}
