//! `troupe review next|label|export`: the human review queue (troupe.v1.Review). A
//! decision becomes the call's ground truth; an export is a JSON array of tasks that
//! Label Studio (and tools reading its format) imports: one task per call, its data, and
//! the model's answer as a prediction.

use anyhow::Context;
use clap::Subcommand;
use serde_json::{Value, json};
use troupe_client::Client;
use troupe_client::troupe_proto::troupe as tpb;

use crate::failure::Failure;
use crate::render::{print_json, truth_json};

#[derive(Subcommand, Debug)]
pub(crate) enum ReviewCmd {
    /// Take the oldest open call of MODEL (leased to you for 10 minutes) and show it.
    Next { model: String },
    /// Record your decision on a queued call: its true LABEL (or value, with --value).
    Label {
        request_id: String,
        label: String,
        /// LABEL is a number (a regression model's true value).
        #[arg(long)]
        value: bool,
    },
    /// Write the queue as Label Studio tasks (JSON) to FILE, or to stdout.
    Export {
        /// Only this model's calls.
        #[arg(long)]
        model: Option<String>,
        /// Which calls: all, open or decided.
        #[arg(long, default_value = "all")]
        state: String,
        #[arg(long, short)]
        output: Option<std::path::PathBuf>,
    },
}

fn parse_json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

/// A review item as JSON.
fn item_json(i: &tpb::ReviewItem) -> Value {
    let decision = truth_json(i.decision.as_ref());
    json!({
        "request_id": i.request_id,
        "model": i.model,
        "version": i.version,
        "reason": i.reason,
        "queued_ms": i.time_ms,
        "inputs": parse_json(&i.inputs_json),
        "outputs": parse_json(&i.outputs_json),
        "explanation": if i.explanation_json.is_empty() { Value::Null } else { parse_json(&i.explanation_json) },
        "predicted": {"class": (!i.class.is_empty()).then_some(&i.class), "score": i.score, "value": i.predicted_value},
        "decision": decision,
        "reviewer": (!i.reviewer.is_empty()).then_some(&i.reviewer),
    })
}

/// One Label Studio task: the call's data, the model's answer as a prediction, and the
/// reviewer's decision as an annotation when there is one.
fn task(i: &tpb::ReviewItem) -> Value {
    let choice = |c: &str| json!([{"from_name": "label", "to_name": "inputs", "type": "choices", "value": {"choices": [c]}}]);
    let mut t = json!({
        "data": {
            "request_id": i.request_id,
            "model": i.model,
            "model_version": i.version,
            "reason": i.reason,
            "inputs": parse_json(&i.inputs_json),
            "outputs": parse_json(&i.outputs_json),
        },
        "meta": {"request_id": i.request_id, "model_version": format!("{}/{}", i.model, i.version)},
    });
    if !i.explanation_json.is_empty() {
        t["data"]["explanation"] = parse_json(&i.explanation_json);
    }
    if !i.class.is_empty() {
        t["predictions"] = json!([{
            "model_version": format!("{}/{}", i.model, i.version),
            "score": i.score,
            "result": choice(&i.class),
        }]);
    }
    if let Some(tpb::truth::Truth::Label(l)) = i.decision.as_ref().and_then(|d| d.truth.as_ref()) {
        t["annotations"] = json!([{"completed_by": i.reviewer, "result": choice(l)}]);
    }
    t
}

pub(crate) async fn run(cmd: ReviewCmd, c: &mut Client, json_out: bool) -> Result<(), Failure> {
    match cmd {
        ReviewCmd::Next { model } => {
            let r = c
                .review()
                .next(tpb::ReviewNextRequest {
                    model: model.clone(),
                })
                .await?
                .into_inner();
            match (&r.item, json_out) {
                (Some(i), true) => print_json(&item_json(i)),
                (None, true) => print_json(&json!(null)),
                (None, false) => println!("no call of {model} waits for review"),
                (Some(i), false) => {
                    let v = item_json(i);
                    println!("request id:  {}", i.request_id);
                    println!("model:       {} version {}", i.model, i.version);
                    println!("queued for:  {}", i.reason);
                    println!("answer:      {}", v["predicted"]);
                    println!("inputs:      {}", v["inputs"]);
                    println!("outputs:     {}", v["outputs"]);
                    if !i.explanation_json.is_empty() {
                        println!("explanation: {}", v["explanation"]);
                    }
                    println!(
                        "({} open; decide with: troupe review label {} LABEL)",
                        r.open, i.request_id
                    );
                }
            }
        }
        ReviewCmd::Label {
            request_id,
            label,
            value,
        } => {
            let decision = if value {
                tpb::review_label_request::Decision::Value(
                    label
                        .trim()
                        .parse()
                        .with_context(|| format!("'{label}' is not a number"))?,
                )
            } else {
                tpb::review_label_request::Decision::Label(label)
            };
            let i = c
                .review()
                .label(tpb::ReviewLabelRequest {
                    request_id,
                    decision: Some(decision),
                })
                .await?
                .into_inner();
            if json_out {
                print_json(&item_json(&i));
            } else {
                println!("{} decided; stored as its ground truth", i.request_id);
            }
        }
        ReviewCmd::Export {
            model,
            state,
            output,
        } => {
            let state = match state.as_str() {
                "all" => tpb::ReviewState::All,
                "open" => tpb::ReviewState::Open,
                "decided" => tpb::ReviewState::Decided,
                other => {
                    return Err(anyhow::anyhow!("--state {other}: use all, open or decided").into());
                }
            };
            let r = c
                .review()
                .export(tpb::ReviewExportRequest {
                    model: model.unwrap_or_default(),
                    state: state as i32,
                    limit: 0,
                })
                .await?
                .into_inner();
            let tasks: Vec<Value> = r.items.iter().map(task).collect();
            let text = serde_json::to_string_pretty(&tasks).unwrap_or_default();
            match output {
                Some(path) => {
                    std::fs::write(&path, text + "\n")
                        .with_context(|| format!("cannot write {}", path.display()))?;
                    eprintln!("{} tasks written to {}", tasks.len(), path.display());
                }
                None => println!("{text}"),
            }
        }
    }
    Ok(())
}
