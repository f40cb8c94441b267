//! `troupe explain`: explain one call, printing the feature attributions of each input
//! (troupe.v1.Explainer).

use std::path::PathBuf;

use clap::Args;
use serde_json::json;
use tracing::Instrument;
use troupe_client::{Client, ExplainOptions, Explanation};

use crate::failure::Failure;
use crate::inputs::collect_inputs;
use crate::render::{decode_values, print_json};
use crate::trace::{trace_id_of, traced_request};

#[derive(Args, Debug)]
pub(crate) struct ExplainArgs {
    model: String,
    #[arg(long, default_value = "")]
    version: String,
    /// saliency, integrated_gradients (torch, candle), occlusion or shapley (all).
    #[arg(long, default_value = "integrated_gradients")]
    method: String,
    /// An input: NAME=@FILE.npy, or NAME=D1,D2:V1,V2,... (FP32 values). Repeatable.
    #[arg(long = "input", value_name = "NAME=...")]
    inputs: Vec<String>,
    /// Inputs from JSON: {"inputs":[{"name","datatype","shape","data":[...]}]}.
    #[arg(long, value_name = "FILE")]
    data_file: Option<PathBuf>,
    /// The output explained (default: the first).
    #[arg(long, default_value = "")]
    output: String,
    /// Element of each output row explained (default: the row's largest).
    #[arg(long)]
    target: Option<i64>,
    /// The reference input's value.
    #[arg(long, default_value_t = 0.0)]
    baseline: f64,
    /// Integrated gradients: path steps (default 32).
    #[arg(long, default_value_t = 0)]
    steps: u32,
    /// Occlusion and Shapley: features per group (default 1).
    #[arg(long, default_value_t = 0)]
    window: u32,
    /// Shapley: sampled feature orders (default 16).
    #[arg(long, default_value_t = 0)]
    samples: u32,
}

/// Runs `troupe explain`, continuing `traceparent` when given.
pub(crate) async fn run(
    a: ExplainArgs,
    c: &mut Client,
    traceparent: Option<&str>,
    json: bool,
) -> Result<(), Failure> {
    let tensors = collect_inputs(&a.inputs, a.data_file.as_deref())?;
    let names: Vec<String> = tensors.iter().map(|t| t.name.clone()).collect();
    let how = ExplainOptions {
        output: a.output,
        target: a.target,
        baseline: a.baseline,
        steps: a.steps,
        window: a.window,
        samples: a.samples,
        ..ExplainOptions::method(&a.method)
    };
    let (req, span) = traced_request(
        traceparent,
        troupe_client::explain_request(&a.model, &a.version, tensors, &how),
        || tracing::info_span!("client.explain", model = %a.model, method = %a.method),
    )?;
    let resp = c.explainer().explain(req).instrument(span).await?;
    let trace_id = trace_id_of(resp.metadata());
    let e = Explanation {
        result: troupe_client::decode_response(resp.into_inner().response.unwrap_or_default())?,
    };
    let targets = e.targets().unwrap_or_default();
    let values = e.values().unwrap_or_default();
    let r = &e.result;
    let mut attributions = serde_json::Map::new();
    for n in &names {
        if let Ok(o) = r.output(&format!("attribution.{n}")) {
            attributions.insert(
                n.clone(),
                json!({"shape": o.shape, "data": decode_values(&o.datatype, &o.data)}),
            );
        }
    }
    let method = a.method;
    if json {
        print_json(&json!({
            "model_name": r.model_name, "model_version": r.model_version, "method": method,
            "target": targets, "value": values, "attributions": attributions,
            "trace_id": trace_id,
        }));
    } else {
        println!("{} (version {}): {method}", r.model_name, r.model_version);
        for (row, (t, v)) in targets.iter().zip(&values).enumerate() {
            println!("  row {row}: output element {t} = {v}");
        }
        for (n, a) in &attributions {
            println!("  {n} {}: {}", a["shape"], a["data"]);
        }
    }
    Ok(())
}
