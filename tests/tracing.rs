//! OpenTelemetry end to end against a real tracing backend (Arize Phoenix): the `troupe`
//! CLI, a router and a node export spans over OTLP/gRPC; a call sent with a
//! `traceparent` shows up under that trace id, linked client → router → node → queue,
//! batch and backend, with the explanation and the drift event; an unsampled call
//! exports nothing.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::Value;
use troupe_client::troupe_proto::troupe as tpb;
use troupe_tests::{Etcd, Node, Phoenix, RouterProc, mlp_spec, reference, repository, troupe_cli};

fn span<'a>(spans: &'a [Value], name: &str) -> &'a Value {
    spans
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no span {name} in {spans:#?}"))
}

fn attr<'a>(s: &'a Value, key: &str) -> &'a Value {
    &s["attributes"][key]
}

#[tokio::test]
async fn a_traced_call_is_linked_from_client_to_backend_in_phoenix() {
    let phoenix = Phoenix::start()
        .await
        .expect("phoenix (scripts/phoenix.sh install)");
    let etcd = Etcd::start().await.unwrap();
    let otel = |service: &str| {
        vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT", phoenix.endpoint()),
            ("OTEL_SERVICE_NAME", service.to_string()),
            ("OTEL_BSP_SCHEDULE_DELAY", "200".to_string()),
        ]
    };
    let repo = repository(&[]);
    let url = etcd.url();
    let _node = Node::start_env(
        repo.path(),
        &["--etcd", &url, "--node-id", "n1", "--lease-ttl", "2"],
        &otel("troupe-node"),
    )
    .await
    .unwrap();
    let router = RouterProc::start_env(&url, "r1", &otel("troupe-router"))
        .await
        .unwrap();
    let mut spec = mlp_spec("traced", 1, 1 << 28);
    // A reference far from the inputs: the first call is drift.
    spec.hooks = Some(tpb::Hooks {
        drift: Some(tpb::Drift {
            reference_mean: vec![100.0; 16],
            reference_std: vec![1.0; 16],
            min_rows: 1,
            ..Default::default()
        }),
        ..Default::default()
    });
    let mut c = router.client().await;
    c.models()
        .create(tpb::CreateModelRequest {
            spec: Some(spec),
            ..Default::default()
        })
        .await
        .unwrap();
    let start = Instant::now();
    while !c.model_ready("traced").await.unwrap_or(false) {
        assert!(start.elapsed() < Duration::from_secs(30), "model not ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let case = &reference("mlp.json")[0];
    let values: Vec<String> = case.input.iter().map(|v| v.to_string()).collect();
    let input = format!(
        "input={}:{}",
        case.shape
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join(","),
        values.join(",")
    );
    let cli = |traceparent: &str, args: &[&str]| {
        let out = troupe_cli()
            .args([
                "--server",
                &router.addr,
                "--json",
                "--traceparent",
                traceparent,
            ])
            .args(args)
            .envs(otel("troupe-cli"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };

    // 1. An explained call, sampled.
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let out = cli(
        &format!("00-{trace}-{caller_span}-01"),
        &[
            "explain",
            "traced",
            "--method",
            "occlusion",
            "--input",
            &input,
        ],
    );
    assert_eq!(out["trace_id"], trace, "the answer carries the trace id");

    // Each process exports its spans in its own batches: wait until every hop's are in.
    let hops = [
        "client.explain",
        "router.infer",
        "router.attempt",
        "node.infer",
    ];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let spans = loop {
        let spans = phoenix.spans(trace, 9, 30).unwrap();
        let all_in = hops.iter().all(|h| spans.iter().any(|s| s["name"] == *h));
        if all_in || std::time::Instant::now() > deadline {
            break spans;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let by_id: HashMap<&str, &Value> = spans
        .iter()
        .map(|s| (s["span_id"].as_str().unwrap(), s))
        .collect();
    let parent = |s: &Value| -> &str {
        let p = s["parent_id"].as_str().unwrap_or("");
        by_id.get(p).map_or("", |p| p["name"].as_str().unwrap())
    };
    for s in &spans {
        assert_eq!(s["trace_id"], trace);
    }
    let client = span(&spans, "client.explain");
    assert_eq!(
        client["parent_id"], caller_span,
        "continues the caller's span"
    );
    assert_eq!(attr(client, "service.name"), "troupe-cli");
    let routed = span(&spans, "router.infer");
    assert_eq!(parent(routed), "client.explain");
    assert_eq!(attr(routed, "model"), "traced");
    assert_eq!(attr(routed, "service.name"), "troupe-router");
    let attempt = span(&spans, "router.attempt");
    assert_eq!(parent(attempt), "router.infer");
    assert_eq!(attr(attempt, "node"), "n1");
    assert_eq!(attr(attempt, "attempt"), 0);
    let node = span(&spans, "node.infer");
    assert_eq!(parent(node), "router.attempt");
    assert_eq!(attr(node, "service.name"), "troupe-node");
    assert_eq!(attr(node, "model"), "traced");
    let explanation = span(&spans, "explanation");
    assert_eq!(parent(explanation), "node.infer");
    assert_eq!(attr(explanation, "method"), "occlusion");
    // Every queue wait and batch belongs to the call or to its explanation; every
    // backend run to a batch.
    for s in spans
        .iter()
        .filter(|s| s["name"] == "queue_wait" || s["name"] == "batch")
    {
        assert!(
            ["node.infer", "explanation"].contains(&parent(s)),
            "{} under {}",
            s["name"],
            parent(s)
        );
    }
    assert!(
        spans
            .iter()
            .any(|s| s["name"] == "queue_wait" && parent(s) == "explanation"),
        "the explanation's own batched calls are in its trace"
    );
    let backend = span(&spans, "backend");
    assert_eq!(parent(backend), "batch");
    assert_eq!(attr(backend, "backend"), "onnx");
    assert_eq!(attr(backend, "device"), "cpu");
    let batch = span(&spans, "batch");
    assert!(
        attr(batch, "size").as_i64().is_some_and(|n| n >= 1),
        "{batch:#}"
    );
    // The drift hook's event on the node's call span.
    let events = node["events"].as_array().cloned().unwrap_or_default();
    assert!(
        events
            .iter()
            .any(|e| e["name"].as_str().unwrap_or("").contains("drift")),
        "no drift event in {node:#}"
    );

    // 2. The caller says "not sampled": nothing is exported under that trace.
    let quiet = "5bf92f3577b34da6a3ce929d0e0e4737";
    let out = cli(
        &format!("00-{quiet}-{caller_span}-00"),
        &["infer", "traced", "--input", &input],
    );
    assert_eq!(out["outputs"][0]["name"], "output");
    // A sampled call after it: once its spans are in, the unsampled ones would be too.
    let later = "6bf92f3577b34da6a3ce929d0e0e4738";
    cli(
        &format!("00-{later}-{caller_span}-01"),
        &["infer", "traced", "--input", &input],
    );
    phoenix.spans(later, 4, 30).unwrap();
    let none = phoenix.spans(quiet, 1, 2);
    assert!(none.is_err(), "an unsampled call exported spans: {none:?}");
}
