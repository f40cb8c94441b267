//! The JSON forms of the Open Inference Protocol's REST answers other than inference
//! (Triton's shapes, which `tritonclient.http` and `perf_analyzer` read): server and model
//! metadata, model configuration, statistics and the repository index. Each is made from
//! the gRPC answer, so both protocols say the same.

use serde_json::{Value, json};

use crate::inference as pb;
use crate::rest::tensor::parameters_to_json;

pub fn server_metadata(m: &pb::ServerMetadataResponse) -> Value {
    json!({"name": m.name, "version": m.version, "extensions": m.extensions})
}

fn tensors(ts: &[pb::model_metadata_response::TensorMetadata]) -> Value {
    ts.iter()
        .map(|t| json!({"name": t.name, "datatype": t.datatype, "shape": t.shape}))
        .collect()
}

pub fn model_metadata(m: &pb::ModelMetadataResponse) -> Value {
    let mut v = json!({
        "name": m.name,
        "versions": m.versions,
        "platform": m.platform,
        "inputs": tensors(&m.inputs),
        "outputs": tensors(&m.outputs),
    });
    if !m.parameters.is_empty() {
        v["parameters"] = Value::Object(parameters_to_json(&m.parameters));
    }
    v
}

/// A REST client's side: model metadata JSON as the gRPC answer (`model`: the name when
/// the JSON lacks one; missing fields are empty).
pub fn model_metadata_from_json(v: &Value, model: &str) -> pb::ModelMetadataResponse {
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let tensors = |key: &str| -> Vec<pb::model_metadata_response::TensorMetadata> {
        v[key]
            .as_array()
            .map(|ts| {
                ts.iter()
                    .map(|t| pb::model_metadata_response::TensorMetadata {
                        name: t["name"].as_str().unwrap_or_default().to_string(),
                        datatype: t["datatype"].as_str().unwrap_or_default().to_string(),
                        shape: t["shape"]
                            .as_array()
                            .map(|d| d.iter().filter_map(Value::as_i64).collect())
                            .unwrap_or_default(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    pb::ModelMetadataResponse {
        name: v["name"].as_str().unwrap_or(model).to_string(),
        versions: strings(&v["versions"]),
        platform: v["platform"].as_str().unwrap_or_default().to_string(),
        inputs: tensors("inputs"),
        outputs: tensors("outputs"),
        parameters: Default::default(),
    }
}

fn data_type(t: i32) -> &'static str {
    pb::DataType::try_from(t).map_or("TYPE_INVALID", |d| d.as_str_name())
}

pub fn model_config(c: &pb::ModelConfig) -> Value {
    let mut v = json!({
        "name": c.name,
        "platform": c.platform,
        "backend": c.backend,
        "max_batch_size": c.max_batch_size,
        "input": c.input.iter().map(|i| json!({"name": i.name, "data_type": data_type(i.data_type), "dims": i.dims})).collect::<Vec<_>>(),
        "output": c.output.iter().map(|o| json!({"name": o.name, "data_type": data_type(o.data_type), "dims": o.dims})).collect::<Vec<_>>(),
        "instance_group": c.instance_group.iter().map(|g| json!({
            "name": g.name,
            "kind": pb::model_instance_group::Kind::try_from(g.kind).map_or("KIND_AUTO", |k| k.as_str_name()),
            "count": g.count,
        })).collect::<Vec<_>>(),
        "default_model_filename": c.default_model_filename,
    });
    if let Some(d) = &c.dynamic_batching {
        v["dynamic_batching"] = json!({
            "preferred_batch_size": d.preferred_batch_size,
            "max_queue_delay_microseconds": d.max_queue_delay_microseconds,
        });
    }
    v
}

fn duration(d: Option<&pb::StatisticDuration>) -> Value {
    let d = d.cloned().unwrap_or_default();
    json!({"count": d.count, "ns": d.ns})
}

pub fn model_statistics(s: &pb::ModelStatisticsResponse) -> Value {
    let models: Vec<Value> = s
        .model_stats
        .iter()
        .map(|m| {
            let i = m.inference_stats.clone().unwrap_or_default();
            json!({
                "name": m.name,
                "version": m.version,
                "last_inference": m.last_inference,
                "inference_count": m.inference_count,
                "execution_count": m.execution_count,
                "inference_stats": {
                    "success": duration(i.success.as_ref()),
                    "fail": duration(i.fail.as_ref()),
                    "queue": duration(i.queue.as_ref()),
                    "compute_input": duration(i.compute_input.as_ref()),
                    "compute_infer": duration(i.compute_infer.as_ref()),
                    "compute_output": duration(i.compute_output.as_ref()),
                    "cache_hit": duration(i.cache_hit.as_ref()),
                    "cache_miss": duration(i.cache_miss.as_ref()),
                },
                "batch_stats": m.batch_stats.iter().map(|b| json!({
                    "batch_size": b.batch_size,
                    "compute_input": duration(b.compute_input.as_ref()),
                    "compute_infer": duration(b.compute_infer.as_ref()),
                    "compute_output": duration(b.compute_output.as_ref()),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({ "model_stats": models })
}

pub fn repository_index(r: &pb::RepositoryIndexResponse) -> Value {
    r.models
        .iter()
        .map(
            |m| json!({"name": m.name, "version": m.version, "state": m.state, "reason": m.reason}),
        )
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statistics_have_every_phase_as_numbers() {
        let s = pb::ModelStatisticsResponse {
            model_stats: vec![pb::ModelStatistics {
                name: "m".into(),
                inference_stats: Some(pb::InferStatistics {
                    compute_infer: Some(pb::StatisticDuration { count: 3, ns: 9 }),
                    ..Default::default()
                }),
                ..Default::default()
            }],
        };
        let v = model_statistics(&s);
        let st = &v["model_stats"][0]["inference_stats"];
        assert_eq!(st["compute_infer"], json!({"count": 3, "ns": 9}));
        assert_eq!(st["compute_input"], json!({"count": 0, "ns": 0}));
    }

    #[test]
    fn metadata_reads_back_as_written() {
        let m = pb::ModelMetadataResponse {
            name: "m".into(),
            versions: vec!["1".into()],
            platform: "onnxruntime_onnx".into(),
            inputs: vec![pb::model_metadata_response::TensorMetadata {
                name: "x".into(),
                datatype: "FP32".into(),
                shape: vec![-1, 16],
            }],
            ..Default::default()
        };
        assert_eq!(model_metadata_from_json(&model_metadata(&m), "other"), m);
    }

    #[test]
    fn config_names_types_as_triton_does() {
        let c = pb::ModelConfig {
            name: "m".into(),
            input: vec![pb::ModelInput {
                name: "x".into(),
                data_type: pb::DataType::TypeFp32 as i32,
                dims: vec![16],
                ..Default::default()
            }],
            ..Default::default()
        };
        assert_eq!(model_config(&c)["input"][0]["data_type"], "TYPE_FP32");
    }
}
