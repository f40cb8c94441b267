//! Tensors between the Open Inference Protocol's JSON (and Triton's binary tensor
//! extension) and the wire's raw little-endian contents: an inference request's JSON
//! body becomes a `ModelInferRequest` with `raw_input_contents`, and an answer becomes
//! JSON, with the outputs asked for in binary appended after it.

use std::collections::HashMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::DataType;
use crate::bytes::{bytes_elements, encode_bytes};
use crate::inference::infer_parameter::ParameterChoice;
use crate::inference::model_infer_request::{InferInputTensor, InferRequestedOutputTensor};
use crate::inference::{InferParameter, ModelInferRequest, ModelInferResponse};

/// Request and output parameter: this tensor's bytes follow the JSON (binary extension).
pub const BINARY_DATA_SIZE: &str = "binary_data_size";
/// Output parameter: send this output in binary.
pub const BINARY_DATA: &str = "binary_data";
/// Request parameter: send every output not asked for otherwise in binary.
pub const BINARY_DATA_OUTPUT: &str = "binary_data_output";
/// Header: the length of the JSON at the start of a body that carries binary tensors.
pub const HEADER_LENGTH: &str = "inference-header-content-length";

/// A refused body: what was wrong with it (an INVALID_ARGUMENT).
pub type BadBody = String;

#[derive(Deserialize)]
struct JsonRequest {
    #[serde(default)]
    id: String,
    #[serde(default)]
    parameters: serde_json::Map<String, Value>,
    inputs: Vec<JsonTensor>,
    #[serde(default)]
    outputs: Vec<JsonRequested>,
}

/// A tensor in a REST body: a request's input, or an answer's output.
#[derive(Deserialize)]
struct JsonTensor {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    #[serde(default)]
    parameters: serde_json::Map<String, Value>,
    data: Option<Value>,
}

#[derive(Deserialize)]
struct JsonRequested {
    name: String,
    #[serde(default)]
    parameters: serde_json::Map<String, Value>,
}

/// How the answer's outputs are to be sent: by name, true for binary.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct OutputForm {
    /// `binary_data_output`: outputs not named below go in binary.
    pub all_binary: bool,
    pub binary: HashMap<String, bool>,
}

impl OutputForm {
    fn is_binary(&self, name: &str) -> bool {
        self.binary.get(name).copied().unwrap_or(self.all_binary)
    }
}

/// JSON parameters as the wire's: booleans, integers, floats and strings.
pub fn parameters_from_json(
    what: &str,
    map: &serde_json::Map<String, Value>,
) -> Result<HashMap<String, InferParameter>, BadBody> {
    map.iter()
        .map(|(k, v)| {
            let choice = match v {
                Value::Bool(b) => ParameterChoice::BoolParam(*b),
                Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
                    (Some(i), _, _) => ParameterChoice::Int64Param(i),
                    (None, Some(u), _) => ParameterChoice::Uint64Param(u),
                    (_, _, Some(f)) => ParameterChoice::DoubleParam(f),
                    _ => return Err(format!("{what} parameter '{k}': {n} is not a number")),
                },
                Value::String(s) => ParameterChoice::StringParam(s.clone()),
                other => {
                    return Err(format!(
                        "{what} parameter '{k}' must be a boolean, number or string, not {other}"
                    ));
                }
            };
            Ok((
                k.clone(),
                InferParameter {
                    parameter_choice: Some(choice),
                },
            ))
        })
        .collect()
}

/// The wire's parameters as JSON.
pub fn parameters_to_json(
    params: &HashMap<String, InferParameter>,
) -> serde_json::Map<String, Value> {
    let mut keys: Vec<&String> = params.keys().collect();
    keys.sort();
    keys.into_iter()
        .filter_map(|k| {
            let v = match params[k].parameter_choice.as_ref()? {
                ParameterChoice::BoolParam(b) => Value::from(*b),
                ParameterChoice::Int64Param(i) => Value::from(*i),
                ParameterChoice::Uint64Param(u) => Value::from(*u),
                ParameterChoice::DoubleParam(d) => Value::from(*d),
                ParameterChoice::StringParam(s) => Value::from(s.clone()),
            };
            Some((k.clone(), v))
        })
        .collect()
}

