//! Call hooks end to end on a real node: explanations with known answers on every
//! backend, the audit file, and input drift.

use std::time::Duration;

use tonic::Code;
use troupe_client::{CallOptions, ClientError, ExplainOptions, InputTensor};
use troupe_tests::{Node, edit_config, free_port, metric, reference, repository, scrape};

fn linear() -> (Vec<f32>, f32, Vec<i64>, Vec<f32>) {
    let text =
        std::fs::read_to_string(troupe_tests::root().join("models/reference/linear.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let w = v["w"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect();
    let case = &reference("linear.json")[0];
    (
        w,
        v["b"].as_f64().unwrap() as f32,
        case.shape.clone(),
        case.input.clone(),
    )
}

fn code(e: &ClientError) -> Code {
    match e {
        ClientError::Status(s) => s.code(),
        other => panic!("not a status: {other:?}"),
    }
}

async fn explain(
    c: &mut troupe_client::Client,
    model: &str,
    shape: &[i64],
    x: &[f32],
    how: ExplainOptions,
) -> Result<troupe_client::Explanation, ClientError> {
    c.explain(
        model,
        vec![InputTensor::f32("input", shape.to_vec(), x)],
        &how,
        &CallOptions::default(),
    )
    .await
}

#[tokio::test]
async fn linear_model_attributions_are_w_times_x_on_every_backend() {
    let repo = repository(&["linear_onnx", "linear_torch", "linear_candle"]);
    let node = Node::start(repo.path(), &[]).await.unwrap();
    let mut c = node.client().await;
    let (w, _b, shape, x) = linear();
    let features = w.len();
    let expected: Vec<f32> = x
        .iter()
        .enumerate()
        .map(|(i, xi)| w[i % features] * xi)
        .collect();
    let cases: [(&str, &[&str]); 3] = [
        (
            "linear_torch",
            &["integrated_gradients", "occlusion", "shapley", "saliency"],
        ),
        (
            "linear_candle",
            &["integrated_gradients", "occlusion", "shapley", "saliency"],
        ),
        ("linear_onnx", &["occlusion", "shapley"]),
    ];
    for (model, methods) in cases {
        for &m in methods {
            let e = explain(&mut c, model, &shape, &x, ExplainOptions::method(m))
                .await
                .unwrap_or_else(|e| panic!("{model} {m}: {e}"));
            let a = e.attribution("input").unwrap();
            assert_eq!(a.len(), x.len(), "{model} {m}: shaped like the input");
            let want: Vec<f32> = if m == "saliency" {
                (0..x.len()).map(|i| w[i % features].abs()).collect()
            } else {
                expected.clone()
            };
            let diff = troupe_tests::max_abs_diff(&a, &want);
            assert!(diff < 1e-4, "{model} {m}: max diff {diff}\n{a:?}\n{want:?}");
            assert_eq!(e.targets().unwrap(), vec![0; shape[0] as usize]);
        }
    }
}

#[tokio::test]
async fn a_model_without_a_batch_dimension_is_explained_call_by_call() {
    let repo = repository(&[]);
    troupe_tests::add_model(repo.path(), "linear_onnx", "fixed");
    let cfg = repo.path().join("fixed/config.toml");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("max_batch_size = 64", "max_batch_size = 0")
        .replace("dims = [8]", "dims = [1, 8]")
        .replace("dims = [1]", "dims = [1, 1]");
    std::fs::write(&cfg, text).unwrap();
    let node = Node::start(repo.path(), &[]).await.unwrap();
    let mut c = node.client().await;
    let (w, _b, _shape, x) = linear();
    let x = &x[..8];
    for m in ["occlusion", "shapley"] {
        let e = explain(&mut c, "fixed", &[1, 8], x, ExplainOptions::method(m))
            .await
            .unwrap_or_else(|e| panic!("{m}: {e}"));
        let a = e.attribution("input").unwrap();
        let want: Vec<f32> = x.iter().zip(&w).map(|(xi, wi)| xi * wi).collect();
        let diff = troupe_tests::max_abs_diff(&a, &want);
        assert!(diff < 1e-4, "{m}: max diff {diff}");
    }
    // The queue is empty again: every perturbed call was answered.
    assert!(c.server_ready().await.unwrap());
}

#[tokio::test]
async fn mlp_integrated_gradients_sum_to_the_change_of_the_output() {
    let repo = repository(&["mlp_torch", "mlp_candle", "mlp_onnx"]);
    let node = Node::start(repo.path(), &[]).await.unwrap();
    let mut c = node.client().await;
    let case = &reference("mlp.json")[0];
    let rows = case.shape[0] as usize;
    let features = case.shape[1] as usize;
    for model in ["mlp_torch", "mlp_candle"] {
        let mut how = ExplainOptions::method("integrated_gradients");
        how.steps = 128;
        let e = explain(&mut c, model, &case.shape, &case.input, how)
            .await
            .unwrap();
        let a = e.attribution("input").unwrap();
        let targets = e.targets().unwrap();
        let fx = e.values().unwrap();
        // f(baseline) for the same output elements.
        let zero = c
            .infer(
                model,
                vec![InputTensor::f32(
                    "input",
                    case.shape.clone(),
                    &vec![0.0; rows * features],
                )],
            )
            .await
            .unwrap()
            .f32("output")
            .unwrap();
        let outs = zero.len() / rows;
        for r in 0..rows {
            let t = targets[r] as usize;
            // The target is the row's largest output (the predicted class).
            let row = &case.output[r * outs..(r + 1) * outs];
            let best = row
                .iter()
                .enumerate()
                .fold(0, |b, (i, v)| if *v > row[b] { i } else { b });
            assert_eq!(t, best, "{model}: row {r} target");
            let sum: f32 = a[r * features..(r + 1) * features].iter().sum();
            let delta = fx[r] - zero[r * outs + t];
            assert!(
                (sum - delta).abs() <= 0.02 * delta.abs() + 1e-3,
                "{model} row {r}: attributions sum {sum}, f(x) - f(0) = {delta}"
            );
        }
    }
    // Through a plain ModelInfer with parameters (any Open Inference Protocol client).
    let mut req = troupe_client::infer_request(
        "mlp_onnx",
        "",
        vec![InputTensor::f32("input", case.shape.clone(), &case.input)],
    );
    req.parameters.insert(
        "explain".into(),
        troupe_proto::inference::InferParameter {
            parameter_choice: Some(
                troupe_proto::inference::infer_parameter::ParameterChoice::StringParam(
                    "occlusion".into(),
                ),
            ),
        },
    );
    let resp = c.inference().model_infer(req).await.unwrap().into_inner();
    let names: Vec<&str> = resp.outputs.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "output",
            "attribution.input",
            "attribution.target",
            "attribution.value"
        ]
    );
    assert_eq!(resp.outputs[1].shape, case.shape);
}

