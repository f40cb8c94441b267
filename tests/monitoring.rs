//! The monitoring loop end to end, on a real classifier (scikit-learn's digits MLP, served
//! by ONNX Runtime and by candle with the same weights): calls through the router are
//! recorded by the nodes in the prediction store (a SQLite file, or a real PostgreSQL
//! server the test starts), ground truth is given later through the router, and the live
//! quality the router reports equals scikit-learn's on the same pairs
//! (tests/python/quality_check.py). Also: the store going away under load, and bad input.

use std::time::Duration;

use troupe_client::{CallOptions, InputTensor};
use troupe_proto::troupe as tpb;
use troupe_tests::{Etcd, Node, Postgres, RouterProc, eventually, metric, scrape};

/// The digits classifier on `backend`, recorded by the nodes (class scores in `output`).
fn digits_spec(name: &str, backend: tpb::BackendKind, output: &str) -> tpb::ModelSpec {
    let dir = match backend {
        tpb::BackendKind::Candle => "digits_candle",
        _ => "digits_onnx",
    };
    let t = |name: &str, data_type: &str, dims: Vec<i64>| tpb::TensorSpec {
        name: name.into(),
        data_type: data_type.into(),
        dims,
    };
    let (inputs, outputs) = match backend {
        tpb::BackendKind::Candle => (
            vec![t("input", "FP32", vec![64])],
            vec![t("output", "FP32", vec![10])],
        ),
        _ => (
            vec![t("X", "FP32", vec![64])],
            vec![
                t("label", "INT64", vec![]),
                t("probabilities", "FP32", vec![10]),
            ],
        ),
    };
    tpb::ModelSpec {
        name: name.into(),
        backend: backend as i32,
        inputs,
        outputs,
        max_batch_size: 64,
        artifact_uri: troupe_tests::root()
            .join("models/repository")
            .join(dir)
            .join("1")
            .display()
            .to_string(),
        replicas: 2,
        resources: Some(tpb::Resources {
            cpu: 0.25,
            memory_bytes: 64 << 20,
            gpu_memory_bytes: 0,
        }),
        monitoring: Some(tpb::Monitoring {
            kind: tpb::MonitoredKind::Classifier as i32,
            output: output.into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The input tensor name of each backend's digits model.
fn input_name(backend: tpb::BackendKind) -> &'static str {
    match backend {
        tpb::BackendKind::Candle => "input",
        _ => "X",
    }
}

/// Calls `model` through the router for every held-out row (ids `<tag>-<i>`), gives the
/// truth of two calls in three, and checks the router's quality report against
/// scikit-learn on the same pairs.
async fn quality_matches_scikit_learn(store_url: &str, tag: &str) {
    let etcd = Etcd::start().await.unwrap();
    let mut nodes = Vec::new();
    for id in ["n1", "n2"] {
        let repo = tempfile::tempdir().unwrap();
        let node = Node::start(
            repo.path(),
            &["--etcd", &etcd.url(), "--node-id", id, "--store", store_url],
        )
        .await
        .unwrap();
        nodes.push((repo, node));
    }
    let router = RouterProc::start_env(
        &etcd.url(),
        "r1",
        &[("TROUPE_STORE", store_url.to_string())],
    )
    .await
    .unwrap();
    let mut admin = router.client().await;
    let h = troupe_tests::digits_holdout();
    for (name, backend, output) in [
        ("digits_onnx", tpb::BackendKind::Onnx, "probabilities"),
        ("digits_candle", tpb::BackendKind::Candle, "output"),
    ] {
        admin
            .models()
            .create(tpb::CreateModelRequest {
                spec: Some(digits_spec(name, backend, output)),
                ..Default::default()
            })
            .await
            .expect("the model is declared");
        eventually("two ready replicas", Duration::from_secs(60), async || {
            let p = admin
                .cluster()
                .placements(tpb::PlacementsRequest { model: name.into() })
                .await;
            p.is_ok_and(|p| p.into_inner().placements.iter().filter(|p| p.ready).count() == 2)
        })
        .await;

        // Every held-out row, one call each, from four clients.
        let n = h.x.len();
        let mut tasks = Vec::new();
        for part in 0..4 {
            let addr = router.addr.clone();
            let rows: Vec<(usize, Vec<f32>)> =
                h.x.iter()
                    .enumerate()
                    .filter(|(i, _)| i % 4 == part)
                    .map(|(i, r)| (i, r.clone()))
                    .collect();
            let (name, tag) = (name.to_string(), tag.to_string());
            tasks.push(tokio::spawn(async move {
                let mut c = troupe_client::Client::connect(&addr).await.unwrap();
                let mut out = Vec::new();
                for (i, row) in rows {
                    let opts = CallOptions {
                        request_id: Some(format!("{tag}-{name}-{i}")),
                        ..Default::default()
                    };
                    let r = c
                        .infer_with(
                            &name,
                            vec![InputTensor::f32(input_name(backend), vec![1, 64], &row)],
                            &opts,
                        )
                        .await
                        .expect("a call through the router");
                    assert_eq!(
                        r.id,
                        format!("{tag}-{name}-{i}"),
                        "the answer carries the id"
                    );
                    let scores: Vec<f64> = r
                        .values::<f32>(output)
                        .unwrap()
                        .into_iter()
                        .map(f64::from)
                        .collect();
                    out.push((i, scores));
                }
                out
            }));
        }
        let mut answers: Vec<(usize, Vec<f64>)> = Vec::new();
        for t in tasks {
            answers.extend(t.await.unwrap());
        }
        answers.sort_by_key(|(i, _)| *i);
        assert_eq!(answers.len(), n);

        // Ground truth for two calls in three, later, through the router.
        let labelled: Vec<usize> = (0..n).filter(|i| i % 3 != 0).collect();
        let truths = labelled
            .iter()
            .map(|&i| tpb::Truth {
                request_id: format!("{tag}-{name}-{i}"),
                truth: Some(tpb::truth::Truth::Label(h.y[i].to_string())),
            })
            .collect();
        let fb = admin
            .feedback()
            .submit(tpb::FeedbackRequest { truths })
            .await
            .expect("feedback through the router")
            .into_inner();
        assert_eq!(fb.accepted, labelled.len() as u64);

        // The nodes' writers are asynchronous: wait until every call is in the store.
        let mut report = tpb::QualityResponse::default();
        eventually(
            "every call and truth in the store",
            Duration::from_secs(30),
            async || {
                report = admin
                    .monitor()
                    .quality(tpb::QualityRequest {
                        model: name.into(),
                        version: String::new(),
                    })
                    .await
                    .map(|r| r.into_inner())
                    .unwrap_or_default();
                report
                    .windows
                    .first()
                    .is_some_and(|w| w.calls == n as u64 && w.labelled == labelled.len() as u64)
            },
        )
        .await;
        let w = &report.windows[0];
        assert!((w.coverage - labelled.len() as f64 / n as f64).abs() < 1e-12);
        assert_eq!(
            report.windows[1].calls, n as u64,
            "the time window holds them too"
        );

        // The same pairs to scikit-learn.
        let argmax = |s: &[f64]| {
            s.iter()
                .enumerate()
                .fold((0, f64::MIN), |b, (i, &v)| if v > b.1 { (i, v) } else { b })
                .0
        };
        let pairs = serde_json::json!({
            "classes": 10,
            "predicted": labelled.iter().map(|&i| argmax(&answers[i].1)).collect::<Vec<_>>(),
            "truth": labelled.iter().map(|&i| h.y[i]).collect::<Vec<_>>(),
            "scores": labelled.iter().map(|&i| answers[i].1.clone()).collect::<Vec<_>>(),
        });
        let window = serde_json::json!({
            "accuracy": w.accuracy, "roc_auc": w.roc_auc, "ece": w.ece,
            "classes": w.classes.iter().map(|c| serde_json::json!({"class": c.class, "precision": c.precision, "recall": c.recall, "f1": c.f1, "support": c.support})).collect::<Vec<_>>(),
        });
        let dir = tempfile::tempdir().unwrap();
        let (pp, wp) = (
            dir.path().join("pairs.json"),
            dir.path().join("window.json"),
        );
        std::fs::write(&pp, pairs.to_string()).unwrap();
        std::fs::write(&wp, window.to_string()).unwrap();
        let (ok, out) = troupe_tests::run_python(
            "tests/python/quality_check.py",
            &[pp.to_str().unwrap(), wp.to_str().unwrap()],
        );
        eprintln!("{name} on {tag}: {out}");
        assert!(ok, "quality differs from scikit-learn's:\n{out}");
        assert!(
            w.accuracy.unwrap() > 0.9,
            "the digits model is a real classifier"
        );
    }
}

#[tokio::test]
async fn quality_through_the_router_matches_scikit_learn_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("store.db").display());
    quality_matches_scikit_learn(&url, "sqlite").await;
}

#[tokio::test]
async fn quality_through_the_router_matches_scikit_learn_on_postgres() {
    let pg = Postgres::start().unwrap();
    quality_matches_scikit_learn(&pg.url(), "postgres").await;
}

#[tokio::test]
async fn postgres_stopped_under_load_serving_goes_on_and_drops_are_counted_exactly() {
    let pg = Postgres::start().unwrap();
    let repo = troupe_tests::repository(&[]);
    // Its config.toml records every answer ([monitoring]).
    troupe_tests::add_model(repo.path(), "digits_onnx", "digits_onnx");
    let port = troupe_tests::free_port();
    let metrics = format!("127.0.0.1:{port}");
    let node = Node::start(
        repo.path(),
        // A short queue: the outage overflows it, so drops happen whether the writer
        // fails fast or waits for the database.
        &[
            "--store",
            &pg.url(),
            "--metrics-listen",
            &metrics,
            "--store-queue",
            "64",
        ],
    )
    .await
    .unwrap();
    let h = troupe_tests::digits_holdout();
    let x = h.x[0].clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..2 {
        let (addr, stop, answered, x) =
            (node.addr.clone(), stop.clone(), answered.clone(), x.clone());
        tasks.push(tokio::spawn(async move {
            let mut c = troupe_client::Client::connect(&addr).await.unwrap();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                c.infer("digits_onnx", vec![InputTensor::f32("X", vec![1, 64], &x)])
                    .await
                    .expect("serving goes on while the store is down");
                answered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    pg.stop().unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    pg.resume().unwrap();
    let resumed = std::time::Instant::now();
    // Recording resumes: new rows reach the store.
    let count = || async {
        troupe_monitor::Store::open(&pg.url())
            .await
            .unwrap()
            .count()
            .await
            .unwrap()
    };
    let at_resume = count().await;
    eventually("recording resumes", Duration::from_secs(30), async || {
        count().await > at_resume
    })
    .await;
    let resumed_after = resumed.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let answered = answered.load(std::sync::atomic::Ordering::Relaxed);
    // Every answered call is stored or counted as dropped, once the writer is idle.
    let mut stored = 0;
    let mut dropped = 0.0;
    eventually("the writer drains", Duration::from_secs(20), async || {
        let text = scrape(port);
        stored = count().await;
        dropped = metric(
            &text,
            "troupe_predictions_dropped_total{reason=\"store_error\"}",
        ) + metric(
            &text,
            "troupe_predictions_dropped_total{reason=\"queue_full\"}",
        );
        stored + dropped as u64 == answered
    })
    .await;
    eprintln!(
        "PostgreSQL stopped 3 s under 2 clients: {answered} calls answered, 0 failed; {stored} stored, {dropped} dropped (counted); recording resumed {:.1} s after the restart",
        resumed_after.as_secs_f64()
    );
    assert!(dropped > 0.0, "no call was made while the store was down");
}

#[tokio::test]
async fn a_node_without_store_flags_records_in_its_working_directory() {
    // As the README starts a standalone node: no --store, a --listen address with a
    // port (the default node id), the example repository's monitored models.
    use std::io::BufRead;
    let repo = troupe_tests::repository(&["digits_onnx"]);
    let cwd = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(troupe_tests::binary("troupe-node"))
        .arg("--model-repository")
        .arg(repo.path())
        .args(["--listen", "127.0.0.1:0"])
        .current_dir(cwd.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line.trim().rsplit(' ').next().unwrap().to_string();
    let mut c = troupe_client::Client::connect(&addr).await.unwrap();
    let h = troupe_tests::digits_holdout();
    let mut answer = None;
    for _ in 0..300 {
        if let Ok(r) = c
            .infer(
                "digits_onnx",
                vec![InputTensor::f32("X", vec![1, 64], &h.x[0])],
            )
            .await
        {
            answer = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    let r = answer.expect("the monitored model loads with the default store");
    assert!(!r.id.is_empty(), "a recorded call gets a request id");
    assert!(cwd.path().join("troupe-store.db").is_file());
}

#[tokio::test]
async fn an_unwritable_sqlite_store_stops_the_node_at_start_with_a_clear_error() {
    let repo = troupe_tests::repository(&[]);
    let out = std::process::Command::new(troupe_tests::binary("troupe-node"))
        .arg("--model-repository")
        .arg(repo.path())
        .args([
            "--listen",
            "127.0.0.1:0",
            "--store",
            "sqlite:///proc/troupe.db",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("sqlite:///proc/troupe.db") && err.contains("could not be opened"),
        "{err}"
    );
}

#[tokio::test]
async fn feedback_and_quality_refuse_bad_input_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("s.db").display());
    let node = Node::start(
        troupe_tests::repository(&["mlp_onnx"]).path(),
        &["--store", &url],
    )
    .await
    .unwrap();
    let mut c = node.client().await;
    let e = c
        .feedback()
        .submit(tpb::FeedbackRequest { truths: vec![] })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    let quality = |model: &str| tpb::QualityRequest {
        model: model.into(),
        version: String::new(),
    };
    let e = c.monitor().quality(quality("nope")).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound, "{e:?}");
    let e = c.monitor().quality(quality("mlp_onnx")).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("no [monitoring]"), "{}", e.message());
    // A router without --store says what it lacks.
    let etcd = Etcd::start().await.unwrap();
    let router = RouterProc::start(&etcd.url(), "r1").await.unwrap();
    let e = router
        .client()
        .await
        .feedback()
        .submit(tpb::FeedbackRequest {
            truths: vec![tpb::Truth {
                request_id: "a".into(),
                truth: Some(tpb::truth::Truth::Label("1".into())),
            }],
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("--store"), "{}", e.message());
}

#[tokio::test]
async fn drift_alerts_on_shifted_inputs_and_outliers_score_high_as_scipy_computes() {
    let repo = troupe_tests::repository(&[]);
    troupe_tests::add_model(repo.path(), "digits_onnx", "digits_onnx");
    // Features 20 and 28 (two pixels) are tested as categories.
    let cfg = repo.path().join("digits_onnx/config.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        format!(
            "{text}\n[monitoring.drift]\ninput = \"X\"\nreference_calls = 300\nwindow = 150\ncategorical = [20, 28]\noutlier_threshold = 40.0\n"
        ),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("store.db").display());
    let port = troupe_tests::free_port();
    let metrics = format!("127.0.0.1:{port}");
    let node = Node::start(
        repo.path(),
        &["--store", &store, "--metrics-listen", &metrics],
    )
    .await
    .unwrap();
    let mut c = node.client().await;
    let h = troupe_tests::digits_holdout();
    let call = async |c: &mut troupe_client::Client, row: &[f32]| {
        c.infer("digits_onnx", vec![InputTensor::f32("X", vec![1, 64], row)])
            .await
            .expect("a call")
    };
    let score = troupe_tests::outlier_score;
    // The reference: the first 300 calls (no score before it is complete).
    let reference: Vec<Vec<f32>> = h.x[..300].to_vec();
    for (i, row) in reference.iter().enumerate() {
        let r = call(&mut c, row).await;
        if i == 0 {
            assert!(
                score(&r).is_none(),
                "a score before the reference is complete"
            );
        }
    }
    let drift = async |c: &mut troupe_client::Client, windows: u64| {
        let mut status = tpb::DriftStatus::default();
        eventually(
            "the window is tested and stored",
            Duration::from_secs(20),
            async || {
                let q = troupe_tests::quality(c, "digits_onnx").await;
                match q.drift {
                    Some(d) if d.windows == windows => {
                        status = d;
                        true
                    }
                    _ => false,
                }
            },
        )
        .await;
        status
    };
    // A window like the reference (the next held-out rows): no alert; the rows score
    // below the threshold.
    let like: Vec<Vec<f32>> = h.x[300..450].to_vec();
    let mut scored = Vec::new();
    for row in &like {
        let r = call(&mut c, row).await;
        let s = score(&r).expect("a score once the reference is complete");
        assert!(s < 40.0, "a reference-like row scored {s}");
        scored.push((row.clone(), s));
    }
    let first = drift(&mut c, 1).await;
    assert!(!first.alerting, "reference-like data alerted: {first:?}");
    // A shifted window: every pixel brighter by 0.3 (capped at 1): an alert within it.
    let shifted: Vec<Vec<f32>> = h.x[450..597]
        .iter()
        .chain(&h.x[..3])
        .map(|r| r.iter().map(|v| (v + 0.3).min(1.0)).collect())
        .collect();
    let mut above = 0;
    for row in &shifted {
        let r = call(&mut c, row).await;
        above += usize::from(score(&r).unwrap() > 40.0);
    }
    let second = drift(&mut c, 2).await;
    assert!(second.alerting, "shifted data did not alert");
    // Planted outliers (uniform noise over every pixel) score above the threshold.
    for k in 0..5u32 {
        let row: Vec<f32> = (0..64u32)
            .map(|j| ((j * 7919 + k * 104_729) % 1000) as f32 / 1000.0)
            .collect();
        let r = call(&mut c, &row).await;
        let s = score(&r).unwrap();
        assert!(s > 40.0, "a planted outlier scored {s}");
        above += 1;
        scored.push((row, s));
    }
    // Every call above the threshold is counted (the brightened rows are outliers too).
    let outliers = metric(
        &scrape(port),
        "troupe_outliers_total{model=\"digits_onnx\",version=\"1\"}",
    );
    assert_eq!(outliers, above as f64);

    // The same windows to scipy.
    let features = |d: &tpb::DriftStatus| {
        d.features
            .iter()
            .map(|f| serde_json::json!({"feature": f.feature, "test": f.test, "statistic": f.statistic, "p_value": f.p_value, "psi": f.psi}))
            .collect::<Vec<_>>()
    };
    let case = serde_json::json!({
        "reference": reference,
        "categorical": [20, 28],
        "windows": [
            {"rows": like, "features": features(&first)},
            {"rows": shifted, "features": features(&second)},
        ],
        "scored": {"rows": scored.iter().map(|(r, _)| r.clone()).collect::<Vec<_>>(), "scores": scored.iter().map(|(_, s)| *s).collect::<Vec<_>>()},
    });
    let path = dir.path().join("case.json");
    std::fs::write(&path, case.to_string()).unwrap();
    let (ok, out) =
        troupe_tests::run_python("tests/python/drift_check.py", &[path.to_str().unwrap()]);
    eprintln!("drift and outliers against scipy: {out}");
    assert!(ok, "drift or outlier scores differ from scipy's:\n{out}");

    // The reference was kept in the store: a restarted node tests against it at once.
    drop(c);
    drop(node);
    let node = Node::start(repo.path(), &["--store", &store])
        .await
        .unwrap();
    let mut c = node.client().await;
    let mut r = call(&mut c, &h.x[0]).await;
    for _ in 0..50 {
        if score(&r).is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        r = call(&mut c, &h.x[0]).await;
    }
    assert!(
        score(&r).is_some(),
        "the reference did not survive the restart"
    );
}

/// A `.npy` (format 1.0) of float32 `rows`, all of one length.
fn npy_f32(rows: &[Vec<f32>]) -> Vec<u8> {
    let header = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': ({}, {}), }}",
        rows.len(),
        rows[0].len()
    );
    // Magic, version, header length, header padded with spaces to 64 bytes and a newline.
    let pad = 64 - (10 + header.len() + 1) % 64;
    let header = format!("{header}{}\n", " ".repeat(pad % 64));
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in rows.iter().flatten() {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

#[tokio::test]
async fn a_drift_reference_from_a_npy_file_scores_the_first_call() {
    let h = troupe_tests::digits_holdout();
    let repo = troupe_tests::repository(&[]);
    troupe_tests::add_model(repo.path(), "digits_onnx", "digits_onnx");
    troupe_tests::add_model(repo.path(), "digits_onnx", "digits_flat");
    let dir = repo.path().join("digits_onnx");
    std::fs::write(dir.join("1/reference.npy"), npy_f32(&h.x[..300])).unwrap();
    let drift = "\n[monitoring.drift]\nreference = \"reference.npy\"\nwindow = 50\n";
    let cfg = dir.join("config.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, format!("{text}{drift}")).unwrap();
    // A reference that is not rows x features is refused at load, naming the file.
    let flat = repo.path().join("digits_flat");
    let one_row: Vec<Vec<f32>> = vec![h.x[0].clone()];
    std::fs::write(flat.join("1/reference.npy"), npy_f32(&one_row)).unwrap();
    let cfg = flat.join("config.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, format!("{text}{drift}")).unwrap();

    let node = Node::start(repo.path(), &[]).await.unwrap();
    let mut c = node.client().await;
    let r = c
        .infer(
            "digits_onnx",
            vec![InputTensor::f32("X", vec![1, 64], &h.x[300])],
        )
        .await
        .unwrap();
    assert!(
        matches!(
            r.parameters
                .get("troupe.outlier_score")
                .and_then(|p| p.parameter_choice.clone()),
            Some(troupe_proto::inference::infer_parameter::ParameterChoice::DoubleParam(_))
        ),
        "the first call is scored against the file's reference"
    );
    let status = c
        .models()
        .get(tpb::GetModelRequest {
            name: "digits_flat".into(),
            version: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        status.reason.contains("reference.npy") && status.reason.contains("at least 2 rows"),
        "{}",
        status.reason
    );
}

#[tokio::test]
async fn a_stopping_node_writes_its_queued_predictions_first() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("store.db").display());
    let repo = troupe_tests::repository(&["digits_onnx"]);
    let mut node = Node::start(repo.path(), &["--store", &url]).await.unwrap();
    let mut c = node.client().await;
    let h = troupe_tests::digits_holdout();
    for row in &h.x[..200] {
        c.infer("digits_onnx", vec![InputTensor::f32("X", vec![1, 64], row)])
            .await
            .unwrap();
    }
    // SIGTERM at once: the writer has rows queued or in hand. (Waited for off the
    // test's runtime, which keeps serving the client's connection until the node
    // closes it.)
    let status = tokio::task::spawn_blocking(move || node.terminate().map(|s| (s, node)))
        .await
        .unwrap()
        .unwrap();
    assert!(status.0.success());
    drop(c);
    let stored = troupe_monitor::Store::open(&url)
        .await
        .unwrap()
        .count()
        .await
        .unwrap();
    assert_eq!(stored, 200);
}
