//! Authentication and authorisation on node and router, with TLS off and on: each call
//! without a token, with a wrong one, with a token lacking the scope, or naming an
//! artifact outside the model roots is refused with UNAUTHENTICATED or PERMISSION_DENIED
//! and a clear message; tokens appear in no log and no audit line, which names the caller.

use std::path::Path;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tonic::{Code, Request};
use troupe_client::{Client, ClientTls, InputTensor};
use troupe_proto::inference::ModelReadyRequest;
use troupe_proto::troupe::{CreateModelRequest, DeleteModelRequest};
use troupe_tests::{Etcd, Node, Pki, RouterProc, mlp_spec, repository, root};

const ADMIN: &str = "adm-7c1f0a9e5b2d4c33";
const APP: &str = "app-1e6b8d2f9a0c4e77";
const ROUTER: &str = "rtr-5a3c9e1b7d2f4a66";

/// A tokens file without anonymous access: ops (infer, admin), app (infer), the router
/// (infer, relay).
fn tokens_file(dir: &Path) -> String {
    let h = |t: &str| hex::encode(Sha256::digest(t.as_bytes()));
    let text = format!(
        "[[token]]\nname = \"ops\"\nsha256 = \"{}\"\nscopes = [\"infer\", \"admin\"]\n\n\
         [[token]]\nname = \"app\"\nsha256 = \"{}\"\nscopes = [\"infer\"]\n\n\
         [[token]]\nname = \"router\"\nsha256 = \"{}\"\nscopes = [\"infer\", \"relay\"]\n",
        h(ADMIN),
        h(APP),
        h(ROUTER)
    );
    let p = dir.join("tokens.toml");
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

fn with_token<T>(body: T, token: Option<&str>) -> Request<T> {
    let mut r = Request::new(body);
    if let Some(t) = token {
        r.metadata_mut()
            .insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    r
}

fn infer_body() -> troupe_proto::inference::ModelInferRequest {
    troupe_client::infer_request(
        "mlp_onnx",
        "",
        vec![InputTensor::f32("input", vec![1, 16], &[0.5; 16])],
    )
}

/// The model-name check needs a spec the node can load; a copy outside the roots is the
/// same files in a temporary directory.
fn outside_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    troupe_tests::copy_dir(
        &root().join("models/repository/mlp_onnx/1"),
        &dir.path().join("1"),
    )
    .unwrap();
    dir
}

fn status_of<T: std::fmt::Debug>(r: Result<T, tonic::Status>) -> tonic::Status {
    r.expect_err("the call should be refused")
}

/// Every refusal case against one server (node or router), reached by `c`.
async fn refusals(c: &mut Client, outside: &Path) {
    let infer = |t: Option<&'static str>| with_token(infer_body(), t);
    // No token, a wrong token.
    let s = status_of(c.inference().model_infer(infer(None)).await);
    assert_eq!(s.code(), Code::Unauthenticated, "{}", s.message());
    assert!(s.message().contains("bearer token"), "{}", s.message());
    let s = status_of(c.inference().model_infer(infer(Some("nope"))).await);
    assert_eq!(s.code(), Code::Unauthenticated, "{}", s.message());
    // The right token passes the door (the model may or may not be there).
    let r = c.inference().model_infer(infer(Some(APP))).await;
    if let Err(s) = &r {
        assert!(
            !matches!(s.code(), Code::Unauthenticated | Code::PermissionDenied),
            "{s:?}"
        );
    }
    // An infer token on an admin call.
    let create = |t: Option<&'static str>, artifact: &Path| {
        let mut spec = mlp_spec("guarded", 1, 1 << 20);
        spec.artifact_uri = artifact.display().to_string();
        with_token(
            CreateModelRequest {
                spec: Some(spec),
                ..Default::default()
            },
            t,
        )
    };
    let inside = root().join("models/repository/mlp_onnx/1");
    let s = status_of(c.models().create(create(Some(APP), &inside)).await);
    assert_eq!(s.code(), Code::PermissionDenied, "{}", s.message());
    assert!(
        s.message().contains("'admin'") && s.message().contains("app"),
        "{}",
        s.message()
    );
    let s = status_of(c.models().create(create(None, &inside)).await);
    assert_eq!(s.code(), Code::Unauthenticated, "{}", s.message());
    let s = status_of(
        c.models()
            .delete(with_token(
                DeleteModelRequest {
                    name: "guarded".into(),
                    ..Default::default()
                },
                Some(APP),
            ))
            .await,
    );
    assert_eq!(s.code(), Code::PermissionDenied, "{}", s.message());
    // An artifact outside the roots, also through `..`.
    let s = status_of(c.models().create(create(Some(ADMIN), outside)).await);
    assert_eq!(s.code(), Code::PermissionDenied, "{}", s.message());
    assert!(
        s.message().contains("outside the model roots"),
        "{}",
        s.message()
    );
    let sneaky = root().join("models/repository/../../../etc");
    let s = status_of(c.models().create(create(Some(ADMIN), &sneaky)).await);
    assert_eq!(s.code(), Code::PermissionDenied, "{}", s.message());
    // Probes stay open.
    assert!(c.server_live().await.unwrap());
}

fn assert_no_tokens(text: &str, what: &str) {
    for t in [ADMIN, APP, ROUTER] {
        assert!(!text.contains(t), "a token appears in the {what}");
    }
}

