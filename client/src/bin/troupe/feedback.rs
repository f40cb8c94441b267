//! `troupe feedback`: ground truth for earlier calls, by request id (troupe.v1.Feedback).

use anyhow::{Context, anyhow};
use clap::Args;
use serde_json::json;
use troupe_client::Client;
use troupe_client::troupe_proto::troupe as tpb;

use crate::failure::Failure;
use crate::render::print_json;

#[derive(Args, Debug)]
pub(crate) struct FeedbackArgs {
    /// `REQUEST_ID=LABEL` pairs: the true class of each call (or its value, with
    /// --values).
    truths: Vec<String>,
    /// Labels are numbers (a regression model's true values).
    #[arg(long)]
    values: bool,
    /// Read more truths from a file of JSON lines: {"id": "...", "label": "..."} or
    /// {"id": "...", "value": 1.5}.
    #[arg(long)]
    file: Option<std::path::PathBuf>,
}

fn truth(id: &str, label: &str, values: bool) -> Result<tpb::Truth, anyhow::Error> {
    let truth = if values {
        tpb::truth::Truth::Value(
            label
                .trim()
                .parse()
                .with_context(|| format!("'{label}' (for {id}) is not a number"))?,
        )
    } else {
        tpb::truth::Truth::Label(label.to_string())
    };
    Ok(tpb::Truth {
        request_id: id.to_string(),
        truth: Some(truth),
    })
}

fn parse(args: &FeedbackArgs) -> Result<Vec<tpb::Truth>, anyhow::Error> {
    let mut out = Vec::new();
    for pair in &args.truths {
        let (id, label) = pair
            .split_once('=')
            .ok_or_else(|| anyhow!("'{pair}' is not REQUEST_ID=LABEL"))?;
        out.push(truth(id, label, args.values)?);
    }
    if let Some(path) = &args.file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        for (n, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let v: serde_json::Value = serde_json::from_str(line)
                .with_context(|| format!("{}:{}: not JSON", path.display(), n + 1))?;
            let id = v["id"]
                .as_str()
                .ok_or_else(|| anyhow!("{}:{}: no \"id\"", path.display(), n + 1))?;
            let t = match (&v["label"], &v["value"]) {
                (serde_json::Value::String(l), _) => truth(id, l, false)?,
                (serde_json::Value::Number(l), _) if !args.values => {
                    truth(id, &l.to_string(), false)?
                }
                (_, serde_json::Value::Number(x)) => truth(id, &x.to_string(), true)?,
                _ => {
                    return Err(anyhow!(
                        "{}:{}: no \"label\" or \"value\"",
                        path.display(),
                        n + 1
                    ));
                }
            };
            out.push(t);
        }
    }
    if out.is_empty() {
        return Err(anyhow!("no truths: give REQUEST_ID=LABEL pairs or --file"));
    }
    Ok(out)
}

pub(crate) async fn run(args: FeedbackArgs, c: &mut Client, json: bool) -> Result<(), Failure> {
    let truths = parse(&args)?;
    let r = c
        .feedback()
        .submit(tpb::FeedbackRequest { truths })
        .await?
        .into_inner();
    if json {
        print_json(&json!({"accepted": r.accepted, "matched": r.matched}));
    } else {
        println!(
            "{} truths stored; {} joined a stored prediction now (the others join when theirs is stored)",
            r.accepted, r.matched
        );
    }
    Ok(())
}
