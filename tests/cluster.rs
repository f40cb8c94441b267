//! Cluster membership through a real etcd: registration under a lease, readiness and
//! load published, keys gone after a crash or a shutdown, and serving through an etcd
//! outage with registration again afterwards. Nodes follow their placements: they load
//! and unload models as `/troupe/placements/<model>/<node>` keys come and go, report
//! failed loads in their status record, and keep following after an etcd restart.

use std::time::{Duration, Instant};

use prost::Message;
use serde_json::Value;
use troupe_proto::troupe as pb;
use troupe_tests::{Etcd, Node, max_abs_diff, reference, repository, root};

async fn get_json(etcd: &Etcd, key: &str) -> Option<Value> {
    let mut c = etcd.client().await.ok()?;
    let r = c.get(key, None).await.ok()?;
    r.kvs()
        .first()
        .and_then(|kv| serde_json::from_slice(kv.value()).ok())
}

async fn wait_for(what: &str, within: Duration, mut f: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn serves(node: &Node) -> bool {
    serves_as(node, "mlp_onnx").await
}

/// Whether `model` on the node answers the MLP's reference case.
async fn serves_as(node: &Node, model: &str) -> bool {
    let case = &reference("mlp.json")[0];
    let mut c = node.client().await;
    match c
        .infer(
            model,
            vec![troupe_client::InputTensor::f32(
                "input",
                case.shape.clone(),
                &case.input,
            )],
        )
        .await
    {
        Ok(out) => max_abs_diff(&out.f32("output").unwrap(), &case.output) <= 1e-5,
        Err(_) => false,
    }
}

#[tokio::test]
async fn a_node_registers_publishes_load_and_leaves() {
    let etcd = Etcd::start().await.unwrap();
    let repo = repository(&["mlp_onnx", "mlp_candle"]);
    let mut node = Node::start(
        repo.path(),
        &[
            "--etcd",
            &etcd.url(),
            "--node-id",
            "n1",
            "--lease-ttl",
            "2",
            "--label",
            "zone=a",
            "--gpu-memory-mb",
            "16384",
        ],
    )
    .await
    .unwrap();

    let rec = get_json(&etcd, "/troupe/nodes/n1")
        .await
        .expect("node record");
    assert_eq!(rec["addr"], node.addr.as_str());
    assert!(rec["capacity"]["cpu_millis"].as_u64().unwrap() >= 1000);
    assert!(rec["capacity"]["memory_bytes"].as_u64().unwrap() > 0);
    assert_eq!(
        rec["capacity"]["gpus"][0]["memory_bytes"].as_u64(),
        Some(16384 << 20)
    );
    assert_eq!(rec["labels"]["zone"], "a");

    wait_for(
        "both models ready in the status record",
        Duration::from_secs(10),
        async || {
            get_json(&etcd, "/troupe/status/n1").await.is_some_and(|s| {
                let models = s["models"].as_array().cloned().unwrap_or_default();
                models.len() == 2
                    && models
                        .iter()
                        .all(|m| m["ready"] == true && m["ready_instances"] == 1)
            })
        },
    )
    .await;
    // The declared GPU is in the status record too, with its use as the node reads it
    // (declared: nothing used, nothing foreign), and each model's measured GPU memory
    // (0: these run on the CPU).
    let s = get_json(&etcd, "/troupe/status/n1").await.unwrap();
    assert_eq!(s["gpus"][0]["index"], 0, "{s}");
    assert_eq!(s["gpus"][0]["foreign_bytes"], 0, "{s}");
    assert!(
        s["models"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["gpu_memory_bytes"] == 0),
        "{s}"
    );

    // The lease is kept alive past its TTL.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        get_json(&etcd, "/troupe/nodes/n1").await.is_some(),
        "registration lapsed while the node lived"
    );

    // SIGTERM: the node revokes its lease at once.
    let t = Instant::now();
    let status = tokio::task::spawn_blocking(move || node.terminate())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
    assert!(
        get_json(&etcd, "/troupe/nodes/n1").await.is_none(),
        "keys left after a clean shutdown ({:?})",
        t.elapsed()
    );
}