#[tokio::test]
async fn a_node_refuses_calls_without_the_right_token_with_tls_off_and_on() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = tokens_file(dir.path());
    let audit = dir.path().join("audit.jsonl");
    let repo = repository(&["mlp_onnx"]);
    troupe_tests::edit_config(
        repo.path(),
        "mlp_onnx",
        "instances = 1",
        "[hooks]\naudit = true",
    );
    let outside = outside_copy();
    let roots = root().join("models/repository").display().to_string();
    let node = Node::start(
        repo.path(),
        &[
            "--auth-tokens",
            &tokens,
            "--model-root",
            &roots,
            "--audit-log",
            &audit.display().to_string(),
        ],
    )
    .await
    .unwrap();
    let mut c = Client::connect(&node.addr).await.unwrap();
    refusals(&mut c, outside.path()).await;

    // The admin token creates from inside the roots; the audit names the caller.
    let mut spec = mlp_spec("guarded", 1, 1 << 20);
    spec.artifact_uri = root()
        .join("models/repository/mlp_onnx/1")
        .display()
        .to_string();
    c.models()
        .create(with_token(
            CreateModelRequest {
                spec: Some(spec),
                ..Default::default()
            },
            Some(ADMIN),
        ))
        .await
        .expect("admin creates inside the roots");
    c.inference()
        .model_infer(with_token(infer_body(), Some(APP)))
        .await
        .expect("an infer token infers");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let lines = std::fs::read_to_string(&audit).unwrap();
    assert!(lines.contains("\"caller\":\"app\""), "{lines}");
    assert_no_tokens(&lines, "audit file");
    assert_no_tokens(&node.log_text(), "node log");

    // The same door over TLS.
    let pki = Pki::new();
    let tls = ClientTls {
        domain: Some("localhost".into()),
        ..ClientTls::with_ca_file(&pki.path("ca.pem")).unwrap()
    };
    let tls_node = Node::start_tls(
        repo.path(),
        &[
            "--auth-tokens",
            &tokens,
            "--model-root",
            &roots,
            "--audit-log",
            &dir.path().join("audit-tls.jsonl").display().to_string(),
            "--tls-cert",
            &pki.s("server.pem"),
            "--tls-key",
            &pki.s("server.key"),
        ],
        tls.clone(),
    )
    .await
    .unwrap();
    let mut c = Client::connect_tls(&tls_node.addr, &tls).await.unwrap();
    refusals(&mut c, outside.path()).await;
    assert_no_tokens(&tls_node.log_text(), "node log");
}

#[tokio::test]
async fn a_router_refuses_calls_without_the_right_token_and_relays_the_caller() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = tokens_file(dir.path());
    let audit = dir.path().join("audit.jsonl");
    let etcd = Etcd::start().await.unwrap();
    let repo = tempfile::tempdir().unwrap();
    let roots = root().join("models/repository").display().to_string();
    let node = Node::start(
        repo.path(),
        &[
            "--auth-tokens",
            &tokens,
            "--model-root",
            &roots,
            "--audit-log",
            &audit.display().to_string(),
            "--etcd",
            &etcd.url(),
            "--node-id",
            "n1",
        ],
    )
    .await
    .unwrap();
    let router = RouterProc::start_env(
        &etcd.url(),
        "r1",
        &[
            ("TROUPE_AUTH_TOKENS", tokens.clone()),
            ("TROUPE_NODE_TOKEN", ROUTER.to_string()),
            ("TROUPE_MODEL_ROOTS", roots.clone()),
        ],
    )
    .await
    .unwrap();
    let outside = outside_copy();
    let mut c = Client::connect(&router.addr).await.unwrap();
    refusals(&mut c, outside.path()).await;

    // Admin declares a model (audited), the router places it on the node, and an app
    // call through the router is audited on the node as the app's.
    let mut spec = mlp_spec("mlp_onnx", 1, 1 << 20);
    spec.hooks = Some(troupe_proto::troupe::Hooks {
        audit: true,
        ..Default::default()
    });
    c.models()
        .create(with_token(
            CreateModelRequest {
                spec: Some(spec),
                ..Default::default()
            },
            Some(ADMIN),
        ))
        .await
        .expect("admin creates through the router");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let ready = c
            .inference()
            .model_ready(with_token(
                ModelReadyRequest {
                    name: "mlp_onnx".into(),
                    ..Default::default()
                },
                Some(APP),
            ))
            .await
            .map(|r| r.into_inner().ready)
            .unwrap_or(false);
        if ready {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never ready");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    c.inference()
        .model_infer(with_token(infer_body(), Some(APP)))
        .await
        .expect("an app call through the router");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let lines = std::fs::read_to_string(&audit).unwrap();
    assert!(
        lines.contains("\"caller\":\"app\""),
        "the node audits the caller the router named: {lines}"
    );
    assert_no_tokens(&lines, "audit file");
    assert_no_tokens(&node.log_text(), "node log");
    assert_no_tokens(&router.log_text(), "router log");

    // The node itself refuses a router without its token.
    let mut direct = Client::connect(&node.addr).await.unwrap();
    let s = status_of(
        direct
            .inference()
            .model_infer(with_token(infer_body(), None))
            .await,
    );
    assert_eq!(s.code(), Code::Unauthenticated, "{}", s.message());
}
