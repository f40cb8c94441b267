//! `troupe`: the command line for Troupe nodes (and, later, routers).
//!
//! Exit codes: 0 done; 1 the server refused the call (the message says why);
//! 2 bad usage or unreadable input; 3 the server cannot be reached.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use clap::{Parser, Subcommand};
use serde_json::{Value, json};
use tracing::Instrument;
use troupe_client::troupe_proto::troupe as tpb;
use troupe_client::{Client, ClientError, InferResult, InputTensor, read_npy};

#[derive(Parser, Debug)]
#[command(
    name = "troupe",
    version,
    about = "Command line for Troupe: model management, inference, health",
    after_help = "Exit codes: 0 done, 1 the server refused the call, 2 bad usage or input, 3 server unreachable."
)]
struct Cli {
    /// Server address (a node or a router).
    #[arg(
        long,
        global = true,
        env = "TROUPE_SERVER",
        default_value = "127.0.0.1:8001"
    )]
    server: String,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    /// Deadline of each call, in seconds.
    #[arg(long, global = true, default_value_t = 30.0)]
    timeout: f64,
    /// Connect over TLS, trusting this CA (PEM). `https://` servers without it use the
    /// public web roots.
    #[arg(long, global = true, env = "TROUPE_TLS_CA")]
    tls_ca: Option<PathBuf>,
    /// The name the server's certificate must carry (default: the host of --server).
    #[arg(long, global = true, env = "TROUPE_TLS_DOMAIN")]
    tls_domain: Option<String>,
    /// Client certificate (PEM) for servers that require one (with --tls-key).
    #[arg(long, global = true, env = "TROUPE_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, global = true, env = "TROUPE_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// W3C traceparent to continue (infer, explain): the call joins that trace.
    #[arg(long, global = true, env = "TRACEPARENT")]
    traceparent: Option<String>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Is the server live and ready, and which models are ready?
    Health,
    /// Manage models (troupe.v1.Models).
    #[command(subcommand)]
    Models(ModelsCmd),
    /// The cluster behind a router: nodes and placements.
    #[command(subcommand)]
    Cluster(ClusterCmd),
    /// Run a model once and print its outputs.
    Infer {
        model: String,
        #[arg(long, default_value = "")]
        version: String,
        /// An input: NAME=@FILE.npy, or NAME=D1,D2:V1,V2,... (FP32 values). Repeatable.
        #[arg(long = "input", value_name = "NAME=...")]
        inputs: Vec<String>,
        /// A text for a BYTES input, one row each; repeat it for a batch.
        #[arg(long = "text", value_name = "TEXT")]
        texts: Vec<String>,
        /// The input --text fills.
        #[arg(long, default_value = "text")]
        text_input: String,
        /// Inputs from JSON: {"inputs":[{"name","datatype","shape","data":[...]}]}.
        #[arg(long, value_name = "FILE")]
        data_file: Option<PathBuf>,
    },
    /// Explain one call: feature attributions of each input (troupe.v1.Explainer).
    Explain {
        model: String,
        #[arg(long, default_value = "")]
        version: String,
        /// saliency, integrated_gradients (torch, candle), occlusion or shapley (all).
        #[arg(long, default_value = "integrated_gradients")]
        method: String,
        /// An input: NAME=@FILE.npy, or NAME=D1,D2:V1,V2,... (FP32 values). Repeatable.
        #[arg(long = "input", value_name = "NAME=...")]
        inputs: Vec<String>,
        /// Inputs from JSON: {"inputs":[{"name","datatype","shape","data":[...]}]}.
        #[arg(long, value_name = "FILE")]
        data_file: Option<PathBuf>,
        /// The output explained (default: the first).
        #[arg(long, default_value = "")]
        output: String,
        /// Element of each output row explained (default: the row's largest).
        #[arg(long)]
        target: Option<i64>,
        /// The reference input's value.
        #[arg(long, default_value_t = 0.0)]
        baseline: f64,
        /// Integrated gradients: path steps (default 32).
        #[arg(long, default_value_t = 0)]
        steps: u32,
        /// Occlusion and Shapley: features per group (default 1).
        #[arg(long, default_value_t = 0)]
        window: u32,
        /// Shapley: sampled feature orders (default 16).
        #[arg(long, default_value_t = 0)]
        samples: u32,
    },
}

