//! Reading NumPy `.npy` files (format 1.0–3.0, little-endian, C order) into raw tensors:
//! `npyz` reads the header, [`DataType`] names the element type on the wire.

use std::fmt::Display;

use bytes::Bytes;
use npyz::{DType, Endianness, NpyHeader, Order, TypeChar, TypeStr};
use troupe_proto::DataType;

use crate::{ClientError, InputTensor};

/// Parses a `.npy` file into an input tensor named `name`.
pub fn read_npy(name: &str, data: &[u8]) -> Result<InputTensor, ClientError> {
    let bad =
        |m: &dyn Display| ClientError::Decode(format!("not a valid .npy file for '{name}': {m}"));
    let mut body = data;
    let header = NpyHeader::from_reader(&mut body).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => bad(&"truncated header"),
        _ => bad(&e),
    })?;
    let data_type = match header.dtype() {
        DType::Plain(t) => data_type(&t).ok_or_else(|| t.to_string()),
        other => Err(other.descr()),
    }
    .map_err(|descr| {
        bad(&format!(
            "dtype {descr} is not supported (little-endian numbers and bool only)"
        ))
    })?;
    if header.order() == Order::Fortran {
        return Err(bad(
            &"Fortran order is not supported; save with np.ascontiguousarray",
        ));
    }
    let dims: Vec<usize> = header
        .shape()
        .iter()
        .map(|&d| usize::try_from(d))
        .collect::<Result<_, _>>()
        .map_err(|_| bad(&"bad shape"))?;
    let shape: Vec<i64> = dims
        .iter()
        .map(|&d| i64::try_from(d))
        .collect::<Result<_, _>>()
        .map_err(|_| bad(&"bad shape"))?;
    let want = data_type
        .dense_len(&dims)
        .ok_or_else(|| bad(&"shape overflows"))?;
    if body.len() != want {
        return Err(bad(&format!(
            "{} data bytes, shape {shape:?} needs {want}",
            body.len()
        )));
    }
    Ok(InputTensor::raw(
        name,
        data_type.wire_name(),
        shape,
        Bytes::copy_from_slice(body),
    ))
}

