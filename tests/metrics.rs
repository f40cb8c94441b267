//! The Prometheus endpoint of a node: counters and histograms move with calls, by model
//! and status.

use troupe_client::InputTensor;
use troupe_tests::{Node, free_port, metric as value, reference, repository, scrape};

#[tokio::test]
async fn counters_and_histograms_move_with_calls() {
    let repo = repository(&["mlp_onnx", "mlp_candle"]);
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let node = Node::start(repo.path(), &["--metrics-listen", &addr])
        .await
        .unwrap();
    let mut c = node.client().await;
    let case = &reference("mlp.json")[0];
    for _ in 0..3 {
        c.infer(
            "mlp_onnx",
            vec![InputTensor::f32("input", case.shape.clone(), &case.input)],
        )
        .await
        .unwrap();
    }
    let _ = c
        .infer(
            "mlp_onnx",
            vec![InputTensor::f32("input", vec![1, 15], &[0.0; 15])],
        )
        .await
        .unwrap_err();
    let _ = c
        .infer(
            "nope",
            vec![InputTensor::f32("input", vec![1, 16], &[0.0; 16])],
        )
        .await
        .unwrap_err();

    let m = scrape(port);
    let onnx = "model=\"mlp_onnx\",version=\"1\"";
    assert_eq!(
        value(
            &m,
            &format!("troupe_requests_total{{{onnx},status=\"OK\"}}")
        ),
        3.0
    );
    assert_eq!(
        value(
            &m,
            &format!("troupe_requests_total{{{onnx},status=\"INVALID_ARGUMENT\"}}")
        ),
        1.0
    );
    assert_eq!(
        value(
            &m,
            "troupe_requests_total{model=\"\",version=\"\",status=\"NOT_FOUND\"}"
        ),
        1.0
    );
    assert_eq!(
        value(
            &m,
            &format!("troupe_request_duration_seconds_count{{{onnx}}}")
        ),
        3.0
    );
    assert_eq!(
        value(
            &m,
            &format!("troupe_compute_duration_seconds_count{{{onnx}}}")
        ),
        3.0
    );
    assert_eq!(
        value(&m, &format!("troupe_batch_size_count{{{onnx}}}")),
        3.0
    );
    assert_eq!(
        value(&m, &format!("troupe_batch_size_sum{{{onnx}}}")),
        3.0 * case.shape[0] as f64
    );
    assert_eq!(
        value(
            &m,
            &format!("troupe_request_duration_seconds_bucket{{le=\"+Inf\",{onnx}}}")
        ),
        3.0
    );
    assert!(
        value(
            &m,
            &format!("troupe_request_duration_seconds_sum{{{onnx}}}")
        ) > 0.0
    );
    assert_eq!(value(&m, &format!("troupe_model_ready{{{onnx}}}")), 1.0);
    assert!(value(&m, &format!("troupe_model_load_seconds{{{onnx}}}")) > 0.0);
    assert_eq!(
        value(
            &m,
            "troupe_queue_length{model=\"mlp_candle\",version=\"1\"}"
        ),
        0.0
    );
    assert_eq!(
        value(
            &m,
            "troupe_request_duration_seconds_count{model=\"mlp_candle\",version=\"1\"}"
        ),
        0.0
    );
    assert!(m.contains("# TYPE troupe_request_duration_seconds histogram"));

    // They move with more calls.
    c.infer(
        "mlp_candle",
        vec![InputTensor::f32("input", case.shape.clone(), &case.input)],
    )
    .await
    .unwrap();
    c.infer(
        "mlp_onnx",
        vec![InputTensor::f32("input", case.shape.clone(), &case.input)],
    )
    .await
    .unwrap();
    let m = scrape(port);
    assert_eq!(
        value(
            &m,
            &format!("troupe_requests_total{{{onnx},status=\"OK\"}}")
        ),
        4.0
    );
    assert_eq!(
        value(
            &m,
            "troupe_requests_total{model=\"mlp_candle\",version=\"1\",status=\"OK\"}"
        ),
        1.0
    );
    assert_eq!(
        value(
            &m,
            "troupe_request_duration_seconds_count{model=\"mlp_candle\",version=\"1\"}"
        ),
        1.0
    );
}

#[tokio::test]
async fn the_router_counts_calls_and_shows_replicas_and_node_resources() {
    use troupe_client::troupe_proto::troupe as tpb;
    let etcd = troupe_tests::Etcd::start().await.unwrap();
    let repo = repository(&[]);
    let url = etcd.url();
    let _node = Node::start(
        repo.path(),
        &[
            "--etcd",
            &url,
            "--node-id",
            "n1",
            "--memory-mb",
            "2048",
            "--cpu-millis",
            "4000",
        ],
    )
    .await
    .unwrap();
    let port = free_port();
    let router = troupe_tests::RouterProc::start_env(
        &url,
        "r1",
        &[("TROUPE_METRICS_LISTEN", format!("127.0.0.1:{port}"))],
    )
    .await
    .unwrap();
    let mut c = router.client().await;
    c.models()
        .create(tpb::CreateModelRequest {
            spec: Some(troupe_tests::mlp_spec("m", 1, 1 << 28)),
            ..Default::default()
        })
        .await
        .unwrap();
    let start = std::time::Instant::now();
    while !c.model_ready("m").await.unwrap_or(false) {
        assert!(start.elapsed().as_secs() < 30, "model not ready");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let case = &reference("mlp.json")[0];
    for _ in 0..3 {
        c.infer(
            "m",
            vec![InputTensor::f32("input", case.shape.clone(), &case.input)],
        )
        .await
        .unwrap();
    }
    let _ = c
        .infer(
            "nope",
            vec![InputTensor::f32("input", vec![1, 16], &[0.0; 16])],
        )
        .await
        .unwrap_err();
    let m = scrape(port);
    assert_eq!(
        value(
            &m,
            "troupe_router_requests_total{model=\"m\",status=\"OK\"}"
        ),
        3.0
    );
    assert_eq!(
        value(
            &m,
            "troupe_router_requests_total{model=\"\",status=\"NOT_FOUND\"}"
        ),
        1.0
    );
    assert_eq!(
        value(
            &m,
            "troupe_router_request_duration_seconds_count{model=\"m\"}"
        ),
        3.0
    );
    for g in ["desired", "placed", "ready"] {
        assert_eq!(
            value(&m, &format!("troupe_replicas_{g}{{model=\"m\"}}")),
            1.0,
            "{g}"
        );
    }
    assert_eq!(value(&m, "troupe_replicas_pending{model=\"m\"}"), 0.0);
    assert_eq!(value(&m, "troupe_node_cpu_millis{node=\"n1\"}"), 4000.0);
    assert_eq!(
        value(&m, "troupe_node_cpu_placed_millis{node=\"n1\"}"),
        500.0
    );
    assert_eq!(
        value(&m, "troupe_node_memory_placed_bytes{node=\"n1\"}"),
        (1u64 << 28) as f64
    );
    assert_eq!(value(&m, "troupe_router_leader"), 1.0);
    assert_eq!(value(&m, "troupe_router_in_flight{node=\"n1\"}"), 0.0);
}
