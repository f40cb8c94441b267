//! Reading NumPy `.npy` files (format 1.0–3.0, little-endian, C order) into raw tensors.

use bytes::Bytes;

use crate::{ClientError, InputTensor};

/// Parses a `.npy` file into an input tensor named `name`.
pub fn read_npy(name: &str, data: &[u8]) -> Result<InputTensor, ClientError> {
    let bad = |m: &str| ClientError::Decode(format!("not a valid .npy file for '{name}': {m}"));
    if data.len() < 10 || &data[..6] != b"\x93NUMPY" {
        return Err(bad("missing the \\x93NUMPY magic"));
    }
    let major = data[6];
    let (header_len, start) = match major {
        1 => (u16::from_le_bytes([data[8], data[9]]) as usize, 10),
        2 | 3 => {
            if data.len() < 12 {
                return Err(bad("truncated header"));
            }
            (
                u32::from_le_bytes([data[8], data[9], data[10], data[11]]) as usize,
                12,
            )
        }
        v => return Err(bad(&format!("format version {v} is not supported"))),
    };
    let header = data
        .get(start..start + header_len)
        .ok_or_else(|| bad("truncated header"))?;
    let header = std::str::from_utf8(header).map_err(|_| bad("header is not text"))?;
    let field = |key: &str| -> Option<&str> {
        let i = header.find(&format!("'{key}'"))?;
        let rest = &header[i + key.len() + 2..];
        let rest = rest.trim_start().strip_prefix(':')?.trim_start();
        Some(rest)
    };
    let descr = field("descr").ok_or_else(|| bad("no descr"))?;
    let descr = descr
        .trim_start_matches('\'')
        .split('\'')
        .next()
        .unwrap_or_default();
    let datatype = match descr {
        "<f4" => "FP32",
        "<f8" => "FP64",
        "<f2" => "FP16",
        "<i4" => "INT32",
        "<i8" => "INT64",
        "<i2" => "INT16",
        "|i1" => "INT8",
        "|u1" => "UINT8",
        "<u2" => "UINT16",
        "<u4" => "UINT32",
        "<u8" => "UINT64",
        "|b1" => "BOOL",
        other => {
            return Err(bad(&format!(
                "dtype {other} is not supported (little-endian numbers and bool only)"
            )));
        }
    };
    if field("fortran_order").is_some_and(|v| v.starts_with("True")) {
        return Err(bad(
            "Fortran order is not supported; save with np.ascontiguousarray",
        ));
    }
    let shape_text = field("shape").ok_or_else(|| bad("no shape"))?;
    let inner = shape_text
        .trim_start_matches('(')
        .split(')')
        .next()
        .unwrap_or_default();
    let shape: Vec<i64> = inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<i64>().map_err(|_| bad("bad shape")))
        .collect::<Result<_, _>>()?;
    let body = &data[start + header_len..];
    let elem = match datatype {
        "FP64" | "INT64" | "UINT64" => 8,
        "FP32" | "INT32" | "UINT32" => 4,
        "FP16" | "INT16" | "UINT16" => 2,
        _ => 1,
    };
    let want = shape
        .iter()
        .try_fold(elem, |acc: usize, &d| acc.checked_mul(d as usize))
        .ok_or_else(|| bad("shape overflows"))?;
    if body.len() != want {
        return Err(bad(&format!(
            "{} data bytes, shape {shape:?} needs {want}",
            body.len()
        )));
    }
    Ok(InputTensor::raw(
        name,
        datatype,
        shape,
        Bytes::copy_from_slice(body),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy(descr: &str, shape: &str, body: &[u8]) -> Vec<u8> {
        let mut h = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
        while (10 + h.len() + 1) % 64 != 0 {
            h.push(' ');
        }
        h.push('\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend_from_slice(&(h.len() as u16).to_le_bytes());
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn reads_float_and_int_arrays() {
        let body: Vec<u8> = [1.0f32, 2.0, 3.0, 4.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let t = read_npy("x", &npy("<f4", "(2, 2)", &body)).unwrap();
        assert_eq!((t.datatype.as_str(), t.shape.clone()), ("FP32", vec![2, 2]));
        let t = read_npy("x", &npy("<i8", "(3,)", &[0u8; 24])).unwrap();
        assert_eq!(t.shape, vec![3]);
        assert!(read_npy("x", &npy("<f4", "(3,)", &[0u8; 8])).is_err());
        assert!(read_npy("x", &npy(">f4", "(1,)", &[0u8; 4])).is_err());
        assert!(read_npy("x", b"not numpy").is_err());
    }
}
