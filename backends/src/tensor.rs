//! Framework-neutral tensors: a data type, a shape and little-endian, row-major bytes.
//!
//! This is the currency between the wire (the node's gRPC layer) and the backends.
//! Bytes are kept in a [`Bytes`] so the raw request buffer reaches a backend without a copy.

use bytes::Bytes;
use std::fmt;
use std::str::FromStr;

use crate::error::BackendError;

/// Element types, named as the Open Inference Protocol names them on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataType {
    Bool,
    U8,
    U16,
    U32,
    U64,
    I8,
    I16,
    I32,
    I64,
    F16,
    BF16,
    F32,
    F64,
}

impl DataType {
    /// All supported types.
    pub const ALL: [DataType; 13] = [
        DataType::Bool,
        DataType::U8,
        DataType::U16,
        DataType::U32,
        DataType::U64,
        DataType::I8,
        DataType::I16,
        DataType::I32,
        DataType::I64,
        DataType::F16,
        DataType::BF16,
        DataType::F32,
        DataType::F64,
    ];

    /// Size of one element in bytes.
    pub fn size(self) -> usize {
        match self {
            DataType::Bool | DataType::U8 | DataType::I8 => 1,
            DataType::U16 | DataType::I16 | DataType::F16 | DataType::BF16 => 2,
            DataType::U32 | DataType::I32 | DataType::F32 => 4,
            DataType::U64 | DataType::I64 | DataType::F64 => 8,
        }
    }

    /// The wire name ("FP32", "INT64", ...).
    pub fn wire_name(self) -> &'static str {
        match self {
            DataType::Bool => "BOOL",
            DataType::U8 => "UINT8",
            DataType::U16 => "UINT16",
            DataType::U32 => "UINT32",
            DataType::U64 => "UINT64",
            DataType::I8 => "INT8",
            DataType::I16 => "INT16",
            DataType::I32 => "INT32",
            DataType::I64 => "INT64",
            DataType::F16 => "FP16",
            DataType::BF16 => "BF16",
            DataType::F32 => "FP32",
            DataType::F64 => "FP64",
        }
    }

    /// Triton model-config enum value (`inference.DataType`, e.g. TYPE_FP32 = 11).
    pub fn triton_enum(self) -> i32 {
        match self {
            DataType::Bool => 1,
            DataType::U8 => 2,
            DataType::U16 => 3,
            DataType::U32 => 4,
            DataType::U64 => 5,
            DataType::I8 => 6,
            DataType::I16 => 7,
            DataType::I32 => 8,
            DataType::I64 => 9,
            DataType::F16 => 10,
            DataType::F32 => 11,
            DataType::F64 => 12,
            DataType::BF16 => 14,
        }
    }

    /// True for floating-point types.
    pub fn is_float(self) -> bool {
        matches!(
            self,
            DataType::F16 | DataType::BF16 | DataType::F32 | DataType::F64
        )
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.wire_name())
    }
}

impl FromStr for DataType {
    type Err = BackendError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.strip_prefix("TYPE_").unwrap_or(s);
        DataType::ALL
            .into_iter()
            .find(|d| d.wire_name().eq_ignore_ascii_case(s))
            .ok_or_else(|| BackendError::UnsupportedType(s.to_string()))
    }
}

/// A dense tensor: `data` holds `shape.iter().product() * dtype.size()` bytes,
/// little-endian, row-major.
#[derive(Clone, PartialEq)]
pub struct Tensor {
    pub dtype: DataType,
    pub shape: Vec<usize>,
    pub data: Bytes,
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tensor")
            .field("dtype", &self.dtype)
            .field("shape", &self.shape)
            .field("bytes", &self.data.len())
            .finish()
    }
}

