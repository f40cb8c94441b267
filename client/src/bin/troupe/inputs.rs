//! What the command line sends: `--input` specs, `.npy` files, JSON data files, tensor flags.

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use serde_json::Value;
use troupe_client::troupe_proto::troupe as tpb;
use troupe_client::{DataType, InputTensor, read_npy, wire_data_type};

use crate::failure::Failure;

pub(crate) fn parse_input(spec: &str) -> Result<InputTensor> {
    let (name, rest) = spec.split_once('=').with_context(|| {
        format!("--input {spec:?}: expected NAME=@FILE.npy or NAME=SHAPE:VALUES")
    })?;
    if let Some(path) = rest.strip_prefix('@') {
        let data = std::fs::read(path).with_context(|| format!("cannot read {path}"))?;
        return Ok(read_npy(name, &data)?);
    }
    let (shape, values) = rest
        .split_once(':')
        .with_context(|| format!("--input {spec:?}: expected NAME=D1,D2:V1,V2,..."))?;
    let shape: Vec<i64> = shape
        .split(',')
        .map(|d| {
            d.trim()
                .parse()
                .with_context(|| format!("bad dimension {d:?}"))
        })
        .collect::<Result<_>>()?;
    let values: Vec<f32> = values
        .split(',')
        .map(|v| v.trim().parse().with_context(|| format!("bad value {v:?}")))
        .collect::<Result<_>>()?;
    let n: i64 = shape.iter().product();
    if n as usize != values.len() {
        bail!(
            "--input {name}: shape {shape:?} holds {n} values, {} given",
            values.len()
        );
    }
    Ok(InputTensor::f32(name, shape, &values))
}

/// `NAME:DATATYPE:D1,D2` (dims may be empty).
pub(crate) fn tensor_flag(t: &str) -> Result<tpb::TensorSpec> {
    let mut parts = t.splitn(3, ':');
    let (Some(name), Some(dt), dims) = (parts.next(), parts.next(), parts.next()) else {
        bail!("{t:?}: expected NAME:DATATYPE:D1,D2");
    };
    let dims = dims
        .unwrap_or("")
        .split(',')
        .filter(|d| !d.trim().is_empty())
        .map(|d| {
            d.trim()
                .parse::<i64>()
                .with_context(|| format!("{t:?}: bad dimension {d:?}"))
        })
        .collect::<Result<_>>()?;
    Ok(tpb::TensorSpec {
        name: name.into(),
        data_type: dt.to_ascii_uppercase(),
        dims,
    })
}

/// The data types a `--data-file` may hold.
const DATA_FILE_TYPES: [DataType; 7] = [
    DataType::F32,
    DataType::F64,
    DataType::I32,
    DataType::I64,
    DataType::U8,
    DataType::Bool,
    DataType::Bytes,
];

pub(crate) fn parse_data_file(path: &std::path::Path) -> Result<Vec<InputTensor>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let v: Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    let inputs = v["inputs"]
        .as_array()
        .with_context(|| format!("{}: no \"inputs\" array", path.display()))?;
    inputs
        .iter()
        .map(|i| {
            let name = i["name"].as_str().context("input without \"name\"")?;
            let datatype = i["datatype"].as_str().unwrap_or(DataType::F32.wire_name());
            let shape: Vec<i64> = i["shape"]
                .as_array()
                .context("input without \"shape\"")?
                .iter()
                .map(|d| d.as_i64().context("bad dim"))
                .collect::<Result<_>>()?;
            let data = i["data"].as_array().context("input without \"data\"")?;
            // Each value as a number, written little-endian by `le`.
            let nums = |le: fn(f64) -> Vec<u8>| -> Result<Vec<u8>> {
                let each = data
                    .iter()
                    .map(|x| x.as_f64().context("non-numeric value").map(le));
                Ok(each.collect::<Result<Vec<_>>>()?.concat())
            };
            let bytes: Vec<u8> = match wire_data_type(datatype) {
                Some(DataType::F32) => nums(|x| (x as f32).to_le_bytes().to_vec())?,
                Some(DataType::F64) => nums(|x| x.to_le_bytes().to_vec())?,
                Some(DataType::I32) => nums(|x| (x as i32).to_le_bytes().to_vec())?,
                Some(DataType::I64) => nums(|x| (x as i64).to_le_bytes().to_vec())?,
                Some(DataType::U8) => nums(|x| vec![x as u8])?,
                Some(DataType::Bool) => data
                    .iter()
                    .map(|x| u8::from(x.as_bool().unwrap_or(false)))
                    .collect(),
                Some(DataType::Bytes) => troupe_proto::bytes::encode_bytes(
                    data.iter().map(|x| x.as_str().unwrap_or("").as_bytes()),
                )
                .to_vec(),
                _ => {
                    let supported: Vec<&str> =
                        DATA_FILE_TYPES.iter().map(|d| d.wire_name()).collect();
                    bail!(
                        "datatype {datatype} is not supported in data files ({})",
                        supported.join(", ")
                    )
                }
            };
            Ok(InputTensor::raw(name, datatype, shape, Bytes::from(bytes)))
        })
        .collect()
}

