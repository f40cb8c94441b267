//! Fixed tensors from a JSON input file.

use std::path::Path;

use serde::Deserialize;
use troupe_client::InputTensor;

use super::generate::{DataType, Generate};
use super::shape::numel;
use crate::error::{LoadError, read_text};

/// The JSON input file: `{"inputs":[{"name":..,"datatype":"FP32","shape":[..],"data":[..]}]}`.
/// `data` is flat or nested in row-major order; BOOL takes `true`/`false` (or 0/1).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputFile {
    pub inputs: Vec<FileTensor>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileTensor {
    pub name: String,
    pub datatype: String,
    pub shape: Vec<i64>,
    pub data: serde_json::Value,
}

impl InputFile {
    /// Reads and parses a file.
    pub fn load(path: &Path) -> Result<Self, LoadError> {
        let text = read_text(path)?;
        Self::parse(&text)
            .map_err(|e| LoadError::Invalid(format!("input file {}: {e}", path.display())))
    }

    /// Parses JSON text.
    pub fn parse(text: &str) -> Result<Self, LoadError> {
        let f: InputFile = serde_json::from_str(text)
            .map_err(|e| LoadError::Invalid(format!("not a valid input file: {e}")))?;
        if f.inputs.is_empty() {
            return Err(LoadError::Invalid("the input file has no inputs".into()));
        }
        Ok(f)
    }

    /// The tensors, encoded and checked (element count against the shape).
    pub fn tensors(&self) -> Result<Vec<InputTensor>, LoadError> {
        self.inputs
            .iter()
            .map(|t| {
                let what = format!("input '{}'", t.name);
                let dt = <DataType as Generate>::parse(&t.datatype).ok_or_else(|| {
                    LoadError::Invalid(format!(
                        "{what}: data type '{}' is not supported (BOOL, UINT8-64, INT8-64, FP16, BF16, FP32, FP64)",
                        t.datatype
                    ))
                })?;
                let numel = numel(&t.shape, &what)?;
                let mut leaves = Vec::new();
                flatten(&t.data, &mut leaves);
                if leaves.len() != numel {
                    return Err(LoadError::Invalid(format!(
                        "{what}: shape {:?} needs {numel} values, data has {}",
                        t.shape,
                        leaves.len()
                    )));
                }
                let data = dt.encode(&leaves, &what)?;
                Ok(InputTensor::raw(&t.name, dt.wire_name(), t.shape.clone(), data))
            })
            .collect()
    }
}

fn flatten<'a>(v: &'a serde_json::Value, out: &mut Vec<&'a serde_json::Value>) {
    match v {
        serde_json::Value::Array(items) => items.iter().for_each(|i| flatten(i, out)),
        other => out.push(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_file() {
        let f = InputFile::parse(
            r#"{"inputs":[
                {"name":"a","datatype":"FP32","shape":[2,2],"data":[[1,2],[3,4.5]]},
                {"name":"b","datatype":"BOOL","shape":[2],"data":[true,0]},
                {"name":"c","datatype":"INT64","shape":[1],"data":[-5]},
                {"name":"d","datatype":"FP16","shape":[1],"data":[0.5]}
            ]}"#,
        )
        .expect("parse");
        let t = f.tensors().expect("tensors");
        assert_eq!(t[0].data.len(), 16);
        assert_eq!(&t[0].data[12..], &4.5f32.to_le_bytes());
        assert_eq!(&t[1].data[..], &[1, 0]);
        assert_eq!(&t[2].data[..], &(-5i64).to_le_bytes());
        assert_eq!(&t[3].data[..], &half::f16::from_f32(0.5).to_le_bytes());

        let wrong_count = InputFile::parse(
            r#"{"inputs":[{"name":"a","datatype":"FP32","shape":[3],"data":[1]}]}"#,
        )
        .expect("parse");
        assert!(wrong_count.tensors().is_err());
        let out_of_range = InputFile::parse(
            r#"{"inputs":[{"name":"a","datatype":"UINT8","shape":[1],"data":[300]}]}"#,
        )
        .expect("parse");
        assert!(out_of_range.tensors().is_err());
        assert!(InputFile::parse(r#"{"inputs":[]}"#).is_err());
        assert!(InputFile::parse("not json").is_err());
    }
}
