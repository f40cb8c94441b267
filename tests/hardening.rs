//! Hardening: no request can exhaust a node. An explanation of an image-sized input
//! (`models/testing/wide_onnx`, 150,528 features) that would take 9,408 perturbed copies
//! (5.6 GB) runs within the node's explanation memory budget, measured as the node
//! process's resident memory while the call runs, and the node answers other calls
//! meanwhile; one that cannot get room is refused RESOURCE_EXHAUSTED with the figures.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tonic::Code;
use troupe_client::{CallOptions, ClientError, ExplainOptions, InputTensor};
use troupe_tests::{
    Etcd, Node, RouterProc, edit_config, eventually, free_port, linked_repository, metric,
    repository, scrape,
};

const FEATURES: usize = 3 * 224 * 224;
const MIB: u64 = 1 << 20;

/// The resident memory of process `pid`, bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmRSS")
        * 1024
}

fn picture() -> Vec<f32> {
    // Deterministic values in [0, 1): the sum is far above the max, so the explained
    // element is y[0] (the sum) and each feature's occlusion attribution is its group's sum.
    (0..FEATURES)
        .map(|i| ((i * 7919) % 1000) as f32 / 1000.0)
        .collect()
}

async fn explain_wide(
    c: &mut troupe_client::Client,
    x: &[f32],
    window: u32,
) -> Result<troupe_client::Explanation, ClientError> {
    let mut how = ExplainOptions::method("occlusion");
    how.window = window;
    c.explain(
        "wide_onnx",
        vec![InputTensor::f32("x", vec![1, FEATURES as i64], x)],
        &how,
        &CallOptions::default(),
    )
    .await
}

