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

/// all-MiniLM-L6-v2 (made by scripts/make_minilm.py) and its numpy reference.
mod minilm {
    use super::*;

    pub struct Reference {
        pub ids: Vec<Vec<i64>>,
        pub embeddings: Vec<Vec<f32>>,
    }

    pub fn reference() -> Reference {
        let path = models().join("reference/minilm.json");
        let text = std::fs::read_to_string(&path).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let rows = |k: &str| -> Vec<Vec<f64>> {
            v[k].as_array()
                .unwrap()
                .iter()
                .map(|r| {
                    r.as_array()
                        .unwrap()
                        .iter()
                        .map(|x| x.as_f64().unwrap())
                        .collect()
                })
                .collect()
        };
        Reference {
            ids: rows("input_ids")
                .into_iter()
                .map(|r| r.into_iter().map(|x| x as i64).collect())
                .collect(),
            embeddings: rows("embeddings")
                .into_iter()
                .map(|r| r.into_iter().map(|x| x as f32).collect())
                .collect(),
        }
    }

    pub fn dir(model: &str) -> PathBuf {
        let d = models().join("repository").join(model).join("1");
        assert!(
            d.read_dir().is_ok_and(|mut e| e.next().is_some()),
            "{} is missing: run scripts/setup.sh",
            d.display()
        );
        d
    }

    /// The encoder's signature: what ONNX and candle describe, what torch declares.
    pub fn signature(kind: BackendKind, model: &str) -> Signature {
        let declared = [
            ("input_ids", true),
            ("attention_mask", true),
            ("token_type_ids", true),
            ("last_hidden_state", false),
        ]
        .map(|(n, input)| troupe_backends::FullSpec {
            name: n.into(),
            dtype: if input { DataType::I64 } else { DataType::F32 },
            dims: if input {
                vec![-1, -1]
            } else {
                vec![-1, -1, 384]
            },
            symbols: vec!["batch".into()],
            input,
        });
        let described = match kind {
            BackendKind::Torch => declared.to_vec(),
            _ => troupe_backends::describe(kind, &dir(model), &LoadOptions::default()).unwrap(),
        };
        troupe_backends::complete(model, &described, Default::default()).unwrap()
    }

    /// Rows `[lo, hi)` of the reference as one padded batch: ids, mask, types.
    pub fn batch(r: &Reference, lo: usize, hi: usize) -> Vec<Tensor> {
        let len = r.ids[lo..hi].iter().map(Vec::len).max().unwrap();
        let (mut ids, mut mask) = (Vec::new(), Vec::new());
        for row in &r.ids[lo..hi] {
            ids.extend(
                row.iter()
                    .copied()
                    .chain(std::iter::repeat_n(0, len - row.len())),
            );
            mask.extend(
                std::iter::repeat_n(1i64, row.len()).chain(std::iter::repeat_n(0, len - row.len())),
            );
        }
        let t = |v: Vec<i64>| {
            Tensor::new(
                DataType::I64,
                vec![hi - lo, len],
                bytemuck::cast_slice(&v).to_vec().into(),
            )
            .unwrap()
        };
        let types = vec![0i64; ids.len()];
        vec![t(ids), t(mask), t(types)]
    }

    /// Mean over the mask, then L2 (sentence-transformers' pooling and Normalize).
    pub fn pool(hidden: &Tensor, mask: &Tensor) -> Vec<Vec<f32>> {
        let (rows, len, width) = (hidden.shape[0], hidden.shape[1], hidden.shape[2]);
        let h = hidden.to_f32().unwrap();
        let m = mask.to_f64_lossy();
        (0..rows)
            .map(|r| {
                let mut v = vec![0f32; width];
                let n: f64 = m[r * len..(r + 1) * len].iter().sum();
                for t in 0..len {
                    if m[r * len + t] > 0.0 {
                        for d in 0..width {
                            v[d] += h[(r * len + t) * width + d];
                        }
                    }
                }
                v.iter_mut().for_each(|x| *x /= n as f32);
                let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
                v.iter_mut().for_each(|x| *x /= norm);
                v
            })
            .collect()
    }

    pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
        let dot: f64 = a
            .iter()
            .zip(b)
            .map(|(x, y)| f64::from(*x) * f64::from(*y))
            .sum();
        let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
        let nb: f64 = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
        dot / (na * nb)
    }
}