#[tokio::test]
async fn bad_explanation_requests_get_clear_statuses() {
    let repo = repository(&["linear_onnx", "linear_torch"]);
    edit_config(
        repo.path(),
        "linear_torch",
        "instances = 1",
        "[hooks]\nexplain = false",
    );
    let node = Node::start(repo.path(), &[]).await.unwrap();
    let mut c = node.client().await;
    let (_, _, shape, x) = linear();
    let cases = [
        (
            "linear_onnx",
            ExplainOptions::method("lime"),
            Code::InvalidArgument,
            "lime",
        ),
        (
            "linear_onnx",
            ExplainOptions::method("integrated_gradients"),
            Code::FailedPrecondition,
            "occlusion or shapley",
        ),
        (
            "linear_onnx",
            ExplainOptions {
                target: Some(5),
                ..ExplainOptions::method("occlusion")
            },
            Code::InvalidArgument,
            "out of range",
        ),
        (
            "linear_onnx",
            ExplainOptions {
                samples: 5000,
                ..ExplainOptions::method("shapley")
            },
            Code::InvalidArgument,
            "explain_samples",
        ),
        (
            "linear_torch",
            ExplainOptions::method("occlusion"),
            Code::FailedPrecondition,
            "turned off",
        ),
        (
            "nope",
            ExplainOptions::method("occlusion"),
            Code::NotFound,
            "nope",
        ),
        (
            "linear_onnx",
            ExplainOptions::method(""),
            Code::InvalidArgument,
            "method",
        ),
    ];
    for (model, how, want, words) in cases {
        let e = explain(&mut c, model, &shape, &x, how.clone())
            .await
            .err()
            .unwrap_or_else(|| panic!("{model} {how:?} succeeded"));
        assert_eq!(code(&e), want, "{model} {how:?}: {e}");
        assert!(e.to_string().contains(words), "{model} {how:?}: {e}");
    }
    // The node is fine and the model still answers.
    let e = explain(
        &mut c,
        "linear_onnx",
        &shape,
        &x,
        ExplainOptions::method("occlusion"),
    )
    .await
    .unwrap();
    assert_eq!(e.attribution("input").unwrap().len(), x.len());
}

fn audit_lines(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad audit line {l:?}: {e}")))
        .collect()
}