#[tokio::test]
async fn an_explanation_of_any_size_stays_within_the_node_memory_budget() {
    let budget_mb = 64u64;
    let repo = linked_repository(&["wide_onnx", "mlp_onnx"]);
    let node = Node::start(
        repo.path(),
        &[
            "--explain-memory-mb",
            &budget_mb.to_string(),
            "--explain-call-memory-mb",
            "32",
        ],
    )
    .await
    .unwrap();
    let mut c = node.client().await;
    let x = picture();
    // Warm up the allocators on both paths (one plain call, one one-group explanation).
    c.infer(
        "wide_onnx",
        vec![InputTensor::f32("x", vec![1, FEATURES as i64], &x)],
    )
    .await
    .unwrap();
    explain_wide(&mut c, &x, FEATURES as u32).await.unwrap();
    let before = rss(node.pid());

    // Sample the node's resident memory while the explanation runs.
    let peak = Arc::new(AtomicU64::new(before));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done, pid) = (peak.clone(), done.clone(), node.pid());
        std::thread::spawn(move || {
            while !done.load(Ordering::Acquire) {
                peak.fetch_max(rss(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    // Other calls are answered meanwhile.
    let others = {
        let (done, mut c) = (done.clone(), node.client().await);
        tokio::spawn(async move {
            let mut answered = 0u32;
            while !done.load(Ordering::Acquire) {
                c.infer(
                    "mlp_onnx",
                    vec![InputTensor::f32("input", vec![1, 16], &[0.5; 16])],
                )
                .await
                .expect("a plain call during the explanation");
                answered += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            answered
        })
    };
    let window = 16;
    let e = explain_wide(&mut c, &x, window).await;
    done.store(true, Ordering::Release);
    sampler.join().unwrap();
    let answered = others.await.unwrap();
    let e = e.expect("the explanation is served within the budget");

    let grown = peak.load(Ordering::Relaxed).saturating_sub(before);
    eprintln!(
        "resident memory: {} MiB before, peak {} MiB during the explanation; {answered} other calls answered",
        before / MIB,
        peak.load(Ordering::Relaxed) / MIB
    );
    // The budget bounds the perturbed inputs in flight; the slack covers what else a call
    // holds (its input, the answer, ONNX Runtime's own buffers).
    let slack = 64 * MIB;
    assert!(
        grown <= budget_mb * MIB + slack,
        "resident memory grew by {} MiB during the explanation (budget {budget_mb} MiB)",
        grown / MIB
    );
    assert!(answered > 0, "no other call was answered meanwhile");

    // And the answer is right: occluding a group of the sum's inputs lowers it by the
    // group's sum, given to each feature of the group.
    assert_eq!(e.targets().unwrap(), vec![0]);
    let a = e.attribution("x").unwrap();
    assert_eq!(a.len(), FEATURES);
    for g in [0, 1, 4_000, FEATURES / window as usize - 1] {
        let s = g * window as usize;
        let group: f32 = x[s..s + window as usize].iter().sum();
        for (j, v) in a[s..s + window as usize].iter().enumerate() {
            assert!(
                (v - group).abs() < 0.25,
                "feature {}: attribution {v}, group sum {group}",
                s + j
            );
        }
    }
}

#[tokio::test]
async fn an_explanation_without_room_is_refused_with_the_figures() {
    let repo = linked_repository(&["wide_onnx"]);
    let node = Node::start(
        repo.path(),
        &["--explain-memory-mb", "8", "--explain-call-memory-mb", "1"],
    )
    .await
    .unwrap();
    let mut c = node.client().await;
    let x = picture();
    // One perturbed copy (1.1 MiB with its tensor) is over the per-call cap.
    let e = explain_wide(&mut c, &x, 16).await.unwrap_err();
    let ClientError::Status(s) = &e else {
        panic!("not a status: {e:?}")
    };
    assert_eq!(s.code(), Code::ResourceExhausted, "{}", s.message());
    assert!(
        s.message().contains("--explain-call-memory-mb") && s.message().contains("MiB"),
        "{}",
        s.message()
    );
    // The node goes on serving.
    let y = c
        .infer(
            "wide_onnx",
            vec![InputTensor::f32("x", vec![1, FEATURES as i64], &x)],
        )
        .await
        .unwrap();
    assert_eq!(y.f32("y").unwrap().len(), 2);
}

#[tokio::test]
async fn a_full_audit_disk_loses_lines_counted_and_no_call() {
    // /dev/full: every write fails with ENOSPC, as on a full disk.
    let repo = repository(&["mlp_onnx"]);
    edit_config(
        repo.path(),
        "mlp_onnx",
        "instances = 1",
        "[hooks]\naudit = true",
    );
    let port = free_port();
    let node = Node::start(
        repo.path(),
        &[
            "--audit-log",
            "/dev/full",
            "--metrics-listen",
            &format!("127.0.0.1:{port}"),
        ],
    )
    .await
    .unwrap();
    let mut c = node.client().await;
    for _ in 0..20 {
        c.infer(
            "mlp_onnx",
            vec![InputTensor::f32("input", vec![1, 16], &[0.5; 16])],
        )
        .await
        .expect("calls are served while the audit file cannot be written");
    }
    // The writer drains asynchronously: wait for it to have tried every line.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let failed = loop {
        let text = scrape(port);
        let failed = metric(&text, "troupe_audit_failed_total");
        if failed >= 20.0 || std::time::Instant::now() > deadline {
            break failed;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(failed, 20.0, "every line lost is counted");
    assert_eq!(
        metric(&scrape(port), "troupe_audit_dropped_total"),
        0.0,
        "nothing was dropped for being behind"
    );
    assert!(node.log_text().contains("audit lines lost"));
}

#[tokio::test]
async fn the_router_refuses_messages_over_its_limit() {
    let etcd = Etcd::start().await.unwrap();
    let router = RouterProc::start_env(
        &etcd.url(),
        "r1",
        &[("TROUPE_MAX_MESSAGE_BYTES", "4096".to_string())],
    )
    .await
    .unwrap();
    let mut c = router.client().await;
    let big = vec![0.5f32; 4096];
    let e = c
        .infer(
            "mlp_onnx",
            vec![InputTensor::f32("input", vec![256, 16], &big)],
        )
        .await
        .unwrap_err();
    let ClientError::Status(s) = &e else {
        panic!("not a status: {e:?}")
    };
    assert_eq!(s.code(), Code::ResourceExhausted, "{}", s.message());
    // Bytes that are no ModelInferRequest (the router reads only their routing fields,
    // and forwards the rest undecoded) are refused as such.
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", router.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut raw = tonic::client::Grpc::new(channel);
    raw.ready().await.unwrap();
    let garbage = tonic::codegen::Bytes::from_static(&[0x0a, 100, b'x', 0xff, 0xff]);
    let s = raw
        .unary(
            tonic::Request::new(garbage),
            tonic::codegen::http::uri::PathAndQuery::from_static(
                troupe_client::troupe_proto::raw::MODEL_INFER_PATH,
            ),
            troupe_client::troupe_proto::raw::RawCodec,
        )
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::InvalidArgument, "{}", s.message());
    assert!(
        s.message()
            .contains("the ModelInferRequest could not be decoded"),
        "{}",
        s.message()
    );
    // A small call still reaches the router (no model: NOT_FOUND, not a transport error).
    let e = c
        .infer(
            "mlp_onnx",
            vec![InputTensor::f32("input", vec![1, 16], &[0.5; 16])],
        )
        .await
        .unwrap_err();
    let ClientError::Status(s) = &e else {
        panic!("not a status: {e:?}")
    };
    assert_eq!(s.code(), Code::NotFound, "{}", s.message());
}

#[tokio::test]
async fn a_deposed_leader_cannot_write_placements() {
    use prost::Message;
    let etcd = Etcd::start().await.unwrap();
    let router = RouterProc::start(&etcd.url(), "r1").await.unwrap();
    eventually("r1 leads", Duration::from_secs(20), async || {
        router.log_text().contains("elected placement leader")
    })
    .await;
    let mut e = etcd.client().await.unwrap();
    // Another campaigner takes the election from under r1: r1's key goes (as when its
    // lease is lost on a partition) while r1 still believes it leads.
    let keys = e
        .get(
            "/troupe/leader",
            Some(etcd_client::GetOptions::new().with_prefix()),
        )
        .await
        .unwrap();
    let r1_key = keys.kvs()[0].key().to_vec();
    let lease = e.lease_grant(30, None).await.unwrap().id();
    let mut intruder = e.clone();
    let campaign = tokio::spawn(async move {
        intruder
            .campaign("/troupe/leader", "intruder", lease)
            .await
            .unwrap()
    });
    e.delete(r1_key, None).await.unwrap();
    let won = campaign.await.unwrap();
    let intruder_key = won.leader().unwrap().clone();

    // A model appears: r1 plans it (pending, no node) but etcd refuses its write.
    let spec = troupe_tests::mlp_spec("fenced", 1, 1 << 20);
    e.put("/troupe/models/fenced", spec.encode_to_vec(), None)
        .await
        .unwrap();
    eventually("r1 refused", Duration::from_secs(10), async || {
        router.log_text().contains("no longer the placement leader")
    })
    .await;
    let pending = e.get("/troupe/pending/fenced", None).await.unwrap();
    assert!(
        pending.kvs().is_empty(),
        "the deposed leader wrote a placement"
    );

    // Once the intruder resigns, r1 wins the election again and places.
    e.resign(Some(
        etcd_client::ResignOptions::new().with_leader(intruder_key),
    ))
    .await
    .unwrap();
    eventually("r1 places again", Duration::from_secs(20), async || {
        !e.get("/troupe/pending/fenced", None)
            .await
            .unwrap()
            .kvs()
            .is_empty()
    })
    .await;
}

/// Declares `spec` through a router (the admin client the harness gives).
async fn create(admin: &mut troupe_client::Client, spec: troupe_proto::troupe::ModelSpec) {
    admin
        .models()
        .create(troupe_proto::troupe::CreateModelRequest {
            spec: Some(spec),
            ..Default::default()
        })
        .await
        .expect("the model is declared");
}

/// `slow_onnx` (about 10 ms a row) as a cluster spec: calls stay in flight long enough
/// to be caught by a node's death.
fn slow_spec(name: &str, replicas: u32) -> troupe_proto::troupe::ModelSpec {
    let mut spec = troupe_tests::mlp_spec(name, replicas, 1 << 20);
    spec.artifact_uri = troupe_tests::root()
        .join("models/testing/slow_onnx/1")
        .display()
        .to_string();
    spec.inputs[0].dims = vec![256];
    spec.outputs[0].dims = vec![256];
    spec.max_batch_size = 8;
    spec
}

#[tokio::test]
async fn calls_in_flight_on_a_node_that_dies_are_answered_by_another() {
    let etcd = Etcd::start().await.unwrap();
    let models = troupe_tests::root().join("models").display().to_string();
    let mut nodes = Vec::new();
    for id in ["n1", "n2"] {
        let repo = tempfile::tempdir().unwrap();
        let node = Node::start(
            repo.path(),
            &[
                "--etcd",
                &etcd.url(),
                "--node-id",
                id,
                "--model-root",
                &models,
            ],
        )
        .await
        .unwrap();
        nodes.push((id, repo, node));
    }
    let port = free_port();
    let router = RouterProc::start_env(
        &etcd.url(),
        "r1",
        &[("TROUPE_METRICS_LISTEN", format!("127.0.0.1:{port}"))],
    )
    .await
    .unwrap();
    let mut admin = router.client().await;
    create(&mut admin, slow_spec("slow", 2)).await;
    eventually("two ready replicas", Duration::from_secs(60), async || {
        let c = admin
            .cluster()
            .placements(troupe_proto::troupe::PlacementsRequest::default())
            .await;
        c.is_ok_and(|r| {
            r.into_inner()
                .placements
                .iter()
                .filter(|p| p.model == "slow" && p.ready)
                .count()
                == 2
        })
    })
    .await;

    // Eight clients keep calls of 8 rows (about 80 ms each) in flight on both nodes.
    let x = vec![0.25f32; 8 * 256];
    let failures = Arc::new(AtomicU64::new(0));
    let answered = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..8 {
        let (mut c, f, a, s, x) = (
            router.client().await,
            failures.clone(),
            answered.clone(),
            stop.clone(),
            x.clone(),
        );
        clients.push(tokio::spawn(async move {
            while !s.load(Ordering::Relaxed) {
                match c
                    .infer("slow", vec![InputTensor::f32("input", vec![8, 256], &x)])
                    .await
                {
                    Ok(r) if r.f32("output").unwrap() == x => {
                        a.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(_) => panic!("a wrong answer"),
                    Err(e) => {
                        eprintln!("call failed: {e}");
                        f.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    nodes[0].2.kill9();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    for t in clients {
        t.await.unwrap();
    }
    let retries = metric(&scrape(port), "troupe_router_retries_total{model=\"slow\"}");
    eprintln!(
        "kill -9 of n1 under load: {} answered, {} failed, {retries} resent",
        answered.load(Ordering::Relaxed),
        failures.load(Ordering::Relaxed)
    );
    assert_eq!(failures.load(Ordering::Relaxed), 0, "calls failed");
    assert!(retries >= 1.0, "no call was in flight on the killed node");
}

/// A cluster node with an empty repository (it serves what it is placed).
async fn cluster_node(etcd: &Etcd, id: &str) -> (tempfile::TempDir, Node) {
    let repo = tempfile::tempdir().unwrap();
    let node = Node::start(
        repo.path(),
        &["--etcd", &etcd.url(), "--node-id", id, "--lease-ttl", "2"],
    )
    .await
    .unwrap();
    (repo, node)
}

/// The nodes with a ready replica of `model`, and the replicas placed per node.
async fn replicas_of(c: &mut troupe_client::Client, model: &str) -> Vec<(String, u32, bool)> {
    let r = c
        .cluster()
        .placements(troupe_proto::troupe::PlacementsRequest {
            model: model.into(),
        })
        .await;
    r.map(|r| {
        r.into_inner()
            .placements
            .into_iter()
            .map(|p| (p.node_id, p.count, p.ready))
            .collect()
    })
    .unwrap_or_default()
}

/// `troupe-load` against `target` in a process of its own, run off the test's runtime
/// (which serves proxies and clients meanwhile).
struct Load {
    _dir: tempfile::TempDir,
    report: std::path::PathBuf,
    run: tokio::task::JoinHandle<std::io::Result<std::process::ExitStatus>>,
}

impl Load {
    fn start(target: &str, concurrency: u32, warmup: &str, duration: &str) -> Load {
        let dir = tempfile::tempdir().unwrap();
        let report = dir.path().join("load.json");
        let mut cmd = std::process::Command::new(troupe_tests::binary("troupe-load"));
        cmd.args(["--target", target, "--model", "mlp", "--quiet"])
            .args(["--concurrency", &concurrency.to_string()])
            .args(["--warmup", warmup, "--duration", duration])
            .arg("--json")
            .arg(&report);
        Load {
            _dir: dir,
            report,
            run: tokio::task::spawn_blocking(move || cmd.status()),
        }
    }

    /// Waits for the run to end, prints `figures` with the calls answered and failed,
    /// and asserts that none failed.
    async fn finish_without_errors(self, figures: String) {
        let step = self.finish().await;
        eprintln!(
            "{figures}; {} calls answered, {} errors {}",
            step["answers"], step["errors"], step["errors_by_code"]
        );
        assert_eq!(
            step["errors"].as_u64(),
            Some(0),
            "{}",
            step["error_messages"]
        );
    }

    /// Waits for the run to end; its one step of the report.
    async fn finish(self) -> serde_json::Value {
        let status = self.run.await.unwrap().unwrap();
        assert!(status.success(), "troupe-load failed");
        let r: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&self.report).unwrap()).unwrap();
        r["steps"][0].clone()
    }
}

#[tokio::test]
async fn replicas_re_spread_when_nodes_join_without_failing_a_call() {
    let etcd = Etcd::start().await.unwrap();
    let mut nodes = vec![cluster_node(&etcd, "n1").await];
    let router = RouterProc::start(&etcd.url(), "r1").await.unwrap();
    let mut admin = router.client().await;
    create(&mut admin, troupe_tests::mlp_spec("mlp", 2, 1 << 28)).await;
    eventually(
        "both replicas ready on n1",
        Duration::from_secs(30),
        async || replicas_of(&mut admin, "mlp").await == vec![("n1".to_string(), 2, true)],
    )
    .await;

    // Load from another process for the whole test.
    let load = Load::start(&router.addr, 4, "0s", "35s");

    // Two nodes join: one replica moves to one of them, made before it breaks.
    nodes.push(cluster_node(&etcd, "n2").await);
    nodes.push(cluster_node(&etcd, "n3").await);
    eventually("the replicas spread", Duration::from_secs(30), async || {
        let r = replicas_of(&mut admin, "mlp").await;
        r.len() == 2 && r.iter().all(|(_, n, ready)| *n == 1 && *ready)
    })
    .await;
    // Now the loss of either replica's node fails no call.
    let hosts = replicas_of(&mut admin, "mlp").await;
    let victim = hosts[1].0.clone();
    let i = ["n1", "n2", "n3"]
        .iter()
        .position(|n| *n == victim)
        .unwrap();
    nodes[i].1.kill9();
    let step = &load.finish().await;
    eprintln!(
        "re-spread then kill -9 of {victim} under load: {} answered, {} errors {}",
        step["answers"], step["errors"], step["errors_by_code"]
    );
    assert!(step["answers"].as_u64().unwrap() > 100);
    assert_eq!(
        step["errors"].as_u64(),
        Some(0),
        "{}",
        step["error_messages"]
    );
    assert!(router.log_text().contains("replica moved"));
}

#[tokio::test]
async fn the_router_sends_fewer_calls_to_a_slow_node() {
    let etcd = Etcd::start().await.unwrap();
    // n1 is reached through a proxy that holds every chunk towards it 20 ms.
    let (slow_addr, upstream) = troupe_tests::delaying_proxy(Duration::from_millis(20)).await;
    let mut ports = Vec::new();
    let mut nodes = Vec::new();
    for (i, id) in ["n1", "n2"].iter().enumerate() {
        let repo = tempfile::tempdir().unwrap();
        // Taken just before the node binds it: other tests pick free ports too.
        ports.push(free_port());
        let metrics = format!("127.0.0.1:{}", ports[i]);
        let mut args = vec![
            "--etcd",
            etcd.url().leak(),
            "--node-id",
            id,
            "--metrics-listen",
            metrics.clone().leak(),
        ];
        if i == 0 {
            args.extend(["--advertise", slow_addr.clone().leak()]);
        }
        let node = Node::start(repo.path(), &args).await.unwrap();
        nodes.push((repo, node));
    }
    upstream.send(nodes[0].1.addr.clone()).unwrap();
    let router = RouterProc::start(&etcd.url(), "r1").await.unwrap();
    let mut admin = router.client().await;
    create(&mut admin, troupe_tests::mlp_spec("mlp", 2, 1 << 28)).await;
    eventually(
        "a ready replica on each node",
        Duration::from_secs(30),
        async || {
            let r = replicas_of(&mut admin, "mlp").await;
            r.len() == 2 && r.iter().all(|(_, _, ready)| *ready)
        },
    )
    .await;

    // One call at a time: calls outstanding alone cannot tell the nodes apart.
    let step = Load::start(&router.addr, 1, "1s", "4s").finish().await;
    // Calls answered OK by a node (no series yet: none).
    let ok = |port: u16| {
        let series = "troupe_requests_total{model=\"mlp\",version=\"1\",status=\"OK\"}";
        let text = scrape(port);
        if text.contains(series) {
            metric(&text, series)
        } else {
            0.0
        }
    };
    let (slow, fast) = (ok(ports[0]), ok(ports[1]));
    eprintln!(
        "slow node (20 ms a chunk): {slow} calls, fast node: {fast}; load errors {}",
        step["errors"]
    );
    assert_eq!(step["errors"].as_u64(), Some(0));
    assert!(
        slow * 10.0 < fast,
        "the slow node got {slow} calls against {fast}"
    );
}

/// Node "na" in a network namespace of its own, reaching etcd at the host's `service`
/// address and reached by clients and the router through the host's `host` address (a
/// test cuts one or the other); node "nb" on the host; a router; `mlp` with a ready
/// replica on each node.
struct SplitCluster {
    ns: troupe_tests::NetNs,
    _etcd: Etcd,
    _repo: tempfile::TempDir,
    na: Node,
    _nb: (tempfile::TempDir, Node),
    router: RouterProc,
    admin: troupe_client::Client,
}

async fn split_cluster(k: u8, na_extra: &[&str], router_env: &[(&str, String)]) -> SplitCluster {
    let ns = troupe_tests::NetNs::new(k).unwrap();
    let etcd = Etcd::start_on(&[&ns.service]).await.unwrap();
    let repo = tempfile::tempdir().unwrap();
    let etcd_from_ns = format!("http://{}:{}", ns.service, etcd.client_port);
    let mut args = vec![
        "--etcd",
        &etcd_from_ns,
        "--node-id",
        "na",
        "--lease-ttl",
        "2",
    ];
    args.extend_from_slice(na_extra);
    let na = Node::start_in(&ns, repo.path(), &args).await.unwrap();
    let nb = cluster_node(&etcd, "nb").await;
    let router = RouterProc::start_env(&etcd.url(), "r1", router_env)
        .await
        .unwrap();
    let mut admin = router.client().await;
    create(&mut admin, troupe_tests::mlp_spec("mlp", 2, 1 << 28)).await;
    eventually(
        "a ready replica on each node",
        Duration::from_secs(30),
        async || spread(&mut admin).await,
    )
    .await;
    SplitCluster {
        ns,
        _etcd: etcd,
        _repo: repo,
        na,
        _nb: nb,
        router,
        admin,
    }
}

/// Whether `mlp` has one ready replica on each of two nodes.
async fn spread(admin: &mut troupe_client::Client) -> bool {
    let r = replicas_of(admin, "mlp").await;
    r.len() == 2 && r.iter().all(|(_, n, ready)| *n == 1 && *ready)
}

#[tokio::test]
async fn a_node_cut_off_from_etcd_serves_on_and_the_cluster_recovers_without_a_failed_call() {
    // The test cuts na off etcd (the `service` address); clients and the router still
    // reach it.
    let c = split_cluster(1, &[], &[]).await;
    let (ns, na, router, mut admin) = (&c.ns, &c.na, &c.router, c.admin.clone());
    let load = Load::start(&router.addr, 4, "0s", "30s");
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Cut na off etcd: its lease expires, the router stops routing to it, and its
    // replica is placed again on nb; na itself serves on for clients that reach it.
    ns.cut(&ns.service, true).unwrap();
    let cut = std::time::Instant::now();
    eventually(
        "na leaves the routing table",
        Duration::from_secs(20),
        async || {
            replicas_of(&mut admin, "mlp")
                .await
                .iter()
                .all(|(node, _, _)| node != "na")
        },
    )
    .await;
    let left_after = cut.elapsed();
    let mut direct = troupe_client::Client::connect(&na.addr).await.unwrap();
    direct
        .infer(
            "mlp",
            vec![InputTensor::f32("input", vec![1, 16], &[0.5; 16])],
        )
        .await
        .expect("na serves its clients while cut off etcd");

    // Mend the link: na registers again, and spread is restored (one move, new before old).
    ns.cut(&ns.service, false).unwrap();
    let mended = std::time::Instant::now();
    eventually("spread again", Duration::from_secs(40), async || {
        let r = replicas_of(&mut admin, "mlp").await;
        r.iter().any(|(n, _, _)| n == "na") && spread(&mut admin).await
    })
    .await;
    let recovered_after = mended.elapsed();
    load.finish_without_errors(format!(
        "na cut off etcd: out of the routing table after {:.1} s; link mended: spread again after {:.1} s",
        left_after.as_secs_f64(),
        recovered_after.as_secs_f64(),
    ))
    .await;
}

#[tokio::test]
async fn a_node_cut_off_the_router_is_left_out_of_picking_without_a_failed_call() {
    // The test cuts na off the router (the `host` address); na still reaches etcd, so its
    // lease lives and it stays in the routing table: the router must find out by itself
    // (HTTP/2 keep-alive, connect timeouts) and leave it out of picking.
    let na_metrics = format!("{}:{}", troupe_tests::NetNs::inside_address(2), free_port());
    let port = free_port();
    let c = split_cluster(
        2,
        &["--metrics-listen", &na_metrics],
        &[("TROUPE_METRICS_LISTEN", format!("127.0.0.1:{port}"))],
    )
    .await;
    let (ns, router, mut admin) = (&c.ns, &c.router, c.admin.clone());
    // Calls na answered (read over the namespace's link, so only while it is up).
    let na_ok = || {
        let text = troupe_tests::http_get_at(&na_metrics, "/metrics")
            .map(|(_, body)| body)
            .unwrap_or_default();
        let series = "troupe_requests_total{model=\"mlp\",version=\"1\",status=\"OK\"}";
        if text.contains(series) {
            metric(&text, series)
        } else {
            0.0
        }
    };
    let ejections = || {
        let text = scrape(port);
        let series = "troupe_router_ejections_total{node=\"na\"}";
        if text.contains(series) {
            metric(&text, series)
        } else {
            0.0
        }
    };

    let load = Load::start(&router.addr, 4, "0s", "30s");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(na_ok() > 0.0, "na served no call before the cut");

    ns.cut(&ns.host, true).unwrap();
    let cut = std::time::Instant::now();
    eventually(
        "the router ejects na",
        Duration::from_secs(15),
        async || ejections() >= 1.0,
    )
    .await;
    let ejected_after = cut.elapsed();
    // Cut for a while: its lease lives on (etcd is reachable), so it stays placed.
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert!(
        replicas_of(&mut admin, "mlp")
            .await
            .iter()
            .any(|(n, _, _)| n == "na"),
        "na left the routing table, though its lease lives"
    );
    let during = ejections();

    ns.cut(&ns.host, false).unwrap();
    let mended = std::time::Instant::now();
    let before = na_ok();
    eventually(
        "na answers calls again",
        Duration::from_secs(40),
        async || na_ok() > before,
    )
    .await;
    let back_after = mended.elapsed();
    load.finish_without_errors(format!(
        "na cut off the router: ejected after {:.1} s, {during} ejections while cut (it is tried again after each time out); link mended: answering again after {:.1} s",
        ejected_after.as_secs_f64(),
        back_after.as_secs_f64(),
    ))
    .await;
}

#[tokio::test]
async fn a_three_member_etcd_loses_one_member_then_quorum_without_a_failed_call() {
    let mut etcd = Etcd::cluster(3).await.unwrap();
    let urls = troupe_tests::etcd_urls(&etcd);
    let mut nodes = Vec::new();
    for id in ["n1", "n2"] {
        let repo = tempfile::tempdir().unwrap();
        let node = Node::start(
            repo.path(),
            &["--etcd", &urls, "--node-id", id, "--lease-ttl", "2"],
        )
        .await
        .unwrap();
        nodes.push((repo, node));
    }
    let router = RouterProc::start(&urls, "r1").await.unwrap();
    let mut admin = router.client().await;
    create(&mut admin, troupe_tests::mlp_spec("mlp", 2, 1 << 28)).await;
    let ready = async |admin: &mut troupe_client::Client, model: &str, n: usize| {
        let r = replicas_of(admin, model).await;
        r.len() == n && r.iter().all(|(_, _, ready)| *ready)
    };
    eventually(
        "a ready replica on each node",
        Duration::from_secs(30),
        async || ready(&mut admin, "mlp", 2).await,
    )
    .await;

    let load = Load::start(&router.addr, 4, "0s", "40s");
    tokio::time::sleep(Duration::from_secs(3)).await;

    // One member lost: the cluster goes on, management included (a Create that lands
    // while the members elect a new leader may get UNAVAILABLE; a client retries it).
    etcd[0].kill();
    let t = std::time::Instant::now();
    let mlp_b = troupe_proto::troupe::CreateModelRequest {
        spec: Some(troupe_tests::mlp_spec("mlp_b", 1, 1 << 26)),
        ..Default::default()
    };
    eventually(
        "a model made with one member down",
        Duration::from_secs(30),
        async || match admin.models().create(mlp_b.clone()).await {
            Ok(_) => true,
            Err(s) if s.code() == tonic::Code::AlreadyExists => true,
            Err(s) => {
                assert_eq!(s.code(), tonic::Code::Unavailable, "{s:?}");
                false
            }
        },
    )
    .await;
    eventually(
        "a model made with one member down is ready",
        Duration::from_secs(30),
        async || ready(&mut admin, "mlp_b", 1).await,
    )
    .await;
    let made_with_two = t.elapsed();

    // Quorum lost: calls go on from what the router and the nodes hold; management is
    // refused with a status that says why.
    etcd[1].kill();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let mlp_c = troupe_proto::troupe::CreateModelRequest {
        spec: Some(troupe_tests::mlp_spec("mlp_c", 1, 1 << 26)),
        ..Default::default()
    };
    let refused = admin
        .models()
        .create(mlp_c.clone())
        .await
        .expect_err("a model made without an etcd quorum");
    eprintln!("create without quorum: {refused:?}");
    assert!(
        matches!(
            refused.code(),
            tonic::Code::Unavailable | tonic::Code::DeadlineExceeded
        ),
        "{refused:?}"
    );
    assert!(
        refused.message().contains("etcd"),
        "the message does not name etcd: {}",
        refused.message()
    );
    tokio::time::sleep(Duration::from_secs(4)).await;

    // Quorum back, nothing else restarted: management works again.
    etcd[0].restart().await.unwrap();
    let back = std::time::Instant::now();
    etcd[1].restart().await.unwrap();
    eventually(
        "a model made after quorum returns is ready",
        Duration::from_secs(60),
        async || {
            let _ = admin.models().create(mlp_c.clone()).await;
            ready(&mut admin, "mlp_c", 1).await
        },
    )
    .await;
    let recovered_after = back.elapsed();
    load.finish_without_errors(format!(
        "3-member etcd: one member down, a model made and ready in {:.1} s; quorum lost 10 s (Create refused: {:?} \"{}\"); quorum back: a model made and ready {:.1} s after",
        made_with_two.as_secs_f64(),
        refused.code(),
        refused.message(),
        recovered_after.as_secs_f64(),
    ))
    .await;
    assert!(ready(&mut admin, "mlp", 2).await, "mlp lost a replica");
}