fn flag(map: &serde_json::Map<String, Value>, key: &str) -> bool {
    map.get(key).and_then(Value::as_bool).unwrap_or(false)
}

/// A body's JSON and the binary tensors after it (`header_length`, the
/// `Inference-Header-Content-Length`, says where the JSON ends; None: all JSON).
fn split_body(body: &[u8], header_length: Option<usize>) -> Result<(&[u8], &[u8]), BadBody> {
    match header_length {
        Some(n) if n > body.len() => Err(format!(
            "{HEADER_LENGTH} is {n}, but the body has only {} bytes",
            body.len()
        )),
        Some(n) => Ok(body.split_at(n)),
        None => Ok((body, &[][..])),
    }
}

/// One tensor of a body (a request's input or an answer's output): its raw contents,
/// cut from `binary` when it says `binary_data_size`, else from its JSON `data`
/// (checked against its shape), and its other parameters. `json_len` bounds what its
/// shape may make room for.
fn read_tensor(
    what: &str,
    dtype: DataType,
    t: &JsonTensor,
    json_len: usize,
    binary: &mut &[u8],
) -> Result<(Bytes, HashMap<String, InferParameter>), BadBody> {
    let shape = dims(what, &t.shape)?;
    let numel = crate::datatype::checked_numel(&shape)
        .ok_or_else(|| format!("{what}: shape {:?} is too large", t.shape))?;
    let contents = match (t.parameters.get(BINARY_DATA_SIZE), &t.data) {
        (Some(size), None) => {
            let size = size
                .as_u64()
                .ok_or_else(|| format!("{what}: {BINARY_DATA_SIZE} must be a byte count"))?
                as usize;
            if size > binary.len() {
                return Err(format!(
                    "{what}: {BINARY_DATA_SIZE} is {size}, but only {} binary bytes are left",
                    binary.len()
                ));
            }
            let (this, rest) = binary.split_at(size);
            *binary = rest;
            Bytes::copy_from_slice(this)
        }
        (Some(_), Some(_)) => {
            return Err(format!(
                "{what} has both '{BINARY_DATA_SIZE}' and 'data': give one"
            ));
        }
        (None, Some(data)) => {
            // The shape is the sender's word: room for what the body can hold, at most.
            let mut flat = Vec::with_capacity(numel.min(json_len));
            flatten(data, &mut flat);
            if flat.len() != numel {
                return Err(format!(
                    "{what}: shape {:?} holds {numel} elements, but 'data' has {}",
                    t.shape,
                    flat.len()
                ));
            }
            encode(what, dtype, &flat)?
        }
        (None, None) => return Err(format!("{what} has no 'data'")),
    };
    let mut parameters = parameters_from_json(what, &t.parameters)?;
    parameters.remove(BINARY_DATA_SIZE);
    Ok((contents, parameters))
}

/// Reads an inference request's body: JSON, or (with `header_length`, the
/// `Inference-Header-Content-Length`) JSON followed by the binary tensors it announces.
pub fn decode_request(
    model: &str,
    version: &str,
    body: &[u8],
    header_length: Option<usize>,
) -> Result<(ModelInferRequest, OutputForm), BadBody> {
    let (json, mut binary) = split_body(body, header_length)?;
    let req: JsonRequest = serde_json::from_slice(json)
        .map_err(|e| format!("the request is not an inference request in JSON: {e}"))?;
    let mut inputs = Vec::with_capacity(req.inputs.len());
    let mut raw = Vec::with_capacity(req.inputs.len());
    for i in req.inputs {
        let what = format!("input '{}'", i.name);
        let dtype: DataType = i.datatype.parse().map_err(|e| format!("{what}: {e}"))?;
        let (contents, parameters) = read_tensor(&what, dtype, &i, json.len(), &mut binary)?;
        inputs.push(InferInputTensor {
            name: i.name,
            datatype: dtype.wire_name().to_string(),
            shape: i.shape,
            parameters,
            contents: None,
        });
        raw.push(contents);
    }
    if !binary.is_empty() {
        return Err(format!(
            "{} binary bytes follow the JSON that no input's {BINARY_DATA_SIZE} accounts for",
            binary.len()
        ));
    }
    let mut form = OutputForm {
        all_binary: flag(&req.parameters, BINARY_DATA_OUTPUT),
        binary: HashMap::new(),
    };
    let mut outputs = Vec::with_capacity(req.outputs.len());
    for o in req.outputs {
        let what = format!("output '{}'", o.name);
        if o.parameters.contains_key("classification") {
            return Err(format!(
                "{what}: the classification extension is not supported; ask for the output itself"
            ));
        }
        if let Some(b) = o.parameters.get(BINARY_DATA) {
            form.binary
                .insert(o.name.clone(), b.as_bool().unwrap_or(false));
        }
        let mut parameters = parameters_from_json(&what, &o.parameters)?;
        parameters.remove(BINARY_DATA);
        outputs.push(InferRequestedOutputTensor {
            name: o.name,
            parameters,
        });
    }
    let mut parameters = parameters_from_json("request", &req.parameters)?;
    parameters.remove(BINARY_DATA_OUTPUT);
    Ok((
        ModelInferRequest {
            model_name: model.to_string(),
            model_version: version.to_string(),
            id: req.id,
            parameters,
            inputs,
            outputs,
            raw_input_contents: raw,
        },
        form,
    ))
}