#[tokio::test]
async fn a_crashed_node_disappears_after_its_lease() {
    let etcd = Etcd::start().await.unwrap();
    let repo = repository(&["mlp_onnx"]);
    let mut node = Node::start(
        repo.path(),
        &[
            "--etcd",
            &etcd.url(),
            "--node-id",
            "crashy",
            "--lease-ttl",
            "2",
        ],
    )
    .await
    .unwrap();
    wait_for("registration", Duration::from_secs(10), async || {
        get_json(&etcd, "/troupe/nodes/crashy").await.is_some()
    })
    .await;
    // No --gpu-memory-mb: the GPUs are measured, and without the NVIDIA driver (NVML)
    // there are none.
    if !std::path::Path::new("/dev/nvidiactl").exists() {
        let rec = get_json(&etcd, "/troupe/nodes/crashy").await.unwrap();
        assert_eq!(rec["capacity"]["gpus"], serde_json::json!([]), "{rec}");
    }
    node.kill9();
    wait_for("the lease to expire", Duration::from_secs(10), async || {
        get_json(&etcd, "/troupe/nodes/crashy").await.is_none()
            && get_json(&etcd, "/troupe/status/crashy").await.is_none()
    })
    .await;
}

#[tokio::test]
async fn serving_goes_on_through_an_etcd_outage_and_the_node_registers_again() {
    let mut etcd = Etcd::start().await.unwrap();
    let repo = repository(&["mlp_onnx"]);
    let node = Node::start(
        repo.path(),
        &["--etcd", &etcd.url(), "--node-id", "n2", "--lease-ttl", "2"],
    )
    .await
    .unwrap();
    wait_for("registration", Duration::from_secs(10), async || {
        get_json(&etcd, "/troupe/nodes/n2").await.is_some()
    })
    .await;

    etcd.kill();
    for _ in 0..10 {
        assert!(serves(&node).await, "a call failed while etcd was down");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    etcd.restart().await.unwrap();
    // Whatever the old lease did meanwhile, the node is registered again and stays so.
    tokio::time::sleep(Duration::from_secs(4)).await;
    wait_for(
        "registration after the outage",
        Duration::from_secs(15),
        async || {
            get_json(&etcd, "/troupe/nodes/n2").await.is_some()
                && get_json(&etcd, "/troupe/status/n2").await.is_some()
        },
    )
    .await;
    assert!(serves(&node).await);
    assert!(node.log_text().contains("registered in etcd"));
}

/// A `ModelSpec` for the example MLP (ONNX) under `name`, its artifact at `artifact_uri`.
fn mlp_spec(name: &str, artifact_uri: &str) -> Vec<u8> {
    let tensor = |name: &str, dims: Vec<i64>| pb::TensorSpec {
        name: name.into(),
        data_type: "FP32".into(),
        dims,
    };
    pb::ModelSpec {
        name: name.into(),
        backend: pb::BackendKind::Onnx as i32,
        artifact_uri: artifact_uri.into(),
        inputs: vec![tensor("input", vec![16])],
        outputs: vec![tensor("output", vec![4])],
        max_batch_size: 64,
        ..Default::default()
    }
    .encode_to_vec()
}

fn mlp_artifact() -> String {
    root()
        .join("models/repository/mlp_onnx/1")
        .display()
        .to_string()
}

async fn put(etcd: &Etcd, key: &str, value: impl Into<Vec<u8>>) {
    let mut c = etcd.client().await.expect("etcd client");
    c.put(key, value, None).await.expect("put");
}

async fn delete(etcd: &Etcd, key: &str) {
    let mut c = etcd.client().await.expect("etcd client");
    c.delete(key, None).await.expect("delete");
}

/// Places `count` replicas of `model` on `node`.
async fn place(etcd: &Etcd, model: &str, node: &str, count: u32) {
    let v = serde_json::json!({ "count": count, "gpu": null }).to_string();
    put(etcd, &format!("/troupe/placements/{model}/{node}"), v).await;
}

/// The model's entry in the node's status record.
async fn status_of(etcd: &Etcd, node: &str, model: &str) -> Option<Value> {
    let s = get_json(etcd, &format!("/troupe/status/{node}")).await?;
    s["models"]
        .as_array()?
        .iter()
        .find(|m| m["name"] == model)
        .cloned()
}

/// The failure reason the node's status record gives for `model`.
async fn failure_of(etcd: &Etcd, node: &str, model: &str) -> Option<String> {
    let s = get_json(etcd, &format!("/troupe/status/{node}")).await?;
    s["failed"]
        .as_array()?
        .iter()
        .find(|f| f["name"] == model)
        .and_then(|f| f["reason"].as_str().map(str::to_string))
}

async fn gone(node: &Node, model: &str) -> bool {
    let mut c = node.client().await;
    let ready = c.model_ready(model).await.unwrap_or(true);
    let call = c
        .infer(
            model,
            vec![troupe_client::InputTensor::f32(
                "input",
                vec![1, 16],
                &[0.0; 16],
            )],
        )
        .await;
    !ready && call.err().and_then(|e| e.code()) == Some(tonic::Code::NotFound)
}

#[tokio::test]
async fn a_node_loads_and_unloads_what_is_placed_on_it() {
    let etcd = Etcd::start().await.unwrap();
    let repo = repository(&[]);
    let node = Node::start(
        repo.path(),
        &["--etcd", &etcd.url(), "--node-id", "n1", "--lease-ttl", "2"],
    )
    .await
    .unwrap();
    assert!(gone(&node, "mlp_onnx").await);

    put(
        &etcd,
        "/troupe/models/mlp_onnx",
        mlp_spec("mlp_onnx", &mlp_artifact()),
    )
    .await;
    // Another node's placement is not this node's business.
    place(&etcd, "mlp_onnx", "n2", 1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        gone(&node, "mlp_onnx").await,
        "loaded another node's placement"
    );

    place(&etcd, "mlp_onnx", "n1", 1).await;
    wait_for(
        "the placed model to serve",
        Duration::from_secs(30),
        async || serves(&node).await,
    )
    .await;
    wait_for(
        "readiness in the status record",
        Duration::from_secs(10),
        async || {
            status_of(&etcd, "n1", "mlp_onnx")
                .await
                .is_some_and(|m| m["ready"] == true && m["ready_instances"] == 1)
        },
    )
    .await;

    // Two replicas here: one load with twice the instances, serving throughout.
    place(&etcd, "mlp_onnx", "n1", 2).await;
    wait_for("two instances", Duration::from_secs(30), async || {
        assert!(
            serves(&node).await,
            "a call failed while replicas were added"
        );
        status_of(&etcd, "n1", "mlp_onnx")
            .await
            .is_some_and(|m| m["ready_instances"] == 2 && m["instances"] == 2)
    })
    .await;

    delete(&etcd, "/troupe/placements/mlp_onnx/n1").await;
    wait_for(
        "the model to be unloaded",
        Duration::from_secs(30),
        async || gone(&node, "mlp_onnx").await,
    )
    .await;
    wait_for(
        "the status record to drop it",
        Duration::from_secs(10),
        async || {
            get_json(&etcd, "/troupe/status/n1").await.is_some()
                && status_of(&etcd, "n1", "mlp_onnx").await.is_none()
        },
    )
    .await;
    assert!(node.log_text().contains("no longer placed here; unloaded"));
}

#[tokio::test]
async fn a_failed_load_is_reported_retried_and_leaves_the_rest_serving() {
    let etcd = Etcd::start().await.unwrap();
    // mlp_candle comes from the node's own repository: placements never unload it.
    let repo = repository(&["mlp_candle"]);
    let bad = tempfile::tempdir().unwrap();
    let corrupt = bad.path().join("model.onnx");
    std::fs::write(&corrupt, b"this is not an ONNX model").unwrap();
    // Both artifacts lie under model roots, so they fail at load, not at the roots check.
    let node = Node::start(
        repo.path(),
        &[
            "--etcd",
            &etcd.url(),
            "--node-id",
            "n1",
            "--lease-ttl",
            "2",
            "--model-root",
            &bad.path().display().to_string(),
            "--model-root",
            "/nonexistent/troupe",
        ],
    )
    .await
    .unwrap();

    put(
        &etcd,
        "/troupe/models/mlp_onnx",
        mlp_spec("mlp_onnx", &mlp_artifact()),
    )
    .await;
    put(
        &etcd,
        "/troupe/models/broken",
        mlp_spec("broken", &corrupt.display().to_string()),
    )
    .await;
    put(
        &etcd,
        "/troupe/models/missing",
        mlp_spec("missing", "/nonexistent/troupe/model.onnx"),
    )
    .await;
    put(
        &etcd,
        "/troupe/models/mlp_candle",
        mlp_spec("mlp_candle", &mlp_artifact()),
    )
    .await;
    for m in ["broken", "missing", "mlp_onnx", "mlp_candle"] {
        place(&etcd, m, "n1", 1).await;
    }
    wait_for(
        "the good model to serve",
        Duration::from_secs(30),
        async || serves(&node).await,
    )
    .await;
    wait_for(
        "both failures in the status record",
        Duration::from_secs(15),
        async || {
            failure_of(&etcd, "n1", "broken").await.is_some()
                && failure_of(&etcd, "n1", "missing")
                    .await
                    .is_some_and(|r| r.contains("not found"))
        },
    )
    .await;
    let reason = failure_of(&etcd, "n1", "broken").await.unwrap();
    assert!(
        reason.contains("cannot load model 'broken'"),
        "reason: {reason}"
    );
    assert!(gone(&node, "broken").await);
    // Retried with backoff, the node serving on meanwhile.
    wait_for("a retry", Duration::from_secs(15), async || {
        assert!(serves(&node).await);
        node.log_text().matches("cannot load placed model").count() >= 4
    })
    .await;

    // Fixed in etcd: the next load succeeds and the failure is gone.
    put(
        &etcd,
        "/troupe/models/broken",
        mlp_spec("broken", &mlp_artifact()),
    )
    .await;
    wait_for(
        "the fixed model to serve",
        Duration::from_secs(30),
        async || serves_as(&node, "broken").await,
    )
    .await;
    wait_for(
        "the failure to clear",
        Duration::from_secs(10),
        async || failure_of(&etcd, "n1", "broken").await.is_none(),
    )
    .await;
    // Unplaced: its failure goes too.
    delete(&etcd, "/troupe/placements/missing/n1").await;
    wait_for(
        "the unplaced failure to clear",
        Duration::from_secs(10),
        async || failure_of(&etcd, "n1", "missing").await.is_none(),
    )
    .await;

    // The repository's model was left alone, and stays when its placement goes.
    delete(&etcd, "/troupe/placements/mlp_candle/n1").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut c = node.client().await;
    assert!(c.model_ready("mlp_candle").await.unwrap());
    assert!(node.log_text().contains("already loaded locally"));
}

#[tokio::test]
async fn placements_are_followed_again_after_an_etcd_restart() {
    let mut etcd = Etcd::start().await.unwrap();
    let repo = repository(&[]);
    let node = Node::start(
        repo.path(),
        &["--etcd", &etcd.url(), "--node-id", "n3", "--lease-ttl", "2"],
    )
    .await
    .unwrap();
    put(
        &etcd,
        "/troupe/models/mlp_onnx",
        mlp_spec("mlp_onnx", &mlp_artifact()),
    )
    .await;
    place(&etcd, "mlp_onnx", "n3", 1).await;
    wait_for(
        "the placed model to serve",
        Duration::from_secs(30),
        async || serves(&node).await,
    )
    .await;

    etcd.kill();
    for _ in 0..5 {
        assert!(
            serves(&node).await,
            "a placed model stopped serving while etcd was down"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    etcd.restart().await.unwrap();

    put(
        &etcd,
        "/troupe/models/second",
        mlp_spec("second", &mlp_artifact()),
    )
    .await;
    place(&etcd, "second", "n3", 1).await;
    delete(&etcd, "/troupe/placements/mlp_onnx/n3").await;
    wait_for(
        "the new placement after the restart",
        Duration::from_secs(30),
        async || serves_as(&node, "second").await && gone(&node, "mlp_onnx").await,
    )
    .await;
    assert!(node.log_text().contains("cannot follow placements"));
}
