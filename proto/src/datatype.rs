//! The wire's element types: one definition of their names (`FP32`, and Triton's config
//! spelling `TYPE_FP32`), sizes and Triton enum values, for the node, the backends, the
//! clients and the load generator.

use std::fmt;
use std::str::FromStr;

/// A data type name that is not one of the Open Inference Protocol's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownDataType(pub String);

impl fmt::Display for UnknownDataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown data type '{}'", self.0.escape_default())
    }
}

impl std::error::Error for UnknownDataType {}

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
    /// Variable-length byte strings (Triton's `BYTES`, `TYPE_STRING` in configs).
    Bytes,
}

impl DataType {
    /// All supported types.
    pub const ALL: [DataType; 14] = [
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
        DataType::Bytes,
    ];

    /// Size of one element in bytes; `None` for BYTES, whose elements vary.
    pub fn size(self) -> Option<usize> {
        match self {
            DataType::Bool | DataType::U8 | DataType::I8 => Some(1),
            DataType::U16 | DataType::I16 | DataType::F16 | DataType::BF16 => Some(2),
            DataType::U32 | DataType::I32 | DataType::F32 => Some(4),
            DataType::U64 | DataType::I64 | DataType::F64 => Some(8),
            DataType::Bytes => None,
        }
    }

    /// Bytes a dense tensor of `shape` takes; `None` on overflow or for BYTES.
    pub fn dense_len(self, shape: &[usize]) -> Option<usize> {
        checked_numel(shape)?.checked_mul(self.size()?)
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
            DataType::Bytes => "BYTES",
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
            DataType::Bytes => 13,
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
    type Err = UnknownDataType;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("TYPE_STRING") {
            return Ok(DataType::Bytes); // Triton's config enum name for BYTES
        }
        let s = s.strip_prefix("TYPE_").unwrap_or(s);
        DataType::ALL
            .into_iter()
            .find(|d| d.wire_name().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownDataType(s.to_string()))
    }
}

/// Number of elements of a shape, or `None` on overflow.
pub fn checked_numel(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

impl serde::Serialize for DataType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.wire_name())
    }
}

impl<'de> serde::Deserialize<'de> for DataType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
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
        assert_eq!("TYPE_STRING".parse::<DataType>().unwrap(), DataType::Bytes);
        assert!("STRING".parse::<DataType>().is_err(), "the wire says BYTES");
        assert_eq!(DataType::F32.dense_len(&[2, 3]), Some(24));
        assert_eq!(DataType::Bytes.dense_len(&[2]), None);
        assert_eq!(checked_numel(&[usize::MAX, 2]), None);
    }
}
