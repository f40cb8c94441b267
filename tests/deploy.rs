//! What users run beyond one machine: the Kubernetes manifests in docs/kubernetes validate
//! against the Kubernetes schemas (PyPI kubernetes-validate, offline, strict: an unknown
//! field fails), and say what docs/cluster.md says they do.

use std::process::Command;

use troupe_tests::{root, run_command};

#[test]
fn the_kubernetes_manifests_validate() {
    let dir = root().join("docs/kubernetes");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("docs/kubernetes")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 3, "{files:?}");
    let (ok, text) = run_command(
        Command::new(root().join(".venv/bin/kubernetes-validate"))
            .arg("--strict")
            .args(&files),
    );
    assert!(ok, "{text}");
    for resource in [
        "statefulset/etcd",
        "deployment/troupe-router",
        "statefulset/troupe-node",
        "service/troupe-router",
    ] {
        assert!(
            text.contains(&format!("passed for resource {resource}")),
            "{resource} not validated:\n{text}"
        );
    }
    // The probes are the REST health endpoints, and the nodes offer their requests.
    let router = std::fs::read_to_string(dir.join("router.yaml")).unwrap();
    assert!(router.contains("path: /v2/health/ready"), "{router}");
    let nodes = std::fs::read_to_string(dir.join("nodes.yaml")).unwrap();
    for needed in [
        "TROUPE_CPU_MILLIS",
        "requests.cpu",
        "TROUPE_MEMORY_MB",
        "requests.memory",
    ] {
        assert!(nodes.contains(needed), "nodes.yaml lacks {needed}");
    }
}
