//! The Rust client's call options against a live node: retries on a full queue, deadlines.

use std::time::Duration;

use tonic::Code;
use troupe_client::{CallOptions, InputTensor, RetryPolicy};
use troupe_tests::{Node, edit_config, repository};

fn x(i: usize) -> Vec<f32> {
    (0..256).map(|j| ((i * 31 + j) % 17) as f32).collect()
}

#[tokio::test]
async fn retries_ride_out_a_full_queue_and_deadlines_are_sent() {
    let repo = repository(&["slow_onnx"]);
    edit_config(
        repo.path(),
        "slow_onnx",
        "instances = 1\nmax_queue_size = 1",
        "",
    );
    let node = Node::start(repo.path(), &[]).await.unwrap();
    let c = node.client().await;

    // Eight calls at once against a queue of one: without retries some are refused...
    let burst = |retry: RetryPolicy| {
        let c = c.clone();
        async move {
            let mut tasks = Vec::new();
            for i in 0..8 {
                let mut c = c.clone();
                let opts = CallOptions {
                    retry: retry.clone(),
                    ..Default::default()
                };
                tasks.push(tokio::spawn(async move {
                    let r = c
                        .infer_with(
                            "slow_onnx",
                            vec![InputTensor::from_slice("input", vec![1, 256], &x(i))],
                            &opts,
                        )
                        .await;
                    (r, x(i))
                }));
            }
            let mut refused = 0;
            for t in tasks {
                let (r, want) = t.await.unwrap();
                match r {
                    Ok(out) => assert_eq!(out.values::<f32>("output").unwrap(), want),
                    Err(e) => {
                        assert_eq!(e.code(), Some(Code::ResourceExhausted), "{e}");
                        refused += 1;
                    }
                }
            }
            refused
        }
    };
    assert!(
        burst(RetryPolicy::default()).await > 0,
        "a queue of one must refuse some of eight calls"
    );
    // ...with retries every call is answered.
    let policy = RetryPolicy {
        max_attempts: 50,
        initial_backoff: Duration::from_millis(5),
        ..Default::default()
    };
    assert_eq!(burst(policy).await, 0);

    // A deadline shorter than one call is enforced.
    let mut c2 = c.clone();
    let opts = CallOptions {
        timeout: Some(Duration::from_millis(1)),
        ..Default::default()
    };
    let e = c2
        .infer_with(
            "slow_onnx",
            vec![InputTensor::from_slice("input", vec![1, 256], &x(0))],
            &opts,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            e.code(),
            Some(Code::DeadlineExceeded) | Some(Code::Cancelled)
        ),
        "{e}"
    );
}
