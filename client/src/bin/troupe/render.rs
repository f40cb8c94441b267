//! What the command line prints: answers, model states and statuses, as JSON or as text,
//! and the one way its tables are laid out ([`print_table`]).

use comfy_table::{CellAlignment, Row, Table};
use serde_json::{Value, json};
use troupe_client::troupe_proto::troupe as tpb;
use troupe_client::{DataType, InferResult, wire_data_type};

/// The elements of a tensor as JSON values (empty for a data type the wire does not name).
pub(crate) fn decode_values(datatype: &str, data: &[u8]) -> Vec<Value> {
    macro_rules! nums {
        ($t:ty) => {
            nums!($t, |v: $t| v)
        };
        ($t:ty, $to_json:expr) => {
            data.chunks_exact(size_of::<$t>())
                .map(|c| {
                    json!($to_json(<$t>::from_le_bytes(
                        c.try_into().unwrap_or_default()
                    )))
                })
                .collect()
        };
    }
    let Some(data_type) = wire_data_type(datatype) else {
        return Vec::new();
    };
    match data_type {
        DataType::F32 => nums!(f32),
        DataType::F64 => nums!(f64),
        DataType::I8 => nums!(i8),
        DataType::I16 => nums!(i16),
        DataType::I32 => nums!(i32),
        DataType::I64 => nums!(i64),
        DataType::U8 => nums!(u8),
        DataType::U16 => nums!(u16),
        DataType::U32 => nums!(u32),
        DataType::U64 => nums!(u64),
        DataType::Bool => data.iter().map(|&b| json!(b != 0)).collect(),
        DataType::F16 => nums!(half::f16, half::f16::to_f32),
        DataType::BF16 => nums!(half::bf16, half::bf16::to_f32),
        DataType::Bytes => troupe_proto::bytes::bytes_elements(data)
            .map(|es| {
                es.into_iter()
                    .map(|e| json!(String::from_utf8_lossy(e)))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

pub(crate) fn result_json(r: &InferResult) -> Value {
    json!({
        "id": r.id,
        "model_name": r.model_name,
        "model_version": r.model_version,
        "outputs": r.outputs.iter().map(|o| json!({
            "name": o.name, "datatype": o.datatype, "shape": o.shape, "data": decode_values(&o.datatype, &o.data),
        })).collect::<Vec<_>>(),
    })
}

pub(crate) use troupe_client::troupe_proto::labels::{backend_name, state_name};

/// A truth (a label or a value) as JSON; null when there is none.
pub(crate) fn truth_json(t: Option<&tpb::Truth>) -> Value {
    match t.and_then(|t| t.truth.as_ref()) {
        Some(tpb::truth::Truth::Label(l)) => json!(l),
        Some(tpb::truth::Truth::Value(v)) => json!(v),
        None => Value::Null,
    }
}

/// A model version's lineage: its weights' digest, provenance and signature check.
pub(crate) fn lineage_json(l: &tpb::Lineage) -> Value {
    let p = l.provenance.clone().unwrap_or_default();
    let s = l.signature.clone().unwrap_or_default();
    json!({
        "digest": l.digest,
        "manifest_digest": (!l.manifest_digest.is_empty()).then_some(&l.manifest_digest),
        "provenance": {
            "source": p.source, "training_run": p.training_run, "code_commit": p.code_commit,
            "data_digest": p.data_digest, "labels": p.labels,
        },
        "signature": {"state": s.state, "key": s.key, "covers": s.covers, "signed_digest": s.signed_digest, "reason": s.reason},
        "loaded_by": l.node, "loaded_ms": l.loaded_ms,
    })
}

pub(crate) fn status_json(s: &tpb::ModelStatus) -> Value {
    let spec = s.spec.clone().unwrap_or_default();
    json!({
        "name": spec.name, "version": spec.version, "backend": backend_name(spec.backend),
        "state": state_name(s.state), "reason": s.reason,
        "ready_replicas": s.ready_replicas, "queue_length": s.queue_length,
        "artifact_uri": spec.artifact_uri, "sha256": spec.sha256, "max_batch_size": spec.max_batch_size,
        "inputs": spec.inputs.iter().map(|t| json!({"name": t.name, "datatype": t.data_type, "dims": t.dims})).collect::<Vec<_>>(),
        "outputs": spec.outputs.iter().map(|t| json!({"name": t.name, "datatype": t.data_type, "dims": t.dims})).collect::<Vec<_>>(),
        "text": spec.text.as_ref().map(|t| json!({"tokenizer": t.tokenizer, "max_length": t.max_length,
            "pooling": match tpb::Pooling::try_from(t.pooling) { Ok(tpb::Pooling::Cls) => "cls", Ok(tpb::Pooling::Mean) => "mean", _ => "" },
            "normalize": !t.no_normalize, "truncate": !t.refuse_long, "input": t.input, "output": t.output})),
        "replicas": s.replicas.iter().map(|r| json!({"node": r.node_id, "instance": r.instance, "state": state_name(r.state),
            "in_flight": r.in_flight, "restarts": r.restarts, "reason": r.reason})).collect::<Vec<_>>(),
        "lineage": s.lineage.as_ref().map(lineage_json),
    })
}

pub(crate) fn print_json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

/// A plain-text table for terminals and pipes: the header row (none when `header` is
/// empty), no borders, columns two spaces apart, those in `right` (numbers) aligned right,
/// and no trailing spaces.
pub(crate) fn table<R: Into<Row>>(
    header: &[&str],
    right: &[usize],
    rows: impl IntoIterator<Item = R>,
) -> Vec<String> {
    let mut t = Table::new();
    t.load_style(comfy_table::presets::NOTHING);
    if !header.is_empty() {
        t.set_header(header.to_vec());
    }
    t.add_rows(rows);
    for (i, column) in t.column_iter_mut().enumerate() {
        column.set_padding((0, 2));
        if right.contains(&i) {
            column.set_cell_alignment(CellAlignment::Right);
        }
    }
    t.lines().map(|l| l.trim_end().to_string()).collect()
}

/// Prints [`table`]'s lines.
pub(crate) fn print_table<R: Into<Row>>(
    header: &[&str],
    right: &[usize],
    rows: impl IntoIterator<Item = R>,
) {
    for line in table(header, right, rows) {
        println!("{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_plain_and_aligned() {
        let rows = [["mlp_onnx", "1", "3/3"], ["a", "10", "0/1"]];
        assert_eq!(
            table(&["NAME", "VERSION", "REPLICAS"], &[2], rows),
            [
                "NAME      VERSION  REPLICAS",
                "mlp_onnx  1             3/3",
                "a         10            0/1",
            ]
        );
        // Without a header; a row may have a cell more than the others.
        let rows = [vec!["a", "b"], vec!["ccc", "d", "extra"]];
        assert_eq!(table(&[], &[], rows), ["a    b", "ccc  d  extra"]);
        assert!(table(&[], &[], Vec::<[&str; 1]>::new()).is_empty());
        assert_eq!(table(&["NAME"], &[], Vec::<[&str; 1]>::new()), ["NAME"]);
    }

    #[test]
    fn values_decode_by_wire_data_type() {
        assert_eq!(decode_values("FP32", &1.5f32.to_le_bytes()), [json!(1.5)]);
        assert_eq!(decode_values("INT8", &[0xff]), [json!(-1)]);
        assert_eq!(decode_values("UINT16", &[1, 1, 9]), [json!(257)]);
        assert_eq!(decode_values("BOOL", &[0, 2]), [json!(false), json!(true)]);
        assert_eq!(
            decode_values("FP16", &half::f16::from_f32(0.5).to_le_bytes()),
            [json!(0.5)]
        );
        let texts = troupe_proto::bytes::encode_bytes([&b"hi"[..]]);
        assert_eq!(decode_values("BYTES", &texts), [json!("hi")]);
        assert!(decode_values("fp32", &[0; 4]).is_empty());
        assert!(decode_values("STRING", &[0; 4]).is_empty());
    }
}
