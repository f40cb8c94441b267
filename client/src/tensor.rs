//! The tensors of a call: [`InputTensor`] sent, [`OutputTensor`]s in an [`InferResult`],
//! the attributions of an [`Explanation`], and the Rust [`Element`] types behind each
//! wire data type ([`DataType`]).

use bytes::Bytes;
use troupe_proto::DataType;

use crate::ClientError;

/// One input of a call: raw little-endian bytes, as stock clients send them.
#[derive(Debug, Clone)]
pub struct InputTensor {
    pub name: String,
    pub datatype: String,
    pub shape: Vec<i64>,
    pub data: Bytes,
}

/// Element types with a wire data type, for typed tensor helpers.
pub trait Element: bytemuck::Pod {
    /// The Open Inference Protocol data type (its wire name: `DATA_TYPE.wire_name()`).
    const DATA_TYPE: DataType;
}

macro_rules! element {
    ($($t:ty => $d:ident),*) => { $(impl Element for $t { const DATA_TYPE: DataType = DataType::$d; })* };
}
element!(f32 => F32, f64 => F64, i8 => I8, i16 => I16, i32 => I32, i64 => I64,
    u8 => U8, u16 => U16, u32 => U32, u64 => U64, half::f16 => F16, half::bf16 => BF16);

/// The data type a name stands for when it is spelled exactly as on the wire (`FP32`;
/// not `fp32` nor Triton's config spelling `TYPE_FP32`, which [`DataType`]'s `FromStr`
/// also takes).
pub fn wire_data_type(name: &str) -> Option<DataType> {
    name.parse::<DataType>()
        .ok()
        .filter(|d| d.wire_name() == name)
}

impl InputTensor {
    /// An input of any element type from values in row-major order.
    pub fn from_slice<T: Element>(name: &str, shape: Vec<i64>, values: &[T]) -> Self {
        Self::raw(
            name,
            T::DATA_TYPE.wire_name(),
            shape,
            Bytes::copy_from_slice(bytemuck::cast_slice(values)),
        )
    }

    /// An FP32 input.
    pub fn f32(name: &str, shape: Vec<i64>, values: &[f32]) -> Self {
        Self::from_slice(name, shape, values)
    }

    /// A BYTES input of texts, one per row (shape `[n, 1]`, as text models take them).
    pub fn text<S: AsRef<str>>(name: &str, texts: &[S]) -> Self {
        Self::raw(
            name,
            DataType::Bytes.wire_name(),
            vec![texts.len() as i64, 1],
            troupe_proto::bytes::encode_bytes(texts.iter().map(|t| t.as_ref().as_bytes())),
        )
    }

    /// Any data type, from raw bytes.
    pub fn raw(name: &str, datatype: &str, shape: Vec<i64>, data: Bytes) -> Self {
        Self {
            name: name.into(),
            datatype: datatype.into(),
            shape,
            data,
        }
    }
}

/// One output of a call.
#[derive(Debug, Clone)]
pub struct OutputTensor {
    pub name: String,
    pub datatype: String,
    pub shape: Vec<i64>,
    pub data: Bytes,
}

impl OutputTensor {
    /// The elements of a BYTES output (each as sent: text outputs are UTF-8).
    pub fn bytes_elements(&self) -> Result<Vec<&[u8]>, ClientError> {
        if self.datatype != DataType::Bytes.wire_name() {
            return Err(ClientError::Decode(format!(
                "output '{}' is {}, not {}",
                self.name,
                self.datatype,
                DataType::Bytes
            )));
        }
        troupe_proto::bytes::bytes_elements(&self.data)
            .map_err(|e| ClientError::Decode(format!("output '{}': {e}", self.name)))
    }
}

/// The answer to a call.
#[derive(Debug, Clone)]
pub struct InferResult {
    /// The request id the answer carries (the caller's, or one the server made for a
    /// recorded call; empty otherwise).
    pub id: String,
    pub model_name: String,
    pub model_version: String,
    pub outputs: Vec<OutputTensor>,
    /// The answer's parameters (e.g. `truncated` from text models).
    pub parameters: std::collections::HashMap<String, troupe_proto::inference::InferParameter>,
}

impl InferResult {
    /// An output by name.
    pub fn output(&self, name: &str) -> Result<&OutputTensor, ClientError> {
        self.outputs
            .iter()
            .find(|o| o.name == name)
            .ok_or_else(|| ClientError::Decode(format!("no output '{name}' in the response")))
    }

