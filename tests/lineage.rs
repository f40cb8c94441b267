//! Lineage end to end: a model signed with openssl's ed25519 (an implementation that is
//! not Troupe's) loads and answers through the router, `troupe lineage` returns the whole
//! record of one answer (weights, provenance, signature, label), and the lineage shows in
//! ModelMetadata, `troupe models get` and the audit line. A tampered artifact is refused
//! naming both digests; `troupe sign --folder` covers a whole version folder, checked
//! with a key from the node's trust file; `policy = "flag"` loads a bad signature with
//! the failure recorded.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use troupe_client::{CallOptions, InputTensor};
use troupe_proto::troupe as tpb;
use troupe_tests::{Etcd, Node, RouterProc, eventually, troupe_cli};

fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().expect("runs");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn sha256_file(path: &Path) -> String {
    let out = run(Command::new("sha256sum").arg(path));
    String::from_utf8_lossy(&out)[..64].to_string()
}

/// An ed25519 key pair made by openssl: (private key file, public key PEM).
fn keypair(dir: &Path, name: &str) -> (std::path::PathBuf, String) {
    let key = dir.join(format!("{name}.pem"));
    run(Command::new("openssl")
        .args(["genpkey", "-algorithm", "ed25519", "-out"])
        .arg(&key));
    let public = run(Command::new("openssl")
        .arg("pkey")
        .arg("-in")
        .arg(&key)
        .arg("-pubout"));
    (key, String::from_utf8(public).unwrap())
}

/// Signs `artifact` as the docs show, with openssl: the signature over its sha256's hex
/// text, in `<artifact>.sig`.
fn openssl_sign(key: &Path, artifact: &Path) {
    let digest = sha256_file(artifact);
    let msg = artifact.with_extension("msg");
    std::fs::write(&msg, &digest).unwrap();
    let sig = run(Command::new("openssl")
        .args(["pkeyutl", "-sign", "-rawin", "-inkey"])
        .arg(key)
        .arg("-in")
        .arg(&msg));
    std::fs::remove_file(&msg).unwrap();
    use base64::Engine;
    let file = serde_json::json!({
        "covers": "artifact",
        "digest": digest,
        "signature": base64::engine::general_purpose::STANDARD.encode(sig),
    });
    let mut name = artifact.file_name().unwrap().to_os_string();
    name.push(".sig");
    std::fs::write(artifact.with_file_name(name), file.to_string()).unwrap();
}

fn digits_dir(to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    let from = troupe_tests::root().join("models/repository/digits_onnx/1/model.onnx");
    std::fs::copy(from, to.join("model.onnx")).unwrap();
}

fn provenance() -> tpb::Provenance {
    tpb::Provenance {
        source: "s3://models/digits/run-17".into(),
        training_run: "run-17".into(),
        code_commit: "3f2a9c1".into(),
        data_digest: "sha256:0b1f".into(),
        labels: [("dataset".to_string(), "sklearn-digits".to_string())].into(),
    }
}