fn dims(what: &str, shape: &[i64]) -> Result<Vec<usize>, BadBody> {
    shape
        .iter()
        .map(|&d| {
            usize::try_from(d).map_err(|_| format!("{what}: shape {shape:?} has a negative size"))
        })
        .collect()
}

/// Nested JSON arrays in row-major order, as one list.
fn flatten<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
    match v {
        Value::Array(a) => a.iter().for_each(|x| flatten(x, out)),
        other => out.push(other),
    }
}

/// JSON values as the raw little-endian contents of `dtype`.
fn encode(what: &str, dtype: DataType, values: &[&Value]) -> Result<Bytes, BadBody> {
    let bad = |i: usize, v: &Value| format!("{what}: element {i} ({v}) is not a {dtype} value");
    if dtype == DataType::Bytes {
        let mut elements = Vec::with_capacity(values.len());
        for (i, v) in values.iter().enumerate() {
            elements.push(v.as_str().ok_or_else(|| bad(i, v))?.as_bytes());
        }
        return Ok(encode_bytes(elements));
    }
    let size = dtype.size().unwrap_or(1);
    let mut out = Vec::with_capacity(values.len() * size);
    for (i, v) in values.iter().enumerate() {
        let int = || v.as_i64().ok_or_else(|| bad(i, v));
        let uint = || v.as_u64().ok_or_else(|| bad(i, v));
        let float = || v.as_f64().ok_or_else(|| bad(i, v));
        let range = |i: usize| format!("{what}: element {i} ({v}) is out of range for {dtype}");
        match dtype {
            DataType::Bool => out.push(u8::from(v.as_bool().ok_or_else(|| bad(i, v))?)),
            DataType::U8 => out.push(u8::try_from(uint()?).map_err(|_| range(i))?),
            DataType::U16 => {
                out.extend(u16::try_from(uint()?).map_err(|_| range(i))?.to_le_bytes())
            }
            DataType::U32 => {
                out.extend(u32::try_from(uint()?).map_err(|_| range(i))?.to_le_bytes())
            }
            DataType::U64 => out.extend(uint()?.to_le_bytes()),
            DataType::I8 => out.extend(i8::try_from(int()?).map_err(|_| range(i))?.to_le_bytes()),
            DataType::I16 => out.extend(i16::try_from(int()?).map_err(|_| range(i))?.to_le_bytes()),
            DataType::I32 => out.extend(i32::try_from(int()?).map_err(|_| range(i))?.to_le_bytes()),
            DataType::I64 => out.extend(int()?.to_le_bytes()),
            DataType::F16 => out.extend(half::f16::from_f64(float()?).to_le_bytes()),
            DataType::BF16 => out.extend(half::bf16::from_f64(float()?).to_le_bytes()),
            DataType::F32 => out.extend((float()? as f32).to_le_bytes()),
            DataType::F64 => out.extend(float()?.to_le_bytes()),
            DataType::Bytes => unreachable!("BYTES is encoded above"),
        }
    }
    Ok(Bytes::from(out))
}