#[derive(Subcommand, Debug)]
enum ClusterCmd {
    /// Nodes with their capacity, what is placed on them, and their load.
    Nodes,
    /// Where each model's replicas are, and what is pending (and why).
    Placements {
        /// Only this model.
        #[arg(long, default_value = "")]
        model: String,
    },
}

#[derive(Subcommand, Debug)]
enum ModelsCmd {
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
        /// Join calls into batches, waiting at most this long (µs) for more.
        #[arg(long)]
        max_queue_delay_us: Option<u64>,
    },
    /// Unload a model (all versions unless --version).
    Delete {
        name: String,
        #[arg(long, default_value = "")]
        version: String,
    },
}

/// Errors that pick the exit code.
enum Failure {
    Usage(anyhow::Error),
    Server(tonic::Status),
    Unreachable(String),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Usage(e)
    }
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Status(s)
                if s.code() == tonic::Code::Unavailable && s.message().contains("connect") =>
            {
                Failure::Unreachable(s.message().to_string())
            }
            ClientError::Status(s) => Failure::Server(s),
            ClientError::Connect(e) => Failure::Unreachable(e.to_string()),
            ClientError::Decode(m) => Failure::Usage(anyhow!(m)),
        }
    }
}

impl From<tonic::Status> for Failure {
    fn from(s: tonic::Status) -> Self {
        Failure::from(ClientError::Status(s))
    }
}

fn hint(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        NotFound => "`troupe models list` shows what the server serves",
        InvalidArgument => "`troupe models get MODEL` shows the inputs the model expects",
        FailedPrecondition => "fix the model files or config, then create or load the model again",
        ResourceExhausted => "the server is at its limit: retry later, or send less at once",
        Unavailable => "the model is restarting or unloading: retry shortly",
        DeadlineExceeded => "raise --timeout or reduce the load",
        AlreadyExists => "delete it first with `troupe models delete NAME`",
        _ => "see the server's log for details",
    }
}

fn parse_input(spec: &str) -> Result<InputTensor> {
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
fn tensor_flag(t: &str) -> Result<tpb::TensorSpec> {
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

fn parse_data_file(path: &std::path::Path) -> Result<Vec<InputTensor>> {
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
            let datatype = i["datatype"].as_str().unwrap_or("FP32");
            let shape: Vec<i64> = i["shape"].as_array().context("input without \"shape\"")?.iter().map(|d| d.as_i64().context("bad dim")).collect::<Result<_>>()?;
            let data = i["data"].as_array().context("input without \"data\"")?;
            let nums = || data.iter().map(|x| x.as_f64().context("non-numeric value"));
            let bytes: Vec<u8> = match datatype {
                "FP32" => nums().map(|x| x.map(|x| (x as f32).to_le_bytes().to_vec())).collect::<Result<Vec<_>>>()?.concat(),
                "FP64" => nums().map(|x| x.map(|x| x.to_le_bytes().to_vec())).collect::<Result<Vec<_>>>()?.concat(),
                "INT32" => nums().map(|x| x.map(|x| (x as i32).to_le_bytes().to_vec())).collect::<Result<Vec<_>>>()?.concat(),
                "INT64" => nums().map(|x| x.map(|x| (x as i64).to_le_bytes().to_vec())).collect::<Result<Vec<_>>>()?.concat(),
                "UINT8" => nums().map(|x| x.map(|x| vec![x as u8])).collect::<Result<Vec<_>>>()?.concat(),
                "BOOL" => data.iter().map(|x| vec![u8::from(x.as_bool().unwrap_or(false))]).collect::<Vec<_>>().concat(),
                "BYTES" => troupe_proto::bytes::encode_bytes(data.iter().map(|x| x.as_str().unwrap_or("").as_bytes())).to_vec(),
                other => bail!("datatype {other} is not supported in data files (FP32, FP64, INT32, INT64, UINT8, BOOL, BYTES)"),
            };
            Ok(InputTensor::raw(name, datatype, shape, Bytes::from(bytes)))
        })
        .collect()
}