#[tokio::test]
async fn the_audit_file_has_a_line_per_call_and_survives_a_restart() {
    let repo = repository(&["mlp_onnx"]);
    edit_config(
        repo.path(),
        "mlp_onnx",
        "instances = 1",
        "[hooks]\naudit = true",
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let p = path.display().to_string();
    let case = &reference("mlp.json")[0];
    let trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    for round in 0..2 {
        let mut node = Node::start(repo.path(), &["--audit-log", &p])
            .await
            .unwrap();
        let mut c = node.client().await;
        let opts = CallOptions {
            traceparent: Some(trace.into()),
            ..Default::default()
        };
        c.infer_with(
            "mlp_onnx",
            vec![InputTensor::f32("input", case.shape.clone(), &case.input)],
            &opts,
        )
        .await
        .unwrap();
        let bad = c
            .infer(
                "mlp_onnx",
                vec![InputTensor::f32("input", vec![1, 3], &[0.0; 3])],
            )
            .await
            .unwrap_err();
        assert_eq!(code(&bad), Code::InvalidArgument);
        drop(c);
        tokio::task::spawn_blocking(move || node.terminate().unwrap())
            .await
            .unwrap();
        let lines = audit_lines(&path);
        assert_eq!(lines.len(), 2 * (round + 1), "{lines:?}");
    }
    let lines = audit_lines(&path);
    let ok = &lines[0];
    assert_eq!(ok["model"], "mlp_onnx");
    assert_eq!(ok["version"], "1");
    assert_eq!(ok["status"], "OK");
    assert_eq!(ok["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(ok["sha256"].as_str().unwrap().len(), 64);
    assert_eq!(ok["inputs_sha256"].as_str().unwrap().len(), 64);
    assert_eq!(ok["outputs_sha256"].as_str().unwrap().len(), 64);
    let failed = &lines[1];
    assert_eq!(failed["status"], "INVALID_ARGUMENT");
    assert!(failed["outputs_sha256"].is_null());
    assert!(failed["message"].as_str().unwrap().contains("input"));
    // Same inputs, same model: same digests across the restart.
    assert_eq!(lines[2]["inputs_sha256"], ok["inputs_sha256"]);
    assert_eq!(lines[2]["outputs_sha256"], ok["outputs_sha256"]);
}

#[tokio::test]
async fn drift_raises_the_metric_only_for_shifted_inputs() {
    let repo = repository(&["linear_onnx"]);
    let mean = vec![0.0; 8];
    let std = vec![1.0; 8];
    edit_config(
        repo.path(),
        "linear_onnx",
        "instances = 1",
        &format!(
            "[hooks.drift]\nreference_mean = {mean:?}\nreference_std = {std:?}\nthreshold = 0.5\nwindow = 64\nmin_rows = 16"
        ),
    );
    let port = free_port();
    let node = Node::start(
        repo.path(),
        &["--metrics-listen", &format!("127.0.0.1:{port}")],
    )
    .await
    .unwrap();
    let mut c = node.client().await;
    // Rows from the reference distribution: a fixed pseudo-normal sample.
    let mut seed = 7u64;
    let mut normal = || {
        let mut u = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((seed >> 11) as f64 / (1u64 << 53) as f64).max(1e-12)
        };
        let (a, b) = (u(), u());
        ((-2.0 * a.ln()).sqrt() * (2.0 * std::f64::consts::PI * b).cos()) as f32
    };
    let series = "{model=\"linear_onnx\",version=\"1\"}";
    for _ in 0..4 {
        let x: Vec<f32> = (0..16 * 8).map(|_| normal()).collect();
        c.infer(
            "linear_onnx",
            vec![InputTensor::f32("input", vec![16, 8], &x)],
        )
        .await
        .unwrap();
    }
    let m = scrape(port);
    assert_eq!(metric(&m, &format!("troupe_drift_alert{series}")), 0.0);
    assert_eq!(
        metric(&m, &format!("troupe_drift_alerts_total{series}")),
        0.0
    );
    assert!(metric(&m, &format!("troupe_drift_score{series}")) < 0.5);
    assert!(!node.log_text().contains("drift"), "{}", node.log_text());
    // The next window: feature 3 shifted by two standard deviations.
    for _ in 0..4 {
        let x: Vec<f32> = (0..16 * 8)
            .map(|i| normal() + if i % 8 == 3 { 2.0 } else { 0.0 })
            .collect();
        c.infer(
            "linear_onnx",
            vec![InputTensor::f32("input", vec![16, 8], &x)],
        )
        .await
        .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let m = scrape(port);
    assert_eq!(metric(&m, &format!("troupe_drift_alert{series}")), 1.0);
    assert!(metric(&m, &format!("troupe_drift_alerts_total{series}")) >= 1.0);
    assert!(metric(&m, &format!("troupe_drift_score{series}")) > 1.0);
    let log = node.log_text();
    assert!(log.contains("drift") && log.contains("feature=3"), "{log}");
}