/// Raw little-endian contents of `dtype` as JSON values (BYTES as strings).
fn decode(dtype: DataType, raw: &[u8]) -> Result<Vec<Value>, BadBody> {
    if dtype == DataType::Bytes {
        return Ok(bytes_elements(raw)?
            .into_iter()
            .map(|e| Value::from(String::from_utf8_lossy(e).into_owned()))
            .collect());
    }
    let size = dtype.size().unwrap_or(1);
    if raw.len() % size != 0 {
        return Err(format!(
            "{} bytes are not whole {dtype} elements",
            raw.len()
        ));
    }
    Ok(raw
        .chunks_exact(size)
        .map(|c| {
            let a = |n: usize| -> [u8; 8] {
                let mut b = [0u8; 8];
                b[..n].copy_from_slice(&c[..n]);
                b
            };
            match dtype {
                DataType::Bool => Value::from(c[0] != 0),
                DataType::U8 => Value::from(c[0]),
                DataType::U16 => Value::from(u16::from_le_bytes([c[0], c[1]])),
                DataType::U32 => Value::from(u32::from_le_bytes([c[0], c[1], c[2], c[3]])),
                DataType::U64 => Value::from(u64::from_le_bytes(a(8))),
                DataType::I8 => Value::from(c[0] as i8),
                DataType::I16 => Value::from(i16::from_le_bytes([c[0], c[1]])),
                DataType::I32 => Value::from(i32::from_le_bytes([c[0], c[1], c[2], c[3]])),
                DataType::I64 => Value::from(i64::from_le_bytes(a(8))),
                DataType::F16 => short(half::f16::from_le_bytes([c[0], c[1]]).to_f32()),
                DataType::BF16 => short(half::bf16::from_le_bytes([c[0], c[1]]).to_f32()),
                DataType::F32 => short(f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
                DataType::F64 => Value::from(f64::from_le_bytes(a(8))),
                DataType::Bytes => Value::Null,
            }
        })
        .collect())
}

/// An f32 as JSON in its shortest form (0.1, not 0.10000000149011612); NaN and the
/// infinities, which JSON lacks, as null.
fn short(x: f32) -> Value {
    x.to_string()
        .parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
        .map_or(Value::Null, Value::Number)
}

#[derive(Serialize)]
struct JsonOutput {
    name: String,
    datatype: String,
    shape: Vec<i64>,
    #[serde(skip_serializing_if = "serde_json::Map::is_empty")]
    parameters: serde_json::Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<Vec<Value>>,
}

#[derive(Serialize)]
struct JsonResponse {
    model_name: String,
    model_version: String,
    id: String,
    #[serde(skip_serializing_if = "serde_json::Map::is_empty")]
    parameters: serde_json::Map<String, Value>,
    outputs: Vec<JsonOutput>,
}

/// An answer as a body: its JSON, and the binary outputs after it. The length of the
/// JSON is the second value when binary outputs follow (for `Inference-Header-Content-Length`).
pub fn encode_response(
    resp: ModelInferResponse,
    form: &OutputForm,
) -> Result<(Vec<u8>, Option<usize>), BadBody> {
    let mut binary: Vec<u8> = Vec::new();
    let mut any_binary = false;
    let mut outputs = Vec::with_capacity(resp.outputs.len());
    for (i, o) in resp.outputs.into_iter().enumerate() {
        let dtype: DataType = o
            .datatype
            .parse()
            .map_err(|e| format!("output '{}': {e}", o.name))?;
        let raw = match resp.raw_output_contents.get(i) {
            Some(r) => r.clone(),
            None => typed_contents(dtype, o.contents.as_ref()),
        };
        let mut parameters = parameters_to_json(&o.parameters);
        let data = if form.is_binary(&o.name) {
            any_binary = true;
            parameters.insert(BINARY_DATA_SIZE.into(), Value::from(raw.len()));
            binary.extend_from_slice(&raw);
            None
        } else {
            Some(decode(dtype, &raw).map_err(|e| format!("output '{}': {e}", o.name))?)
        };
        outputs.push(JsonOutput {
            name: o.name,
            datatype: o.datatype,
            shape: o.shape,
            parameters,
            data,
        });
    }
    let json = serde_json::to_vec(&JsonResponse {
        model_name: resp.model_name,
        model_version: resp.model_version,
        id: resp.id,
        parameters: parameters_to_json(&resp.parameters),
        outputs,
    })
    .map_err(|e| e.to_string())?;
    if !any_binary {
        return Ok((json, None));
    }
    let n = json.len();
    let mut body = json;
    body.extend_from_slice(&binary);
    Ok((body, Some(n)))
}

/// The typed contents of an output (an answer that did not use raw contents) as raw.
fn typed_contents(dtype: DataType, c: Option<&crate::inference::InferTensorContents>) -> Bytes {
    let Some(c) = c else { return Bytes::new() };
    let mut out = Vec::new();
    match dtype {
        DataType::Bool => out.extend(c.bool_contents.iter().map(|&b| u8::from(b))),
        DataType::U8 | DataType::U16 | DataType::U32 => {
            let size = dtype.size().unwrap_or(4);
            for v in &c.uint_contents {
                out.extend_from_slice(&v.to_le_bytes()[..size]);
            }
        }
        DataType::U64 => c
            .uint64_contents
            .iter()
            .for_each(|v| out.extend(v.to_le_bytes())),
        DataType::I8 | DataType::I16 | DataType::I32 => {
            let size = dtype.size().unwrap_or(4);
            for v in &c.int_contents {
                out.extend_from_slice(&v.to_le_bytes()[..size]);
            }
        }
        DataType::I64 => c
            .int64_contents
            .iter()
            .for_each(|v| out.extend(v.to_le_bytes())),
        DataType::F32 => c
            .fp32_contents
            .iter()
            .for_each(|v| out.extend(v.to_le_bytes())),
        DataType::F64 => c
            .fp64_contents
            .iter()
            .for_each(|v| out.extend(v.to_le_bytes())),
        DataType::Bytes => return encode_bytes(c.bytes_contents.iter().map(|b| b.as_slice())),
        DataType::F16 | DataType::BF16 => {}
    }
    Bytes::from(out)
}

/// A client's side: an inference request as a REST body, with its tensors in binary
/// after the JSON (`binary`, Triton's extension; the JSON's length is the second value)
/// or as JSON `data`. Answers are asked for in the same form.
pub fn encode_request(
    req: &ModelInferRequest,
    binary: bool,
) -> Result<(Vec<u8>, Option<usize>), BadBody> {
    let mut tail = Vec::new();
    let mut inputs = Vec::with_capacity(req.inputs.len());
    for (i, t) in req.inputs.iter().enumerate() {
        let what = format!("input '{}'", t.name);
        let dtype: DataType = t.datatype.parse().map_err(|e| format!("{what}: {e}"))?;
        let raw = match req.raw_input_contents.get(i) {
            Some(r) => r.clone(),
            None => typed_contents(dtype, t.contents.as_ref()),
        };
        let mut parameters = parameters_to_json(&t.parameters);
        let mut v = serde_json::json!({"name": t.name, "datatype": t.datatype, "shape": t.shape});
        if binary {
            parameters.insert(BINARY_DATA_SIZE.into(), Value::from(raw.len()));
            tail.extend_from_slice(&raw);
        } else {
            v["data"] = Value::Array(decode(dtype, &raw).map_err(|e| format!("{what}: {e}"))?);
        }
        if !parameters.is_empty() {
            v["parameters"] = Value::Object(parameters);
        }
        inputs.push(v);
    }
    let mut parameters = parameters_to_json(&req.parameters);
    parameters.insert(BINARY_DATA_OUTPUT.into(), Value::from(binary));
    let mut body = serde_json::json!({"inputs": inputs, "parameters": parameters});
    if !req.id.is_empty() {
        body["id"] = Value::from(req.id.clone());
    }
    if !req.outputs.is_empty() {
        body["outputs"] = req
            .outputs
            .iter()
            .map(|o| serde_json::json!({"name": o.name, "parameters": {BINARY_DATA: binary}}))
            .collect();
    }
    let mut out = serde_json::to_vec(&body).map_err(|e| e.to_string())?;
    if !binary {
        return Ok((out, None));
    }
    let n = out.len();
    out.extend_from_slice(&tail);
    Ok((out, Some(n)))
}

#[derive(Deserialize)]
struct JsonAnswer {
    model_name: String,
    #[serde(default)]
    model_version: String,
    #[serde(default)]
    id: String,
    #[serde(default)]
    parameters: serde_json::Map<String, Value>,
    #[serde(default)]
    outputs: Vec<JsonTensor>,
}

/// A client's side: a REST answer (JSON, and the binary outputs after it when
/// `header_length` says where the JSON ends) as the wire's answer, with raw outputs.
pub fn decode_response(
    body: &[u8],
    header_length: Option<usize>,
) -> Result<ModelInferResponse, BadBody> {
    let (json, mut binary) = split_body(body, header_length)?;
    let a: JsonAnswer = serde_json::from_slice(json)
        .map_err(|e| format!("the answer is not an inference answer in JSON: {e}"))?;
    let mut outputs = Vec::with_capacity(a.outputs.len());
    let mut raw = Vec::with_capacity(a.outputs.len());
    for o in a.outputs {
        let what = format!("output '{}'", o.name);
        let dtype: DataType = o.datatype.parse().map_err(|e| format!("{what}: {e}"))?;
        let (contents, parameters) = read_tensor(&what, dtype, &o, json.len(), &mut binary)?;
        outputs.push(crate::inference::model_infer_response::InferOutputTensor {
            name: o.name,
            datatype: o.datatype,
            shape: o.shape,
            parameters,
            contents: None,
        });
        raw.push(contents);
    }
    Ok(ModelInferResponse {
        model_name: a.model_name,
        model_version: a.model_version,
        id: a.id,
        parameters: parameters_from_json("answer", &a.parameters)?,
        outputs,
        raw_output_contents: raw,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_json_data_becomes_raw_contents() {
        let body = br#"{"id": "a", "parameters": {"binary_data_output": true, "explain": true},
            "inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [[1, 2], [3.5, 4]]},
                       {"name": "t", "shape": [1], "datatype": "BYTES", "data": ["hi"]}]}"#;
        let (req, form) = decode_request("m", "", body, None).unwrap();
        assert_eq!(req.id, "a");
        assert!(form.all_binary);
        assert!(!req.parameters.contains_key(BINARY_DATA_OUTPUT));
        assert!(req.parameters.contains_key("explain"));
        let floats: Vec<f32> = req.raw_input_contents[0]
            .chunks(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(floats, [1.0, 2.0, 3.5, 4.0]);
        assert_eq!(&req.raw_input_contents[1][..], b"\x02\0\0\0hi");
    }

    #[test]
    fn binary_tensors_are_cut_from_after_the_json() {
        let json = br#"{"inputs": [{"name": "x", "shape": [2], "datatype": "INT32", "parameters": {"binary_data_size": 8}}]}"#;
        let mut body = json.to_vec();
        body.extend(1i32.to_le_bytes());
        body.extend(7i32.to_le_bytes());
        let (req, _) = decode_request("m", "1", &body, Some(json.len())).unwrap();
        assert_eq!(req.model_version, "1");
        assert_eq!(req.raw_input_contents[0].len(), 8);
        assert!(req.inputs[0].parameters.is_empty());
        // Sizes that do not add up are refused, naming what is off.
        let e = decode_request("m", "", &body[..body.len() - 1], Some(json.len())).unwrap_err();
        assert!(e.contains("binary_data_size is 8"), "{e}");
        body.push(0);
        let e = decode_request("m", "", &body, Some(json.len())).unwrap_err();
        assert!(e.contains("1 binary bytes"), "{e}");
    }

    #[test]
    fn bad_bodies_name_what_is_wrong() {
        let e = |b: &[u8]| decode_request("m", "", b, None).unwrap_err();
        assert!(e(b"{").contains("not an inference request"));
        assert!(
            e(br#"{"inputs": [{"name": "x", "shape": [3], "datatype": "FP32", "data": [1, 2]}]}"#)
                .contains("holds 3 elements, but 'data' has 2")
        );
        assert!(
            e(br#"{"inputs": [{"name": "x", "shape": [1], "datatype": "INT8", "data": [300]}]}"#)
                .contains("out of range for INT8")
        );
        assert!(
            e(br#"{"inputs": [{"name": "x", "shape": [1], "datatype": "FP33", "data": [1]}]}"#)
                .contains("input 'x'")
        );
        assert!(
            e(br#"{"inputs": [{"name": "x", "shape": [-1], "datatype": "FP32", "data": [1]}]}"#)
                .contains("negative")
        );
        assert!(
            e(br#"{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": ["a"]}]}"#)
                .contains("element 0")
        );
    }

    #[test]
    fn answers_go_out_as_json_or_binary_as_asked() {
        let resp = ModelInferResponse {
            model_name: "m".into(),
            model_version: "1".into(),
            id: "a".into(),
            outputs: vec![
                crate::inference::model_infer_response::InferOutputTensor {
                    name: "y".into(),
                    datatype: "FP32".into(),
                    shape: vec![1, 2],
                    ..Default::default()
                },
                crate::inference::model_infer_response::InferOutputTensor {
                    name: "label".into(),
                    datatype: "INT64".into(),
                    shape: vec![1],
                    ..Default::default()
                },
            ],
            raw_output_contents: vec![
                [0.5f32.to_le_bytes(), 2.0f32.to_le_bytes()].concat().into(),
                Bytes::from(3i64.to_le_bytes().to_vec()),
            ],
            ..Default::default()
        };
        let (body, n) = encode_response(resp.clone(), &OutputForm::default()).unwrap();
        assert_eq!(n, None);
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["outputs"][0]["data"], serde_json::json!([0.5, 2.0]));
        assert_eq!(v["outputs"][1]["data"], serde_json::json!([3]));
        assert_eq!(short(0.1).to_string(), "0.1");
        assert_eq!(short(f32::NAN), Value::Null);
        let form = OutputForm {
            all_binary: true,
            binary: HashMap::from([("label".to_string(), false)]),
        };
        let (body, n) = encode_response(resp, &form).unwrap();
        let n = n.unwrap();
        let v: Value = serde_json::from_slice(&body[..n]).unwrap();
        assert_eq!(v["outputs"][0]["parameters"]["binary_data_size"], 8);
        assert!(v["outputs"][0].get("data").is_none());
        assert_eq!(v["outputs"][1]["data"], serde_json::json!([3]));
        assert_eq!(body.len() - n, 8);
    }

    #[test]
    fn a_client_body_is_what_the_server_reads_both_ways() {
        let body = br#"{"id": "q", "parameters": {"explain": "saliency"},
            "inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2.5, -3]},
                       {"name": "t", "shape": [2], "datatype": "BYTES", "data": ["a", "bc"]}]}"#;
        let (req, _) = decode_request("m", "", body, None).unwrap();
        for binary in [false, true] {
            let (bytes, n) = encode_request(&req, binary).unwrap();
            assert_eq!(n.is_some(), binary);
            let (again, form) = decode_request("m", "", &bytes, n).unwrap();
            assert_eq!(again.raw_input_contents, req.raw_input_contents);
            assert_eq!(again.parameters, req.parameters);
            assert_eq!(form.all_binary, binary);
        }
        // And the answer: the server's encoding read back by the client.
        let resp = ModelInferResponse {
            model_name: "m".into(),
            outputs: vec![crate::inference::model_infer_response::InferOutputTensor {
                name: "y".into(),
                datatype: "INT32".into(),
                shape: vec![2],
                ..Default::default()
            }],
            raw_output_contents: vec![[4i32.to_le_bytes(), (-5i32).to_le_bytes()].concat().into()],
            ..Default::default()
        };
        for all_binary in [false, true] {
            let form = OutputForm {
                all_binary,
                binary: HashMap::new(),
            };
            let (bytes, n) = encode_response(resp.clone(), &form).unwrap();
            let back = decode_response(&bytes, n).unwrap();
            assert_eq!(back.raw_output_contents, resp.raw_output_contents);
            assert_eq!(back.outputs[0].shape, vec![2]);
        }
    }
}
