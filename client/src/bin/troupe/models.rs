//! `troupe models ...`: list, get, create and delete models.
use std::path::PathBuf;

use anyhow::{Context, Result, anyhow};
use clap::Subcommand;
use serde_json::{Value, json};
use troupe_client::Client;
use troupe_client::troupe_proto::troupe as tpb;

use crate::failure::Failure;
use crate::inputs::tensor_flag;
use crate::render::{backend_name, print_json, print_table, state_name, status_json};

#[derive(Subcommand, Debug)]
// Parsed once per run: the size of the Create variant costs nothing.
#[allow(clippy::large_enum_variant)]
pub(crate) enum ModelsCmd {
    /// Every model with its state.
    List,
    /// One model's spec and status.
    Get {
        name: String,
        #[arg(long, default_value = "")]
        version: String,
    },
    /// Declare a model and its backend: from a config file like the repository's (a node),
    /// or from flags (a node or a router).
    Create {
        name: String,
        /// config.toml (same format as `DIR/<model>/config.toml`); instead of the flags below.
        #[arg(long, conflicts_with_all = ["backend", "inputs", "outputs"])]
        config: Option<PathBuf>,
        /// torch, onnx or candle.
        #[arg(long)]
        backend: Option<String>,
        /// An input, NAME:DATATYPE:D1,D2 (dims without the batch dim), repeatable.
        #[arg(long = "input", value_name = "NAME:TYPE:DIMS")]
        inputs: Vec<String>,
        /// An output, NAME:DATATYPE:D1,D2, repeatable.
        #[arg(long = "output", value_name = "NAME:TYPE:DIMS")]
        outputs: Vec<String>,
        /// Largest batch (0: the model has no batch dimension).
        #[arg(long, default_value_t = 0)]
        max_batch_size: u32,
        /// Replicas across the cluster (router).
        #[arg(long, default_value_t = 1)]
        replicas: u32,
        /// Backend instances per replica.
        #[arg(long, default_value_t = 1)]
        instances: u32,
        /// CPU cores one replica needs (placement).
        #[arg(long, default_value_t = 0.5)]
        cpu: f64,
        /// Memory one replica needs, in MiB (placement).
        #[arg(long, default_value_t = 256)]
        memory_mb: u64,
        /// The artifact file or its version directory, on the server's file system.
        #[arg(long)]
        artifact: String,
        #[arg(long, default_value = "1")]
        version: String,
        /// Expected sha256 of the artifact.
        #[arg(long, default_value = "")]
        sha256: String,
        /// A text pipeline around the model: BYTES text in, a sentence embedding out
        /// (tokenizer.json and pooling from the files beside the artifact).
        #[arg(long)]
        text: bool,
        /// With --text: tokens per text (default: sentence_bert_config.json's, else 512).
        #[arg(long, default_value_t = 0)]
        max_length: u32,
        /// With --text: refuse texts over max_length instead of truncating them.
        #[arg(long)]
        refuse_long: bool,
        /// Join calls into batches, waiting at most this long (µs) for more, or `auto`:
        /// a window that follows the measured compute time and arrival rate.
        #[arg(long, value_name = "MICROS|auto", value_parser = queue_delay)]
        max_queue_delay_us: Option<tpb::DynamicBatching>,
        /// Record every answer in the prediction store (docs/monitoring.md): classifier,
        /// regression or outputs.
        #[arg(long, value_name = "KIND")]
        monitor: Option<String>,
        /// With --monitor: the output recorded (default: the first).
        #[arg(long, default_value = "", requires = "monitor")]
        monitor_output: String,
        /// With --monitor classifier: class names in score order, comma-separated.
        #[arg(long, value_delimiter = ',', requires = "monitor")]
        classes: Vec<String>,
    },
    /// Unload a model (all versions unless --version).
    Delete {
        name: String,
        #[arg(long, default_value = "")]
        version: String,
    },
}

