//! Writes the TorchScript example models (no Python torch needed).
//!
//! `cargo run -p troupe-backends --example export_torchscript -- MODELS_DIR [--bench]`
//!
//! * `MODELS_DIR/repository/mlp_torch/1/model.pt`: the MLP traced from
//!   `weights.safetensors` (the same weights as the ONNX and candle MLPs).
//! * with `--bench`: `MODELS_DIR/bench/resnet18_torch/1/model.pt`, a ResNet-18 with random weights.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use tch::{CModule, Kind, Tensor, nn};

fn export_mlp(models: &std::path::Path) -> Result<()> {
    let dir = models.join("repository/mlp_torch/1");
    let weights = Tensor::read_safetensors(dir.join("weights.safetensors"))
        .context("reading weights.safetensors (run scripts/make_models.py first)")?;
    let get = |n: &str| -> Result<Tensor> {
        weights
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, t)| t.shallow_clone())
            .with_context(|| format!("tensor {n} missing"))
    };
    let (w0, b0, w1, b1) = (
        get("layers.0.weight")?,
        get("layers.0.bias")?,
        get("layers.1.weight")?,
        get("layers.1.bias")?,
    );
    let example = Tensor::zeros([2, w0.size()[1]], (Kind::Float, tch::Device::Cpu));
    let mut f = |xs: &[Tensor]| -> Vec<Tensor> {
        let h = xs[0].linear(&w0, Some(&b0)).relu();
        vec![h.linear(&w1, Some(&b1))]
    };
    let module = CModule::create_by_tracing("MLP", "forward", &[example], &mut f)?;
    let out = dir.join("model.pt");
    module.save(&out)?;
    println!("wrote {}", out.display());
    Ok(())
}

fn export_resnet(models: &std::path::Path) -> Result<()> {
    tch::manual_seed(1);
    let mut vs = nn::VarStore::new(tch::Device::Cpu);
    let net = tch::vision::resnet::resnet18(&vs.root(), 1000);
    vs.freeze(); // constants in the trace, not parameters that require grad
    let example = Tensor::zeros([1, 3, 224, 224], (Kind::Float, tch::Device::Cpu));
    let mut f = |xs: &[Tensor]| -> Vec<Tensor> { vec![xs[0].apply_t(&net, false)] };
    let module =
        tch::no_grad(|| CModule::create_by_tracing("ResNet18", "forward", &[example], &mut f))?;
    let dir = models.join("bench/resnet18_torch/1");
    std::fs::create_dir_all(&dir)?;
    module.save(dir.join("model.pt"))?;
    let cfg = models.join("bench/resnet18_onnx/config.toml");
    let text = std::fs::read_to_string(&cfg)
        .context("bench/resnet18_onnx/config.toml (run make_models.py --bench)")?;
    std::fs::write(
        models.join("bench/resnet18_torch/config.toml"),
        text.replace("backend = \"onnx\"", "backend = \"torch\""),
    )?;
    println!("wrote {}", dir.join("model.pt").display());
    Ok(())
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let Some(models) = args.next().map(PathBuf::from) else {
        bail!("usage: export_torchscript MODELS_DIR [--bench]");
    };
    tch::set_num_threads(1);
    export_mlp(&models)?;
    if args.any(|a| a == "--bench") {
        export_resnet(&models)?;
    }
    Ok(())
}
