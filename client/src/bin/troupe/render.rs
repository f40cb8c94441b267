//! What the command line prints: answers, model states and statuses, as JSON or text.

use serde_json::{Value, json};
use troupe_client::InferResult;
use troupe_client::troupe_proto::troupe as tpb;

pub(crate) fn decode_values(datatype: &str, data: &[u8]) -> Vec<Value> {
    macro_rules! nums {
        ($t:ty, $n:expr) => {
            data.chunks_exact($n)
                .map(|c| json!(<$t>::from_le_bytes(c.try_into().unwrap_or([0; $n]))))
                .collect()
        };
    }
    match datatype {
        "FP32" => nums!(f32, 4),
        "FP64" => nums!(f64, 8),
        "INT32" => nums!(i32, 4),
        "INT64" => nums!(i64, 8),
        "INT16" => nums!(i16, 2),
        "UINT16" => nums!(u16, 2),
        "UINT32" => nums!(u32, 4),
        "UINT64" => nums!(u64, 8),
        "INT8" => data.iter().map(|&b| json!(b as i8)).collect(),
        "UINT8" => data.iter().map(|&b| json!(b)).collect(),
        "BOOL" => data.iter().map(|&b| json!(b != 0)).collect(),
        "FP16" => data
            .chunks_exact(2)
            .map(|c| json!(half::f16::from_le_bytes([c[0], c[1]]).to_f32()))
            .collect(),
        "BF16" => data
            .chunks_exact(2)
            .map(|c| json!(half::bf16::from_le_bytes([c[0], c[1]]).to_f32()))
            .collect(),
        "BYTES" => troupe_proto::bytes::bytes_elements(data)
            .map(|es| {
                es.into_iter()
                    .map(|e| json!(String::from_utf8_lossy(e)))
                    .collect()
            })
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

pub(crate) fn result_json(r: &InferResult) -> Value {
    json!({
        "model_name": r.model_name,
        "model_version": r.model_version,
        "outputs": r.outputs.iter().map(|o| json!({
            "name": o.name, "datatype": o.datatype, "shape": o.shape, "data": decode_values(&o.datatype, &o.data),
        })).collect::<Vec<_>>(),
    })
}

pub(crate) fn state_name(s: i32) -> &'static str {
    match tpb::ModelState::try_from(s) {
        Ok(tpb::ModelState::Pending) => "PENDING",
        Ok(tpb::ModelState::Loading) => "LOADING",
        Ok(tpb::ModelState::Ready) => "READY",
        Ok(tpb::ModelState::Unavailable) => "UNAVAILABLE",
        Ok(tpb::ModelState::Failed) => "FAILED",
        _ => "UNKNOWN",
    }
}

pub(crate) fn backend_name(b: i32) -> &'static str {
    match tpb::BackendKind::try_from(b) {
        Ok(tpb::BackendKind::Torch) => "torch",
        Ok(tpb::BackendKind::Onnx) => "onnx",
        Ok(tpb::BackendKind::Candle) => "candle",
        _ => "?",
    }
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
    })
}

pub(crate) fn print_json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}
