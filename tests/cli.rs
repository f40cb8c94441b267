//! The `troupe` CLI as a new user would try it: every subcommand against a live node,
//! `--json` parsed, and the exit code and message on a bad argument, an unknown model and
//! an unreachable server.

use std::process::Output;

use serde_json::Value;
use troupe_tests::{Node, max_abs_diff, reference, repository, root, troupe_cli};

fn troupe(addr: &str, args: &[&str]) -> Output {
    troupe_cli()
        .arg("--server")
        .arg(addr)
        .args(args)
        .output()
        .expect("run troupe")
}

fn ok_json(addr: &str, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let out = troupe(addr, &all);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "troupe {args:?} failed: {stderr}");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "troupe {args:?}: not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn npy_f32(shape: &[usize], values: &[f32]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let mut header = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': ({},), }}",
        dims.join(", ")
    );
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend(values.iter().flat_map(|v| v.to_le_bytes()));
    out
}

fn output_values(v: &Value) -> Vec<f32> {
    v["outputs"][0]["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|x| x.as_f64().expect("number") as f32)
        .collect()
}

#[tokio::test]
async fn every_subcommand_against_a_live_node() {
    let repo = repository(&["mlp_onnx", "mlp_torch"]);
    let node = Node::start(repo.path(), &[]).await.unwrap();
    let a = node.addr.as_str();
    let case = &reference("mlp.json")[0];

    let h = ok_json(a, &["health"]);
    assert_eq!(
        (h["live"].as_bool(), h["ready"].as_bool()),
        (Some(true), Some(true))
    );
    let human = troupe(a, &["health"]);
    assert!(String::from_utf8_lossy(&human.stdout).contains("ready=true"));

    let list = ok_json(a, &["models", "list"]);
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"mlp_onnx") && names.contains(&"mlp_torch"),
        "{names:?}"
    );
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .all(|m| m["state"] == "READY")
    );
    let table = troupe(a, &["models", "list"]);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.starts_with("NAME"));
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap_or("").split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME", "VERSION", "BACKEND", "STATE", "REPLICAS", "QUEUE", "REASON"
        ]
    );
    assert!(
        lines.any(|l| l
            .split_whitespace()
            .take(4)
            .eq(["mlp_onnx", "1", "onnx", "READY"])),
        "{table}"
    );

    let got = ok_json(a, &["models", "get", "mlp_onnx"]);
    assert_eq!(got["backend"], "onnx");
    assert_eq!(got["inputs"][0]["dims"], serde_json::json!([16]));

    // Declare a model from a repository-style config, then predict.
    let cfg = root().join("models/repository/mlp_candle/config.toml");
    let artifact = root().join("models/repository/mlp_candle/1");
    let created = ok_json(
        a,
        &[
            "models",
            "create",
            "cli_mlp",
            "--config",
            cfg.to_str().unwrap(),
            "--artifact",
            artifact.to_str().unwrap(),
        ],
    );
    assert_eq!(created["state"], "READY");
    assert_eq!(created["backend"], "candle");

    let shape = format!("{},{}", case.shape[0], case.shape[1]);
    let values: Vec<String> = case.input.iter().map(|v| format!("{v:?}")).collect();
    let flag = format!("input={shape}:{}", values.join(","));
    let out = ok_json(a, &["infer", "cli_mlp", "--input", &flag]);
    assert!(max_abs_diff(&output_values(&out), &case.output) <= 1e-5);

    // The same from a .npy file.
    let dir = tempfile::tempdir().unwrap();
    let npy = dir.path().join("x.npy");
    std::fs::write(&npy, npy_f32(&[case.shape[0] as usize, 16], &case.input)).unwrap();
    let out = ok_json(
        a,
        &[
            "infer",
            "mlp_torch",
            "--input",
            &format!("input=@{}", npy.display()),
        ],
    );
    assert!(max_abs_diff(&output_values(&out), &case.output) <= 1e-5);
    assert_eq!(
        out["outputs"][0]["shape"],
        serde_json::json!([case.shape[0], 4])
    );

    // Explain: attributions per input, the explained element and f(x).
    let e = ok_json(
        a,
        &[
            "explain",
            "mlp_torch",
            "--method",
            "integrated_gradients",
            "--input",
            &flag,
        ],
    );
    assert_eq!(e["method"], "integrated_gradients");
    let attr = e["attributions"]["input"]["data"].as_array().unwrap();
    assert_eq!(attr.len(), case.input.len());
    assert_eq!(
        e["attributions"]["input"]["shape"],
        serde_json::json!([case.shape[0], 16])
    );
    assert_eq!(
        e["target"].as_array().unwrap().len(),
        case.shape[0] as usize
    );
    let human = troupe(
        a,
        &[
            "explain",
            "mlp_onnx",
            "--method",
            "occlusion",
            "--input",
            &flag,
        ],
    );
    assert!(human.status.success());
    assert!(String::from_utf8_lossy(&human.stdout).contains("output element"));
    let refused = troupe(
        a,
        &[
            "explain", "mlp_onnx", "--method", "saliency", "--input", &flag,
        ],
    );
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("occlusion or shapley"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    let del = ok_json(a, &["models", "delete", "cli_mlp"]);
    assert_eq!(del["deleted"], "cli_mlp");

    // An unknown model: exit 1, the server's reason, and what to do.
    let gone = troupe(a, &["models", "get", "cli_mlp"]);
    assert_eq!(gone.status.code(), Some(1));
    let err = String::from_utf8_lossy(&gone.stderr);
    assert!(
        err.contains("NotFound")
            && err.contains("cli_mlp")
            && err.contains("hint: `troupe models list`"),
        "{err}"
    );
    let unknown = troupe(
        a,
        &[
            "infer",
            "nope",
            "--input",
            "input=1,16:0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0",
        ],
    );
    assert_eq!(unknown.status.code(), Some(1));

    // A wrong shape: exit 1 with the model's expectation.
    let bad = troupe(a, &["infer", "mlp_onnx", "--input", "input=1,2:0,0"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("expects [-1, 16]"));

    // Bad arguments: exit 2 with a message.
    for args in [
        vec!["models", "frobnicate"],
        vec!["infer", "mlp_onnx", "--input", "garbage"],
        vec!["infer", "mlp_onnx", "--input", "input=1,16:1,2"],
        vec!["infer", "mlp_onnx"],
        vec!["infer", "mlp_onnx", "--input", "input=@/no/such/file.npy"],
        vec!["explain", "mlp_onnx"],
        vec!["explain", "mlp_onnx", "--input", "input=1,16:1,2"],
    ] {
        let o = troupe(a, &args);
        assert_eq!(
            o.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(!o.stderr.is_empty(), "{args:?} printed no message");
    }
}

#[test]
fn an_unreachable_server_exits_3_with_a_hint() {
    let o = troupe_cli()
        .args(["--server", "127.0.0.1:1", "health"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("cannot reach the server") && err.contains("127.0.0.1:1"),
        "{err}"
    );
}

#[tokio::test]
async fn the_token_comes_from_the_flag_or_the_environment() {
    let repo = repository(&["mlp_onnx"]);
    let node = Node::start(repo.path(), &[]).await.unwrap();
    let a = node.addr.as_str();
    let artifact = root().join("models/repository/mlp_onnx/1");
    let create = |name: &str| {
        vec![
            "models".to_string(),
            "create".into(),
            name.into(),
            "--config".into(),
            root()
                .join("models/repository/mlp_onnx/config.toml")
                .display()
                .to_string(),
            "--artifact".into(),
            artifact.display().to_string(),
        ]
    };
    let run = |token: Option<&str>, env: Option<&str>, args: &[String]| {
        let mut cmd = troupe_cli();
        cmd.env_remove("TROUPE_TOKEN");
        if let Some(v) = env {
            cmd.env("TROUPE_TOKEN", v);
        }
        cmd.args(["--server", a]);
        if let Some(t) = token {
            cmd.args(["--token", t]);
        }
        let o = cmd.args(args).output().unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };

    // Inference is open; admin calls need the token.
    let (code, err) = run(None, None, &["models".into(), "list".into()]);
    assert_eq!(code, Some(0), "{err}");
    let (code, err) = run(None, None, &create("no_token"));
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("Unauthenticated") && err.contains("hint:") && err.contains("TROUPE_TOKEN"),
        "{err}"
    );
    let (code, err) = run(Some("not-a-token-it-knows"), None, &create("wrong"));
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("--token"), "{err}");
    assert!(!err.contains("not-a-token-it-knows"), "{err}");
    // An unknown token is refused even where anonymous calls pass.
    let (code, err) = run(
        Some("not-a-token-it-knows"),
        None,
        &["models".into(), "list".into()],
    );
    assert_eq!(code, Some(1), "{err}");

    // The flag, the environment, and the flag over the environment.
    let (code, err) = run(Some(troupe_tests::ADMIN_TOKEN), None, &create("by_flag"));
    assert_eq!(code, Some(0), "{err}");
    let (code, err) = run(None, Some(troupe_tests::ADMIN_TOKEN), &create("by_env"));
    assert_eq!(code, Some(0), "{err}");
    let (code, err) = run(
        Some(troupe_tests::ADMIN_TOKEN),
        Some("stale"),
        &create("flag_wins"),
    );
    assert_eq!(code, Some(0), "{err}");

    // A token that cannot be sent is bad usage, and is not echoed.
    let (code, err) = run(Some("two words"), None, &["health".into()]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("invalid bearer token") && !err.contains("two words"),
        "{err}"
    );

    // An artifact outside the model roots: refused whatever the token, with the hint.
    let outside = tempfile::tempdir().unwrap();
    troupe_tests::copy_dir(&artifact, &outside.path().join("1")).unwrap();
    let mut args = create("outside");
    *args.last_mut().unwrap() = outside.path().join("1").display().to_string();
    let (code, err) = run(Some(troupe_tests::ADMIN_TOKEN), None, &args);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("PermissionDenied") && err.contains("--model-root"),
        "{err}"
    );
}

#[test]
fn help_never_shows_the_token() {
    let o = troupe_cli()
        .env("TROUPE_TOKEN", "s3cret-from-env")
        .arg("--help")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success());
    assert!(
        text.contains("--token") && text.contains("TROUPE_TOKEN"),
        "{text}"
    );
    assert!(!text.contains("s3cret-from-env"), "{text}");
}
