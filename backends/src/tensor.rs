//! Framework-neutral tensors: a data type, a shape and little-endian, row-major bytes.
//!
//! This is the currency between the wire (the node's gRPC layer) and the backends.
//! Bytes are kept in a [`Bytes`] so the raw request buffer reaches a backend without a copy.
//!
//! BYTES tensors (text, blobs) keep Triton's raw layout: each element is a 4-byte
//! little-endian length followed by that many bytes, elements in row-major order. The
//! layout is checked once, when the tensor is made ([`Tensor::new`]); [`bytes_elements`]
//! reads it and [`encode_bytes`] writes it.

use bytes::Bytes;
use std::fmt;

use crate::error::BackendError;
pub use troupe_proto::datatype::{DataType, checked_numel};

/// A tensor: `data` holds `shape.iter().product() * dtype.size()` bytes, little-endian,
/// row-major; for BYTES, one length-prefixed element per position (see the module doc).
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

impl Tensor {
    /// Builds a tensor, checking that the byte length fits the shape.
    pub fn new(dtype: DataType, shape: Vec<usize>, data: Bytes) -> Result<Self, BackendError> {
        let numel = checked_numel(&shape)
            .ok_or_else(|| BackendError::Shape(format!("shape {shape:?} overflows")))?;
        if dtype == DataType::Bytes {
            check_bytes_layout(&data, numel)
                .map_err(|e| BackendError::Shape(format!("BYTES of shape {shape:?}: {e}")))?;
            return Ok(Self { dtype, shape, data });
        }
        let want = dtype
            .dense_len(&shape)
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

    /// A BYTES tensor from its elements, row-major.
    pub fn from_bytes_elements<'a>(
        shape: Vec<usize>,
        elements: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<Self, BackendError> {
        Self::new(DataType::Bytes, shape, encode_bytes(elements))
    }

    /// The elements of a BYTES tensor (slices of its buffer, no copy).
    pub fn bytes_elements(&self) -> Result<Vec<&[u8]>, BackendError> {
        if self.dtype != DataType::Bytes {
            return Err(BackendError::UnsupportedType(format!(
                "expected BYTES, tensor is {}",
                self.dtype
            )));
        }
        bytes_elements(&self.data).map_err(BackendError::Shape)
    }

    /// The values as f64, for any numeric type (BYTES: none).
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
            DataType::Bytes => Vec::new(),
        }
    }
}

pub use troupe_proto::bytes::{bytes_elements, check_bytes_layout, encode_bytes};

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
    fn new_checks_byte_length() {
        assert!(Tensor::new(DataType::F32, vec![2, 3], Bytes::from(vec![0u8; 24])).is_ok());
        let e = Tensor::new(DataType::F32, vec![2, 3], Bytes::from(vec![0u8; 23])).unwrap_err();
        assert!(e.to_string().contains("23 bytes"), "{e}");
        assert!(Tensor::new(DataType::F32, vec![usize::MAX, 2], Bytes::new()).is_err());
    }

    #[test]
    fn bytes_layout_is_checked() {
        let t = Tensor::from_bytes_elements(vec![2, 1], [&b"ab"[..], &b""[..]]).unwrap();
        assert_eq!(t.data.len(), 4 + 2 + 4);
        assert_eq!(t.bytes_elements().unwrap(), vec![&b"ab"[..], &b""[..]]);
        // Element count against the shape.
        let e = Tensor::new(DataType::Bytes, vec![3], t.data.clone()).unwrap_err();
        assert!(
            e.to_string().contains("2 elements where the shape holds 3"),
            "{e}"
        );
        let e = Tensor::new(DataType::Bytes, vec![1], t.data.clone()).unwrap_err();
        assert!(e.to_string().contains("more than 1"), "{e}");
        // A length prefix past the end, and a torn prefix.
        let mut over = vec![9u8, 0, 0, 0];
        over.extend_from_slice(b"abc");
        let e = Tensor::new(DataType::Bytes, vec![1], over.into()).unwrap_err();
        assert!(e.to_string().contains("claims 9 bytes"), "{e}");
        let e =
            Tensor::new(DataType::Bytes, vec![1], vec![1u8, 0, 0, 0, b'x', 0].into()).unwrap_err();
        assert!(e.to_string().contains("4-byte length"), "{e}");
        assert!(Tensor::new(DataType::Bytes, vec![0], Bytes::new()).is_ok());
    }

    #[test]
    fn f32_round_trip() {
        let t = Tensor::from_f32(vec![2], &[1.5, -2.0]).unwrap();
        assert_eq!(t.to_f32().unwrap(), vec![1.5, -2.0]);
        assert_eq!(t.to_f64_lossy(), vec![1.5, -2.0]);
    }
}
