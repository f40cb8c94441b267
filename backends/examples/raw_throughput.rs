//! In-process throughput of one backend instance at several batch sizes: the baseline
//! that end-to-end serving numbers are compared with (docs/benchmarks.md).
//!
//! `cargo run --release -p troupe-backends --example raw_throughput -- onnx models/bench/resnet18_onnx/1 3,224,224 1000 1,4,8,16,32 [seconds] [threads]`

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use troupe_backends::{BackendKind, DataType, LoadOptions, Signature, Tensor, TensorSpec};

fn main() -> Result<()> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    if a.len() < 5 {
        bail!("usage: raw_throughput BACKEND DIR IN_DIMS OUT_DIMS BATCHES [SECONDS] [THREADS]");
    }
    let kind: BackendKind = a[0].parse()?;
    let dir = PathBuf::from(&a[1]);
    let dims =
        |s: &str| -> Result<Vec<i64>> { s.split(',').map(|d| d.parse().context("dims")).collect() };
    let (in_dims, out_dims) = (dims(&a[2])?, dims(&a[3])?);
    let batches: Vec<usize> = a[4]
        .split(',')
        .map(|b| b.parse())
        .collect::<Result<_, _>>()?;
    let secs: f64 = a.get(5).map(|s| s.parse()).transpose()?.unwrap_or(3.0);
    let threads: usize = a.get(6).map(|s| s.parse()).transpose()?.unwrap_or(1);
    // SAFETY: single-threaded here.
    unsafe { std::env::set_var("RAYON_NUM_THREADS", threads.to_string()) };
    tch::set_num_threads(threads as i32);
    let sig = Signature {
        inputs: vec![TensorSpec {
            name: "input".into(),
            dtype: DataType::F32,
            dims: in_dims.clone(),
        }],
        outputs: vec![TensorSpec {
            name: "output".into(),
            dtype: DataType::F32,
            dims: out_dims,
        }],
        max_batch_size: *batches.iter().max().unwrap_or(&1),
    };
    let opts = LoadOptions {
        threads,
        ..Default::default()
    };
    let b = troupe_backends::load(kind, &dir, &sig, &opts)?;
    let row: usize = in_dims.iter().product::<i64>() as usize;
    println!("backend={kind} model={} threads={threads}", dir.display());
    println!("{:>6} {:>12} {:>12}", "batch", "rows/s", "ms/call");
    for &batch in &batches {
        let mut shape = vec![batch];
        shape.extend(in_dims.iter().map(|&d| d as usize));
        let x: Vec<f32> = (0..batch * row).map(|i| ((i % 97) as f32) / 97.0).collect();
        let input = vec![Tensor::from_f32(shape, &x)?];
        b.infer(&input)?; // warm-up
        b.infer(&input)?;
        let start = Instant::now();
        let mut calls = 0u64;
        while start.elapsed() < Duration::from_secs_f64(secs) {
            b.infer(&input)?;
            calls += 1;
        }
        let el = start.elapsed().as_secs_f64();
        println!(
            "{batch:>6} {:>12.1} {:>12.3}",
            calls as f64 * batch as f64 / el,
            el * 1e3 / calls as f64
        );
    }
    Ok(())
}
