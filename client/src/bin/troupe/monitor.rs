//! `troupe monitor MODEL`: a model's live quality over its windows (troupe.v1.Monitor),
//! refreshed in place until Ctrl-C (or printed once).

use std::time::Duration;

use clap::Args;
use serde_json::{Value, json};
use troupe_client::Client;
use troupe_client::troupe_proto::troupe as tpb;

use crate::failure::Failure;
use crate::render::{print_json, table};

#[derive(Args, Debug)]
pub(crate) struct MonitorArgs {
    model: String,
    /// Model version ("" = the one served).
    #[arg(long, default_value = "")]
    version: String,
    /// Seconds between refreshes.
    #[arg(long, default_value_t = 2.0)]
    every: f64,
    /// Print once and exit.
    #[arg(long)]
    once: bool,
}

fn opt(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.4}"))
}

fn window_json(w: &tpb::QualityWindow) -> Value {
    json!({"window": w.window, "calls": w.calls, "labelled": w.labelled, "coverage": w.coverage,
        "label_delay_mean_seconds": w.label_delay_mean_seconds, "label_delay_p50_seconds": w.label_delay_p50_seconds,
        "unknown_labels": w.unknown_labels, "accuracy": w.accuracy, "roc_auc": w.roc_auc, "ece": w.ece,
        "mae": w.mae, "rmse": w.rmse,
        "classes": w.classes.iter().map(|c| json!({"class": c.class, "precision": c.precision, "recall": c.recall, "f1": c.f1, "support": c.support})).collect::<Vec<_>>()})
}

/// The report as text lines.
fn render(q: &tpb::QualityResponse) -> Vec<String> {
    let mut lines = vec![format!("{} version {}", q.model, q.version)];
    lines.extend(table(
        &[
            "WINDOW", "CALLS", "LABELLED", "COVERAGE", "DELAY s", "ACCURACY", "ROC AUC", "ECE",
            "MAE", "RMSE",
        ],
        &[1, 2, 3, 4, 5, 6, 7, 8, 9],
        q.windows.iter().map(|w| {
            vec![
                w.window.clone(),
                w.calls.to_string(),
                w.labelled.to_string(),
                format!("{:.3}", w.coverage),
                opt(w.label_delay_mean_seconds),
                opt(w.accuracy),
                opt(w.roc_auc),
                opt(w.ece),
                opt(w.mae),
                opt(w.rmse),
            ]
        }),
    ));
    if let Some(w) = q.windows.first().filter(|w| !w.classes.is_empty()) {
        lines.push(String::new());
        lines.push(format!("per class, {}:", w.window));
        lines.extend(table(
            &["CLASS", "PRECISION", "RECALL", "F1", "SUPPORT"],
            &[1, 2, 3, 4],
            w.classes.iter().map(|c| {
                vec![
                    c.class.clone(),
                    format!("{:.4}", c.precision),
                    format!("{:.4}", c.recall),
                    format!("{:.4}", c.f1),
                    c.support.to_string(),
                ]
            }),
        ));
    }
    lines
}

pub(crate) async fn run(args: MonitorArgs, c: &mut Client, json: bool) -> Result<(), Failure> {
    let every = Duration::from_secs_f64(args.every.clamp(0.2, 3600.0));
    loop {
        let q = c
            .monitor()
            .quality(tpb::QualityRequest {
                model: args.model.clone(),
                version: args.version.clone(),
            })
            .await?
            .into_inner();
        if json {
            print_json(&json!({"model": q.model, "version": q.version,
                "windows": q.windows.iter().map(window_json).collect::<Vec<_>>()}));
        } else {
            if !args.once {
                // Home and clear: the view refreshes in place.
                print!("\x1b[H\x1b[2J");
            }
            for l in render(&q) {
                println!("{l}");
            }
        }
        if args.once || json {
            return Ok(());
        }
        tokio::time::sleep(every).await;
    }
}
