//! Throughput machinery over real gRPC: dynamic batching on every backend, concurrent
//! instances fed from one queue, backpressure, deadlines and cancellation.

use std::time::{Duration, Instant};

use tonic::Code;
use troupe_client::troupe_proto::inference as pb;
use troupe_client::troupe_proto::troupe as tpb;
use troupe_client::{Client, InputTensor, decode_response, infer_request};
use troupe_tests::{Node, add_model, edit_config, max_abs_diff, repository};

fn rows(n: usize, seed: usize, width: usize) -> Vec<f32> {
    (0..n * width)
        .map(|i| (((i * 7919 + seed * 104729) % 1000) as f32 / 250.0) - 2.0)
        .collect()
}

async fn stats(c: &mut Client, model: &str) -> pb::ModelStatistics {
    let r = pb::ModelStatisticsRequest {
        name: model.into(),
        version: String::new(),
    };
    c.inference()
        .model_statistics(r)
        .await
        .unwrap()
        .into_inner()
        .model_stats
        .remove(0)
}

async fn status(c: &mut Client, model: &str) -> tpb::ModelStatus {
    let r = tpb::GetModelRequest {
        name: model.into(),
        version: String::new(),
    };
    c.models().get(r).await.unwrap().into_inner()
}

/// Polls until the model's queue is empty and nothing is running.
async fn wait_idle(c: &mut Client, model: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let st = status(c, model).await;
        if st.queue_length == 0 && st.replicas.iter().all(|r| r.in_flight == 0) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "queue of {model} did not drain: {st:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn batched_answers_equal_unbatched_answers_on_every_backend() {
    let repo = repository(&["mlp_onnx", "mlp_torch", "mlp_candle"]);
    for m in ["mlp_onnx", "mlp_torch", "mlp_candle"] {
        let b = format!("{m}_batched");
        add_model(repo.path(), m, &b);
        // Two instances: while one runs the first call, the other waits out the delay
        // for the rest (with every instance idle, a batch leaves at once).
        edit_config(
            repo.path(),
            &b,
            "instances = 2",
            "[dynamic_batching]\nmax_queue_delay_us = 20000\npreferred_batch_sizes = [32]",
        );
    }
    let node = Node::start(repo.path(), &[]).await.unwrap();
    let mut c = node.client().await;
    let sizes = [1usize, 2, 3, 5, 1, 4, 2, 1];
    for m in ["mlp_onnx", "mlp_torch", "mlp_candle"] {
        // Unbatched answers, one call at a time.
        let mut want = Vec::new();
        for (i, &n) in sizes.iter().cycle().take(24).enumerate() {
            let out = c
                .infer(
                    m,
                    vec![InputTensor::f32(
                        "input",
                        vec![n as i64, 16],
                        &rows(n, i, 16),
                    )],
                )
                .await
                .unwrap();
            want.push(out.f32("output").unwrap());
        }
        // The same calls at once, against the batching model.
        let batched = format!("{m}_batched");
        let mut tasks = Vec::new();
        for (i, &n) in sizes.iter().cycle().take(24).enumerate() {
            let mut c = c.clone();
            let name = batched.clone();
            tasks.push(tokio::spawn(async move {
                let out = c
                    .infer(
                        &name,
                        vec![InputTensor::f32(
                            "input",
                            vec![n as i64, 16],
                            &rows(n, i, 16),
                        )],
                    )
                    .await
                    .unwrap();
                assert_eq!(out.output("output").unwrap().shape, vec![n as i64, 4]);
                out.f32("output").unwrap()
            }));
        }
        for (i, t) in tasks.into_iter().enumerate() {
            let got = t.await.unwrap();
            let d = max_abs_diff(&got, &want[i]);
            assert!(
                d <= 1e-5,
                "{batched} call {i}: batched answer differs by {d}"
            );
        }
        let s = stats(&mut c, &batched).await;
        assert_eq!(
            s.inference_count,
            sizes.iter().cycle().take(24).sum::<usize>() as u64
        );
        assert!(
            s.execution_count < 24,
            "{batched}: calls were not batched ({} executions)",
            s.execution_count
        );
        assert!(
            s.batch_stats.iter().any(|b| b.batch_size > 5),
            "{batched}: {:?}",
            s.batch_stats
        );
        wait_idle(&mut c, &batched).await;
    }
    // ModelConfig tells clients about the batcher.
    let cfg = c
        .inference()
        .model_config(pb::ModelConfigRequest {
            name: "mlp_torch_batched".into(),
            version: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .config
        .unwrap();
    let db = cfg.dynamic_batching.expect("dynamic_batching");
    assert_eq!(db.max_queue_delay_microseconds, 20000);
    assert_eq!(db.preferred_batch_size, vec![32]);
}

fn slow_call(i: usize) -> (pb::ModelInferRequest, Vec<f32>) {
    let x = rows(1, i, 256);
    (
        infer_request(
            "slow_onnx",
            "",
            vec![InputTensor::f32("input", vec![1, 256], &x)],
        ),
        x,
    )
}

#[tokio::test]
async fn deadlines_and_cancellation_under_load_leave_no_trace() {
    let repo = repository(&["slow_onnx"]);
    edit_config(
        repo.path(),
        "slow_onnx",
        "instances = 1\nmax_queue_size = 64",
        "",
    );
    let node = Node::start(repo.path(), &[]).await.unwrap();
    let mut c = node.client().await;

    let mut normal = Vec::new();
    let mut timed = Vec::new();
    let mut cancelled = Vec::new();
    for i in 0..30 {
        let mut cc = c.clone();
        let (req, x) = slow_call(i);
        match i % 3 {
            0 => normal.push(tokio::spawn(async move {
                let r = cc
                    .inference()
                    .model_infer(req)
                    .await
                    .map(|r| decode_response(r.into_inner()).unwrap());
                (r, x)
            })),
            1 => timed.push(tokio::spawn(async move {
                let mut req = tonic::Request::new(req);
                req.set_timeout(Duration::from_millis(15));
                cc.inference().model_infer(req).await.map(|_| ())
            })),
            _ => cancelled.push(tokio::spawn(async move {
                let _ = cc.inference().model_infer(req).await;
            })),
        }
    }
    tokio::time::sleep(Duration::from_millis(30)).await;
    for t in &cancelled {
        t.abort();
    }
    for t in normal {
        let (r, x) = t.await.unwrap();
        let out = r.expect("calls that were neither cancelled nor late are answered");
        assert_eq!(out.f32("output").unwrap(), x, "slow_onnx is the identity");
    }
    let mut late = 0;
    for t in timed {
        match t.await.unwrap() {
            Ok(()) => {}
            Err(s) => {
                // The client's own timer may fire first (tonic reports it as Cancelled).
                assert!(
                    s.code() == Code::DeadlineExceeded
                        || (s.code() == Code::Cancelled && s.message().contains("Timeout")),
                    "{:?}: {}",
                    s.code(),
                    s.message()
                );
                late += 1;
            }
        }
    }
    assert!(
        late > 0,
        "some 15 ms deadlines must pass behind ten 10 ms calls"
    );
    wait_idle(&mut c, "slow_onnx").await;
    let s = stats(&mut c, "slow_onnx").await;
    assert!(
        s.execution_count < 30,
        "late or cancelled calls were run: {} executions",
        s.execution_count
    );
    // The node serves on.
    let (req, x) = slow_call(99);
    let out = decode_response(c.inference().model_infer(req).await.unwrap().into_inner()).unwrap();
    assert_eq!(out.f32("output").unwrap(), x);
    // A deadline shorter than the queue is answered DEADLINE_EXCEEDED by the node too
    // (the `timeout` parameter, in microseconds, as Triton clients send it).
    let (mut req, _) = slow_call(100);
    req.parameters.insert(
        "timeout".into(),
        pb::InferParameter {
            parameter_choice: Some(pb::infer_parameter::ParameterChoice::Int64Param(1)),
        },
    );
    let e = c.inference().model_infer(req).await.unwrap_err();
    assert_eq!(e.code(), Code::DeadlineExceeded, "{}", e.message());
}

#[tokio::test]
async fn a_full_queue_answers_resource_exhausted_and_the_queued_calls_finish() {
    let repo = repository(&["slow_onnx"]);
    edit_config(
        repo.path(),
        "slow_onnx",
        "instances = 1\nmax_queue_size = 2",
        "",
    );
    let node = Node::start(repo.path(), &[]).await.unwrap();
    let mut c = node.client().await;
    let mut tasks = Vec::new();
    for i in 0..12 {
        let mut cc = c.clone();
        let (req, x) = slow_call(i);
        tasks.push(tokio::spawn(async move {
            (cc.inference().model_infer(req).await, x)
        }));
    }
    // The node stays responsive while its queue is full.
    assert!(c.server_live().await.unwrap());
    let (mut ok, mut full) = (0, 0);
    for t in tasks {
        let (r, x) = t.await.unwrap();
        match r {
            Ok(resp) => {
                assert_eq!(
                    decode_response(resp.into_inner())
                        .unwrap()
                        .f32("output")
                        .unwrap(),
                    x
                );
                ok += 1;
            }
            Err(s) => {
                assert_eq!(s.code(), Code::ResourceExhausted, "{}", s.message());
                assert!(s.message().contains("2 calls queued"), "{}", s.message());
                full += 1;
            }
        }
    }
    assert!(full > 0 && ok >= 3, "ok {ok}, rejected {full}");
    wait_idle(&mut c, "slow_onnx").await;
}

#[tokio::test]
async fn instances_share_one_queue_and_run_at_once() {
    let repo = repository(&["slow_onnx"]);
    edit_config(repo.path(), "slow_onnx", "instances = 2", "");
    let node = Node::start(repo.path(), &[]).await.unwrap();
    let mut c = node.client().await;
    let st = status(&mut c, "slow_onnx").await;
    assert_eq!(st.replicas.len(), 2);
    let mut tasks = Vec::new();
    for i in 0..16 {
        let mut cc = c.clone();
        let (req, x) = slow_call(i);
        tasks.push(tokio::spawn(async move {
            let out = decode_response(cc.inference().model_infer(req).await.unwrap().into_inner())
                .unwrap();
            assert_eq!(out.f32("output").unwrap(), x);
        }));
    }
    let mut both_busy = false;
    while !tasks.iter().all(|t| t.is_finished()) {
        let st = status(&mut c, "slow_onnx").await;
        if st.replicas.iter().all(|r| r.in_flight > 0) {
            both_busy = true;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert!(both_busy, "the two instances never ran at the same time");
    wait_idle(&mut c, "slow_onnx").await;
}