    /// An output's values as `T` (its datatype must be `T`'s).
    pub fn values<T: Element>(&self, name: &str) -> Result<Vec<T>, ClientError> {
        let o = self.output(name)?;
        if o.datatype != T::DATA_TYPE.wire_name() {
            return Err(ClientError::Decode(format!(
                "output '{name}' is {}, not {}",
                o.datatype,
                T::DATA_TYPE
            )));
        }
        if o.data.len() % std::mem::size_of::<T>() != 0 {
            return Err(ClientError::Decode(format!(
                "output '{name}' has {} bytes",
                o.data.len()
            )));
        }
        Ok(bytemuck::pod_collect_to_vec::<u8, T>(&o.data))
    }

    /// An FP32 output's values.
    pub fn f32(&self, name: &str) -> Result<Vec<f32>, ClientError> {
        self.values::<f32>(name)
    }
}

/// The attributions of one explained call.
#[derive(Debug, Clone)]
pub struct Explanation {
    pub result: InferResult,
}

impl Explanation {
    /// The attribution of an input (FP32, shaped like the input).
    pub fn attribution(&self, input: &str) -> Result<Vec<f32>, ClientError> {
        self.result.f32(&format!("attribution.{input}"))
    }

    /// The output element explained, per row.
    pub fn targets(&self) -> Result<Vec<i64>, ClientError> {
        self.result.values::<i64>("attribution.target")
    }

    /// f(x): the explained output element's value, per row.
    pub fn values(&self) -> Result<Vec<f32>, ClientError> {
        self.result.f32("attribution.value")
    }
}

/// A result with one output, for tests.
#[cfg(test)]
pub(crate) fn one_output(
    name: &str,
    datatype: DataType,
    shape: Vec<i64>,
    data: Bytes,
) -> InferResult {
    InferResult {
        id: String::new(),
        parameters: Default::default(),
        model_name: "m".into(),
        model_version: "1".into(),
        outputs: vec![OutputTensor {
            name: name.into(),
            datatype: datatype.wire_name().into(),
            shape,
            data,
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_helpers_round_trip() {
        let t = InputTensor::from_slice("x", vec![2], &[7i64, -1]);
        assert_eq!(t.datatype, "INT64");
        let r = one_output("y", DataType::I64, vec![2], t.data);
        assert_eq!(r.values::<i64>("y").unwrap(), vec![7, -1]);
        assert!(r.values::<f32>("y").is_err());
        assert_eq!(
            r.f32("y").unwrap_err().to_string(),
            "bad response: output 'y' is INT64, not FP32"
        );
    }

    #[test]
    fn element_sizes_match_their_data_types() {
        fn check<T: Element>() {
            assert_eq!(T::DATA_TYPE.size(), Some(std::mem::size_of::<T>()));
        }
        check::<f32>();
        check::<f64>();
        check::<i8>();
        check::<i16>();
        check::<i32>();
        check::<i64>();
        check::<u8>();
        check::<u16>();
        check::<u32>();
        check::<u64>();
        check::<half::f16>();
        check::<half::bf16>();
    }

    #[test]
    fn wire_data_types_are_spelled_as_on_the_wire() {
        assert_eq!(wire_data_type("FP32"), Some(DataType::F32));
        assert_eq!(wire_data_type("BYTES"), Some(DataType::Bytes));
        assert_eq!(wire_data_type("fp32"), None);
        assert_eq!(wire_data_type("TYPE_FP32"), None);
        assert_eq!(wire_data_type("FLOAT"), None);
    }

    #[test]
    fn text_inputs_and_bytes_outputs() {
        let t = InputTensor::text("t", &["ab", "c"]);
        assert_eq!(
            (t.datatype.as_str(), t.shape.clone()),
            ("BYTES", vec![2, 1])
        );
        let r = one_output("y", DataType::Bytes, vec![2, 1], t.data);
        let out = r.output("y").unwrap();
        assert_eq!(out.bytes_elements().unwrap(), vec![&b"ab"[..], b"c"]);
        let f = one_output("y", DataType::F32, vec![1], Bytes::from_static(&[0; 4]));
        assert!(f.output("y").unwrap().bytes_elements().is_err());
    }
}
