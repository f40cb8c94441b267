//! A single node over real gRPC on loopback: every backend's models, the protocol's
//! metadata calls, load/unload at run time, supervision, and each class of bad input.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tonic::Code;
use troupe_client::troupe_proto::inference::{
    self as pb, InferParameter, infer_parameter::ParameterChoice,
};
use troupe_client::troupe_proto::troupe as tpb;
use troupe_client::{Client, InputTensor, infer_request};
use troupe_tests::{Node, max_abs_diff, reference, repository, root};

const MLPS: [&str; 3] = ["mlp_onnx", "mlp_torch", "mlp_candle"];

async fn mlp_node(extra: &[&str]) -> (tempfile::TempDir, Node) {
    let repo = repository(&MLPS);
    let node = Node::start(repo.path(), extra).await.expect("node starts");
    (repo, node)
}

fn case_input(c: &troupe_tests::Case) -> InputTensor {
    InputTensor::f32("input", c.shape.clone(), &c.input)
}

async fn infer_status(c: &mut Client, req: pb::ModelInferRequest) -> tonic::Status {
    let shown = format!(
        "{} {:?}",
        req.model_name,
        req.inputs
            .iter()
            .map(|i| (&i.name, &i.datatype, &i.shape))
            .collect::<Vec<_>>()
    );
    match c.inference().model_infer(req).await {
        Ok(_) => panic!("call was expected to fail: {shown}"),
        Err(s) => s,
    }
}

async fn assert_serves(c: &mut Client, model: &str) {
    let case = &reference("mlp.json")[0];
    let out = c
        .infer(model, vec![case_input(case)])
        .await
        .expect("good call still served");
    assert!(max_abs_diff(&out.f32("output").unwrap(), &case.output) <= 1e-5);
}

#[tokio::test]
async fn every_backend_answers_with_the_reference_outputs() {
    let (_repo, node) = mlp_node(&[]).await;
    let mut c = node.client().await;
    for case in reference("mlp.json") {
        let mut answers = Vec::new();
        for model in MLPS {
            let out = c.infer(model, vec![case_input(&case)]).await.unwrap();
            let y = out.f32("output").unwrap();
            let o = out.output("output").unwrap();
            assert_eq!(o.shape, vec![case.shape[0], 4], "{model}");
            let d = max_abs_diff(&y, &case.output);
            assert!(d <= 1e-5, "{model}: max abs diff {d}");
            answers.push(y);
        }
        // The same MLP on three backends gives the same answer.
        assert!(max_abs_diff(&answers[0], &answers[1]) <= 1e-5);
        assert!(max_abs_diff(&answers[0], &answers[2]) <= 1e-5);
    }
}

#[tokio::test]
async fn typed_contents_are_accepted_and_answered_raw() {
    let (_repo, node) = mlp_node(&[]).await;
    let mut c = node.client().await;
    let case = &reference("mlp.json")[1];
    let req = pb::ModelInferRequest {
        model_name: "mlp_candle".into(),
        inputs: vec![pb::model_infer_request::InferInputTensor {
            name: "input".into(),
            datatype: "FP32".into(),
            shape: case.shape.clone(),
            contents: Some(pb::InferTensorContents {
                fp32_contents: case.input.clone(),
                ..Default::default()
            }),
            ..Default::default()
        }],
        ..Default::default()
    };
    let resp = c.inference().model_infer(req).await.unwrap().into_inner();
    let out = troupe_client::decode_response(resp).unwrap();
    assert!(max_abs_diff(&out.f32("output").unwrap(), &case.output) <= 1e-5);

    // A batch over max_batch_size (64) is refused.
    let s = infer_status(
        &mut c,
        raw_req(
            "mlp_onnx",
            vec![("input", "FP32", vec![65, 16])],
            vec![vec![0; 65 * 64]],
        ),
    )
    .await;
    assert_eq!(s.code(), Code::InvalidArgument);
    assert!(s.message().contains("1 to 64"), "{}", s.message());
}

