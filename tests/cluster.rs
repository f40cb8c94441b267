//! Cluster membership through a real etcd: registration under a lease, readiness and
//! load published, keys gone after a crash or a shutdown, and serving through an etcd
//! outage with registration again afterwards.

use std::time::{Duration, Instant};

use serde_json::Value;
use troupe_tests::{Etcd, Node, max_abs_diff, reference, repository};

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
    let case = &reference("mlp.json")[0];
    let mut c = node.client().await;
    match c
        .infer(
            "mlp_onnx",
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
