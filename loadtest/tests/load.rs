//! `troupe-load` against a real gRPC test server on loopback (tests/common): injected
//! latency, errors and stalls; the library's `run` and the binary itself.
//!
//! Timing bounds are deliberately loose: this runs on small, noisy machines.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{Behaviour, TestServer};
use troupe_load::{
    ConnectOptions, InputOptions, Load, ModelSpec, Report, RunConfig, Stop, Target, Workload,
};

const MS: u64 = 1000; // µs per ms

async fn connect(server: &TestServer) -> Target {
    Target::connect(&server.addr.to_string(), &ConnectOptions::default())
        .await
        .expect("connect to the test server")
}

async fn workload(target: &Target, specs: &[ModelSpec]) -> Workload {
    Workload::prepare(target, specs, 42, Duration::from_secs(5))
        .await
        .expect("prepare the workload")
}

async fn run_one(server: &TestServer, specs: &[ModelSpec], cfg: RunConfig) -> Report {
    let target = connect(server).await;
    let w = workload(&target, specs).await;
    troupe_load::run(&target, &w, &cfg, &()).await.expect("run")
}

fn cfg(load: Load, stop: Stop) -> RunConfig {
    RunConfig {
        steps: vec![load],
        stop,
        seed: 7,
        ..RunConfig::default()
    }
}

