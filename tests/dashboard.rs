//! The web dashboard in a real browser: Debian's Chromium, headless, loads `/` while
//! troupe-load calls a model, and the page must show what it serves and the model's
//! calls/s moving: the router's of a live local cluster (etcd, a node, a router), and a
//! standalone node's with the drift and quality gauges of a monitored classifier.
//! Screenshots are kept as test artifacts (target/test-artifacts/dashboard*.png).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use troupe_client::InputTensor;
use troupe_proto::troupe as tpb;
use troupe_tests::{Node, OneNodeCluster, binary, eventually, http_get_at, root};

/// A child process killed when dropped.
struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Chromium, headless, on `url`, with `extra` flags; its stdout. The page's script runs
/// for 6 s of virtual time (each /metrics fetch completes in real time meanwhile).
fn chromium(url: &str, extra: &[&str]) -> String {
    let out = Command::new("timeout")
        .args([
            "120",
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
        ])
        .args(["--window-size=1280,1000", "--virtual-time-budget=6000"])
        .args(extra)
        .arg(url)
        .stdin(Stdio::null())
        .output()
        .expect("chromium runs (scripts/test.sh installs Debian's chromium)");
    assert!(
        out.status.success(),
        "chromium: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The text of the cell of class `class` in the live table's row of `key`.
fn cell(dom: &str, key: &str, class: &str) -> String {
    let row = dom
        .split(&format!("<tr data-key=\"{key}\">"))
        .nth(1)
        .and_then(|r| r.split("</tr>").next())
        .unwrap_or_else(|| panic!("no row of {key} in:\n{dom}"));
    row.split(&format!("class=\"n {class}\">"))
        .nth(1)
        .and_then(|c| c.split('<').next())
        .unwrap_or_else(|| panic!("no {class} cell in: {row}"))
        .to_string()
}

/// The live figures of `key`'s row: calls moving, no errors, a p99; and uPlot's charts.
fn assert_live(dom: &str, key: &str) {
    let rate: f64 = cell(dom, key, "rate")
        .parse()
        .unwrap_or_else(|e| panic!("calls/s is not a number ({e}):\n{dom}"));
    assert!(rate > 0.0, "calls/s {rate}:\n{dom}");
    assert_eq!(cell(dom, key, "errors"), "0.0");
    assert!(cell(dom, key, "p99").parse::<f64>().is_ok(), "{dom}");
    assert!(dom.contains("class=\"uplot"), "no chart drawn:\n{dom}");
}

/// troupe-load on `model` at `target` for a minute, killed when dropped.
fn load(target: &str, model: &str) -> Killed {
    Killed(
        Command::new(binary("troupe-load"))
            .args(["--target", target, "--model", model])
            .args([
                "--concurrency",
                "2",
                "--duration",
                "60s",
                "--warmup",
                "0s",
                "--quiet",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("troupe-load starts"),
    )
}

/// The first `name{labels...} value` series of `/metrics` at `addr` starting so.
fn series(addr: &str, prefix: &str) -> Option<f64> {
    let (_, text) = http_get_at(addr, "/metrics")?;
    text.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .and_then(|v| v.trim().parse().ok())
}

/// A screenshot of `page`, kept as target/test-artifacts/`name`.
fn screenshot(page: &str, name: &str) {
    let dir = root().join("target/test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    let png = dir.join(name);
    let _ = std::fs::remove_file(&png);
    chromium(page, &[&format!("--screenshot={}", png.display())]);
    let size = std::fs::metadata(&png).map(|m| m.len()).unwrap_or(0);
    assert!(size > 10_000, "screenshot of {size} bytes");
}

#[tokio::test]
async fn the_dashboard_shows_the_cluster_and_live_calls_in_chromium() {
    let cluster = OneNodeCluster::start("mlp_dash").await;
    let router = &cluster.router;
    // Load through the router while the page is open.
    let _load = load(&router.addr, "mlp_dash");
    // The load is flowing before the page opens (on a busy machine troupe-load may take
    // a while to start).
    eventually(
        "calls flow through the router",
        Duration::from_secs(60),
        async || {
            series(
                &router.addr,
                "troupe_router_requests_total{model=\"mlp_dash\",status=\"OK\"} ",
            )
            .is_some_and(|n| n >= 100.0)
        },
    )
    .await;
    let page = format!("http://{}/", router.addr);
    let dom = chromium(&page, &["--dump-dom"]);
    // The tables: the model, its state and replicas; the node with its capacity; the placement.
    assert!(dom.contains("<td class=\"READY\">READY</td>"), "{dom}");
    assert!(dom.contains(">n1<") && dom.contains("millicores"), "{dom}");
    assert!(dom.contains("<td>mlp_dash</td><td>n1</td>"), "{dom}");
    // The live figures, computed by the page from /metrics.
    assert_live(&dom, "mlp_dash");
    screenshot(&page, "dashboard.png");
}

#[tokio::test]
async fn a_standalone_node_shows_its_models_drift_and_quality_in_chromium() {
    // The example digits classifier, recorded ([monitoring]) and watched for drift, and
    // the MLP, which the load calls (so the digits' quality window keeps its truths).
    let repo = troupe_tests::repository(&["digits_onnx", "mlp_onnx"]);
    troupe_tests::edit_config(
        repo.path(),
        "digits_onnx",
        "instances = 1",
        "[monitoring.drift]\ninput = \"X\"\nreference_calls = 100\nwindow = 50\n",
    );
    let store_dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", store_dir.path().join("store.db").display());
    let node = Node::start(repo.path(), &["--store", &store])
        .await
        .unwrap();
    // 150 held-out digits with request ids (the reference, then one window), and the
    // truth of 100 of them.
    let mut c = node.client().await;
    let h = troupe_tests::digits_holdout();
    for (i, row) in h.x[..150].iter().enumerate() {
        let opts = troupe_client::CallOptions {
            request_id: Some(format!("dash-{i}")),
            ..Default::default()
        };
        c.infer_with(
            "digits_onnx",
            vec![InputTensor::f32("X", vec![1, 64], row)],
            &opts,
        )
        .await
        .expect("a digit");
    }
    let truths = (0..100)
        .map(|i| tpb::Truth {
            request_id: format!("dash-{i}"),
            truth: Some(tpb::truth::Truth::Label(h.y[i].to_string())),
        })
        .collect();
    c.feedback()
        .submit(tpb::FeedbackRequest { truths })
        .await
        .expect("feedback");
    // The node's quality report (read from the store every few seconds) has the truths.
    let labelled = "troupe_quality_labelled{model=\"digits_onnx\",version=\"1\",window=\"calls\"} ";
    eventually(
        "the quality gauges count the truths",
        Duration::from_secs(60),
        async || series(&node.addr, labelled).is_some_and(|n| n >= 100.0),
    )
    .await;
    let accuracy = series(
        &node.addr,
        "troupe_quality_accuracy{model=\"digits_onnx\",version=\"1\",window=\"calls\"} ",
    )
    .expect("an accuracy gauge");
    // Load while the page is open.
    let _load = load(&node.addr, "mlp_onnx");
    eventually(
        "calls flow to the node",
        Duration::from_secs(60),
        async || {
            series(
                &node.addr,
                "troupe_requests_total{model=\"mlp_onnx\",version=\"1\",status=\"OK\"} ",
            )
            .is_some_and(|n| n >= 300.0)
        },
    )
    .await;
    let page = format!("http://{}/", node.addr);
    let dom = chromium(&page, &["--dump-dom"]);
    assert!(dom.contains("<td class=\"READY\">READY</td>"), "{dom}");
    assert_live(&dom, "mlp_onnx/1");
    assert!(dom.contains("<tr data-key=\"digits_onnx/1\">"), "{dom}");
    // The drift table: the watch has tested windows; the quality table: the gauges the
    // page's script keeps at /metrics' values, the accuracy also as a meter.
    let drift = dom
        .split("id=\"drift\"")
        .nth(1)
        .and_then(|t| t.split("</table>").next())
        .unwrap_or_else(|| panic!("no drift table:\n{dom}"));
    assert!(drift.contains("<td>digits_onnx</td>"), "{drift}");
    assert!(
        drift.contains("data-metric=\"troupe_feature_drift_windows_total\""),
        "{drift}"
    );
    let quality = dom
        .split("id=\"quality\"")
        .nth(1)
        .and_then(|t| t.split("</table>").next())
        .unwrap_or_else(|| panic!("no quality table:\n{dom}"));
    let gauge = |metric: &str| {
        quality
            .split(&format!("data-metric=\"{metric}\""))
            .nth(1)
            .and_then(|c| c.split("<span class=\"v\">").nth(1))
            .and_then(|v| v.split('<').next())
            .unwrap_or_else(|| panic!("no {metric} gauge in:\n{quality}"))
            .to_string()
    };
    assert_eq!(gauge("troupe_quality_accuracy"), format!("{accuracy:.3}"));
    let labelled: f64 = gauge("troupe_quality_labelled").parse().unwrap();
    assert!(labelled >= 100.0, "{quality}");
    assert!(
        quality.contains("<meter min=\"0\" max=\"1.0\""),
        "{quality}"
    );
    screenshot(&page, "dashboard-node.png");
}