fn decode_values(datatype: &str, data: &[u8]) -> Vec<Value> {
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

fn result_json(r: &InferResult) -> Value {
    json!({
        "model_name": r.model_name,
        "model_version": r.model_version,
        "outputs": r.outputs.iter().map(|o| json!({
            "name": o.name, "datatype": o.datatype, "shape": o.shape, "data": decode_values(&o.datatype, &o.data),
        })).collect::<Vec<_>>(),
    })
}

fn state_name(s: i32) -> &'static str {
    match tpb::ModelState::try_from(s) {
        Ok(tpb::ModelState::Pending) => "PENDING",
        Ok(tpb::ModelState::Loading) => "LOADING",
        Ok(tpb::ModelState::Ready) => "READY",
        Ok(tpb::ModelState::Unavailable) => "UNAVAILABLE",
        Ok(tpb::ModelState::Failed) => "FAILED",
        _ => "UNKNOWN",
    }
}

fn backend_name(b: i32) -> &'static str {
    match tpb::BackendKind::try_from(b) {
        Ok(tpb::BackendKind::Torch) => "torch",
        Ok(tpb::BackendKind::Onnx) => "onnx",
        Ok(tpb::BackendKind::Candle) => "candle",
        _ => "?",
    }
}

fn status_json(s: &tpb::ModelStatus) -> Value {
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

fn print_json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

async fn run(cli: Cli) -> Result<(), Failure> {
    let timeout = Duration::from_secs_f64(cli.timeout.max(0.001));
    let tls = cli.tls_ca.is_some() || cli.tls_cert.is_some() || cli.server.starts_with("https://");
    let uri = match cli.server.split_once("://") {
        Some((_, rest)) if tls => format!("https://{rest}"),
        Some(_) => cli.server.clone(),
        None if tls => format!("https://{}", cli.server),
        None => format!("http://{}", cli.server),
    };
    let mut endpoint = tonic::transport::Endpoint::from_shared(uri)
        .map_err(|e| Failure::Usage(anyhow!("--server {:?}: {e}", cli.server)))?
        .connect_timeout(Duration::from_secs(5))
        .timeout(timeout);
    if tls {
        let read = |p: &PathBuf, what: &str| {
            std::fs::read(p).map_err(|e| Failure::Usage(anyhow!("{what} {}: {e}", p.display())))
        };
        let mut t = troupe_client::ClientTls {
            ca_pem: cli
                .tls_ca
                .as_ref()
                .map(|p| read(p, "--tls-ca"))
                .transpose()?,
            domain: cli.tls_domain.clone(),
            identity: None,
        };
        if let (Some(c), Some(k)) = (&cli.tls_cert, &cli.tls_key) {
            t.identity = Some((read(c, "--tls-cert")?, read(k, "--tls-key")?));
        }
        endpoint = endpoint
            .tls_config(t.client_config())
            .map_err(|e| Failure::Usage(anyhow!("TLS settings: {e}")))?;
    }
    let channel = endpoint.connect().await.map_err(|e| {
        let mut msg = format!("{}: {e}", cli.server);
        let mut cur = std::error::Error::source(&e);
        while let Some(s) = cur {
            msg.push_str(&format!(": {s}"));
            cur = s.source();
        }
        Failure::Unreachable(msg)
    })?;
    let mut c = Client::from_channel(channel);
    match cli.cmd {
        Cmd::Health => {
            let live = c.server_live().await?;
            let ready = c.server_ready().await?;
            let list = c
                .models()
                .list(tpb::ListModelsRequest {})
                .await?
                .into_inner();
            let models: Vec<(String, &str)> = list
                .models
                .iter()
                .map(|m| {
                    (
                        m.spec.as_ref().map(|s| s.name.clone()).unwrap_or_default(),
                        state_name(m.state),
                    )
                })
                .collect();
            if cli.json {
                print_json(&json!({"server": cli.server, "live": live, "ready": ready,
                    "models": models.iter().map(|(n, s)| json!({"name": n, "state": s})).collect::<Vec<_>>()}));
            } else {
                println!("{}: live={live} ready={ready}", cli.server);
                for (n, s) in &models {
                    println!("  {n:<24} {s}");
                }
            }
            if !ready {
                return Err(Failure::Server(tonic::Status::unavailable(
                    "the server is live but not ready (models still loading)",
                )));
            }
        }
        Cmd::Models(ModelsCmd::List) => {
            let list = c
                .models()
                .list(tpb::ListModelsRequest {})
                .await?
                .into_inner();
            if cli.json {
                print_json(&Value::Array(list.models.iter().map(status_json).collect()));
            } else {
                println!(
                    "{:<24} {:<8} {:<8} {:<12} {:>8} {:>6}  REASON",
                    "NAME", "VERSION", "BACKEND", "STATE", "REPLICAS", "QUEUE"
                );
                for m in &list.models {
                    let spec = m.spec.clone().unwrap_or_default();
                    println!(
                        "{:<24} {:<8} {:<8} {:<12} {:>8} {:>6}  {}",
                        spec.name,
                        spec.version,
                        backend_name(spec.backend),
                        state_name(m.state),
                        format!("{}/{}", m.ready_replicas, m.replicas.len()),
                        m.queue_length,
                        m.reason
                    );
                }
            }
        }
        Cmd::Models(ModelsCmd::Get { name, version }) => {
            let s = c
                .models()
                .get(tpb::GetModelRequest { name, version })
                .await?
                .into_inner();
            let v = status_json(&s);
            if cli.json {
                print_json(&v);
            } else {
                for key in [
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
                ] {
                    println!("{key:<15} {}", v[key].to_string().trim_matches('"'));
                }
                for (what, list) in [("input", &v["inputs"]), ("output", &v["outputs"])] {
                    for t in list.as_array().into_iter().flatten() {
                        println!(
                            "{what:<15} {} {} {}",
                            t["name"].as_str().unwrap_or(""),
                            t["datatype"].as_str().unwrap_or(""),
                            t["dims"]
                        );
                    }
                }
            }
        }
        Cmd::Models(ModelsCmd::Create {
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
        }) => {
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
                dynamic_batching: max_queue_delay_us.map(|d| tpb::DynamicBatching {
                    max_queue_delay_us: d,
                    preferred_batch_sizes: Vec::new(),
                }),
                ..Default::default()
            };
            let config_toml = match config {
                Some(path) => std::fs::read_to_string(&path)
                    .with_context(|| format!("cannot read {}", path.display()))?,
                None => {
                    let backend = backend.context(
                        "give --config FILE, or --backend (with --input and --output unless the model describes itself)",
                    )?;
                    spec.backend = match backend.to_ascii_lowercase().as_str() {
                        "torch" => tpb::BackendKind::Torch,
                        "onnx" => tpb::BackendKind::Onnx,
                        "candle" => tpb::BackendKind::Candle,
                        other => {
                            return Err(Failure::Usage(anyhow!(
                                "--backend {other}: expected torch, onnx or candle"
                            )));
                        }
                    } as i32;
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
            if cli.json {
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
        Cmd::Models(ModelsCmd::Delete { name, version }) => {
            c.models()
                .delete(tpb::DeleteModelRequest {
                    name: name.clone(),
                    version,
                })
                .await?;
            if cli.json {
                print_json(&json!({"deleted": name}));
            } else {
                println!("deleted {name}");
            }
        }
        Cmd::Cluster(ClusterCmd::Nodes) => {
            let nodes = c
                .cluster()
                .nodes(tpb::NodesRequest {})
                .await?
                .into_inner()
                .nodes;
            let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
            if cli.json {
                let v: Vec<Value> = nodes
                    .iter()
                    .map(|n| {
                        json!({"id": n.id, "addr": n.addr, "cpu_millis": n.cpu_millis, "used_cpu_millis": n.used_cpu_millis,
                            "memory_bytes": n.memory_bytes, "used_memory_bytes": n.used_memory_bytes,
                            "gpus": n.gpus.iter().map(|g| json!({"index": g.index, "memory_bytes": g.memory_bytes, "used_memory_bytes": g.used_memory_bytes})).collect::<Vec<_>>(),
                            "labels": n.labels, "in_flight": n.in_flight, "queue_length": n.queue_length, "ready_models": n.ready_models})
                    })
                    .collect();
                print_json(&Value::Array(v));
            } else {
                println!(
                    "{:<12} {:<22} {:>13} {:>17} {:>5} {:>9}  MODELS",
                    "NODE", "ADDRESS", "CPU used/all", "MEMORY GiB", "GPUS", "IN-FLIGHT"
                );
                for n in &nodes {
                    println!(
                        "{:<12} {:<22} {:>13} {:>17} {:>5} {:>9}  {}",
                        n.id,
                        n.addr,
                        format!("{}/{}", n.used_cpu_millis, n.cpu_millis),
                        format!("{:.2}/{:.2}", gib(n.used_memory_bytes), gib(n.memory_bytes)),
                        n.gpus.len(),
                        n.in_flight,
                        n.ready_models.join(",")
                    );
                }
            }
        }
        Cmd::Cluster(ClusterCmd::Placements { model }) => {
            let p = c
                .cluster()
                .placements(tpb::PlacementsRequest { model })
                .await?
                .into_inner();
            if cli.json {
                print_json(&json!({
                    "placements": p.placements.iter().map(|x| json!({"model": x.model, "node": x.node_id, "count": x.count, "ready": x.ready, "gpu": if x.gpu < 0 { Value::Null } else { json!(x.gpu) }})).collect::<Vec<_>>(),
                    "pending": p.pending.iter().map(|x| json!({"model": x.model, "missing": x.missing, "reason": x.reason})).collect::<Vec<_>>(),
                }));
            } else {
                println!(
                    "{:<24} {:<12} {:>8} {:>6}",
                    "MODEL", "NODE", "REPLICAS", "READY"
                );
                for x in &p.placements {
                    println!(
                        "{:<24} {:<12} {:>8} {:>6}",
                        x.model, x.node_id, x.count, x.ready
                    );
                }
                for x in &p.pending {
                    println!(
                        "{:<24} {:<12} {:>8} {:>6}  pending: {}",
                        x.model, "-", x.missing, false, x.reason
                    );
                }
            }
        }
        Cmd::Infer {
            model,
            version,
            inputs,
            texts,
            text_input,
            data_file,
        } => {
            let mut tensors = if inputs.is_empty() && data_file.is_none() && !texts.is_empty() {
                Vec::new()
            } else {
                collect_inputs(&inputs, data_file.as_deref())?
            };
            if !texts.is_empty() {
                tensors.push(InputTensor::text(&text_input, &texts));
            }
            let span = client_span(
                cli.traceparent.as_deref(),
                || tracing::info_span!("client.infer", model = %model),
            );
            let req = traced(
                &span,
                cli.traceparent.as_deref(),
                troupe_client::infer_request(&model, &version, tensors),
            )?;
            let resp = c.inference().model_infer(req).instrument(span).await?;
            let trace_id = trace_id_of(resp.metadata());
            let r = troupe_client::decode_response(resp.into_inner())?;
            let mut v = result_json(&r);
            if let Some(t) = trace_id {
                v["trace_id"] = json!(t);
            }
            if cli.json {
                print_json(&v);
            } else {
                println!("{} (version {})", r.model_name, r.model_version);
                for o in v["outputs"].as_array().into_iter().flatten() {
                    println!(
                        "  {} {} {}: {}",
                        o["name"].as_str().unwrap_or(""),
                        o["datatype"].as_str().unwrap_or(""),
                        o["shape"],
                        o["data"]
                    );
                }
            }
        }
        Cmd::Explain {
            model,
            version,
            method,
            inputs,
            data_file,
            output,
            target,
            baseline,
            steps,
            window,
            samples,
        } => {
            let tensors = collect_inputs(&inputs, data_file.as_deref())?;
            let names: Vec<String> = tensors.iter().map(|t| t.name.clone()).collect();
            let body = tpb::ExplainRequest {
                request: Some(troupe_client::infer_request(&model, &version, tensors)),
                method: method.clone(),
                output,
                target,
                baseline,
                steps,
                window,
                samples,
                seed: 0,
            };
            let span = client_span(
                cli.traceparent.as_deref(),
                || tracing::info_span!("client.explain", model = %model, method = %method),
            );
            let req = traced(&span, cli.traceparent.as_deref(), body)?;
            let resp = c.explainer().explain(req).instrument(span).await?;
            let trace_id = trace_id_of(resp.metadata());
            let r = troupe_client::decode_response(resp.into_inner().response.unwrap_or_default())?;
            let targets = r.values::<i64>("attribution.target").unwrap_or_default();
            let values = r.f32("attribution.value").unwrap_or_default();
            let mut attributions = serde_json::Map::new();
            for n in &names {
                if let Ok(o) = r.output(&format!("attribution.{n}")) {
                    attributions.insert(
                        n.clone(),
                        json!({"shape": o.shape, "data": decode_values(&o.datatype, &o.data)}),
                    );
                }
            }
            if cli.json {
                print_json(&json!({
                    "model_name": r.model_name, "model_version": r.model_version, "method": method,
                    "target": targets, "value": values, "attributions": attributions,
                    "trace_id": trace_id,
                }));
            } else {
                println!("{} (version {}): {method}", r.model_name, r.model_version);
                for (row, (t, v)) in targets.iter().zip(&values).enumerate() {
                    println!("  row {row}: output element {t} = {v}");
                }
                for (n, a) in &attributions {
                    println!("  {n} {}: {}", a["shape"], a["data"]);
                }
            }
        }
    }
    Ok(())
}

/// A request carrying the trace context: the client's span (continuing `traceparent`,
/// when given) when tracing is on and the call is sampled, else the given `traceparent`
/// as is.
fn traced<T>(
    span: &tracing::Span,
    traceparent: Option<&str>,
    body: T,
) -> Result<tonic::Request<T>, Failure> {
    let mut req = tonic::Request::new(body);
    if let Some(tp) = traceparent {
        let v = tp
            .parse::<tonic::metadata::MetadataValue<_>>()
            .map_err(|_| {
                Failure::Usage(anyhow!("--traceparent {tp:?} is not a valid header value"))
            })?;
        req.metadata_mut().insert("traceparent", v);
    }
    if !troupe_telemetry::inject(span, req.metadata_mut())
        && traceparent.is_none()
        && let Some(Ok(v)) = troupe_telemetry::unsampled_traceparent().map(|t| t.parse())
    {
        // Not traced here: the router and node skip the call too.
        req.metadata_mut().insert("traceparent", v);
    }
    Ok(req)
}

/// The client span of a call (see `troupe_telemetry::call_span`).
fn client_span(traceparent: Option<&str>, make: impl FnOnce() -> tracing::Span) -> tracing::Span {
    let mut md = tonic::metadata::MetadataMap::new();
    if let Some(v) = traceparent.and_then(|tp| tp.parse().ok()) {
        md.insert("traceparent", v);
    }
    troupe_telemetry::call_span(&md, make)
}

/// The inputs of `infer` and `explain`: `--input` flags, then a `--data-file`.
fn collect_inputs(
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

/// The `trace-id` the server answered with, if any.
fn trace_id_of(md: &tonic::metadata::MetadataMap) -> Option<String> {
    md.get("trace-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // One worker: the OTLP exporter's connection keeps running while main flushes.
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start: {e}");
            return ExitCode::from(1);
        }
    };
    // Spans over OTLP when OTEL_EXPORTER_OTLP_ENDPOINT is set; logs (TROUPE_LOG) on stderr.
    let log = std::env::var("TROUPE_LOG").unwrap_or_else(|_| "warn".into());
    let mut telemetry = {
        let _rt = rt.enter();
        match troupe_telemetry::init("troupe-cli", &log) {
            Ok(t) => Some(t),
            Err(e) => {
                eprintln!("warning: telemetry off: {e}");
                None
            }
        }
    };
    let outcome = rt.block_on(run(cli));
    if let Some(t) = telemetry.as_mut() {
        let _rt = rt.enter();
        t.shutdown();
    }
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
        Err(Failure::Server(s)) => {
            eprintln!(
                "error: {:?}: {}\nhint: {}",
                s.code(),
                s.message(),
                hint(s.code())
            );
            ExitCode::from(1)
        }
        Err(Failure::Unreachable(m)) => {
            eprintln!(
                "error: cannot reach the server: {m}\nhint: is troupe-node running there? set --server or TROUPE_SERVER"
            );
            ExitCode::from(3)
        }
    }
}