/// The inputs of `infer` and `explain`: `--input` flags, then a `--data-file`.
pub(crate) fn collect_inputs(
    inputs: &[String],
    data_file: Option<&std::path::Path>,
) -> Result<Vec<InputTensor>, Failure> {
    let mut tensors = inputs
        .iter()
        .map(|s| parse_input(s))
        .collect::<Result<Vec<_>>>()?;
    if let Some(f) = data_file {
        tensors.extend(parse_data_file(f)?);
    }
    if tensors.is_empty() {
        return Err(Failure::Usage(anyhow!(
            "give inputs with --input NAME=... or --data-file FILE"
        )));
    }
    Ok(tensors)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data_file(json: &str) -> Result<Vec<InputTensor>> {
        let f = tempfile::NamedTempFile::new()?;
        std::fs::write(f.path(), json)?;
        parse_data_file(f.path())
    }

    #[test]
    fn data_files_hold_the_wire_types_they_name() {
        let t = data_file(
            r#"{"inputs":[{"name":"a","shape":[2],"data":[1.5,2]},
            {"name":"b","datatype":"INT64","shape":[1],"data":[-3]},
            {"name":"c","datatype":"BOOL","shape":[2],"data":[true,false]},
            {"name":"d","datatype":"BYTES","shape":[1],"data":["hi"]}]}"#,
        )
        .unwrap();
        assert_eq!(t[0].datatype, "FP32");
        assert_eq!(
            &t[0].data[..],
            [1.5f32.to_le_bytes(), 2f32.to_le_bytes()].concat()
        );
        assert_eq!(&t[1].data[..], (-3i64).to_le_bytes());
        assert_eq!(&t[2].data[..], [1, 0]);
        assert_eq!(
            &t[3].data[..],
            troupe_proto::bytes::encode_bytes([&b"hi"[..]])
        );
        for dt in ["INT16", "fp32", "TYPE_FP32"] {
            let e = data_file(&format!(
                r#"{{"inputs":[{{"name":"x","datatype":"{dt}","shape":[1],"data":[1]}}]}}"#
            ))
            .unwrap_err();
            assert_eq!(
                e.to_string(),
                format!(
                    "datatype {dt} is not supported in data files (FP32, FP64, INT32, INT64, UINT8, BOOL, BYTES)"
                )
            );
        }
    }

    #[test]
    fn input_specs() {
        let t = parse_input("x=2,2:1,2,3,4").unwrap();
        assert_eq!((t.datatype.as_str(), t.shape.clone()), ("FP32", vec![2, 2]));
        assert!(parse_input("x=2,2:1,2,3").is_err());
        assert!(parse_input("x").is_err());
        let s = tensor_flag("y:fp32:3,4").unwrap();
        assert_eq!((s.data_type.as_str(), s.dims), ("FP32", vec![3, 4]));
    }
}