/// Number of elements of a shape, or `None` on overflow.
pub fn checked_numel(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

impl Tensor {
    /// Builds a tensor, checking that the byte length fits the shape.
    pub fn new(dtype: DataType, shape: Vec<usize>, data: Bytes) -> Result<Self, BackendError> {
        let want = checked_numel(&shape)
            .and_then(|n| n.checked_mul(dtype.size()))
            .ok_or_else(|| BackendError::Shape(format!("shape {shape:?} overflows")))?;
        if data.len() != want {
            return Err(BackendError::Shape(format!(
                "{} bytes do not fit shape {shape:?} of {dtype} ({want} bytes expected)",
                data.len()
            )));
        }
        Ok(Self { dtype, shape, data })
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Shape as i64 (what the wire and the frameworks use).
    pub fn shape_i64(&self) -> Vec<i64> {
        self.shape.iter().map(|&d| d as i64).collect()
    }

    /// An FP32 tensor from values.
    pub fn from_f32(shape: Vec<usize>, values: &[f32]) -> Result<Self, BackendError> {
        Self::new(
            DataType::F32,
            shape,
            Bytes::copy_from_slice(bytemuck::cast_slice(values)),
        )
    }

    /// The values of an FP32 tensor (copied; the byte buffer may be unaligned).
    pub fn to_f32(&self) -> Result<Vec<f32>, BackendError> {
        if self.dtype != DataType::F32 {
            return Err(BackendError::UnsupportedType(format!(
                "expected FP32, tensor is {}",
                self.dtype
            )));
        }
        Ok(bytemuck::pod_collect_to_vec::<u8, f32>(&self.data))
    }

    /// The values as f64, for any numeric type.
    pub fn to_f64_lossy(&self) -> Vec<f64> {
        let d = &self.data;
        match self.dtype {
            DataType::Bool | DataType::U8 => d.iter().map(|&b| b as f64).collect(),
            DataType::I8 => d.iter().map(|&b| b as i8 as f64).collect(),
            DataType::U16 => pod::<u16>(d).into_iter().map(f64::from).collect(),
            DataType::I16 => pod::<i16>(d).into_iter().map(f64::from).collect(),
            DataType::U32 => pod::<u32>(d).into_iter().map(f64::from).collect(),
            DataType::I32 => pod::<i32>(d).into_iter().map(f64::from).collect(),
            DataType::U64 => pod::<u64>(d).into_iter().map(|v| v as f64).collect(),
            DataType::I64 => pod::<i64>(d).into_iter().map(|v| v as f64).collect(),
            DataType::F16 => pod::<half::f16>(d)
                .into_iter()
                .map(|v| v.to_f64())
                .collect(),
            DataType::BF16 => pod::<half::bf16>(d)
                .into_iter()
                .map(|v| v.to_f64())
                .collect(),
            DataType::F32 => pod::<f32>(d).into_iter().map(f64::from).collect(),
            DataType::F64 => pod::<f64>(d),
        }
    }
}

/// Turns a typed vector into `Bytes` without copying (the vector becomes the owner).
pub fn bytes_from_vec<T: bytemuck::Pod + Send + Sync>(v: Vec<T>) -> Bytes {
    struct Owner<T>(Vec<T>);
    impl<T: bytemuck::Pod> AsRef<[u8]> for Owner<T> {
        fn as_ref(&self) -> &[u8] {
            bytemuck::cast_slice(&self.0)
        }
    }
    Bytes::from_owner(Owner(v))
}

/// Copies little-endian bytes into a typed vector (handles unaligned input).
pub fn pod<T: bytemuck::Pod>(bytes: &[u8]) -> Vec<T> {
    bytemuck::pod_collect_to_vec::<u8, T>(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_round_trip() {
        for d in DataType::ALL {
            assert_eq!(d.wire_name().parse::<DataType>().unwrap(), d);
        }
        assert_eq!("TYPE_FP32".parse::<DataType>().unwrap(), DataType::F32);
        assert!("STRING".parse::<DataType>().is_err());
    }

    #[test]
    fn new_checks_byte_length() {
        assert!(Tensor::new(DataType::F32, vec![2, 3], Bytes::from(vec![0u8; 24])).is_ok());
        let e = Tensor::new(DataType::F32, vec![2, 3], Bytes::from(vec![0u8; 23])).unwrap_err();
        assert!(e.to_string().contains("23 bytes"), "{e}");
        assert!(Tensor::new(DataType::F32, vec![usize::MAX, 2], Bytes::new()).is_err());
    }

    #[test]
    fn f32_round_trip() {
        let t = Tensor::from_f32(vec![2], &[1.5, -2.0]).unwrap();
        assert_eq!(t.to_f32().unwrap(), vec![1.5, -2.0]);
        assert_eq!(t.to_f64_lossy(), vec![1.5, -2.0]);
    }
}