/// Runs one `troupe models ...` command.
pub(crate) async fn run(cmd: ModelsCmd, c: &mut Client, json: bool) -> Result<(), Failure> {
    match cmd {
        ModelsCmd::List => {
            let list = c
                .models()
                .list(tpb::ListModelsRequest {})
                .await?
                .into_inner();
            if json {
                print_json(&Value::Array(list.models.iter().map(status_json).collect()));
            } else {
                print_table(
                    &[
                        "NAME", "VERSION", "BACKEND", "STATE", "REPLICAS", "QUEUE", "REASON",
                    ],
                    &[4, 5],
                    list.models.iter().map(|m| {
                        let spec = m.spec.clone().unwrap_or_default();
                        [
                            spec.name,
                            spec.version,
                            backend_name(spec.backend).to_string(),
                            state_name(m.state).to_string(),
                            format!("{}/{}", m.ready_replicas, m.replicas.len()),
                            m.queue_length.to_string(),
                            m.reason.clone(),
                        ]
                    }),
                );
            }
        }
        ModelsCmd::Get { name, version } => {
            let s = c
                .models()
                .get(tpb::GetModelRequest { name, version })
                .await?
                .into_inner();
            let v = status_json(&s);
            if json {
                print_json(&v);
            } else {
                let fields = [
                    "name",
                    "version",
                    "backend",
                    "state",
                    "reason",
                    "ready_replicas",
                    "queue_length",
                    "max_batch_size",
                    "artifact_uri",
                    "sha256",
                ]
                .map(|key| {
                    [
                        key.to_string(),
                        v[key].to_string().trim_matches('"').to_string(),
                    ]
                });
                let tensors = [("input", &v["inputs"]), ("output", &v["outputs"])]
                    .into_iter()
                    .flat_map(|(what, list)| {
                        list.as_array().into_iter().flatten().map(move |t| {
                            let name = t["name"].as_str().unwrap_or("");
                            let datatype = t["datatype"].as_str().unwrap_or("");
                            [what.to_string(), format!("{name} {datatype} {}", t["dims"])]
                        })
                    });
                let l = &v["lineage"];
                let lineage = [
                    ("training run", &l["provenance"]["training_run"]),
                    ("source", &l["provenance"]["source"]),
                    ("code commit", &l["provenance"]["code_commit"]),
                    ("data digest", &l["provenance"]["data_digest"]),
                    ("signature", &l["signature"]["state"]),
                ]
                .into_iter()
                .filter_map(|(k, v)| {
                    let v = v.as_str().filter(|s| !s.is_empty())?;
                    Some([k.to_string(), v.to_string()])
                });
                print_table(&[], &[], fields.into_iter().chain(tensors).chain(lineage));
            }
        }
        ModelsCmd::Create {
            name,
            config,
            backend,
            inputs,
            outputs,
            max_batch_size,
            replicas,
            instances,
            cpu,
            memory_mb,
            artifact,
            version,
            sha256,
            text,
            max_length,
            refuse_long,
            max_queue_delay_us,
            monitor,
            monitor_output,
            classes,
        } => {
            let monitoring = monitor
                .map(|kind| {
                    let kind = match kind.to_ascii_lowercase().as_str() {
                        "classifier" => tpb::MonitoredKind::Classifier,
                        "regression" => tpb::MonitoredKind::Regression,
                        "outputs" => tpb::MonitoredKind::Outputs,
                        other => {
                            return Err(Failure::Usage(anyhow!(
                                "--monitor {other}: expected classifier, regression or outputs"
                            )));
                        }
                    };
                    Ok(tpb::Monitoring {
                        kind: kind as i32,
                        output: monitor_output,
                        classes,
                        ..Default::default()
                    })
                })
                .transpose()?;
            let mut spec = tpb::ModelSpec {
                name,
                version,
                artifact_uri: artifact,
                sha256,
                replicas,
                text: text.then(|| tpb::TextPipeline {
                    max_length,
                    refuse_long,
                    ..Default::default()
                }),
                dynamic_batching: max_queue_delay_us,
                monitoring,
                ..Default::default()
            };
            let config_toml = match config {
                Some(path) => std::fs::read_to_string(&path)
                    .with_context(|| format!("cannot read {}", path.display()))?,
                None => {
                    let backend = backend.context(
                        "give --config FILE, or --backend (with --input and --output unless the model describes itself)",
                    )?;
                    let kinds = [
                        tpb::BackendKind::Torch,
                        tpb::BackendKind::Onnx,
                        tpb::BackendKind::Candle,
                    ];
                    let lower = backend.to_ascii_lowercase();
                    spec.backend = kinds
                        .into_iter()
                        .find(|&k| backend_name(k as i32) == lower)
                        .ok_or_else(|| {
                            Failure::Usage(anyhow!(
                                "--backend {lower}: expected torch, onnx or candle"
                            ))
                        })? as i32;
                    spec.inputs = inputs
                        .iter()
                        .map(|t| tensor_flag(t))
                        .collect::<Result<_>>()?;
                    spec.outputs = outputs
                        .iter()
                        .map(|t| tensor_flag(t))
                        .collect::<Result<_>>()?;
                    spec.max_batch_size = max_batch_size;
                    spec.instances = instances;
                    spec.resources = Some(tpb::Resources {
                        cpu,
                        memory_bytes: memory_mb << 20,
                        gpu_memory_bytes: 0,
                    });
                    String::new()
                }
            };
            let req = tpb::CreateModelRequest {
                spec: Some(spec),
                config_toml,
            };
            let s = c.models().create(req).await?.into_inner();
            if json {
                print_json(&status_json(&s));
            } else {
                let spec = s.spec.unwrap_or_default();
                println!(
                    "created {} version {} ({}): {}",
                    spec.name,
                    spec.version,
                    backend_name(spec.backend),
                    state_name(s.state)
                );
            }
        }
        ModelsCmd::Delete { name, version } => {
            c.models()
                .delete(tpb::DeleteModelRequest {
                    name: name.clone(),
                    version,
                })
                .await?;
            if json {
                print_json(&json!({"deleted": name}));
            } else {
                println!("deleted {name}");
            }
        }
    }
    Ok(())
}

/// `--max-queue-delay-us`: microseconds, or `auto`.
fn queue_delay(s: &str) -> Result<tpb::DynamicBatching, String> {
    if s == "auto" {
        return Ok(tpb::DynamicBatching {
            adaptive: true,
            ..Default::default()
        });
    }
    let us = s
        .parse()
        .map_err(|_| format!("{s:?} is neither a number of microseconds nor \"auto\""))?;
    Ok(tpb::DynamicBatching {
        max_queue_delay_us: us,
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::queue_delay;

    #[test]
    fn a_queue_delay_is_microseconds_or_auto() {
        let d = queue_delay("500").unwrap();
        assert_eq!((d.max_queue_delay_us, d.adaptive), (500, false));
        let d = queue_delay("auto").unwrap();
        assert!(d.adaptive);
        let e = queue_delay("soon").unwrap_err();
        assert!(e.contains("\"soon\"") && e.contains("auto"), "{e}");
        assert!(queue_delay("-1").is_err());
    }
}