fn spec(name: &str, dir: &Path, public_key: &str) -> tpb::ModelSpec {
    let t = |name: &str, data_type: &str, dims: Vec<i64>| tpb::TensorSpec {
        name: name.into(),
        data_type: data_type.into(),
        dims,
    };
    tpb::ModelSpec {
        name: name.into(),
        backend: tpb::BackendKind::Onnx as i32,
        inputs: vec![t("X", "FP32", vec![64])],
        outputs: vec![
            t("label", "INT64", vec![]),
            t("probabilities", "FP32", vec![10]),
        ],
        max_batch_size: 64,
        artifact_uri: dir.display().to_string(),
        resources: Some(tpb::Resources {
            cpu: 0.25,
            memory_bytes: 64 << 20,
            gpu_memory_bytes: 0,
        }),
        hooks: Some(tpb::Hooks {
            audit: true,
            ..Default::default()
        }),
        monitoring: Some(tpb::Monitoring {
            kind: tpb::MonitoredKind::Classifier as i32,
            output: "probabilities".into(),
            ..Default::default()
        }),
        provenance: Some(provenance()),
        signing: Some(tpb::Signing {
            public_key: public_key.into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_signed_model_answers_with_its_lineage_and_a_tampered_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = keypair(dir.path(), "release");
    let signed = dir.path().join("signed/1");
    digits_dir(&signed);
    openssl_sign(&key, &signed.join("model.onnx"));
    let tampered = dir.path().join("tampered/1");
    digits_dir(&tampered);
    openssl_sign(&key, &tampered.join("model.onnx"));
    let original = sha256_file(&tampered.join("model.onnx"));
    let mut bytes = std::fs::read(tampered.join("model.onnx")).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(tampered.join("model.onnx"), bytes).unwrap();
    let changed = sha256_file(&tampered.join("model.onnx"));

    let etcd = Etcd::start().await.unwrap();
    let store = format!("sqlite://{}", dir.path().join("store.db").display());
    let audit = dir.path().join("audit.jsonl");
    let repo = tempfile::tempdir().unwrap();
    let root = dir.path().display().to_string();
    let audit_flag = audit.display().to_string();
    let node = Node::start(
        repo.path(),
        &[
            "--etcd",
            &etcd.url(),
            "--node-id",
            "n1",
            "--store",
            &store,
            "--model-root",
            &root,
            "--audit-log",
            &audit_flag,
        ],
    )
    .await
    .unwrap();
    let router = RouterProc::start_env(
        &etcd.url(),
        "r1",
        &[
            ("TROUPE_STORE", store.clone()),
            ("TROUPE_MODEL_ROOTS", root.clone()),
        ],
    )
    .await
    .unwrap();
    let mut admin = router.client().await;
    admin
        .models()
        .create(tpb::CreateModelRequest {
            spec: Some(spec("digits_signed", &signed, &public)),
            ..Default::default()
        })
        .await
        .expect("declared");
    eventually(
        "the signed model is placed and ready",
        Duration::from_secs(60),
        async || {
            let p = admin
                .cluster()
                .placements(tpb::PlacementsRequest {
                    model: "digits_signed".into(),
                })
                .await;
            p.is_ok_and(|p| p.into_inner().placements.iter().any(|p| p.ready))
        },
    )
    .await;

    // One answer through the router, labelled later.
    let row = vec![0.0f32; 64];
    let opts = CallOptions {
        request_id: Some("lin-1".into()),
        ..Default::default()
    };
    let r = admin
        .infer_with(
            "digits_signed",
            vec![InputTensor::f32("X", vec![1, 64], &row)],
            &opts,
        )
        .await
        .expect("a call through the router");
    assert_eq!(r.id, "lin-1");
    admin
        .feedback()
        .submit(tpb::FeedbackRequest {
            truths: vec![tpb::Truth {
                request_id: "lin-1".into(),
                truth: Some(tpb::truth::Truth::Label("0".into())),
            }],
        })
        .await
        .expect("feedback");

    // `troupe lineage`, through the router: the whole record.
    let digest = sha256_file(&signed.join("model.onnx"));
    let mut record = serde_json::Value::Null;
    eventually("the call is stored", Duration::from_secs(20), async || {
        let out = troupe_cli()
            .args(["--server", &router.addr, "--json", "lineage", "lin-1"])
            .output()
            .unwrap();
        if !out.status.success() {
            return false;
        }
        record = serde_json::from_slice(&out.stdout).unwrap();
        !record["weights"].is_null()
    })
    .await;
    assert_eq!(record["model"], "digits_signed");
    assert_eq!(record["version"], "1");
    assert_eq!(record["node"], "n1");
    assert_eq!(record["digest"], digest.as_str());
    assert!(record["answer"]["class"].is_string());
    let w = &record["weights"];
    assert_eq!(w["digest"], digest.as_str());
    assert_eq!(w["provenance"]["source"], "s3://models/digits/run-17");
    assert_eq!(w["provenance"]["training_run"], "run-17");
    assert_eq!(w["provenance"]["code_commit"], "3f2a9c1");
    assert_eq!(w["provenance"]["data_digest"], "sha256:0b1f");
    assert_eq!(w["provenance"]["labels"]["dataset"], "sklearn-digits");
    assert_eq!(w["signature"]["state"], "verified");
    assert_eq!(w["signature"]["key"], "inline");
    assert_eq!(w["signature"]["covers"], "artifact");
    assert_eq!(w["signature"]["signed_digest"], digest.as_str());
    assert_eq!(record["truth"], "0");
    let text = troupe_cli()
        .args(["--server", &router.addr, "lineage", "lin-1"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("run-17") && text.contains("verified"),
        "{text}"
    );

    // The node shows it in ModelMetadata, models get and the audit line.
    let mut nc = node.client().await;
    let meta = nc
        .inference()
        .model_metadata(troupe_proto::inference::ModelMetadataRequest {
            name: "digits_signed".into(),
            version: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let param = |k: &str| match meta
        .parameters
        .get(k)
        .and_then(|p| p.parameter_choice.clone())
    {
        Some(troupe_proto::inference::infer_parameter::ParameterChoice::StringParam(s)) => s,
        other => panic!("{k}: {other:?}"),
    };
    assert_eq!(param("troupe.lineage.digest"), digest);
    assert_eq!(param("troupe.lineage.training_run"), "run-17");
    assert_eq!(param("troupe.lineage.signature"), "verified");
    assert_eq!(param("troupe.lineage.label.dataset"), "sklearn-digits");
    let got = run(troupe_cli().args([
        "--server",
        &node.addr,
        "--json",
        "models",
        "get",
        "digits_signed",
    ]));
    let got: serde_json::Value = serde_json::from_slice(&got).unwrap();
    assert_eq!(
        got["lineage"]["provenance"]["training_run"], "run-17",
        "{got}"
    );
    assert_eq!(got["lineage"]["signature"]["state"], "verified");
    // And `models get` through the router, which asks a replica's node.
    let got = run(troupe_cli().args([
        "--server",
        &router.addr,
        "--json",
        "models",
        "get",
        "digits_signed",
    ]));
    let got: serde_json::Value = serde_json::from_slice(&got).unwrap();
    assert_eq!(got["lineage"]["digest"], digest.as_str(), "{got}");
    assert_eq!(got["lineage"]["provenance"]["training_run"], "run-17");
    let line = std::fs::read_to_string(&audit).unwrap();
    let line: serde_json::Value = serde_json::from_str(line.lines().last().unwrap()).unwrap();
    assert_eq!(line["sha256"], digest.as_str());
    assert_eq!(line["provenance"]["training_run"], "run-17");
    assert_eq!(line["signature"], "verified");

    // The tampered copy: refused at load, naming the digest signed and the one found.
    let e = nc
        .models()
        .create(tpb::CreateModelRequest {
            spec: Some(spec("digits_tampered", &tampered, &public)),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{}", e.message());
    assert!(
        e.message().contains(&original) && e.message().contains(&changed),
        "{}",
        e.message()
    );
}

#[tokio::test]
async fn a_folder_signed_by_troupe_sign_verifies_with_the_trust_file_and_flag_loads_a_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = keypair(dir.path(), "release");
    let (_, other) = keypair(dir.path(), "other");
    let trust = dir.path().join("trust.toml");
    std::fs::write(&trust, format!("[keys]\nrelease = '''{public}'''\n")).unwrap();
    let repo = troupe_tests::repository(&[]);
    for name in ["digits_folder", "digits_flagged", "digits_unknown_key"] {
        troupe_tests::add_model(repo.path(), "digits_onnx", name);
    }
    let append = |name: &str, tables: &str| {
        troupe_tests::edit_config(repo.path(), name, "instances = 1", tables)
    };
    append(
        "digits_folder",
        "[provenance]\ntraining_run = \"run-18\"\n[signing]\nkey = \"release\"\nsignature = \"model.sig\"\n",
    );
    append(
        "digits_flagged",
        &format!("[signing]\npublic_key = '''{other}'''\npolicy = \"flag\"\n"),
    );
    append("digits_unknown_key", "[signing]\nkey = \"nobody\"\n");
    // `troupe sign --folder` over the version folder; openssl over digits_flagged's
    // artifact with the release key (so the other key cannot verify it).
    let folder = repo.path().join("digits_folder/1");
    let out = troupe_cli()
        .args(["sign", "--folder", "--key"])
        .arg(&key)
        .arg(&folder)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), public.trim());
    openssl_sign(&key, &repo.path().join("digits_flagged/1/model.onnx"));
    // The manifest as coreutils computes it.
    let manifest = run(Command::new("sh").arg("-c").arg(format!(
        "cd {} && find . -type f ! -name '*.sig' -printf '%P\\n' | LC_ALL=C sort | xargs -d '\\n' sha256sum | sha256sum",
        folder.display()
    )));
    let manifest = String::from_utf8_lossy(&manifest)[..64].to_string();

    let store = format!("sqlite://{}", dir.path().join("store.db").display());
    let trust_flag = trust.display().to_string();
    let node = Node::start(
        repo.path(),
        &["--store", &store, "--trust-file", &trust_flag],
    )
    .await
    .unwrap();
    let get = |name: &str| {
        let out = troupe_cli()
            .args(["--server", &node.addr, "--json", "models", "get", name])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr)
    };
    let folder_status: serde_json::Value = serde_json::from_str(&get("digits_folder")).unwrap();
    let l = &folder_status["lineage"];
    assert_eq!(l["signature"]["state"], "verified", "{folder_status}");
    assert_eq!(l["signature"]["key"], "release");
    assert_eq!(l["signature"]["covers"], "folder");
    assert_eq!(l["manifest_digest"], manifest.as_str());
    assert_eq!(l["provenance"]["training_run"], "run-18");
    let flagged: serde_json::Value = serde_json::from_str(&get("digits_flagged")).unwrap();
    assert_eq!(flagged["state"], "READY", "{flagged}");
    assert_eq!(flagged["lineage"]["signature"]["state"], "failed");
    assert!(
        flagged["lineage"]["signature"]["reason"]
            .as_str()
            .unwrap()
            .contains("does not verify"),
        "{flagged}"
    );
    let unknown = get("digits_unknown_key");
    assert!(
        unknown.contains("'nobody'") && unknown.contains("trust.toml"),
        "{unknown}"
    );
    // A model that was not signed says so.
    let mut c = node.client().await;
    let r = c
        .infer(
            "digits_flagged",
            vec![InputTensor::f32("X", vec![1, 64], &[0.0; 64])],
        )
        .await
        .expect("a flagged model serves");
    assert!(!r.id.is_empty());
}
