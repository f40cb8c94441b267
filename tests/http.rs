//! The Open Inference Protocol over HTTP, on the gRPC port of node and router: the stock
//! `tritonclient.http` on every example model, and each class of bad input answered with
//! `{"error": ...}` and the HTTP status of its gRPC code (curl, as users call it).

use std::process::{Command, Stdio};

use troupe_client::InputTensor;
use troupe_tests::{
    ADMIN_TOKEN, Node, OneNodeCluster, linked_repository, reference, run_command, run_python,
};

/// Every model of the example repository (models/repository).
const EXAMPLES: [&str; 11] = [
    "digits_candle",
    "digits_onnx",
    "linear_candle",
    "linear_onnx",
    "linear_torch",
    "minilm_candle",
    "minilm_onnx",
    "minilm_torch",
    "mlp_candle",
    "mlp_onnx",
    "mlp_torch",
];

/// curl with `args`: (HTTP status, body). Never reads stdin; 20 s at most.
fn curl(args: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "-m", "20", "-w", "\n%{http_code}"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("curl runs (apt-get install curl)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// The `error` of a JSON error body.
fn error_of(body: &str) -> String {
    let v: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
    v["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error: {body}"))
        .to_string()
}

#[tokio::test]
async fn the_stock_http_client_works_on_every_example_model() {
    let repo = linked_repository(&EXAMPLES);
    let store = repo.path().join("store.db");
    let node = Node::start(
        repo.path(),
        &["--store", &format!("sqlite://{}", store.display())],
    )
    .await
    .expect("node starts");
    let (ok, out) = run_python("tests/python/tritonclient_http_check.py", &[&node.addr]);
    assert!(ok, "tritonclient.http check failed:\n{out}");
    for m in EXAMPLES {
        assert!(out.contains(&format!("{m}: ok")), "{m} not checked:\n{out}");
    }
}

#[tokio::test]
async fn bad_rest_calls_get_json_errors_with_the_status_of_their_code() {
    let repo = linked_repository(&["mlp_onnx"]);
    let node = Node::start(repo.path(), &["--max-message-bytes", "65536"])
        .await
        .expect("node starts");
    let base = format!("http://{}", node.addr);
    let infer = format!("{base}/v2/models/mlp_onnx/infer");
    let post = |body: &str| curl(&["-X", "POST", &infer, "-d", body]);

    // Probes: 200 with an empty body.
    assert_eq!(
        curl(&[&format!("{base}/v2/health/live")]),
        (200, String::new())
    );
    assert_eq!(
        curl(&[&format!("{base}/v2/health/ready")]),
        (200, String::new())
    );
    assert_eq!(curl(&[&format!("{base}/v2/models/mlp_onnx/ready")]).0, 200);

    // A good call, in JSON both ways.
    let case = &reference("mlp.json")[0];
    let rows = case.shape[0];
    let good = serde_json::json!({
        "id": "r1",
        "inputs": [{"name": "input", "shape": case.shape, "datatype": "FP32", "data": case.input}]
    })
    .to_string();
    let (code, body) = post(&good);
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["id"], "r1");
    assert_eq!(v["outputs"][0]["shape"], serde_json::json!([rows, 4]));
    let got: Vec<f32> = v["outputs"][0]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect();
    assert!(troupe_tests::max_abs_diff(&got, &case.output) <= 1e-5);

    // An explanation, asked for by the request parameter, comes back as outputs.
    let explained = serde_json::json!({
        "parameters": {"explain": "occlusion"},
        "inputs": [{"name": "input", "shape": case.shape, "datatype": "FP32", "data": case.input}]
    })
    .to_string();
    let (code, body) = post(&explained);
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let names: Vec<&str> = v["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o["name"].as_str())
        .collect();
    assert!(names.contains(&"attribution.input"), "{names:?}");
    // Answers are compressed when the client accepts it (curl decompresses them).
    let (code, body) = curl(&["--compressed", "-X", "POST", &infer, "-d", &good]);
    assert_eq!(code, 200);
    assert!(body.contains("\"id\":\"r1\""), "{body}");
    let (_, headers) = curl(&[
        "-H",
        "Accept-Encoding: gzip",
        "-D",
        "-",
        "-o",
        "/dev/null",
        &format!("{base}/v2/models/mlp_onnx/stats"),
    ]);
    assert!(
        headers
            .to_ascii_lowercase()
            .contains("content-encoding: gzip"),
        "{headers}"
    );

    // NOT_FOUND: 404.
    let (code, body) = curl(&[&format!("{base}/v2/models/nope")]);
    assert_eq!(code, 404);
    assert!(error_of(&body).contains("nope"), "{body}");
    let (code, body) = curl(&[
        "-X",
        "POST",
        &format!("{base}/v2/models/nope/infer"),
        "-d",
        &good,
    ]);
    assert_eq!(code, 404, "{body}");
    let (code, body) = curl(&[&format!("{base}/v3/whatever")]);
    assert_eq!(code, 404);
    assert!(error_of(&body).contains("/v3/whatever"), "{body}");

    // INVALID_ARGUMENT: 400, naming what was wrong.
    for (body, names) in [
        ("{not json", "not an inference request"),
        (
            r#"{"inputs": [{"name": "input", "shape": [1, 16], "datatype": "FP32", "data": [1, 2]}]}"#,
            "holds 16 elements",
        ),
        (
            r#"{"inputs": [{"name": "input", "shape": [1, 2], "datatype": "FP32", "data": ["x", 1]}]}"#,
            "element 0",
        ),
        (
            r#"{"inputs": [{"name": "wrong", "shape": [1, 16], "datatype": "FP32", "data": [0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]}]}"#,
            "wrong",
        ),
        (
            r#"{"inputs": [{"name": "input", "shape": [1, 16], "datatype": "FP32", "parameters": {"binary_data_size": 64}}]}"#,
            "binary_data_size is 64",
        ),
    ] {
        let (code, got) = post(body);
        assert_eq!(code, 400, "{body} -> {got}");
        assert!(error_of(&got).contains(names), "{body} -> {got}");
    }
    let (code, got) = curl(&[
        "-X",
        "POST",
        &infer,
        "-H",
        "Inference-Header-Content-Length: 999999",
        "-d",
        &good,
    ]);
    assert_eq!(code, 400);
    assert!(error_of(&got).contains("999999"), "{got}");
    // A body that says gzip and is not.
    let (code, got) = curl(&[
        "-X",
        "POST",
        &infer,
        "-H",
        "Content-Encoding: gzip",
        "-d",
        &good,
    ]);
    assert_eq!(code, 400, "{got}");
    assert!(error_of(&got).contains("could not be read"), "{got}");

    // RESOURCE_EXHAUSTED: 429, a body over the message limit (read no further).
    let big = format!(
        r#"{{"inputs": [{{"name": "input", "shape": [1, 16], "datatype": "FP32", "data": [{}]}}]}}"#,
        vec!["0.0"; 40_000].join(",")
    );
    let file = repo.path().join("big.json");
    std::fs::write(&file, big).unwrap();
    let (code, got) = curl(&[
        "-X",
        "POST",
        &infer,
        "--data-binary",
        &format!("@{}", file.display()),
    ]);
    assert_eq!(code, 429, "{got}");
    assert!(error_of(&got).contains("65536"), "{got}");

    // And JSON over what a server parses, even under the message limit.
    let node_json = Node::start(repo.path(), &[]).await.expect("node starts");
    let huge = format!(
        r#"{{"inputs": [{{"name": "input", "shape": [1, 16], "datatype": "FP32", "data": [{}]}}]}}"#,
        vec!["0"; 9_000_000].join(",")
    );
    std::fs::write(&file, huge).unwrap();
    let (code, got) = curl(&[
        "-X",
        "POST",
        &format!("http://{}/v2/models/mlp_onnx/infer", node_json.addr),
        "--data-binary",
        &format!("@{}", file.display()),
    ]);
    assert_eq!(code, 429, "{got}");
    assert!(error_of(&got).contains("binary"), "{got}");

    // UNAUTHENTICATED (401) and PERMISSION_DENIED (403): admin calls need the admin token.
    let load = format!("{base}/v2/repository/models/mlp_onnx/load");
    let (code, got) = curl(&["-X", "POST", &load]);
    assert_eq!(code, 401, "{got}");
    assert!(error_of(&got).contains("admin"), "{got}");
    let (code, got) = curl(&["-X", "POST", &load, "-H", "Authorization: Bearer wrong"]);
    assert_eq!(code, 401, "{got}");
    let (code, got) = curl(&[
        "-X",
        "POST",
        &load,
        "-H",
        &format!("Authorization: Bearer {ADMIN_TOKEN}"),
    ]);
    assert_eq!(code, 200, "{got}");

    // The node is whole: gRPC and REST still answer.
    let mut c = node.client().await;
    c.infer(
        "mlp_onnx",
        vec![InputTensor::f32("input", case.shape.clone(), &case.input)],
    )
    .await
    .expect("gRPC still answers");
    assert_eq!(post(&good).0, 200);
    // Prometheus metrics on the same port (and stack), without a token.
    let (code, text) = curl(&[&format!("{base}/metrics")]);
    assert_eq!(code, 200);
    assert!(
        text.contains("troupe_requests_total{model=\"mlp_onnx\""),
        "{text}"
    );
    // Statistics over HTTP count the compute phases alike.
    let (code, body) = curl(&[&format!("{base}/v2/models/mlp_onnx/stats")]);
    assert_eq!(code, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let s = &v["model_stats"][0]["inference_stats"];
    assert_eq!(s["compute_input"]["count"], s["compute_infer"]["count"]);
    assert_eq!(s["compute_output"]["count"], s["compute_infer"]["count"]);
}

#[tokio::test]
async fn the_router_serves_rest_on_its_grpc_port() {
    let cluster = OneNodeCluster::start("mlp_rest").await;
    let router = &cluster.router;
    let base = format!("http://{}", router.addr);
    assert_eq!(curl(&[&format!("{base}/v2/health/ready")]).0, 200);
    let (ok, out) = run_python(
        "tests/python/tritonclient_http_check.py",
        &[&router.addr, "mlp_rest"],
    );
    assert!(ok, "tritonclient.http through the router failed:\n{out}");
    let (code, body) = curl(&[&format!("{base}/v2/models/nope/ready")]);
    assert_eq!(code, 400, "{body}");
    let (code, text) = curl(&[&format!("{base}/metrics")]);
    assert_eq!(code, 200);
    assert!(text.contains("troupe_router_requests_total"), "{text}");
}

/// `want` holds in `got`: objects key by key (a key `got` has beyond `want`'s is fine when
/// `want` ended in `...`), numbers within 1e-5, the rest equal.
fn holds(want: &serde_json::Value, got: &serde_json::Value, open: bool) -> bool {
    use serde_json::Value;
    match (want, got) {
        (Value::Object(w), Value::Object(g)) => {
            (open || w.len() == g.len())
                && w.iter()
                    .all(|(k, v)| g.get(k).is_some_and(|x| holds(v, x, false)))
        }
        (Value::Array(w), Value::Array(g)) => {
            w.len() == g.len() && w.iter().zip(g).all(|(a, b)| holds(a, b, false))
        }
        (Value::Number(a), Value::Number(b)) => {
            (a.as_f64().unwrap_or(f64::NAN) - b.as_f64().unwrap_or(f64::NAN)).abs() <= 1e-5
        }
        (a, b) => a == b,
    }
}

#[tokio::test]
async fn the_readme_curl_examples_answer_as_shown() {
    let readme = std::fs::read_to_string(troupe_tests::root().join("README.md")).unwrap();
    let block = readme
        .split_once("<!-- rest-examples -->\n```sh\n")
        .and_then(|(_, rest)| rest.split_once("```"))
        .expect("the README's REST examples")
        .0;
    let repo = linked_repository(&["mlp_onnx"]);
    let node = Node::start(repo.path(), &[]).await.expect("node starts");
    let lines: Vec<&str> = block.lines().collect();
    let mut checked = 0;
    for pair in lines.chunks(2) {
        let [command, shown] = pair else {
            panic!("each example is a command and its output: {pair:?}")
        };
        let shown = shown.strip_prefix("# ").expect("the output, as a comment");
        assert!(command.starts_with("curl "), "{command}");
        let command = command.replace("127.0.0.1:8001", &node.addr);
        let out = Command::new("sh")
            .args(["-c", &command])
            .stdin(Stdio::null())
            .output()
            .expect("sh runs");
        let got = String::from_utf8_lossy(&out.stdout).trim_end().to_string();
        let (want, open) = match shown.strip_suffix(", ...}") {
            Some(head) => (format!("{head}}}"), true),
            None => (shown.to_string(), false),
        };
        match (
            serde_json::from_str::<serde_json::Value>(&want),
            serde_json::from_str::<serde_json::Value>(&got),
        ) {
            (Ok(w), Ok(g)) => assert!(
                holds(&w, &g, open),
                "{command}\nshown: {shown}\ngot:   {got}"
            ),
            _ => assert_eq!(got, want, "{command}"),
        }
        checked += 1;
    }
    assert_eq!(checked, 4, "the README shows four REST examples");
}

#[tokio::test]
async fn perf_analyzer_runs_to_the_end_over_grpc_and_http() {
    let repo = linked_repository(&["mlp_onnx"]);
    let node = Node::start(repo.path(), &[]).await.expect("node starts");
    for protocol in ["grpc", "http"] {
        // Triton's own tool (scripts/perf_analyzer.sh install, run by scripts/test.sh):
        // it checks that the server's statistics add up, and aborts when they do not.
        let (ok, text) = run_command(
            Command::new("timeout")
                .arg("300")
                .arg(troupe_tests::root().join("scripts/perf_analyzer.sh"))
                .args(["-m", "mlp_onnx", "-u", &node.addr, "-i", protocol])
                .args(["--shape", "input:1,16", "--measurement-interval", "500"])
                .args([
                    "--concurrency-range",
                    "1:4:3",
                    "--stability-percentage",
                    "50",
                ]),
        );
        assert!(ok, "perf_analyzer over {protocol}:\n{text}");
        assert!(
            text.contains("Concurrency: 1, throughput")
                && text.contains("Concurrency: 4, throughput"),
            "{protocol}:\n{text}"
        );
        assert!(text.contains("compute input"), "{protocol}:\n{text}");
    }
}

#[tokio::test]
async fn troupe_load_drives_rest_with_binary_and_json_tensors() {
    let repo = linked_repository(&["mlp_onnx"]);
    let node = Node::start(repo.path(), &[]).await.expect("node starts");
    for protocol in ["http", "http-json"] {
        let report = repo.path().join(format!("{protocol}.json"));
        let out = Command::new(troupe_tests::binary("troupe-load"))
            .args([
                "--target",
                &node.addr,
                "--model",
                "mlp_onnx",
                "--protocol",
                protocol,
            ])
            .args([
                "--concurrency",
                "4",
                "--requests",
                "200",
                "--warmup",
                "0s",
                "--quiet",
            ])
            .arg("--json")
            .arg(&report)
            .stdin(Stdio::null())
            .output()
            .expect("troupe-load runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let r: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
        let step = &r["steps"][0];
        assert_eq!(step["answers"], 200, "{protocol}: {step}");
        assert_eq!(step["errors"], 0, "{protocol}: {step}");
    }
    // A model the server lacks: named with the gRPC code its HTTP status stands for.
    let out = Command::new(troupe_tests::binary("troupe-load"))
        .args([
            "--target",
            &node.addr,
            "--model",
            "nope",
            "--protocol",
            "http",
        ])
        .args(["--requests", "1", "--quiet"])
        .stdin(Stdio::null())
        .output()
        .expect("troupe-load runs");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("NOT_FOUND") && err.contains("nope"), "{err}");
}