fn assert_counts_add_up(r: &Report) {
    for s in &r.steps {
        assert_eq!(
            s.sent,
            s.answers + s.errors,
            "{}: sent != answers + errors",
            s.label()
        );
        assert_eq!(
            s.errors,
            s.errors_by_code.values().sum::<u64>(),
            "{}",
            s.label()
        );
        assert_eq!(s.answers, s.latency.count, "{}", s.label());
        let per_model: u64 = s.models.iter().map(|m| m.sent).sum();
        assert_eq!(per_model, s.sent, "{}", s.label());
        for m in &s.models {
            assert_eq!(m.sent, m.answers + m.errors, "{} {}", s.label(), m.label);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_counted_by_status_code_and_add_up() {
    let server = common::start(Behaviour {
        error_every: Some(10),
        ..Behaviour::default()
    })
    .await;
    let mlp = [ModelSpec::new("mlp")];

    // A request count: exactly every 10th of 200 calls fails.
    let r = run_one(
        &server,
        &mlp,
        cfg(Load::Closed { concurrency: 4 }, Stop::Requests(200)),
    )
    .await;
    assert_counts_add_up(&r);
    let s = &r.steps[0];
    assert_eq!(s.sent, 200);
    assert_eq!(s.answers, 180);
    assert_eq!(s.errors_by_code.get("UNAVAILABLE"), Some(&20));
    assert_eq!(s.errors_by_code.len(), 1, "{:?}", s.errors_by_code);
    assert_eq!(server.counters.calls(), 200);
    assert_eq!(server.counters.unavailable(), 20);
    assert_eq!(server.counters.invalid(), 0);

    // A duration, closed and open loop: the client's UNAVAILABLE count is the server's.
    for load in [Load::Closed { concurrency: 3 }, Load::Open { rate: 200.0 }] {
        let before_calls = server.counters.calls();
        let before_errors = server.counters.unavailable();
        let r = run_one(
            &server,
            &mlp,
            cfg(load, Stop::Duration(Duration::from_millis(800))),
        )
        .await;
        assert_counts_add_up(&r);
        let s = &r.steps[0];
        assert!(s.sent >= 20, "{load}: only {} calls", s.sent);
        assert_eq!(s.sent, server.counters.calls() - before_calls, "{load}");
        assert_eq!(
            s.errors_by_code.get("UNAVAILABLE").copied().unwrap_or(0),
            server.counters.unavailable() - before_errors,
            "{load}"
        );
        assert_eq!(
            s.errors,
            s.errors_by_code.get("UNAVAILABLE").copied().unwrap_or(0)
        );
    }

    // Warm-up calls reach the server but are not counted.
    let before = server.counters.calls();
    let mut c = cfg(Load::Closed { concurrency: 2 }, Stop::Requests(50));
    c.warmup = Duration::from_millis(300);
    let r = run_one(&server, &mlp, c).await;
    assert_counts_add_up(&r);
    assert_eq!(r.steps[0].sent, 50);
    assert!(server.counters.calls() - before > 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_codes_timeouts_and_drops_are_counted() {
    // Server latency 200 ms, client deadline 50 ms: every call is DEADLINE_EXCEEDED.
    let slow = common::start(Behaviour {
        latency: Duration::from_millis(200),
        ..Behaviour::default()
    })
    .await;
    let mlp = [ModelSpec::new("mlp")];
    let mut c = cfg(Load::Closed { concurrency: 2 }, Stop::Requests(6));
    c.timeout = Duration::from_millis(50);
    let r = run_one(&slow, &mlp, c).await;
    assert_counts_add_up(&r);
    assert_eq!(
        r.steps[0].errors_by_code.get("DEADLINE_EXCEEDED"),
        Some(&6),
        "{:?}",
        r.steps[0].errors_by_code
    );

    // Open loop over the outstanding cap: due calls are dropped, and still add up.
    let mut c = cfg(
        Load::Open { rate: 200.0 },
        Stop::Duration(Duration::from_millis(500)),
    );
    c.max_outstanding = 3;
    let r = run_one(&slow, &mlp, c).await;
    assert_counts_add_up(&r);
    let s = &r.steps[0];
    let dropped = s
        .errors_by_code
        .get(troupe_load::DROPPED)
        .copied()
        .unwrap_or(0);
    assert!(dropped > s.sent / 2, "{dropped} dropped of {}", s.sent);

    // Inputs that do not fit the model: INVALID_ARGUMENT, by name.
    let server = common::start(Behaviour::default()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"{"inputs":[{"name":"input","datatype":"FP32","shape":[1,15],"data":[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]}]}"#,
    )
    .expect("write");
    let mut spec = ModelSpec::new("mlp");
    spec.inputs.input_file = Some(bad);
    let r = run_one(
        &server,
        &[spec],
        cfg(Load::Closed { concurrency: 1 }, Stop::Requests(5)),
    )
    .await;
    assert_counts_add_up(&r);
    assert_eq!(r.steps[0].errors_by_code.get("INVALID_ARGUMENT"), Some(&5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inputs_fit_every_declared_type_shape_and_file() {
    let server = common::start(Behaviour::default()).await;
    // Random inputs: FP32, FP64, FP16, INT32, INT64, UINT8, BOOL; -1 dims, batch 3.
    let mut types = ModelSpec::new("types");
    types.inputs.batch = 3;
    // An explicit shape.
    let mut shaped = ModelSpec::new("mlp");
    shaped.inputs.shapes.insert("input".into(), vec![5, 16]);
    // A JSON input file.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("in.json");
    let data: Vec<f32> = (0..32).map(|i| i as f32 / 8.0).collect();
    std::fs::write(
        &file,
        serde_json::json!({"inputs":[{"name":"input","datatype":"FP32","shape":[2,16],"data":data}]})
            .to_string(),
    )
    .expect("write");
    let mut from_file = ModelSpec::new("mlp_b");
    from_file.label = "mlp_b (file)".into();
    from_file.inputs.input_file = Some(file);

    let target = connect(&server).await;
    let w = workload(&target, &[types, shaped, from_file]).await;
    assert_eq!(w.models()[0].inputs.len(), 7);
    assert!(
        w.models()[0]
            .inputs
            .iter()
            .any(|i| i == "f16 FP16 [3, 2, 1]"),
        "{:?}",
        w.models()[0].inputs
    );
    assert_eq!(w.models()[1].inputs, vec!["input FP32 [5, 16]".to_string()]);
    assert_eq!(w.models()[2].inputs, vec!["input FP32 [2, 16]".to_string()]);
    let r = troupe_load::run(
        &target,
        &w,
        &cfg(Load::Closed { concurrency: 3 }, Stop::Requests(90)),
        &(),
    )
    .await
    .expect("run");
    assert_counts_add_up(&r);
    let first_invalid = server
        .counters
        .first_invalid
        .lock()
        .map(|f| f.clone())
        .unwrap_or_default();
    assert_eq!(
        server.counters.invalid(),
        0,
        "first refusal: {first_invalid:?}"
    );
    assert_eq!(r.steps[0].answers, 90);
    assert!(
        r.steps[0].models.iter().all(|m| m.answers > 0),
        "{:?}",
        r.steps[0].models
    );

    // Shapes that cannot fit, or a model the server does not know, fail before the run.
    let mut wrong = ModelSpec::new("mlp");
    wrong.inputs.shapes.insert("input".into(), vec![1, 15]);
    let e = Workload::prepare(&target, &[wrong], 1, Duration::from_secs(5))
        .await
        .err();
    assert!(e.as_ref().is_some_and(|e| e.is_usage()), "{e:?}");
    let e = Workload::prepare(
        &target,
        &[ModelSpec::new("nope")],
        1,
        Duration::from_secs(5),
    )
    .await
    .err();
    assert!(
        e.as_ref()
            .is_some_and(|e| e.is_usage() && e.to_string().contains("NOT_FOUND")),
        "{e:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_loop_latency_and_throughput_follow_the_server() {
    let server = common::start(Behaviour {
        latency: Duration::from_millis(5),
        ..Behaviour::default()
    })
    .await;
    let mut c = cfg(
        Load::Closed { concurrency: 4 },
        Stop::Duration(Duration::from_secs(2)),
    );
    c.warmup = Duration::from_millis(500);
    let r = run_one(&server, &[ModelSpec::new("mlp")], c).await;
    assert_counts_add_up(&r);
    let s = &r.steps[0];
    let l = &s.latency;
    assert_eq!(s.errors, 0);
    assert!(
        l.min_us >= 5 * MS,
        "min {} µs is below the injected 5 ms",
        l.min_us
    );
    // What the measurement must show whatever the machine's speed (speed itself is for
    // benchmarks): no call faster than the injected delay, and no more calls than
    // concurrency / delay allows.
    assert!(l.p50_us >= 5 * MS, "p50 {} µs", l.p50_us);
    assert!(l.p99_us >= 5 * MS && l.p99_us >= l.p50_us, "{l:?}");
    assert!(
        s.throughput > 0.0 && s.throughput <= 840.0,
        "throughput {:.1}/s",
        s.throughput
    );
    // Windows cover the measured time and hold every answer.
    assert!(s.windows.len() >= 2, "{} windows", s.windows.len());
    assert_eq!(s.windows.iter().map(|w| w.answers).sum::<u64>(), s.answers);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_shows_a_stall_that_closed_loop_hides() {
    // Call 100 freezes the server for 1 s: every call arriving meanwhile waits too.
    let stall = Behaviour {
        latency: Duration::from_millis(5),
        stall: Some((100, Duration::from_secs(1))),
        ..Behaviour::default()
    };
    let mlp = [ModelSpec::new("mlp")];
    let duration = Stop::Duration(Duration::from_secs(3));

    let server = common::start(stall.clone()).await;
    let open = run_one(&server, &mlp, cfg(Load::Open { rate: 100.0 }, duration)).await;
    assert_counts_add_up(&open);
    let o = &open.steps[0];
    assert_eq!(o.errors, 0);
    assert!(o.sent >= 250, "only {} sent at 100/s for 3 s", o.sent);
    // ~100 calls were due during the stall, each waiting up to 1 s from its intended
    // send time: a third of all calls are slow, so p99 is near 1 s.
    assert!(
        o.latency.p99_us >= 500 * MS,
        "open-loop p99 {} µs hides the stall",
        o.latency.p99_us
    );
    assert!(
        o.latency.p90_us >= 200 * MS,
        "open-loop p90 {} µs",
        o.latency.p90_us
    );
    assert!(o.latency.max_us >= 900 * MS, "{:?}", o.latency);
    assert!(
        o.windows
            .iter()
            .any(|w| w.p99_us.is_some_and(|p| p >= 500 * MS))
    );

    let server = common::start(stall).await;
    let closed = run_one(
        &server,
        &mlp,
        cfg(Load::Closed { concurrency: 1 }, duration),
    )
    .await;
    assert_counts_add_up(&closed);
    let c = &closed.steps[0];
    // The one stalled call is there (max), but the percentiles do not see the second
    // during which nothing was sent.
    assert!(c.latency.max_us >= 900 * MS, "{:?}", c.latency);
    assert!(
        c.latency.p99_us < 500 * MS,
        "closed-loop p99 {} µs",
        c.latency.p99_us
    );
    assert!(c.latency.p99_us < o.latency.p99_us);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_weights_split_the_requests() {
    let server = common::start(Behaviour::default()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("mix.toml");
    std::fs::write(
        &path,
        "[[model]]\nname = \"mlp\"\nweight = 3\n\n[[model]]\nname = \"mlp_b\"\nweight = 1\n",
    )
    .expect("write");
    let specs = troupe_load::load_scenario(&path, &InputOptions::default()).expect("scenario");
    let r = run_one(
        &server,
        &specs,
        cfg(Load::Closed { concurrency: 4 }, Stop::Requests(800)),
    )
    .await;
    assert_counts_add_up(&r);
    let s = &r.steps[0];
    assert_eq!(s.sent, 800);
    let (a, b) = (&s.models[0], &s.models[1]);
    assert_eq!((a.label.as_str(), b.label.as_str()), ("mlp", "mlp_b"));
    let ratio = a.sent as f64 / b.sent.max(1) as f64;
    assert!(
        (2.3..=3.9).contains(&ratio),
        "{} : {} = {ratio:.2}",
        a.sent,
        b.sent
    );
    assert_eq!(server.counters.model_calls("mlp"), a.sent);
    assert_eq!(server.counters.model_calls("mlp_b"), b.sent);
    assert!(r.table().contains("  mlp_b"), "{}", r.table());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_sweep_has_one_step_per_rate() {
    let server = common::start(Behaviour {
        latency: Duration::from_millis(2),
        ..Behaviour::default()
    })
    .await;
    let c = RunConfig {
        steps: [50.0, 100.0, 200.0]
            .map(|rate| Load::Open { rate })
            .to_vec(),
        stop: Stop::Duration(Duration::from_millis(600)),
        ..RunConfig::default()
    };
    let r = run_one(&server, &[ModelSpec::new("mlp")], c).await;
    assert_counts_add_up(&r);
    assert!(r.sweep);
    let rates: Vec<_> = r.steps.iter().map(|s| s.rate).collect();
    assert_eq!(rates, vec![Some(50.0), Some(100.0), Some(200.0)]);
    // Sent ≈ rate × duration.
    for s in &r.steps {
        let want = s.rate.unwrap_or(0.0) * 0.6;
        assert!(
            (s.sent as f64 - want).abs() <= want * 0.1 + 2.0,
            "{}: {} sent",
            s.label(),
            s.sent
        );
    }
    let svg = r.chart_svg();
    assert!(svg.starts_with("<svg") && svg.contains("r=200"), "{svg}");
}

// ---- the binary ----

const BIN: &str = env!("CARGO_BIN_EXE_troupe-load");

async fn troupe_load(args: &[&str]) -> (i32, String, String) {
    let out = tokio::process::Command::new(BIN)
        .args(args)
        .env_remove("TROUPE_LOAD_TARGET")
        .output()
        .await
        .expect("run troupe-load");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_sweep_writes_json_csv_and_svg() {
    let server = common::start(Behaviour {
        latency: Duration::from_millis(2),
        ..Behaviour::default()
    })
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (json, csv, svg) = (
        dir.path().join("r.json"),
        dir.path().join("r.csv"),
        dir.path().join("r.svg"),
    );
    let addr = server.addr.to_string();
    let (code, stdout, stderr) = troupe_load(&[
        "--target",
        &addr,
        "--model",
        "mlp",
        "--sweep-concurrency",
        "1,2,4",
        "--duration",
        "400ms",
        "--warmup",
        "100ms",
        "--json",
        json.to_str().unwrap_or_default(),
        "--csv",
        csv.to_str().unwrap_or_default(),
        "--chart",
        svg.to_str().unwrap_or_default(),
    ])
    .await;
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(
        stdout.contains("concurrency 4") && stdout.contains("p99 ms"),
        "{stdout}"
    );

    let v: serde_json::Value = serde_json::from_str(&read(&json)).expect("JSON parses");
    let steps = v["steps"].as_array().expect("steps");
    assert_eq!(steps.len(), 3);
    for (s, c) in steps.iter().zip([1, 2, 4]) {
        assert_eq!(s["concurrency"], c);
        assert_eq!(
            s["sent"].as_u64(),
            Some(s["answers"].as_u64().unwrap_or(0) + s["errors"].as_u64().unwrap_or(0))
        );
        assert!(s["latency"]["p50_us"].as_u64().unwrap_or(0) >= 2000, "{s}");
    }
    assert_eq!(v["sweep"], true);

    let csv = read(&csv);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 4, "{csv}");
    assert!(lines[0].starts_with("step,mode,concurrency,rate"));
    let cols = lines[0].split(',').count();
    assert!(lines.iter().all(|l| l.split(',').count() == cols), "{csv}");
    assert!(lines[3].starts_with("3,closed,4,"), "{csv}");

    let svg = read(&svg);
    assert!(svg.starts_with("<svg"), "{svg}");
    assert!(svg.trim_end().ends_with("</svg>") && svg.contains("c=4"));

    // A single run: the chart is latency over time.
    let single = dir.path().join("single.svg");
    let (code, stdout, stderr) = troupe_load(&[
        "--target",
        &addr,
        "--model",
        "mlp",
        "--rate",
        "100",
        "--duration",
        "1500ms",
        "--warmup",
        "0s",
        "--chart",
        single.to_str().unwrap_or_default(),
        "--quiet",
    ])
    .await;
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("rate 100/s"), "{stdout}");
    let svg = read(&single);
    assert!(
        svg.starts_with("<svg") && svg.contains("seconds after warm-up"),
        "{svg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_exit_codes() {
    // Unreachable: a port that was free a moment ago.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let dead = format!("127.0.0.1:{port}");
    let (code, _, stderr) =
        troupe_load(&["--target", &dead, "--model", "mlp", "--duration", "1s"]).await;
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(&dead) && stderr.contains("cannot reach"),
        "{stderr}"
    );

    let server = common::start(Behaviour::default()).await;
    let addr = server.addr.to_string();
    for bad in [
        vec!["--model", "mlp", "--concurrency", "2", "--rate", "10"],
        vec!["--model", "mlp", "--concurrency", "0"],
        vec!["--model", "mlp", "--duration", "ten seconds"],
        vec!["--concurrency", "2"],
        vec!["--model", "mlp", "--shape", "input=1,x"],
        vec!["--model", "mlp", "--shape", "input=1,15", "--requests", "5"],
        vec!["--model", "nope", "--requests", "5"],
        vec!["--model", "mlp", "--input-file", "/nonexistent.json"],
        vec![
            "--model",
            "mlp",
            "--requests",
            "5",
            "--json",
            "/nonexistent/dir/r.json",
        ],
    ] {
        let mut args = vec!["--target", addr.as_str()];
        args.extend(bad.iter().copied());
        let (code, _, stderr) = troupe_load(&args).await;
        assert_eq!(code, 2, "{bad:?}: {stderr}");
        assert!(!stderr.is_empty());
    }

    // A finished run, with the target from the environment.
    let out = tokio::process::Command::new(BIN)
        .args([
            "--model",
            "mlp",
            "--requests",
            "40",
            "--concurrency",
            "2",
            "--warmup",
            "0s",
        ])
        .env("TROUPE_LOAD_TARGET", &addr)
        .output()
        .await
        .expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&addr) && stdout.contains("concurrency 2"),
        "{stdout}"
    );
    // No progress bar when stdout is not a terminal.
    assert!(!String::from_utf8_lossy(&out.stderr).contains("%"));
}
