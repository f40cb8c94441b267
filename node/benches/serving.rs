//! The serving overhead, measured in one run: the in-process backend call for the MLP on
//! each backend (the baseline), then the same call end to end through a node over gRPC on
//! loopback (client -> tonic -> validation -> replica actor -> blocking thread -> backend
//! -> response). `scripts/bench.sh` runs this and prints the medians.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use troupe_backends::{Backend, BackendKind, DataType, LoadOptions, Signature, Tensor, TensorSpec};
use troupe_client::{Client, InputTensor};
use troupe_node::{NodeOptions, ServeOptions};

const MODELS: [(BackendKind, &str); 3] = [
    (BackendKind::Onnx, "mlp_onnx"),
    (BackendKind::Torch, "mlp_torch"),
    (BackendKind::Candle, "mlp_candle"),
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn ort_lib() -> PathBuf {
    let p = PathBuf::from(
        std::env::var("ORT_DYLIB_PATH").expect("ORT_DYLIB_PATH (set by .cargo/config.toml)"),
    );
    if p.is_relative() { root().join(p) } else { p }
}

fn serving(c: &mut Criterion) {
    // SAFETY: set before any thread is spawned (see RECIPES: candle needs it).
    unsafe { std::env::set_var("RAYON_NUM_THREADS", "1") };
    tch::set_num_threads(1);
    tch::set_num_interop_threads(1);
    let sig = Signature {
        inputs: vec![TensorSpec {
            name: "input".into(),
            dtype: DataType::F32,
            dims: vec![16],
        }],
        outputs: vec![TensorSpec {
            name: "output".into(),
            dtype: DataType::F32,
            dims: vec![4],
        }],
        max_batch_size: 64,
    };
    let x: Vec<f32> = (0..16).map(|i| i as f32 / 16.0).collect();
    let input = Tensor::from_f32(vec![1, 16], &x).expect("tensor");
    let opts = LoadOptions {
        threads: 1,
        onnxruntime_lib: Some(ort_lib()),
        ..Default::default()
    };

    let mut g = c.benchmark_group("mlp_batch1");
    g.measurement_time(Duration::from_secs(4))
        .warm_up_time(Duration::from_secs(1))
        .sample_size(60);
    for (kind, model) in MODELS {
        let dir = root().join("models/repository").join(model).join("1");
        let b: Arc<dyn Backend> =
            Arc::from(troupe_backends::load(kind, &dir, &sig, &opts).expect("load"));
        let inputs = vec![input.clone()];
        g.bench_function(format!("in_process/{kind}"), |bench| {
            bench.iter(|| b.infer(&inputs).expect("infer"))
        });
    }

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (addr, stop) = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let serve_opts = ServeOptions {
            node: NodeOptions {
                repository: Some(root().join("models/repository")),
                onnxruntime_lib: Some(ort_lib()),
                ..Default::default()
            },
            node_id: "bench".into(),
            max_message_bytes: 64 << 20,
            membership: None,
            metrics_listen: None,
            trace_ui: None,
            tls: None,
            tokens: Default::default(),
        };
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(troupe_node::serve(serve_opts, listener, async {
            let _ = rx.await;
        }));
        loop {
            if let Ok(mut c) = Client::connect(&addr).await
                && c.server_ready().await.unwrap_or(false)
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        (addr, tx)
    });
    // The node's own path without the network: lookup, validation, replica actor,
    // blocking thread, backend, response encoding.
    let registry = rt.block_on(async {
        let reg = troupe_node::Registry::start(NodeOptions {
            repository: Some(root().join("models/repository")),
            onnxruntime_lib: Some(ort_lib()),
            ..Default::default()
        })
        .await
        .expect("registry");
        for (_, model) in MODELS {
            reg.load_from_repository(model).await.expect("load");
        }
        reg
    });
    for (kind, model) in MODELS {
        let req = troupe_client::infer_request(
            model,
            "",
            vec![InputTensor::f32("input", vec![1, 16], &x)],
        );
        let reg = registry.clone();
        g.bench_function(format!("node_no_network/{kind}"), |bench| {
            bench.to_async(&rt).iter(|| {
                let (reg, req) = (reg.clone(), req.clone());
                async move {
                    let m = reg.get(&req.model_name, "").expect("model");
                    let inputs = troupe_node::convert::request_inputs(
                        model,
                        &req,
                        &m.def.signature,
                        1 << 20,
                    )
                    .expect("inputs");
                    let out = m.infer(inputs, 1, None, false).await.expect("infer");
                    troupe_node::convert::response(&req, "1", &m.def.signature, out)
                        .expect("response")
                }
            })
        });
    }
    let client = rt.block_on(Client::connect(&addr)).expect("connect");
    g.bench_function("grpc/server_live", |bench| {
        bench.to_async(&rt).iter(|| {
            let mut c = client.clone();
            async move { c.server_live().await.expect("live") }
        })
    });
    for (kind, model) in MODELS {
        g.bench_function(format!("grpc/{kind}"), |bench| {
            bench.to_async(&rt).iter(|| {
                let mut c = client.clone();
                let x = x.clone();
                async move {
                    c.infer(model, vec![InputTensor::f32("input", vec![1, 16], &x)])
                        .await
                        .expect("infer")
                }
            })
        });
    }
    g.finish();
    let _ = stop.send(());
}

criterion_group!(benches, serving);
criterion_main!(benches);
