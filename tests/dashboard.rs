//! The router's web dashboard in a real browser: Debian's Chromium, headless, loads `/`
//! from a live local cluster (etcd, a node, a router) while troupe-load calls a model
//! through the router, and the page must show the cluster and the model's calls/s moving.
//! A screenshot is kept as a test artifact (target/test-artifacts/dashboard.png).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use troupe_tests::{OneNodeCluster, binary, eventually, http_get_at, root};

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

/// The text of the cell of class `class` in the models table's row of `model`.
fn cell(dom: &str, model: &str, class: &str) -> String {
    let row = dom
        .split(&format!("<tr data-model=\"{model}\">"))
        .nth(1)
        .and_then(|r| r.split("</tr>").next())
        .unwrap_or_else(|| panic!("no row of {model} in:\n{dom}"));
    row.split(&format!("class=\"n {class}\">"))
        .nth(1)
        .and_then(|c| c.split('<').next())
        .unwrap_or_else(|| panic!("no {class} cell in: {row}"))
        .to_string()
}

#[tokio::test]
async fn the_dashboard_shows_the_cluster_and_live_calls_in_chromium() {
    let cluster = OneNodeCluster::start("mlp_dash").await;
    let router = &cluster.router;
    // Load through the router while the page is open.
    let _load = Killed(
        Command::new(binary("troupe-load"))
            .args(["--target", &router.addr, "--model", "mlp_dash"])
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
    );
    // The load is flowing before the page opens (on a busy machine troupe-load may take
    // a while to start).
    let answered = |text: &str| {
        text.lines()
            .find_map(|l| {
                l.strip_prefix("troupe_router_requests_total{model=\"mlp_dash\",status=\"OK\"} ")
                    .and_then(|n| n.trim().parse::<u64>().ok())
            })
            .unwrap_or(0)
    };
    eventually(
        "calls flow through the router",
        Duration::from_secs(60),
        async || http_get_at(&router.addr, "/metrics").is_some_and(|(_, t)| answered(&t) >= 100),
    )
    .await;
    let page = format!("http://{}/", router.addr);
    let dom = chromium(&page, &["--dump-dom"]);
    // The tables: the model, its state and replicas; the node with its capacity; the placement.
    assert!(dom.contains("<td class=\"READY\">READY</td>"), "{dom}");
    assert!(dom.contains(">n1<") && dom.contains("millicores"), "{dom}");
    assert!(dom.contains("<td>mlp_dash</td><td>n1</td>"), "{dom}");
    // The live figures, computed by the page from /metrics: calls moving, no errors, and
    // uPlot's charts drawn.
    let rate: f64 = cell(&dom, "mlp_dash", "rate")
        .parse()
        .unwrap_or_else(|e| panic!("calls/s is not a number ({e}):\n{dom}"));
    assert!(rate > 0.0, "calls/s {rate}:\n{dom}");
    assert_eq!(cell(&dom, "mlp_dash", "errors"), "0.0");
    assert!(
        cell(&dom, "mlp_dash", "p99").parse::<f64>().is_ok(),
        "{dom}"
    );
    assert!(dom.contains("class=\"uplot"), "no chart drawn:\n{dom}");
    // The picture, kept.
    let dir = root().join("target/test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    let png = dir.join("dashboard.png");
    let _ = std::fs::remove_file(&png);
    chromium(&page, &[&format!("--screenshot={}", png.display())]);
    let size = std::fs::metadata(&png).map(|m| m.len()).unwrap_or(0);
    assert!(size > 10_000, "screenshot of {size} bytes");
}
