//! Human review and alerts end to end, on the digits classifier (scikit-learn's MLP on
//! ONNX Runtime): each review rule fills the queue with exactly the calls it names, a
//! reviewer takes and labels calls through the `troupe` CLI, the labels count in the live
//! quality metrics, the export is Label Studio's task format, and a drift alert reaches a
//! webhook that fails its first attempt.

use std::collections::BTreeSet;
use std::process::Output;
use std::time::Duration;

use troupe_client::{CallOptions, ExplainOptions, InputTensor};
use troupe_proto::troupe as tpb;
use troupe_tests::{Node, eventually, troupe_cli};

fn cli(node: &Node, args: &[&str]) -> Output {
    troupe_cli()
        .args(["--server", &node.addr])
        .args(args)
        .output()
        .expect("troupe runs")
}

fn stdout_json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

/// Every queued request id of `model`, open or decided.
async fn queued(c: &mut troupe_client::Client, model: &str) -> Vec<tpb::ReviewItem> {
    c.review()
        .export(tpb::ReviewExportRequest {
            model: model.into(),
            ..Default::default()
        })
        .await
        .expect("export")
        .into_inner()
        .items
}

/// The webhook receiver, stopped when the test ends (passed or not).
struct Sink(std::process::Child);

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn review_rules_queue_the_calls_they_name_and_cli_labels_count_in_quality() {
    let repo = troupe_tests::repository(&[]);
    let hook_port = troupe_tests::free_port();
    let rules = [
        ("r_score", "[monitoring.review]\nscore_below = 0.9\n".to_string()),
        (
            "r_outlier",
            "[monitoring.drift]\ninput = \"X\"\nreference_calls = 300\nwindow = 1000\noutlier_threshold = 40.0\n\
             [monitoring.review]\noutlier_above = 40.0\n"
                .to_string(),
        ),
        (
            "r_drift",
            format!(
                "[monitoring.drift]\ninput = \"X\"\nreference_calls = 300\nwindow = 150\n\
                 [monitoring.review]\nwhile_drifting = true\n\
                 [monitoring.webhook]\nurl = \"http://127.0.0.1:{hook_port}/hook\"\nretries = 3\n"
            ),
        ),
        ("r_sample", "[monitoring.review]\nsample = 0.25\n".to_string()),
    ];
    for (name, tables) in &rules {
        troupe_tests::add_model(repo.path(), "digits_onnx", name);
        troupe_tests::edit_config(repo.path(), name, "instances = 1", tables);
    }
    // The webhook: its first attempt fails (500), the retry is taken.
    let dir = tempfile::tempdir().unwrap();
    let hook_file = dir.path().join("hook.jsonl");
    let python = troupe_tests::root().join(".venv/bin/python");
    let _sink = Sink(
        std::process::Command::new(&python)
            .arg(troupe_tests::root().join("tests/python/webhook_sink.py"))
            .args([
                &hook_port.to_string(),
                &hook_file.display().to_string(),
                "1",
            ])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("the webhook sink starts"),
    );
    let store = format!("sqlite://{}", dir.path().join("store.db").display());
    let node = Node::start(repo.path(), &["--store", &store])
        .await
        .unwrap();
    let mut c = node.client().await;
    let h = troupe_tests::digits_holdout();
    let call = async |c: &mut troupe_client::Client, model: &str, id: String, row: &[f32]| {
        let opts = CallOptions {
            request_id: Some(id),
            ..Default::default()
        };
        c.infer_with(model, vec![InputTensor::f32("X", vec![1, 64], row)], &opts)
            .await
            .expect("a call")
    };

    // Low score: exactly the calls whose top probability is under 0.9.
    let mut low = BTreeSet::new();
    let mut predicted = std::collections::BTreeMap::new();
    for (i, row) in h.x.iter().take(300).enumerate() {
        let r = call(&mut c, "r_score", format!("s{i}"), row).await;
        let p = r.values::<f32>("probabilities").unwrap();
        let (best, top) = p
            .iter()
            .enumerate()
            .fold((0, f32::MIN), |b, (k, &v)| if v > b.1 { (k, v) } else { b });
        if f64::from(top) < 0.9 {
            low.insert(format!("s{i}"));
        }
        predicted.insert(format!("s{i}"), (best, h.y[i]));
    }
    assert!(!low.is_empty(), "some held-out digits are uncertain");

    // Outliers: the reference is the first 300 calls; then held-out rows and five
    // planted outliers (pixels far out of range), explained. Exactly those scoring
    // above 40 are queued, and the planted ones are among them.
    for (i, row) in h.x.iter().take(300).enumerate() {
        call(&mut c, "r_outlier", format!("ref{i}"), row).await;
    }
    let mut over = BTreeSet::new();
    for (i, row) in h.x.iter().skip(300).take(60).enumerate() {
        let r = call(&mut c, "r_outlier", format!("o{i}"), row).await;
        let s = troupe_tests::outlier_score(&r).expect("a score once the reference is complete");
        if s > 40.0 {
            over.insert(format!("o{i}"));
        }
    }
    let explain = ExplainOptions {
        output: "probabilities".into(),
        ..ExplainOptions::method("occlusion")
    };
    for k in 0..5 {
        let row: Vec<f32> = h.x[400 + k].iter().map(|v| v * 6.0 + 20.0).collect();
        let opts = CallOptions {
            request_id: Some(format!("planted{k}")),
            ..Default::default()
        };
        c.explain(
            "r_outlier",
            vec![InputTensor::f32("X", vec![1, 64], &row)],
            &explain,
            &opts,
        )
        .await
        .expect("an explained call");
        over.insert(format!("planted{k}"));
    }

    // Drift: reference-like calls, then inverted digits; every call from the one that
    // completes the first drifted window on is queued, and none before.
    for (i, row) in h.x.iter().take(450).enumerate() {
        call(&mut c, "r_drift", format!("d{i}"), row).await;
    }
    let mut drifted = BTreeSet::new();
    for (i, row) in h.x.iter().take(170).enumerate() {
        let inverted: Vec<f32> = row.iter().map(|v| 16.0 - v).collect();
        call(&mut c, "r_drift", format!("inv{i}"), &inverted).await;
        if i >= 149 {
            drifted.insert(format!("inv{i}"));
        }
    }

    // A random share: 25 % of 400 calls (99.99 % of draws land within 55..145).
    for (i, row) in h.x.iter().take(400).enumerate() {
        call(&mut c, "r_sample", format!("rs{i}"), row).await;
    }

    let ids = |items: &[tpb::ReviewItem]| -> BTreeSet<String> {
        items.iter().map(|i| i.request_id.clone()).collect()
    };
    // Every queued call is written within seconds (the writer batches every 20 ms).
    let mut by_rule = std::collections::BTreeMap::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        for model in ["r_score", "r_outlier", "r_drift", "r_sample"] {
            by_rule.insert(model.to_string(), queued(&mut c, model).await);
        }
        let n = |m: &str| by_rule[m].len();
        if (n("r_score"), n("r_outlier"), n("r_drift")) == (low.len(), over.len(), drifted.len())
            && n("r_sample") >= 55
            || std::time::Instant::now() > deadline
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(ids(&by_rule["r_score"]), low);
    assert!(by_rule["r_score"].iter().all(|i| i.reason == "low_score"));
    assert_eq!(ids(&by_rule["r_outlier"]), over);
    assert!(by_rule["r_outlier"].iter().all(|i| i.reason == "outlier"));
    for i in by_rule["r_outlier"]
        .iter()
        .filter(|i| i.request_id.starts_with("planted"))
    {
        let e: serde_json::Value =
            serde_json::from_str(&i.explanation_json).expect("the explanation is kept");
        assert_eq!(e["attribution.X"].as_array().map(Vec::len), Some(64));
    }
    assert_eq!(ids(&by_rule["r_drift"]), drifted);
    assert!(by_rule["r_drift"].iter().all(|i| i.reason == "drift"));
    let sampled = by_rule["r_sample"].len();
    assert!(
        (55..=145).contains(&sampled),
        "{sampled} of 400 sampled at 25 %"
    );
    assert!(by_rule["r_sample"].iter().all(|i| i.reason == "sample"));

    // The drift alert reached the webhook, on its second attempt.
    eventually(
        "the drift alert is posted",
        Duration::from_secs(20),
        async || std::fs::read_to_string(&hook_file).is_ok_and(|t| t.contains("\"drift\"")),
    )
    .await;
    let posted: Vec<serde_json::Value> = std::fs::read_to_string(&hook_file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(posted.len(), 1, "{posted:?}");
    assert_eq!(posted[0]["alert"], "drift");
    assert_eq!(posted[0]["model"], "r_drift");
    assert!(
        !posted[0]["detail"]["features"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    // A reviewer takes the low-score calls one by one, oldest first, through the CLI.
    let first = stdout_json(&cli(&node, &["--json", "review", "next", "r_score"]));
    let oldest = by_rule["r_score"].iter().min_by_key(|i| i.time_ms).unwrap();
    assert_eq!(first["request_id"], oldest.request_id.as_str());
    assert_eq!(first["inputs"]["X"].as_array().map(Vec::len), Some(64));
    assert_eq!(
        first["outputs"]["probabilities"].as_array().map(Vec::len),
        Some(10)
    );
    assert_eq!(first["reason"], "low_score");
    let mut decided = vec![first["request_id"].as_str().unwrap().to_string()];
    loop {
        let next = stdout_json(&cli(&node, &["--json", "review", "next", "r_score"]));
        if next.is_null() {
            break;
        }
        decided.push(next["request_id"].as_str().unwrap().to_string());
    }
    assert_eq!(
        decided.len(),
        low.len(),
        "each open call is handed out once"
    );
    let text = cli(&node, &["review", "next", "r_score"]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("no call of r_score waits"));
    let mut right = 0;
    for id in &decided {
        let (best, truth) = predicted[id];
        right += usize::from(best as i64 == truth);
        let out = cli(&node, &["review", "label", id, &truth.to_string()]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let bad = cli(&node, &["review", "label", "no-such-call", "3"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("'no-such-call' is not in the review queue")
    );

    // The decisions are ground truth: the quality metrics count them.
    eventually(
        "the labels show in the quality",
        Duration::from_secs(10),
        async || {
            let q = troupe_tests::quality(&mut c, "r_score").await;
            let w = &q.windows[0];
            w.labelled == decided.len() as u64
                && (w.accuracy.unwrap_or(-1.0) - right as f64 / decided.len() as f64).abs() < 1e-9
        },
    )
    .await;
    let id = &decided[0];
    let lineage = stdout_json(&cli(&node, &["--json", "lineage", id]));
    assert_eq!(lineage["review"], "decided");
    assert_eq!(lineage["truth"], predicted[id].1.to_string());
    assert!(
        lineage["truth_source"]
            .as_str()
            .unwrap()
            .starts_with("review:")
    );

    // The export: one Label Studio task per call, with request id and model version.
    let file = dir.path().join("tasks.json");
    let out = cli(
        &node,
        &[
            "review",
            "export",
            "--model",
            "r_outlier",
            "--output",
            &file.display().to_string(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tasks: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(tasks.len(), over.len());
    for t in &tasks {
        assert!(over.contains(t["data"]["request_id"].as_str().unwrap()));
        assert_eq!(t["meta"]["model_version"], "r_outlier/1");
        assert_eq!(t["data"]["inputs"]["X"].as_array().map(Vec::len), Some(64));
        let choice = &t["predictions"][0]["result"][0]["value"]["choices"][0];
        assert!(choice.is_string(), "{t}");
    }
    let decided_export = stdout_json(&cli(
        &node,
        &[
            "review", "export", "--model", "r_score", "--state", "decided",
        ],
    ));
    assert_eq!(decided_export.as_array().map(Vec::len), Some(decided.len()));
    assert!(decided_export[0]["annotations"][0]["result"][0]["value"]["choices"][0].is_string());
}

#[tokio::test]
async fn review_refuses_bad_input_by_name() {
    let repo = troupe_tests::repository(&[]);
    // outlier_above without a reference to score against is refused at load, and so is
    // a webhook that is not http(s).
    troupe_tests::add_model(repo.path(), "digits_onnx", "digits_onnx");
    let review = "[monitoring.review]\noutlier_above = 3.0";
    troupe_tests::edit_config(repo.path(), "digits_onnx", "instances = 1", review);
    troupe_tests::add_model(repo.path(), "digits_onnx", "hooked");
    let hook = "[monitoring.webhook]\nurl = \"ftp://example/hook\"";
    troupe_tests::edit_config(repo.path(), "hooked", "instances = 1", hook);
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("store.db").display());
    let node = Node::start(repo.path(), &["--store", &store])
        .await
        .unwrap();
    let mut c = node.client().await;
    let status = |name: &str| {
        let out = cli(&node, &["--json", "models", "get", name]);
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr)
    };
    assert!(status("digits_onnx").contains("outlier_above needs [monitoring.drift]"));
    assert!(status("hooked").contains("ftp://example/hook"));
    let e = c
        .review()
        .next(tpb::ReviewNextRequest {
            model: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    let e = c
        .review()
        .label(tpb::ReviewLabelRequest {
            request_id: "x".into(),
            decision: Some(tpb::review_label_request::Decision::Value(f64::NAN)),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().contains("'x'"), "{}", e.message());
    let e = c
        .review()
        .export(tpb::ReviewExportRequest {
            state: 7,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(e.message().contains("review state 7"), "{}", e.message());
    let e = c
        .monitor()
        .lineage(tpb::LineageRequest {
            request_id: "never-made".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
    assert!(e.message().contains("'never-made'"), "{}", e.message());
}
