//! `troupe health`: is the server live and ready, and in which state is each model?

use serde_json::json;
use troupe_client::Client;
use troupe_client::troupe_proto::troupe as tpb;

use crate::failure::Failure;
use crate::render::{print_json, state_name, table};

/// Runs `troupe health` against `server`; fails (exit code 1) when it is not ready.
pub(crate) async fn run(c: &mut Client, server: &str, json: bool) -> Result<(), Failure> {
    let live = c.server_live().await?;
    let ready = c.server_ready().await?;
    let list = c
        .models()
        .list(tpb::ListModelsRequest {})
        .await?
        .into_inner();
    let models: Vec<(String, &str)> = list
        .models
        .iter()
        .map(|m| {
            (
                m.spec.as_ref().map(|s| s.name.clone()).unwrap_or_default(),
                state_name(m.state),
            )
        })
        .collect();
    if json {
        print_json(&json!({"server": server, "live": live, "ready": ready,
            "models": models.iter().map(|(n, s)| json!({"name": n, "state": s})).collect::<Vec<_>>()}));
    } else {
        println!("{server}: live={live} ready={ready}");
        for line in table(&[], &[], models.iter().map(|(n, s)| [n.as_str(), s])) {
            println!("  {line}");
        }
    }
    if !ready {
        return Err(Failure::Server(tonic::Status::unavailable(
            "the server is live but not ready (models still loading)",
        )));
    }
    Ok(())
}
