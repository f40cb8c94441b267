//! What the load generator makes of each data type: parsing, a memory budget, random
//! elements, and JSON values as wire bytes.

use rand::Rng;

use crate::error::LoadError;

pub use troupe_proto::DataType;

/// The words random BYTES elements are made of (a sentence of 4 to 16 of them).
const WORDS: [&str; 16] = [
    "the", "model", "serves", "a", "quick", "answer", "to", "every", "call", "from", "any",
    "client", "on", "one", "small", "machine",
];

/// What the load generator makes of each data type: parsing, a memory budget, random
/// data and JSON values.
pub trait Generate: Sized {
    /// Parses `FP32`, `INT64`, ... (also Triton's `TYPE_FP32` spelling).
    fn parse(s: &str) -> Option<Self>;
    /// Bytes per element; for BYTES, the most a random element takes.
    fn budget(self) -> usize;
    /// `numel` random elements (see the impl).
    fn random(self, numel: usize, rng: &mut impl Rng) -> bytes::Bytes;
    /// JSON values (numbers, booleans for BOOL, strings for BYTES) as wire bytes.
    fn encode(self, values: &[&serde_json::Value], what: &str) -> Result<bytes::Bytes, LoadError>;
}

impl Generate for DataType {
    fn parse(s: &str) -> Option<Self> {
        s.parse().ok()
    }

    fn budget(self) -> usize {
        self.size().unwrap_or(4 + 16 * 8)
    }

    /// `numel` random little-endian values: floats uniform in [-1, 1), integers
    /// uniform in [0, 100), booleans fair.
    fn random(self, numel: usize, rng: &mut impl Rng) -> bytes::Bytes {
        use DataType::*;
        if self == Bytes {
            let texts: Vec<String> = (0..numel)
                .map(|_| {
                    let n = rng.random_range(4..=16);
                    (0..n)
                        .map(|_| WORDS[rng.random_range(0..WORDS.len())])
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .collect();
            return troupe_proto::bytes::encode_bytes(texts.iter().map(|t| t.as_bytes()));
        }
        let mut out = Vec::with_capacity(numel * self.budget());
        for _ in 0..numel {
            let f: f64 = rng.random_range(-1.0..1.0);
            let i: u8 = rng.random_range(0..100);
            match self {
                Bool => out.push(u8::from(rng.random::<bool>())),
                U8 => out.push(i),
                I8 => out.push(i),
                U16 => out.extend_from_slice(&u16::from(i).to_le_bytes()),
                I16 => out.extend_from_slice(&i16::from(i).to_le_bytes()),
                U32 => out.extend_from_slice(&u32::from(i).to_le_bytes()),
                I32 => out.extend_from_slice(&i32::from(i).to_le_bytes()),
                U64 => out.extend_from_slice(&u64::from(i).to_le_bytes()),
                I64 => out.extend_from_slice(&i64::from(i).to_le_bytes()),
                F16 => out.extend_from_slice(&half::f16::from_f64(f).to_le_bytes()),
                BF16 => out.extend_from_slice(&half::bf16::from_f64(f).to_le_bytes()),
                F32 => out.extend_from_slice(&(f as f32).to_le_bytes()),
                F64 => out.extend_from_slice(&f.to_le_bytes()),
                Bytes => unreachable!("BYTES returned above"),
            }
        }
        bytes::Bytes::from(out)
    }

    /// Encodes JSON values (numbers, or booleans for BOOL) as little-endian bytes.
    fn encode(self, values: &[&serde_json::Value], what: &str) -> Result<bytes::Bytes, LoadError> {
        use DataType::*;
        if self == Bytes {
            let texts = values
                .iter()
                .enumerate()
                .map(|(k, v)| {
                    v.as_str().ok_or_else(|| {
                        LoadError::Invalid(format!("{what}: element {k} ({v}) is not a string"))
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            return Ok(troupe_proto::bytes::encode_bytes(
                texts.iter().map(|t| t.as_bytes()),
            ));
        }
        let mut out = Vec::with_capacity(values.len() * self.budget());
        for (k, v) in values.iter().enumerate() {
            let bad = || {
                LoadError::Invalid(format!(
                    "{what}: element {k} ({v}) is not a valid {}",
                    self.wire_name()
                ))
            };
            let int = |lo: i128, hi: i128| -> Result<i128, LoadError> {
                let x = v
                    .as_i64()
                    .map(i128::from)
                    .or_else(|| v.as_u64().map(i128::from))
                    .ok_or_else(bad)?;
                if (lo..=hi).contains(&x) {
                    Ok(x)
                } else {
                    Err(bad())
                }
            };
            let float = || v.as_f64().ok_or_else(bad);
            match self {
                Bool => out.push(match (v.as_bool(), v.as_u64()) {
                    (Some(b), _) => u8::from(b),
                    (None, Some(n @ (0 | 1))) => n as u8,
                    _ => return Err(bad()),
                }),
                U8 => out.push(int(0, u8::MAX.into())? as u8),
                I8 => out
                    .extend_from_slice(&(int(i8::MIN.into(), i8::MAX.into())? as i8).to_le_bytes()),
                U16 => out.extend_from_slice(&(int(0, u16::MAX.into())? as u16).to_le_bytes()),
                I16 => out.extend_from_slice(
                    &(int(i16::MIN.into(), i16::MAX.into())? as i16).to_le_bytes(),
                ),
                U32 => out.extend_from_slice(&(int(0, u32::MAX.into())? as u32).to_le_bytes()),
                I32 => out.extend_from_slice(
                    &(int(i32::MIN.into(), i32::MAX.into())? as i32).to_le_bytes(),
                ),
                U64 => out.extend_from_slice(&(int(0, u64::MAX.into())? as u64).to_le_bytes()),
                I64 => out.extend_from_slice(
                    &(int(i64::MIN.into(), i64::MAX.into())? as i64).to_le_bytes(),
                ),
                F16 => out.extend_from_slice(&half::f16::from_f64(float()?).to_le_bytes()),
                BF16 => out.extend_from_slice(&half::bf16::from_f64(float()?).to_le_bytes()),
                F32 => out.extend_from_slice(&(float()? as f32).to_le_bytes()),
                F64 => out.extend_from_slice(&float()?.to_le_bytes()),
                Bytes => unreachable!("BYTES returned above"),
            }
        }
        Ok(bytes::Bytes::from(out))
    }
}
