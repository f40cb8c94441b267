//! TLS end to end: a node serving over TLS (and mutual TLS), reached by the Rust client
//! and the `troupe` CLI with a test CA; plain or untrusting clients are refused with a
//! clear error.

use std::path::Path;
use std::process::Command;

use troupe_client::{Client, ClientTls, InputTensor};
use troupe_tests::{Node, Pki, binary, reference, repository};

fn port_of(addr: &str) -> &str {
    addr.rsplit(':').next().unwrap()
}

async fn infer_once(c: &mut Client) {
    let case = &reference("mlp.json")[0];
    let out = c
        .infer(
            "mlp_onnx",
            vec![InputTensor::f32("input", case.shape.clone(), &case.input)],
        )
        .await
        .unwrap();
    assert!(troupe_tests::max_abs_diff(&out.f32("output").unwrap(), &case.output) < 1e-5);
}

fn cli(server: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(binary("troupe"))
        .args(["--server", server])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn a_node_over_tls_answers_trusting_clients_only() {
    let pki = Pki::new();
    let repo = repository(&["mlp_onnx"]);
    let node = Node::start_tls(
        repo.path(),
        &[
            "--tls-cert",
            &pki.s("server.pem"),
            "--tls-key",
            &pki.s("server.key"),
        ],
        ClientTls::with_ca_file(&pki.path("ca.pem")).unwrap(),
    )
    .await
    .unwrap();
    let host = format!("localhost:{}", port_of(&node.addr));

    let tls = ClientTls::with_ca_file(&pki.path("ca.pem")).unwrap();
    let mut c = Client::connect_tls(&host, &tls).await.unwrap();
    assert!(c.server_ready().await.unwrap());
    infer_once(&mut c).await;
    // By IP address too (the certificate names 127.0.0.1).
    let mut c = Client::connect_tls(&node.addr, &tls).await.unwrap();
    infer_once(&mut c).await;

    // A client trusting another CA is refused, and says why.
    let wrong = ClientTls::with_ca_file(&pki.path("other-ca.pem")).unwrap();
    let e = match Client::connect_tls(&host, &wrong).await {
        Ok(mut c) => c.server_live().await.err().map(|e| e.to_string()),
        Err(e) => Some(e.to_string()),
    }
    .expect("an untrusted server certificate must fail");
    assert!(
        e.to_lowercase().contains("certificate") || e.contains("UnknownIssuer"),
        "{e}"
    );
    // Plain HTTP/2 to a TLS port fails (no silent downgrade).
    let plain = match Client::connect(&node.addr).await {
        Ok(mut c) => c.server_live().await.is_err(),
        Err(_) => true,
    };
    assert!(plain, "plain text must not work against a TLS node");

    // The CLI, with --tls-ca.
    let (code, out, err) = cli(&host, &["--tls-ca", &pki.s("ca.pem"), "--json", "health"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["ready"], true, "{v}");
    let (code, _, err) = cli(&host, &["--tls-ca", &pki.s("other-ca.pem"), "health"]);
    assert_eq!(code, 3, "unreachable (untrusted) is exit code 3: {err}");
    assert!(err.to_lowercase().contains("certificate"), "{err}");
}

#[tokio::test]
async fn mutual_tls_needs_a_client_certificate_from_the_ca() {
    let pki = Pki::new();
    let repo = repository(&["mlp_onnx"]);
    let node = Node::start_tls(
        repo.path(),
        &[
            "--tls-cert",
            &pki.s("server.pem"),
            "--tls-key",
            &pki.s("server.key"),
            "--tls-client-ca",
            &pki.s("ca.pem"),
        ],
        ClientTls {
            identity: Some((pki.read("client.pem"), pki.read("client.key"))),
            ..ClientTls::with_ca_file(&pki.path("ca.pem")).unwrap()
        },
    )
    .await
    .unwrap();
    let host = format!("localhost:{}", port_of(&node.addr));
    let mut tls = ClientTls::with_ca_file(&pki.path("ca.pem")).unwrap();
    let anonymous = match Client::connect_tls(&host, &tls).await {
        Ok(mut c) => c.server_live().await.is_err(),
        Err(_) => true,
    };
    assert!(anonymous, "a client without a certificate must be refused");
    tls.identity = Some((pki.read("client.pem"), pki.read("client.key")));
    let mut c = Client::connect_tls(&host, &tls).await.unwrap();
    infer_once(&mut c).await;
    let (code, _, err) = cli(
        &host,
        &[
            "--tls-ca",
            &pki.s("ca.pem"),
            "--tls-cert",
            &pki.s("client.pem"),
            "--tls-key",
            &pki.s("client.key"),
            "health",
        ],
    );
    assert_eq!(code, 0, "{err}");
}

#[test]
fn half_a_tls_setup_is_refused_at_startup() {
    let pki = Pki::new();
    let out = Command::new(binary("troupe-node"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            &pki.s("server.pem"),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--tls-key"), "{err}");
    let missing: &Path = Path::new("/nonexistent/key.pem");
    let out = Command::new(binary("troupe-node"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            &pki.s("server.pem"),
        ])
        .arg("--tls-key")
        .arg(missing)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/key.pem"), "{err}");
}