#[tokio::test]
async fn health_metadata_and_config_answer_correctly() {
    let (_repo, node) = mlp_node(&[]).await;
    let mut c = node.client().await;
    assert!(c.server_live().await.unwrap());
    assert!(c.server_ready().await.unwrap());
    for m in MLPS {
        assert!(c.model_ready(m).await.unwrap(), "{m} ready");
    }
    assert!(!c.model_ready("nope").await.unwrap());

    let meta = c
        .inference()
        .model_metadata(pb::ModelMetadataRequest {
            name: "mlp_torch".into(),
            version: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(meta.name, "mlp_torch");
    assert_eq!(meta.platform, "pytorch_libtorch");
    assert_eq!(meta.versions, vec!["1".to_string()]);
    assert_eq!(
        (
            meta.inputs[0].name.as_str(),
            meta.inputs[0].datatype.as_str()
        ),
        ("input", "FP32")
    );
    assert_eq!(meta.inputs[0].shape, vec![-1, 16]);
    assert_eq!(meta.outputs[0].shape, vec![-1, 4]);

    let cfg = c
        .inference()
        .model_config(pb::ModelConfigRequest {
            name: "mlp_onnx".into(),
            version: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .config
        .unwrap();
    assert_eq!(cfg.name, "mlp_onnx");
    assert_eq!(cfg.platform, "onnxruntime_onnx");
    assert_eq!(cfg.backend, "onnx");
    assert_eq!(cfg.max_batch_size, 64);
    assert_eq!(cfg.input[0].data_type, pb::DataType::TypeFp32 as i32);
    assert_eq!(cfg.input[0].dims, vec![16]);
    assert_eq!(cfg.output[0].dims, vec![4]);

    let e = c
        .inference()
        .model_metadata(pb::ModelMetadataRequest {
            name: "mlp_onnx".into(),
            version: "7".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert!(e.message().contains("version 7"), "{}", e.message());

    let sm = c
        .inference()
        .server_metadata(pb::ServerMetadataRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(sm.name, "troupe");
    assert!(sm.extensions.iter().any(|e| e == "statistics"));

    // grpc.health.v1
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", node.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    for service in ["", "inference.GRPCInferenceService"] {
        let r = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            r.status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32,
            "{service:?}"
        );
    }

    // Server reflection, both versions.
    use tonic_reflection::pb::{v1, v1alpha};
    let req = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            v1alpha::server_reflection_request::MessageRequest::ListServices(String::new()),
        ),
    };
    let mut refl = v1alpha::server_reflection_client::ServerReflectionClient::new(channel.clone());
    let mut stream = refl
        .server_reflection_info(tokio_stream::iter(vec![req]))
        .await
        .unwrap()
        .into_inner();
    let resp = stream.message().await.unwrap().unwrap();
    let Some(v1alpha::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        resp.message_response
    else {
        panic!("no service list")
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        names.iter().any(|n| n == "inference.GRPCInferenceService"),
        "{names:?}"
    );
    assert!(names.iter().any(|n| n == "troupe.v1.Models"), "{names:?}");
    let req = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(
            String::new(),
        )),
    };
    let mut refl = v1::server_reflection_client::ServerReflectionClient::new(channel);
    let mut stream = refl
        .server_reflection_info(tokio_stream::iter(vec![req]))
        .await
        .unwrap()
        .into_inner();
    assert!(stream.message().await.unwrap().is_some());
}

#[tokio::test]
async fn models_load_and_unload_at_run_time() {
    let (repo, node) = mlp_node(&[]).await;
    let mut c = node.client().await;

    // Repository API: unload, then load again.
    c.inference()
        .repository_model_unload(pb::RepositoryModelUnloadRequest {
            model_name: "mlp_onnx".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(!c.model_ready("mlp_onnx").await.unwrap());
    let e = c
        .infer("mlp_onnx", vec![case_input(&reference("mlp.json")[0])])
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(Code::NotFound));
    assert_serves(&mut c, "mlp_torch").await;
    let idx = c
        .inference()
        .repository_index(pb::RepositoryIndexRequest::default())
        .await
        .unwrap()
        .into_inner();
    let onnx = idx
        .models
        .iter()
        .find(|m| m.name == "mlp_onnx")
        .expect("listed");
    assert_ne!(onnx.state, "READY");
    c.inference()
        .repository_model_load(pb::RepositoryModelLoadRequest {
            model_name: "mlp_onnx".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(c.model_ready("mlp_onnx").await.unwrap());
    assert_serves(&mut c, "mlp_onnx").await;

    // A model added to the repository after start loads on request.
    troupe_tests::copy_dir(
        &root().join("models/repository/linear_onnx"),
        &repo.path().join("linear_onnx"),
    )
    .unwrap();
    c.inference()
        .repository_model_load(pb::RepositoryModelLoadRequest {
            model_name: "linear_onnx".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let lin = reference("linear.json");
    let out = c
        .infer(
            "linear_onnx",
            vec![InputTensor::f32(
                "input",
                lin[0].shape.clone(),
                &lin[0].input,
            )],
        )
        .await
        .unwrap();
    assert!(max_abs_diff(&out.f32("output").unwrap(), &lin[0].output) <= 1e-5);

    // Models service: declare a model and its backend, then predict.
    let artifact = root().join("models/repository/mlp_candle/1");
    let sha = troupe_sha256(&artifact.join("model.safetensors"));
    let spec = tpb::ModelSpec {
        name: "declared_mlp".into(),
        backend: tpb::BackendKind::Candle as i32,
        artifact_uri: format!("file://{}", artifact.display()),
        sha256: sha,
        inputs: vec![tpb::TensorSpec {
            name: "input".into(),
            data_type: "FP32".into(),
            dims: vec![16],
        }],
        outputs: vec![tpb::TensorSpec {
            name: "output".into(),
            data_type: "FP32".into(),
            dims: vec![4],
        }],
        max_batch_size: 8,
        instances: 2,
        ..Default::default()
    };
    let st = c
        .models()
        .create(tpb::CreateModelRequest {
            spec: Some(spec.clone()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(st.state, tpb::ModelState::Ready as i32);
    assert_eq!(st.replicas.len(), 2);
    assert_serves(&mut c, "declared_mlp").await;
    let e = c
        .models()
        .create(tpb::CreateModelRequest {
            spec: Some(spec),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists);
    let list = c
        .models()
        .list(tpb::ListModelsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(
        list.models
            .iter()
            .any(|m| m.spec.as_ref().is_some_and(|s| s.name == "declared_mlp"))
    );
    let got = c
        .models()
        .get(tpb::GetModelRequest {
            name: "declared_mlp".into(),
            version: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.ready_replicas, 2);
    c.models()
        .delete(tpb::DeleteModelRequest {
            name: "declared_mlp".into(),
            version: String::new(),
        })
        .await
        .unwrap();
    let e = c
        .models()
        .get(tpb::GetModelRequest {
            name: "declared_mlp".into(),
            version: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = c
        .models()
        .delete(tpb::DeleteModelRequest {
            name: "declared_mlp".into(),
            version: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
}

fn troupe_sha256(p: &std::path::Path) -> String {
    let out = std::process::Command::new("sha256sum")
        .arg(p)
        .output()
        .expect("sha256sum");
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

fn fault(req: &mut pb::ModelInferRequest) {
    req.parameters.insert(
        "troupe.fault".into(),
        InferParameter {
            parameter_choice: Some(ParameterChoice::StringParam("crash".into())),
        },
    );
}

#[tokio::test]
async fn a_crashed_model_actor_is_restarted_and_serves_again() {
    let (_repo, node) = mlp_node(&["--enable-fault-injection"]).await;
    let mut c = node.client().await;
    let case = &reference("mlp.json")[0];
    for model in MLPS {
        let mut req = infer_request(model, "", vec![case_input(case)]);
        fault(&mut req);
        let s = infer_status(&mut c, req).await;
        assert_eq!(s.code(), Code::Unavailable, "{model}: {}", s.message());
        // It comes back by itself: poll readiness, then serve.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if c.model_ready(model).await.unwrap()
                && let Ok(out) = c.infer(model, vec![case_input(case)]).await
            {
                assert!(max_abs_diff(&out.f32("output").unwrap(), &case.output) <= 1e-5);
                break;
            }
            assert!(Instant::now() < deadline, "{model} did not come back");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let st = c
            .models()
            .get(tpb::GetModelRequest {
                name: model.into(),
                version: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(st.replicas[0].restarts, 1, "{model}");
    }
    // Without the flag, the parameter is refused.
    let (_repo2, plain) = mlp_node(&[]).await;
    let mut c2 = plain.client().await;
    let mut req = infer_request("mlp_onnx", "", vec![case_input(case)]);
    fault(&mut req);
    assert_eq!(
        infer_status(&mut c2, req).await.code(),
        Code::FailedPrecondition
    );
    assert_serves(&mut c2, "mlp_onnx").await;
}

fn raw_req(
    model: &str,
    inputs: Vec<(&str, &str, Vec<i64>)>,
    raw: Vec<Vec<u8>>,
) -> pb::ModelInferRequest {
    pb::ModelInferRequest {
        model_name: model.into(),
        inputs: inputs
            .into_iter()
            .map(|(n, d, s)| pb::model_infer_request::InferInputTensor {
                name: n.into(),
                datatype: d.into(),
                shape: s,
                ..Default::default()
            })
            .collect(),
        raw_input_contents: raw.into_iter().map(Bytes::from).collect(),
        ..Default::default()
    }
}

#[tokio::test]
async fn each_class_of_bad_input_gets_a_clear_status_and_the_node_serves_on() {
    let (_repo, node) = mlp_node(&["--max-tensor-bytes", "4000"]).await;
    let mut c = node.client().await;
    let ok = || vec![0u8; 16 * 4];
    let cases: Vec<(&str, pb::ModelInferRequest, Code, &str)> = vec![
        (
            "unknown model",
            raw_req("nope", vec![("input", "FP32", vec![1, 16])], vec![ok()]),
            Code::NotFound,
            "'nope'",
        ),
        (
            "unknown version",
            {
                let mut r = raw_req("mlp_onnx", vec![("input", "FP32", vec![1, 16])], vec![ok()]);
                r.model_version = "9".into();
                r
            },
            Code::NotFound,
            "version 9",
        ),
        (
            "wrong input name",
            raw_req("mlp_onnx", vec![("x", "FP32", vec![1, 16])], vec![ok()]),
            Code::InvalidArgument,
            "no input 'x'",
        ),
        (
            "missing input",
            raw_req("mlp_onnx", vec![], vec![]),
            Code::InvalidArgument,
            "missing input 'input'",
        ),
        (
            "extra input",
            raw_req(
                "mlp_onnx",
                vec![
                    ("input", "FP32", vec![1, 16]),
                    ("extra", "FP32", vec![1, 16]),
                ],
                vec![ok(), ok()],
            ),
            Code::InvalidArgument,
            "no input 'extra'",
        ),
        (
            "wrong data type",
            raw_req(
                "mlp_onnx",
                vec![("input", "FP64", vec![1, 16])],
                vec![vec![0; 128]],
            ),
            Code::InvalidArgument,
            "expects FP32",
        ),
        (
            "unknown data type",
            raw_req(
                "mlp_onnx",
                vec![("input", "FP128", vec![1, 16])],
                vec![ok()],
            ),
            Code::InvalidArgument,
            "unsupported datatype",
        ),
        (
            "shape that does not fit",
            raw_req(
                "mlp_torch",
                vec![("input", "FP32", vec![1, 15])],
                vec![vec![0; 60]],
            ),
            Code::InvalidArgument,
            "expects [-1, 16]",
        ),
        (
            "wrong rank",
            raw_req("mlp_candle", vec![("input", "FP32", vec![16])], vec![ok()]),
            Code::InvalidArgument,
            "shape",
        ),
        (
            "raw bytes too short",
            raw_req(
                "mlp_onnx",
                vec![("input", "FP32", vec![1, 16])],
                vec![vec![0; 63]],
            ),
            Code::InvalidArgument,
            "63 raw bytes",
        ),
        (
            "raw bytes too long",
            raw_req(
                "mlp_onnx",
                vec![("input", "FP32", vec![1, 16])],
                vec![vec![0; 68]],
            ),
            Code::InvalidArgument,
            "68 raw bytes",
        ),
        (
            "raw buffer count",
            raw_req(
                "mlp_onnx",
                vec![("input", "FP32", vec![1, 16])],
                vec![ok(), ok()],
            ),
            Code::InvalidArgument,
            "2 buffers",
        ),
        (
            "negative dimension",
            raw_req(
                "mlp_onnx",
                vec![("input", "FP32", vec![-1, 16])],
                vec![ok()],
            ),
            Code::InvalidArgument,
            "negative dimension",
        ),
        (
            "overflowing dimensions",
            raw_req(
                "mlp_onnx",
                vec![("input", "FP32", vec![i64::MAX, i64::MAX])],
                vec![ok()],
            ),
            Code::InvalidArgument,
            "overflows",
        ),
        (
            "tensor over the size limit",
            raw_req(
                "mlp_onnx",
                vec![("input", "FP32", vec![64, 16])],
                vec![vec![0; 4096]],
            ),
            Code::ResourceExhausted,
            "4096 bytes",
        ),
        (
            "unknown requested output",
            {
                let mut r = raw_req("mlp_onnx", vec![("input", "FP32", vec![1, 16])], vec![ok()]);
                r.outputs
                    .push(pb::model_infer_request::InferRequestedOutputTensor {
                        name: "logits".into(),
                        parameters: HashMap::new(),
                    });
                r
            },
            Code::InvalidArgument,
            "no output 'logits'",
        ),
        (
            "no data at all",
            raw_req("mlp_onnx", vec![("input", "FP32", vec![1, 16])], vec![]),
            Code::InvalidArgument,
            "no data",
        ),
    ];
    for (what, req, code, needle) in cases {
        let s = infer_status(&mut c, req).await;
        assert_eq!(s.code(), code, "{what}: {}", s.message());
        assert!(
            s.message().contains(needle),
            "{what}: message {:?} lacks {needle:?}",
            s.message()
        );
        assert_serves(&mut c, "mlp_onnx").await;
    }
}

#[tokio::test]
async fn nan_and_inf_inputs_are_served() {
    let (_repo, node) = mlp_node(&[]).await;
    let mut c = node.client().await;
    let mut x = vec![0.25f32; 32];
    x[0] = f32::NAN;
    x[1] = f32::INFINITY;
    x[17] = f32::NEG_INFINITY;
    for m in MLPS {
        let out = c
            .infer(m, vec![InputTensor::f32("input", vec![2, 16], &x)])
            .await
            .unwrap();
        assert_eq!(out.f32("output").unwrap().len(), 8, "{m}");
    }
    assert_serves(&mut c, "mlp_torch").await;
}

#[tokio::test]
async fn corrupt_files_and_wrong_sha256_fail_the_load_clearly_and_nothing_else() {
    let repo = repository(&["mlp_onnx", "mlp_torch", "mlp_candle"]);
    // A corrupt ONNX file.
    troupe_tests::copy_dir(
        &root().join("models/repository/mlp_onnx"),
        &repo.path().join("broken_onnx"),
    )
    .unwrap();
    std::fs::write(
        repo.path().join("broken_onnx/1/model.onnx"),
        b"\x08\x07garbage, not a model",
    )
    .unwrap();
    // A corrupt TorchScript file.
    troupe_tests::copy_dir(
        &root().join("models/repository/mlp_torch"),
        &repo.path().join("broken_torch"),
    )
    .unwrap();
    std::fs::write(
        repo.path().join("broken_torch/1/model.pt"),
        b"PK\x03\x04 truncated",
    )
    .unwrap();
    // A good file whose declared sha256 is wrong.
    troupe_tests::copy_dir(
        &root().join("models/repository/mlp_candle"),
        &repo.path().join("wrong_sha"),
    )
    .unwrap();
    let cfg = repo.path().join("wrong_sha/config.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        format!("{text}\n[sha256]\n\"1\" = \"{}\"\n", "0".repeat(64)),
    )
    .unwrap();

    let node = Node::start(repo.path(), &[]).await.unwrap();
    let mut c = node.client().await;
    for m in MLPS {
        assert_serves(&mut c, m).await;
    }
    for (name, needle) in [
        ("broken_onnx", "broken_onnx"),
        ("broken_torch", "broken_torch"),
        ("wrong_sha", "sha256 mismatch"),
    ] {
        assert!(!c.model_ready(name).await.unwrap(), "{name}");
        let e = c
            .inference()
            .repository_model_load(pb::RepositoryModelLoadRequest {
                model_name: name.into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(
            e.code(),
            Code::FailedPrecondition,
            "{name}: {}",
            e.message()
        );
        assert!(e.message().contains(needle), "{name}: {}", e.message());
        let idx = c
            .inference()
            .repository_index(pb::RepositoryIndexRequest::default())
            .await
            .unwrap()
            .into_inner();
        let entry = idx.models.iter().find(|m| m.name == name).expect("indexed");
        assert_eq!(entry.state, "UNAVAILABLE");
        assert!(!entry.reason.is_empty());
    }
    // A Models.Create with a wrong digest is refused the same way.
    let spec = tpb::ModelSpec {
        name: "declared".into(),
        backend: tpb::BackendKind::Onnx as i32,
        artifact_uri: root()
            .join("models/repository/mlp_onnx/1/model.onnx")
            .display()
            .to_string(),
        sha256: "ab".repeat(32),
        inputs: vec![tpb::TensorSpec {
            name: "input".into(),
            data_type: "FP32".into(),
            dims: vec![16],
        }],
        outputs: vec![tpb::TensorSpec {
            name: "output".into(),
            data_type: "FP32".into(),
            dims: vec![4],
        }],
        max_batch_size: 8,
        ..Default::default()
    };
    let e = c
        .models()
        .create(tpb::CreateModelRequest {
            spec: Some(spec),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(e.message().contains("sha256"), "{}", e.message());
    for m in MLPS {
        assert_serves(&mut c, m).await;
    }
}

#[tokio::test]
async fn model_names_with_path_characters_are_rejected() {
    let (_repo, node) = mlp_node(&[]).await;
    let mut c = node.client().await;
    for name in [
        "../mlp_onnx",
        "..",
        "a/b",
        "/etc/passwd",
        "mlp_onnx/../mlp_torch",
    ] {
        let e = c
            .inference()
            .repository_model_load(pb::RepositoryModelLoadRequest {
                model_name: name.into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{name}: {}", e.message());
        assert!(
            e.message().contains("invalid model name"),
            "{}",
            e.message()
        );
        let spec = tpb::ModelSpec {
            name: name.into(),
            ..Default::default()
        };
        let e = c
            .models()
            .create(tpb::CreateModelRequest {
                spec: Some(spec),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{name}");
    }
    let e = c
        .inference()
        .repository_model_load(pb::RepositoryModelLoadRequest {
            model_name: "not_there".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert_serves(&mut c, "mlp_onnx").await;
}

#[tokio::test]
async fn statistics_count_calls() {
    let (_repo, node) = mlp_node(&[]).await;
    let mut c = node.client().await;
    for _ in 0..3 {
        assert_serves(&mut c, "mlp_onnx").await;
    }
    let _ = c
        .infer(
            "mlp_onnx",
            vec![InputTensor::f32("input", vec![1, 15], &[0.0; 15])],
        )
        .await;
    let s = c
        .inference()
        .model_statistics(pb::ModelStatisticsRequest {
            name: "mlp_onnx".into(),
            version: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let st = &s.model_stats[0];
    assert_eq!(st.inference_count, 9, "3 calls of batch 3");
    assert_eq!(st.execution_count, 3);
    let is = st.inference_stats.unwrap();
    assert_eq!(is.success.unwrap().count, 3);
    // Each execution has its three compute phases, counted alike (perf_analyzer checks),
    // and each phase took some time.
    let (input, infer, output) = (
        is.compute_input.unwrap(),
        is.compute_infer.unwrap(),
        is.compute_output.unwrap(),
    );
    assert_eq!((input.count, infer.count, output.count), (3, 3, 3));
    assert!(input.ns > 0 && infer.ns > 0 && output.ns > 0, "{is:?}");
}

#[tokio::test]
async fn sigterm_finishes_calls_in_flight_and_exits_zero() {
    let (_repo, mut node) = mlp_node(&[]).await;
    let addr = node.addr.clone();
    let case = reference("mlp.json").remove(0);
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let addr = addr.clone();
        let x = case.input.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = Client::connect(&addr).await.unwrap();
            let mut ok = 0;
            loop {
                match c
                    .infer(
                        "mlp_torch",
                        vec![InputTensor::f32("input", vec![3, 16], &x)],
                    )
                    .await
                {
                    Ok(_) => ok += 1,
                    Err(e) => return (ok, e.code()),
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let status = tokio::task::spawn_blocking(move || node.terminate().map(|s| (s, node)))
        .await
        .unwrap()
        .unwrap();
    assert!(status.0.success(), "exit status {:?}", status.0);
    for t in tasks {
        let (ok, code) = t.await.unwrap();
        assert!(ok > 0, "calls were served before the signal");
        // After shutdown the only failure is that the server is gone.
        assert!(
            matches!(
                code,
                Some(Code::Unavailable) | Some(Code::Unknown) | Some(Code::Cancelled) | None
            ),
            "{code:?}"
        );
    }
}

#[tokio::test]
async fn stock_tritonclient_works_unchanged() {
    let (_repo, node) = mlp_node(&[]).await;
    let reference = root().join("models/reference/mlp.json");
    let (ok, text) = troupe_tests::run_python(
        "tests/python/tritonclient_check.py",
        &[&node.addr, reference.to_str().expect("utf-8 path")],
    );
    assert!(ok, "tritonclient check failed:\n{text}");
    assert!(text.contains("all checks passed"), "{text}");
}

/// On a machine without a GPU (no NVIDIA driver, so NVML finds none), a model declared
/// with `device = GPU` is refused FAILED_PRECONDITION naming what is missing, on every
/// backend, and the node serves on; `device = ANY` runs it on the CPU.
#[tokio::test]
async fn a_gpu_model_without_a_gpu_is_refused_naming_the_driver_and_any_runs_on_cpu() {
    if std::path::Path::new("/dev/nvidiactl").exists() {
        return; // a GPU machine: scripts/gpu_check.sh covers it
    }
    let repo = repository(&[]);
    let node = Node::start(repo.path(), &[]).await.unwrap();
    let mut c = node.client().await;
    for (backend, dir, file) in [
        (tpb::BackendKind::Onnx, "mlp_onnx", "model.onnx"),
        (tpb::BackendKind::Torch, "mlp_torch", "model.pt"),
        (tpb::BackendKind::Candle, "mlp_candle", "model.safetensors"),
    ] {
        let artifact = root().join("models/repository").join(dir).join("1");
        let spec = |name: &str, device: tpb::DevicePreference| tpb::ModelSpec {
            backend: backend as i32,
            artifact_uri: artifact.display().to_string(),
            sha256: troupe_sha256(&artifact.join(file)),
            device: device as i32,
            ..troupe_tests::mlp_spec(name, 1, 0)
        };
        let e = c
            .models()
            .create(tpb::CreateModelRequest {
                spec: Some(spec(&format!("{dir}_gpu"), tpb::DevicePreference::Gpu)),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::FailedPrecondition, "{dir}: {}", e.message());
        assert!(
            e.message().contains("no GPU") && e.message().contains("NVIDIA driver"),
            "{dir}: {}",
            e.message()
        );
        let name = format!("{dir}_any");
        let st = c
            .models()
            .create(tpb::CreateModelRequest {
                spec: Some(spec(&name, tpb::DevicePreference::Any)),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(st.state, tpb::ModelState::Ready as i32, "{dir}");
        assert_serves(&mut c, &name).await;
    }
}
