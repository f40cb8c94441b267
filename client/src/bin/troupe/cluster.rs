//! `troupe cluster ...`: the router's nodes and placements.

use anyhow::Result;
use clap::Subcommand;
use serde_json::{Value, json};
use troupe_client::Client;
use troupe_client::troupe_proto::troupe as tpb;

use crate::failure::Failure;
use crate::render::{print_json, print_table};

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
                print_table(
                    &[
                        "NODE",
                        "ADDRESS",
                        "CPU used/all",
                        "MEMORY GiB",
                        "GPUS",
                        "IN-FLIGHT",
                        "MODELS",
                    ],
                    &[2, 3, 4, 5],
                    nodes.iter().map(|n| {
                        [
                            n.id.clone(),
                            n.addr.clone(),
                            format!("{}/{}", n.used_cpu_millis, n.cpu_millis),
                            format!("{:.2}/{:.2}", gib(n.used_memory_bytes), gib(n.memory_bytes)),
                            n.gpus.len().to_string(),
                            n.in_flight.to_string(),
                            n.ready_models.join(","),
                        ]
                    }),
                );
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
                print_table(
                    &["MODEL", "NODE", "REPLICAS", "READY"],
                    &[2, 3],
                    placement_rows(&p),
                );
            }
        }
    }
    Ok(())
}

/// The rows of `troupe cluster placements`: each placement, then each model's missing
/// replicas (node `-`, not ready) with the reason in a fifth cell.
fn placement_rows(p: &tpb::PlacementsResponse) -> Vec<Vec<String>> {
    let placed = p.placements.iter().map(|x| {
        vec![
            x.model.clone(),
            x.node_id.clone(),
            x.count.to_string(),
            x.ready.to_string(),
        ]
    });
    let pending = p.pending.iter().map(|x| {
        vec![
            x.model.clone(),
            "-".into(),
            x.missing.to_string(),
            false.to_string(),
            format!("pending: {}", x.reason),
        ]
    });
    placed.chain(pending).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::table;

    #[test]
    fn placements_list_pending_replicas_after_placed_ones() {
        let p = tpb::PlacementsResponse {
            placements: vec![tpb::PlacementInfo {
                model: "mlp_onnx".into(),
                node_id: "n1".into(),
                count: 2,
                ready: true,
                gpu: -1,
            }],
            pending: vec![tpb::PendingInfo {
                model: "big".into(),
                missing: 1,
                reason: "no node has 64 GiB free".into(),
            }],
        };
        assert_eq!(
            table(
                &["MODEL", "NODE", "REPLICAS", "READY"],
                &[2, 3],
                placement_rows(&p)
            ),
            [
                "MODEL     NODE  REPLICAS  READY",
                "mlp_onnx  n1           2   true",
                "big       -            1  false  pending: no node has 64 GiB free",
            ]
        );
    }
}
