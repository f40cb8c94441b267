//! `troupe cluster ...`: the router's nodes and placements.

use anyhow::Result;
use clap::Subcommand;
use serde_json::{Value, json};
use troupe_client::Client;
use troupe_client::troupe_proto::troupe as tpb;

use crate::Failure;
use crate::render::print_json;

#[derive(Subcommand, Debug)]
pub(crate) enum ClusterCmd {
    /// Nodes with their capacity, what is placed on them, and their load.
    Nodes,
    /// Where each model's replicas are, and what is pending (and why).
    Placements {
        /// Only this model.
        #[arg(long, default_value = "")]
        model: String,
    },
}

/// Runs one `troupe cluster ...` command.
pub(crate) async fn run(cmd: ClusterCmd, c: &mut Client, json: bool) -> Result<(), Failure> {
    match cmd {
        ClusterCmd::Nodes => {
            let nodes = c
                .cluster()
                .nodes(tpb::NodesRequest {})
                .await?
                .into_inner()
                .nodes;
            let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
            if json {
                let v: Vec<Value> = nodes
                    .iter()
                    .map(|n| {
                        json!({"id": n.id, "addr": n.addr, "cpu_millis": n.cpu_millis, "used_cpu_millis": n.used_cpu_millis,
                            "memory_bytes": n.memory_bytes, "used_memory_bytes": n.used_memory_bytes,
                            "gpus": n.gpus.iter().map(|g| json!({"index": g.index, "memory_bytes": g.memory_bytes, "used_memory_bytes": g.used_memory_bytes})).collect::<Vec<_>>(),
                            "labels": n.labels, "in_flight": n.in_flight, "queue_length": n.queue_length, "ready_models": n.ready_models})
                    })
                    .collect();
                print_json(&Value::Array(v));
            } else {
                println!(
                    "{:<12} {:<22} {:>13} {:>17} {:>5} {:>9}  MODELS",
                    "NODE", "ADDRESS", "CPU used/all", "MEMORY GiB", "GPUS", "IN-FLIGHT"
                );
                for n in &nodes {
                    println!(
                        "{:<12} {:<22} {:>13} {:>17} {:>5} {:>9}  {}",
                        n.id,
                        n.addr,
                        format!("{}/{}", n.used_cpu_millis, n.cpu_millis),
                        format!("{:.2}/{:.2}", gib(n.used_memory_bytes), gib(n.memory_bytes)),
                        n.gpus.len(),
                        n.in_flight,
                        n.ready_models.join(",")
                    );
                }
            }
        }
        ClusterCmd::Placements { model } => {
            let p = c
                .cluster()
                .placements(tpb::PlacementsRequest { model })
                .await?
                .into_inner();
            if json {
                print_json(&json!({
                    "placements": p.placements.iter().map(|x| json!({"model": x.model, "node": x.node_id, "count": x.count, "ready": x.ready, "gpu": if x.gpu < 0 { Value::Null } else { json!(x.gpu) }})).collect::<Vec<_>>(),
                    "pending": p.pending.iter().map(|x| json!({"model": x.model, "missing": x.missing, "reason": x.reason})).collect::<Vec<_>>(),
                }));
            } else {
                println!(
                    "{:<24} {:<12} {:>8} {:>6}",
                    "MODEL", "NODE", "REPLICAS", "READY"
                );
                for x in &p.placements {
                    println!(
                        "{:<24} {:<12} {:>8} {:>6}",
                        x.model, x.node_id, x.count, x.ready
                    );
                }
                for x in &p.pending {
                    println!(
                        "{:<24} {:<12} {:>8} {:>6}  pending: {}",
                        x.model, "-", x.missing, false, x.reason
                    );
                }
            }
        }
    }
    Ok(())
}