#[test]
fn minilm_matches_the_numpy_reference_on_every_backend() {
    let r = minilm::reference();
    let n = r.ids.len();
    let mut per_backend = Vec::new();
    for (kind, model) in [
        (BackendKind::Onnx, "minilm_onnx"),
        (BackendKind::Torch, "minilm_torch"),
        (BackendKind::Candle, "minilm_candle"),
    ] {
        let sig = minilm::signature(kind, model);
        assert_eq!(sig.inputs[0].name, "input_ids", "{model}");
        let b = troupe_backends::load(kind, &minilm::dir(model), &sig, &LoadOptions::default())
            .unwrap_or_else(|e| panic!("{model}: {e}"));
        let mut got = Vec::new();
        // Padded batches of several sizes: padding must not change a row's embedding.
        for (lo, hi) in [(0, 1), (1, 4), (4, n)] {
            let inputs = minilm::batch(&r, lo, hi);
            let out = b.infer(&inputs).unwrap_or_else(|e| panic!("{model}: {e}"));
            got.extend(minilm::pool(&out[0], &inputs[1]));
        }
        for (i, (g, w)) in got.iter().zip(&r.embeddings).enumerate() {
            let c = minilm::cosine(g, w);
            assert!(
                c >= 0.9999,
                "{model}: sentence {i}: cosine {c} to the reference"
            );
        }
        per_backend.push((model, got));
    }
    for w in per_backend.windows(2) {
        for (i, (a, b)) in w[0].1.iter().zip(&w[1].1).enumerate() {
            let c = minilm::cosine(a, b);
            assert!(
                c >= 0.9999,
                "{} vs {}: sentence {i}: cosine {c}",
                w[0].0,
                w[1].0
            );
        }
    }
}

#[test]
fn hugging_face_folders_are_checked_at_load() {
    let src = minilm::dir("minilm_candle");
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
    let sig = minilm::signature(BackendKind::Candle, "minilm_candle");
    let with_config = |edit: &dyn Fn(&mut serde_json::Value)| {
        let dir = tempfile::tempdir().unwrap();
        let mut c = config.clone();
        edit(&mut c);
        std::fs::write(dir.path().join("config.json"), c.to_string()).unwrap();
        let w = dir.path().join("model.safetensors");
        if std::fs::hard_link(src.join("model.safetensors"), &w).is_err() {
            std::fs::copy(src.join("model.safetensors"), &w).unwrap();
        }
        let e = troupe_backends::load(
            BackendKind::Candle,
            dir.path(),
            &sig,
            &LoadOptions::default(),
        )
        .err()
        .expect("load should fail");
        (dir, e.to_string())
    };
    let (_d, e) = with_config(&|c| c["model_type"] = "gpt2".into());
    assert!(
        e.contains("unknown architecture 'gpt2'") && e.contains("bert"),
        "{e}"
    );
    let (_d, e) = with_config(&|c| c["hidden_size"] = 768.into());
    assert!(
        e.contains("shape"),
        "weights that disagree with config.json: {e}"
    );
    let (_d, e) = with_config(&|c| {
        c.as_object_mut().unwrap().remove("model_type");
    });
    assert!(e.contains("model_type"), "{e}");
}

#[test]
fn onnx_and_candle_describe_their_tensors_and_torch_does_not() {
    let s = minilm::signature(BackendKind::Onnx, "minilm_onnx");
    assert_eq!(s.max_batch_size, troupe_backends::AUTO_MAX_BATCH_SIZE);
    assert_eq!(s.outputs[0].name, "last_hidden_state");
    assert_eq!(s.outputs[0].dims, vec![-1, 384]);
    let c = minilm::signature(BackendKind::Candle, "minilm_candle");
    assert_eq!(
        c.inputs.iter().map(|i| &i.name).collect::<Vec<_>>(),
        ["input_ids", "attention_mask", "token_type_ids"]
    );
    assert_eq!(c.outputs, s.outputs);
    let e = troupe_backends::describe(
        BackendKind::Torch,
        &minilm::dir("minilm_torch"),
        &LoadOptions::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("needs a config.toml"), "{e}");
}

/// On a machine without a GPU, each backend asked for `cuda:0` refuses with a `Device`
/// error (FAILED_PRECONDITION on the wire) naming what is missing: the ONNX Runtime
/// library without a CUDA execution provider, libtorch without CUDA, candle without a
/// CUDA device.
#[test]
fn a_gpu_model_on_a_machine_without_one_names_what_is_missing() {
    if std::path::Path::new("/dev/nvidiactl").exists() {
        return; // a GPU machine: scripts/gpu_check.sh covers it
    }
    let sig = mlp_sig(16, 4);
    let opts = LoadOptions {
        device: troupe_backends::Device::Cuda(0),
        ..LoadOptions::default()
    };
    for (kind, model, names) in [
        (
            BackendKind::Onnx,
            "mlp_onnx",
            &["libonnxruntime", "no CUDA execution provider"][..],
        ),
        (BackendKind::Torch, "mlp_torch", &["libtorch", "CUDA"][..]),
        (BackendKind::Candle, "mlp_candle", &["cuda:0", "candle"][..]),
    ] {
        let dir = models().join("repository").join(model).join("1");
        match troupe_backends::load(kind, &dir, &sig, &opts) {
            Err(BackendError::Device(msg)) => {
                for n in names {
                    assert!(msg.contains(n), "{kind}: {n:?} not in {msg:?}");
                }
            }
            Err(other) => panic!("{kind}: expected a device error, got {other}"),
            Ok(_) => panic!("{kind}: loaded on cuda:0 without a GPU"),
        }
    }
}
