//! `troupe infer`: run a model once and print its outputs.

use std::path::PathBuf;

use clap::Args;
use serde_json::json;
use tracing::Instrument;
use troupe_client::{Client, InputTensor};

use crate::failure::Failure;
use crate::inputs::collect_inputs;
use crate::render::{print_json, result_json};
use crate::trace::{trace_id_of, traced_request};

#[derive(Args, Debug)]
pub(crate) struct InferArgs {
    model: String,
    #[arg(long, default_value = "")]
    version: String,
    /// An input: NAME=@FILE.npy, or NAME=D1,D2:V1,V2,... (FP32 values). Repeatable.
    #[arg(long = "input", value_name = "NAME=...")]
    inputs: Vec<String>,
    /// A text for a BYTES input, one row each; repeat it for a batch.
    #[arg(long = "text", value_name = "TEXT")]
    texts: Vec<String>,
    /// The input --text fills.
    #[arg(long, default_value = "text")]
    text_input: String,
    /// Inputs from JSON: {"inputs":[{"name","datatype","shape","data":[...]}]}.
    #[arg(long, value_name = "FILE")]
    data_file: Option<PathBuf>,
    /// The request id (to give its ground truth later: `troupe feedback ID=LABEL`);
    /// a server that records the model's calls makes one otherwise.
    #[arg(long)]
    id: Option<String>,
}

/// Runs `troupe infer`, continuing `traceparent` when given.
pub(crate) async fn run(
    a: InferArgs,
    c: &mut Client,
    traceparent: Option<&str>,
    json: bool,
) -> Result<(), Failure> {
    let mut tensors = if a.inputs.is_empty() && a.data_file.is_none() && !a.texts.is_empty() {
        Vec::new()
    } else {
        collect_inputs(&a.inputs, a.data_file.as_deref())?
    };
    if !a.texts.is_empty() {
        tensors.push(InputTensor::text(&a.text_input, &a.texts));
    }
    let mut body = troupe_client::infer_request(&a.model, &a.version, tensors);
    if let Some(id) = a.id {
        body.id = id;
    }
    let (req, span) = traced_request(
        traceparent,
        body,
        || tracing::info_span!("client.infer", model = %a.model),
    )?;
    let resp = c.inference().model_infer(req).instrument(span).await?;
    let trace_id = trace_id_of(resp.metadata());
    let r = troupe_client::decode_response(resp.into_inner())?;
    let mut v = result_json(&r);
    if let Some(t) = trace_id {
        v["trace_id"] = json!(t);
    }
    if json {
        print_json(&v);
    } else {
        if r.id.is_empty() {
            println!("{} (version {})", r.model_name, r.model_version);
        } else {
            println!(
                "{} (version {}), request id {}",
                r.model_name, r.model_version, r.id
            );
        }
        for o in v["outputs"].as_array().into_iter().flatten() {
            println!(
                "  {} {} {}: {}",
                o["name"].as_str().unwrap_or(""),
                o["datatype"].as_str().unwrap_or(""),
                o["shape"],
                o["data"]
            );
        }
    }
    Ok(())
}
