//! The cluster end to end: a real etcd, troupe-node processes that follow placements, and
//! troupe-router processes that place models and route calls.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use troupe_client::troupe_proto::troupe as tpb;
use troupe_client::{Client, InputTensor};
use troupe_tests::{Etcd, Node, RouterProc, max_abs_diff, mlp_spec, reference, repository};

const GIB: u64 = 1 << 30;

async fn node(etcd: &Etcd, id: &str, extra: &[&str]) -> (tempfile::TempDir, Node) {
    let repo = repository(&[]);
    let url = etcd.url();
    let mut args = vec!["--etcd", url.as_str(), "--node-id", id, "--lease-ttl", "2"];
    args.extend_from_slice(extra);
    let n = Node::start(repo.path(), &args).await.expect("node starts");
    (repo, n)
}

async fn wait_for(what: &str, within: Duration, mut f: impl AsyncFnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !f().await {
        assert!(
            start.elapsed() < within,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    start.elapsed()
}

async fn ready_nodes(router: &RouterProc, model: &str) -> Vec<String> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", router.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut cl = tpb::cluster_client::ClusterClient::new(channel);
    let p = cl
        .placements(tpb::PlacementsRequest {
            model: model.into(),
        })
        .await
        .unwrap()
        .into_inner();
    p.placements
        .into_iter()
        .filter(|p| p.ready)
        .map(|p| p.node_id)
        .collect()
}

async fn create(router: &RouterProc, spec: tpb::ModelSpec) {
    let mut c = router.client().await;
    c.models()
        .create(tpb::CreateModelRequest {
            spec: Some(spec),
            ..Default::default()
        })
        .await
        .expect("create");
}

async fn infer_ok(c: &mut Client, model: &str) -> Result<(), String> {
    let case = &reference("mlp.json")[0];
    match c
        .infer(
            model,
            vec![InputTensor::f32("input", case.shape.clone(), &case.input)],
        )
        .await
    {
        Ok(out) if max_abs_diff(&out.f32("output").unwrap(), &case.output) <= 1e-5 => Ok(()),
        Ok(_) => Err("wrong answer".into()),
        Err(e) => Err(e.to_string()),
    }
}

#[tokio::test]
async fn replicas_spread_over_nodes_and_are_served_through_the_router() {
    let etcd = Etcd::start().await.unwrap();
    let _n = [
        node(&etcd, "n1", &[]).await,
        node(&etcd, "n2", &[]).await,
        node(&etcd, "n3", &[]).await,
    ];
    let router = RouterProc::start(&etcd.url(), "r1").await.unwrap();
    create(&router, mlp_spec("mlp", 2, GIB / 4)).await;
    wait_for("two ready replicas", Duration::from_secs(30), async || {
        ready_nodes(&router, "mlp").await.len() == 2
    })
    .await;
    let nodes = ready_nodes(&router, "mlp").await;
    assert_ne!(nodes[0], nodes[1], "replicas on one node");
    let mut c = router.client().await;
    for _ in 0..20 {
        infer_ok(&mut c, "mlp").await.unwrap();
    }
    let st = c
        .models()
        .get(tpb::GetModelRequest {
            name: "mlp".into(),
            version: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(st.state, tpb::ModelState::Ready as i32);
    assert_eq!(st.ready_replicas, 2);
    // A second create is refused; an unknown model is NOT_FOUND through the router.
    let e = c
        .models()
        .create(tpb::CreateModelRequest {
            spec: Some(mlp_spec("mlp", 2, GIB)),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::AlreadyExists);
    let e = c
        .infer(
            "nope",
            vec![InputTensor::f32("input", vec![1, 16], &[0.0; 16])],
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(tonic::Code::NotFound));

    // W3C trace context: the caller's trace id comes back through the router (from the node).
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let case = &reference("mlp.json")[0];
    let mut req = tonic::Request::new(troupe_client::infer_request(
        "mlp",
        "",
        vec![InputTensor::f32("input", case.shape.clone(), &case.input)],
    ));
    req.metadata_mut()
        .insert("traceparent", tp.parse().unwrap());
    let resp = c.inference().model_infer(req).await.unwrap();
    assert_eq!(
        resp.metadata()
            .get("trace-id")
            .and_then(|v| v.to_str().ok()),
        Some("4bf92f3577b34da6a3ce929d0e0e4736")
    );
    let mut bad = tonic::Request::new(troupe_client::infer_request(
        "mlp",
        "",
        vec![InputTensor::f32("input", vec![1, 3], &[0.0; 3])],
    ));
    bad.metadata_mut()
        .insert("traceparent", tp.parse().unwrap());
    let err = c.inference().model_infer(bad).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert_eq!(
        err.metadata().get("trace-id").and_then(|v| v.to_str().ok()),
        Some("4bf92f3577b34da6a3ce929d0e0e4736")
    );

    // The CLI's cluster views.
    let run = |args: &[&str]| {
        let out = troupe_tests::troupe_cli()
            .args(["--server", &router.addr, "--json"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let nodes = run(&["cluster", "nodes"]);
    assert_eq!(nodes.as_array().unwrap().len(), 3);
    let used: u64 = nodes
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["used_memory_bytes"].as_u64().unwrap())
        .sum();
    assert_eq!(used, 2 * (GIB / 4), "two replicas of 256 MiB placed");
    let p = run(&["cluster", "placements", "--model", "mlp"]);
    assert_eq!(p["placements"].as_array().unwrap().len(), 2);
    assert!(
        p["placements"]
            .as_array()
            .unwrap()
            .iter()
            .all(|x| x["ready"] == true)
    );
}

#[tokio::test]
async fn a_model_too_large_stays_pending_then_is_placed_when_room_arrives() {
    let etcd = Etcd::start().await.unwrap();
    let _a = node(&etcd, "small1", &["--memory-mb", "1024"]).await;
    let _b = node(&etcd, "small2", &["--memory-mb", "1024"]).await;
    let router = RouterProc::start(&etcd.url(), "r1").await.unwrap();
    create(&router, mlp_spec("big", 1, 4 * GIB)).await;
    let mut c = router.client().await;
    wait_for(
        "a pending status naming memory",
        Duration::from_secs(20),
        async || {
            let st = c
                .models()
                .get(tpb::GetModelRequest {
                    name: "big".into(),
                    version: String::new(),
                })
                .await
                .unwrap()
                .into_inner();
            st.state == tpb::ModelState::Pending as i32 && st.reason.contains("memory")
        },
    )
    .await;
    let _big = node(&etcd, "big1", &["--memory-mb", "8192"]).await;
    wait_for(
        "placement on the new node",
        Duration::from_secs(30),
        async || ready_nodes(&router, "big").await == vec!["big1".to_string()],
    )
    .await;
    infer_ok(&mut c, "big").await.unwrap();
}

#[tokio::test]
async fn kill_9_of_a_replica_node_loses_no_call_and_the_replica_comes_back() {
    let etcd = Etcd::start().await.unwrap();
    let mut nodes = [
        node(&etcd, "n1", &[]).await,
        node(&etcd, "n2", &[]).await,
        node(&etcd, "n3", &[]).await,
    ];
    let router = RouterProc::start(&etcd.url(), "r1").await.unwrap();
    create(&router, mlp_spec("mlp", 2, GIB / 4)).await;
    wait_for("two ready replicas", Duration::from_secs(30), async || {
        ready_nodes(&router, "mlp").await.len() == 2
    })
    .await;

    let failures = Arc::new(AtomicU64::new(0));
    let calls = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..2 {
        let (mut c, f, n, s) = (
            router.client().await,
            failures.clone(),
            calls.clone(),
            stop.clone(),
        );
        clients.push(tokio::spawn(async move {
            while !s.load(Ordering::Relaxed) {
                if let Err(e) = infer_ok(&mut c, "mlp").await {
                    eprintln!("call failed: {e}");
                    f.fetch_add(1, Ordering::Relaxed);
                }
                n.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let victim_id = ready_nodes(&router, "mlp").await[0].clone();
    let idx = ["n1", "n2", "n3"]
        .iter()
        .position(|n| *n == victim_id)
        .unwrap();
    nodes[idx].1.kill9();
    let back = wait_for(
        "two ready replicas again",
        Duration::from_secs(60),
        async || {
            let r = ready_nodes(&router, "mlp").await;
            r.len() == 2 && !r.contains(&victim_id)
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for t in clients {
        t.await.unwrap();
    }
    eprintln!(
        "kill -9 of {victim_id}: {} calls, {} failed; replica ready again on another node {:.2} s after the kill",
        calls.load(Ordering::Relaxed),
        failures.load(Ordering::Relaxed),
        back.as_secs_f64()
    );
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "client calls failed during the failover"
    );
    assert!(calls.load(Ordering::Relaxed) > 20);
}

#[tokio::test]
async fn a_router_restart_reloads_nothing_and_a_second_router_takes_over_placement() {
    let etcd = Etcd::start().await.unwrap();
    let n1 = node(&etcd, "n1", &[]).await;
    let n2 = node(&etcd, "n2", &[]).await;
    let mut r1 = RouterProc::start(&etcd.url(), "r1").await.unwrap();
    create(&r1, mlp_spec("mlp", 2, GIB / 4)).await;
    wait_for("two ready replicas", Duration::from_secs(30), async || {
        ready_nodes(&r1, "mlp").await.len() == 2
    })
    .await;
    let r2 = RouterProc::start(&etcd.url(), "r2").await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let leaders = [&r1, &r2]
        .iter()
        .filter(|r| r.log_text().contains("elected placement leader"))
        .count();
    assert_eq!(leaders, 1, "exactly one router places");
    assert!(
        r1.log_text().contains("elected placement leader"),
        "the first router leads"
    );

    // Kill the leader: the other one routes on and takes over placement.
    r1.kill9();
    let mut c = r2.client().await;
    infer_ok(&mut c, "mlp").await.unwrap();
    wait_for("r2 elected", Duration::from_secs(20), async || {
        r2.log_text().contains("elected placement leader")
    })
    .await;
    create(&r2, mlp_spec("mlp2", 1, GIB / 4)).await;
    wait_for("mlp2 placed by r2", Duration::from_secs(30), async || {
        ready_nodes(&r2, "mlp2").await.len() == 1
    })
    .await;

    // A restarted router routes at once and no model was loaded twice.
    let r3 = RouterProc::start(&etcd.url(), "r3").await.unwrap();
    let mut c3 = r3.client().await;
    infer_ok(&mut c3, "mlp").await.unwrap();
    for (_, n) in [&n1, &n2] {
        let loads = n
            .log_text()
            .lines()
            .filter(|l| l.contains("troupe_node::registry: model loaded model=mlp "))
            .count();
        assert!(loads <= 1, "a node loaded mlp {loads} times");
    }
}

#[tokio::test]
async fn serving_goes_on_through_an_etcd_restart_and_the_cluster_converges() {
    let mut etcd = Etcd::start().await.unwrap();
    let _n1 = node(&etcd, "n1", &[]).await;
    let _n2 = node(&etcd, "n2", &[]).await;
    let router = RouterProc::start(&etcd.url(), "r1").await.unwrap();
    create(&router, mlp_spec("mlp", 2, GIB / 4)).await;
    wait_for("two ready replicas", Duration::from_secs(30), async || {
        ready_nodes(&router, "mlp").await.len() == 2
    })
    .await;
    let mut c = router.client().await;
    etcd.kill();
    for _ in 0..20 {
        infer_ok(&mut c, "mlp")
            .await
            .expect("calls go on while etcd is down");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    etcd.restart().await.unwrap();
    for _ in 0..20 {
        infer_ok(&mut c, "mlp")
            .await
            .expect("calls go on after etcd is back");
    }
    create(&router, mlp_spec("after", 1, GIB / 4)).await;
    wait_for(
        "a model declared after the restart is placed",
        Duration::from_secs(40),
        async || ready_nodes(&router, "after").await.len() == 1,
    )
    .await;
    wait_for(
        "both replicas of the first model ready",
        Duration::from_secs(30),
        async || ready_nodes(&router, "mlp").await.len() == 2,
    )
    .await;
}