/// The wire data type of a NumPy type string: bool, integers and floats in the wire's
/// byte order (`|` for one byte, `<` above).
fn data_type(t: &TypeStr) -> Option<DataType> {
    let d = match (t.type_char(), t.size_field()) {
        (TypeChar::Bool, 1) => DataType::Bool,
        (TypeChar::Int, 1) => DataType::I8,
        (TypeChar::Int, 2) => DataType::I16,
        (TypeChar::Int, 4) => DataType::I32,
        (TypeChar::Int, 8) => DataType::I64,
        (TypeChar::Uint, 1) => DataType::U8,
        (TypeChar::Uint, 2) => DataType::U16,
        (TypeChar::Uint, 4) => DataType::U32,
        (TypeChar::Uint, 8) => DataType::U64,
        (TypeChar::Float, 2) => DataType::F16,
        (TypeChar::Float, 4) => DataType::F32,
        (TypeChar::Float, 8) => DataType::F64,
        _ => return None,
    };
    let order = match d.size() {
        Some(1) => Endianness::Irrelevant,
        _ => Endianness::Little,
    };
    (t.endianness() == order).then_some(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy_v(major: u8, descr: &str, fortran: bool, shape: &str, body: &[u8]) -> Vec<u8> {
        let fortran = if fortran { "True" } else { "False" };
        let mut h = format!("{{'descr': {descr}, 'fortran_order': {fortran}, 'shape': {shape}, }}");
        let pre = if major == 1 { 10 } else { 12 };
        while (pre + h.len() + 1) % 64 != 0 {
            h.push(' ');
        }
        h.push('\n');
        let mut out = vec![0x93, b'N', b'U', b'M', b'P', b'Y', major, 0];
        if major == 1 {
            out.extend_from_slice(&(h.len() as u16).to_le_bytes());
        } else {
            out.extend_from_slice(&(h.len() as u32).to_le_bytes());
        }
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(body);
        out
    }

    fn npy(descr: &str, shape: &str, body: &[u8]) -> Vec<u8> {
        npy_v(1, &format!("'{descr}'"), false, shape, body)
    }

    fn err(data: &[u8]) -> String {
        read_npy("x", data).unwrap_err().to_string()
    }

    #[test]
    fn reads_float_and_int_arrays() {
        let body: Vec<u8> = [1.0f32, 2.0, 3.0, 4.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let t = read_npy("x", &npy("<f4", "(2, 2)", &body)).unwrap();
        assert_eq!((t.datatype.as_str(), t.shape.clone()), ("FP32", vec![2, 2]));
        assert_eq!(&t.data[..], &body[..]);
        let t = read_npy("x", &npy("<i8", "(3,)", &[0u8; 24])).unwrap();
        assert_eq!(t.shape, vec![3]);
        assert!(read_npy("x", &npy("<f4", "(3,)", &[0u8; 8])).is_err());
        assert!(read_npy("x", &npy(">f4", "(1,)", &[0u8; 4])).is_err());
        assert!(read_npy("x", b"not numpy").is_err());
    }

    #[test]
    fn every_supported_dtype_and_version() {
        for (descr, wire) in [
            ("|b1", "BOOL"),
            ("|i1", "INT8"),
            ("<i2", "INT16"),
            ("<i4", "INT32"),
            ("<i8", "INT64"),
            ("|u1", "UINT8"),
            ("<u2", "UINT16"),
            ("<u4", "UINT32"),
            ("<u8", "UINT64"),
            ("<f2", "FP16"),
            ("<f4", "FP32"),
            ("<f8", "FP64"),
        ] {
            let size = crate::wire_data_type(wire)
                .and_then(DataType::size)
                .unwrap();
            for major in [1, 2, 3] {
                let f = npy_v(
                    major,
                    &format!("'{descr}'"),
                    false,
                    "(2,)",
                    &vec![0; 2 * size],
                );
                let t = read_npy("x", &f).unwrap_or_else(|e| panic!("{descr} v{major}: {e}"));
                assert_eq!((t.datatype.as_str(), t.shape.clone()), (wire, vec![2]));
            }
        }
        let scalar = read_npy("x", &npy("<f8", "()", &[0; 8])).unwrap();
        assert!(scalar.shape.is_empty());
    }

    #[test]
    fn errors_name_the_tensor_and_the_problem() {
        let pre = "bad response: not a valid .npy file for 'x': ";
        let unsupported = "is not supported (little-endian numbers and bool only)";
        assert_eq!(
            err(&npy(">f4", "(1,)", &[0; 4])),
            format!("{pre}dtype >f4 {unsupported}")
        );
        assert_eq!(
            err(&npy("<c16", "(1,)", &[0; 16])),
            format!("{pre}dtype <c16 {unsupported}")
        );
        assert_eq!(
            err(&npy("|S3", "(1,)", &[0; 3])),
            format!("{pre}dtype |S3 {unsupported}")
        );
        assert!(err(&npy_v(1, "[('a', '<f4')]", false, "(1,)", &[0; 4])).contains(unsupported));
        assert_eq!(
            err(&npy_v(1, "'<f4'", true, "(2, 2)", &[0; 16])),
            format!("{pre}Fortran order is not supported; save with np.ascontiguousarray")
        );
        assert_eq!(
            err(&npy("<f4", "(1, 16)", &[0; 60])),
            format!("{pre}60 data bytes, shape [1, 16] needs 64")
        );
        assert_eq!(
            err(&npy("<f4", "(1, 16)", &[])[..20]),
            format!("{pre}truncated header")
        );
        assert!(err(b"not numpy").starts_with(pre));
        assert!(err(b"\x93NUMPY\x04\x00\x00\x00").contains("version"));
    }
}
