//! `troupe lineage REQUEST_ID`: which model and which weights, trained on what, gave an
//! answer, and what label it got (troupe.v1.Monitor/Lineage).

use serde_json::{Value, json};
use troupe_client::Client;
use troupe_client::troupe_proto::troupe as tpb;

use crate::failure::Failure;
use crate::render::{lineage_json, print_json, truth_json};

fn record_json(r: &tpb::LineageResponse) -> Value {
    let truth = truth_json(r.truth.as_ref());
    let weights = r.lineage.as_ref().map(lineage_json);
    json!({
        "request_id": r.request_id,
        "model": r.model,
        "version": r.version,
        "digest": r.digest,
        "time_ms": r.time_ms,
        "node": r.node,
        "trace_id": r.trace_id,
        "answer": {"class": (!r.class.is_empty()).then_some(&r.class), "score": r.score, "value": r.value},
        "weights": weights,
        "truth": truth,
        "truth_source": (!r.truth_source.is_empty()).then_some(&r.truth_source),
        "review": (!r.review_state.is_empty()).then_some(&r.review_state),
    })
}

pub(crate) async fn run(request_id: String, c: &mut Client, json_out: bool) -> Result<(), Failure> {
    let r = c
        .monitor()
        .lineage(tpb::LineageRequest { request_id })
        .await?
        .into_inner();
    let v = record_json(&r);
    if json_out {
        print_json(&v);
        return Ok(());
    }
    println!("request id:  {}", r.request_id);
    println!(
        "answered by: {} version {} on node {} (trace {})",
        r.model, r.version, r.node, r.trace_id
    );
    println!("answer:      {}", v["answer"]);
    println!("weights:     sha256 {}", r.digest);
    match &r.lineage {
        Some(l) => {
            let p = l.provenance.clone().unwrap_or_default();
            let s = l.signature.clone().unwrap_or_default();
            for (k, val) in [
                ("source", &p.source),
                ("training run", &p.training_run),
                ("code commit", &p.code_commit),
                ("data digest", &p.data_digest),
            ] {
                if !val.is_empty() {
                    println!("  {k:<11} {val}");
                }
            }
            for (k, val) in &p.labels {
                println!("  label       {k}={val}");
            }
            let key = if s.key.is_empty() {
                String::new()
            } else {
                format!(" by key {}", s.key)
            };
            let why = if s.reason.is_empty() {
                String::new()
            } else {
                format!(": {}", s.reason)
            };
            println!("  signature   {}{key}{why}", s.state);
        }
        None => println!("  (no lineage stored for these weights)"),
    }
    match &v["truth"] {
        Value::Null => println!("label:       none yet"),
        t => println!("label:       {t} (from {})", r.truth_source),
    }
    if !r.review_state.is_empty() {
        println!("review:      {}", r.review_state);
    }
    Ok(())
}
