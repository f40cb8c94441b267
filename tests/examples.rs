//! The examples in other languages, run against a live node.

use troupe_tests::{Node, repository};

#[tokio::test]
async fn python_grpcio_example_runs() {
    let repo = repository(&["mlp_onnx"]);
    let node = Node::start(repo.path(), &[]).await.unwrap();
    let (ok, text) =
        troupe_tests::run_python("examples/python/infer.py", &[&node.addr, "mlp_onnx"]);
    assert!(ok, "python example failed:\n{text}");
    assert!(
        text.contains("python example: ok") && text.contains("NOT_FOUND"),
        "{text}"
    );
}
