//! In-process baseline of a text model: the node's own pipeline (tokenizer, model,
//! pooling) called directly, batched, with no server, queue or network: what serving
//! numbers are compared with (docs/benchmarks.md, "Text models").
//!
//! `cargo run --release -p troupe-node --example text_throughput -- REPOSITORY MODEL BATCHES [SECONDS] [THREADS] [TEXT]`
//!
//! Every row is TEXT (default "A man is playing a guitar."), the sentence the serving
//! benchmark sends. Prints one line per batch size: sentences/s and ms per batch.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use troupe_backends::{LoadOptions, Tensor};
use troupe_node::config::ModelDef;
use troupe_node::metrics::ModelMetrics;
use troupe_node::pipeline::TextPipeline;

fn main() -> Result<()> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    if a.len() < 3 {
        bail!("usage: text_throughput REPOSITORY MODEL BATCHES [SECONDS] [THREADS] [TEXT]");
    }
    let (repo, model) = (PathBuf::from(&a[0]), a[1].as_str());
    let batches: Vec<usize> = a[2]
        .split(',')
        .map(|b| b.parse())
        .collect::<Result<_, _>>()?;
    let secs: f64 = a.get(3).map(|s| s.parse()).transpose()?.unwrap_or(3.0);
    let threads: usize = a.get(4).map(|s| s.parse()).transpose()?.unwrap_or(1);
    let text = a
        .get(5)
        .cloned()
        .unwrap_or_else(|| "A man is playing a guitar.".into());
    // SAFETY: single-threaded here.
    unsafe { std::env::set_var("RAYON_NUM_THREADS", threads.to_string()) };
    tch::set_num_threads(threads as i32);
    let opts = LoadOptions {
        threads,
        ..Default::default()
    };
    let def = ModelDef::from_repository(&repo, model, None, &|k, p| {
        troupe_backends::describe(k, p, &opts)
    })?;
    let text_def = def.text.as_ref().context("not a text model (no [text])")?;
    let pipeline = TextPipeline::load(text_def).map_err(anyhow::Error::msg)?;
    let backend = troupe_backends::load(def.backend, &def.artifact, def.model_signature(), &opts)?;
    let metrics = ModelMetrics::default();
    for &b in &batches {
        let rows = vec![text.as_bytes(); b];
        let input = Tensor::from_bytes_elements(vec![b, 1], rows)?;
        let run = || -> Result<()> {
            let (tokens, _) = pipeline.encode(&input)?;
            let hidden = backend.infer(&tokens)?;
            pipeline.pool(hidden, &tokens, &metrics)?;
            Ok(())
        };
        for _ in 0..3 {
            run()?;
        }
        let (start, mut n) = (Instant::now(), 0usize);
        while start.elapsed() < Duration::from_secs_f64(secs) {
            run()?;
            n += 1;
        }
        let el = start.elapsed().as_secs_f64();
        println!(
            "{} {model} batch {b:>3}: {:>9.1} sentences/s, {:.3} ms per batch",
            def.backend,
            (n * b) as f64 / el,
            el * 1e3 / n as f64
        );
    }
    Ok(())
}
