//! Each backend runs the example models from `models/` and must reproduce the stored
//! reference outputs (computed independently in numpy) within 1e-5.

use std::path::{Path, PathBuf};

use troupe_backends::{
    Backend, BackendError, BackendKind, DataType, LoadOptions, Signature, Tensor, TensorSpec,
};

fn models() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models")
}

fn mlp_sig(inp: usize, out: usize) -> Signature {
    Signature {
        inputs: vec![TensorSpec {
            name: "input".into(),
            dtype: DataType::F32,
            dims: vec![inp as i64],
        }],
        outputs: vec![TensorSpec {
            name: "output".into(),
            dtype: DataType::F32,
            dims: vec![out as i64],
        }],
        max_batch_size: 64,
    }
}

struct Case {
    input: Tensor,
    output: Vec<f32>,
}

fn cases(file: &str) -> Vec<Case> {
    let text = std::fs::read_to_string(models().join("reference").join(file)).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let vec_of = |x: &serde_json::Value| -> Vec<f32> {
        x.as_array()
            .unwrap()
            .iter()
            .map(|f| f.as_f64().unwrap() as f32)
            .collect()
    };
    v["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let shape: Vec<usize> = c["input"]["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap() as usize)
                .collect();
            Case {
                input: Tensor::from_f32(shape, &vec_of(&c["input"]["data"])).unwrap(),
                output: vec_of(&c["output"]["data"]),
            }
        })
        .collect()
}

fn load(kind: BackendKind, model: &str, sig: &Signature) -> Box<dyn Backend> {
    let dir = models().join("repository").join(model).join("1");
    troupe_backends::load(kind, &dir, sig, &LoadOptions::default()).unwrap()
}

fn assert_close(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= 1e-5, "{what}[{i}]: got {g}, want {w}");
    }
}

#[test]
fn mlp_matches_reference_on_every_backend() {
    let sig = mlp_sig(16, 4);
    for (kind, model) in [
        (BackendKind::Onnx, "mlp_onnx"),
        (BackendKind::Torch, "mlp_torch"),
        (BackendKind::Candle, "mlp_candle"),
    ] {
        let b = load(kind, model, &sig);
        for c in cases("mlp.json") {
            sig.check_inputs(std::slice::from_ref(&c.input)).unwrap();
            let out = b.infer(std::slice::from_ref(&c.input)).unwrap();
            sig.check_outputs(&out).unwrap();
            assert_close(&out[0].to_f32().unwrap(), &c.output, &format!("{kind}"));
        }
    }
}

#[test]
fn linear_matches_reference() {
    let sig = mlp_sig(8, 1);
    for (kind, model) in [
        (BackendKind::Onnx, "linear_onnx"),
        (BackendKind::Candle, "linear_candle"),
    ] {
        let b = load(kind, model, &sig);
        for c in cases("linear.json") {
            let out = b.infer(std::slice::from_ref(&c.input)).unwrap();
            assert_close(&out[0].to_f32().unwrap(), &c.output, &format!("{kind}"));
        }
    }
}

#[test]
fn nan_and_inf_are_served() {
    let sig = mlp_sig(16, 4);
    let mut v = vec![0.5f32; 16];
    v[0] = f32::NAN;
    v[1] = f32::INFINITY;
    let x = Tensor::from_f32(vec![1, 16], &v).unwrap();
    for (kind, model) in [
        (BackendKind::Onnx, "mlp_onnx"),
        (BackendKind::Torch, "mlp_torch"),
        (BackendKind::Candle, "mlp_candle"),
    ] {
        let out = load(kind, model, &sig)
            .infer(std::slice::from_ref(&x))
            .unwrap();
        assert_eq!(out[0].shape, vec![1, 4], "{kind}");
    }
}

#[test]
fn corrupt_artifacts_are_load_errors() {
    let dir = tempfile_dir();
    let sig = mlp_sig(16, 4);
    for kind in [BackendKind::Onnx, BackendKind::Torch, BackendKind::Candle] {
        let f = dir.join(kind.default_artifact());
        std::fs::write(&f, b"this is not a model").unwrap();
        std::fs::write(
            dir.join("model.json"),
            r#"{"architecture":"mlp","sizes":[16,32,4],"activations":["relu","none"]}"#,
        )
        .unwrap();
        match troupe_backends::load(kind, &dir, &sig, &LoadOptions::default()) {
            Err(BackendError::Load(msg)) => assert!(!msg.is_empty()),
            Err(other) => panic!("{kind}: expected a load error, got {other}"),
            Ok(_) => panic!("{kind}: a corrupt artifact loaded"),
        }
    }
}

#[test]
fn config_that_disagrees_with_the_onnx_model_is_rejected() {
    let mut sig = mlp_sig(16, 4);
    sig.inputs[0].name = "pixels".into();
    let dir = models().join("repository/mlp_onnx/1");
    let e = troupe_backends::load(BackendKind::Onnx, &dir, &sig, &LoadOptions::default())
        .err()
        .unwrap();
    assert!(e.to_string().contains("pixels"), "{e}");
}

fn tempfile_dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("troupe-backends-test-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn unaligned_and_aligned_input_buffers_give_the_same_answer() {
    // Request buffers may start anywhere: zero-copy views are used only when aligned.
    let sig = mlp_sig(16, 4);
    let c = &cases("mlp.json")[0];
    let mut raw = vec![0u8];
    raw.extend_from_slice(&c.input.data);
    let unaligned = bytes::Bytes::from(raw).slice(1..);
    let t = Tensor::new(DataType::F32, c.input.shape.clone(), unaligned).unwrap();
    for (kind, model) in [
        (BackendKind::Onnx, "mlp_onnx"),
        (BackendKind::Torch, "mlp_torch"),
        (BackendKind::Candle, "mlp_candle"),
    ] {
        let b = load(kind, model, &sig);
        let a = b.infer(std::slice::from_ref(&c.input)).unwrap();
        let u = b.infer(std::slice::from_ref(&t)).unwrap();
        assert_eq!(a[0].to_f32().unwrap(), u[0].to_f32().unwrap(), "{kind}");
        assert_close(
            &u[0].to_f32().unwrap(),
            &c.output,
            &format!("{kind} unaligned"),
        );
    }
}
