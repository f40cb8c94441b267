//! The placement leader. Every router campaigns on `/troupe/leader`; the one elected turns
//! the desired models and the live nodes into placements (`placement::place`, a pure
//! function) and writes the difference to etcd, on every change and at least once a
//! second. The others only route. If the leader dies its lease expires and another wins.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use etcd_client::{Client, Compare, CompareOp, ResignOptions, Txn, TxnOp};
use tokio::sync::{oneshot, watch};
use tracing::{info, warn};
use troupe_proto::backoff::Backoff;

use crate::placement::{self, Assignment};
use crate::records::{LEADER, PENDING, PLACEMENTS, PendingValue, PlacementValue};
use crate::spread::{Spread, Step};
use crate::state::{ClusterState, Store};

/// What the leader does, as plain data (unit-testable).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub put_placements: Vec<((String, String), PlacementValue)>,
    pub delete_placements: Vec<(String, String)>,
    pub put_pending: Vec<(String, PendingValue)>,
    pub delete_pending: Vec<String>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        *self == Plan::default()
    }
}

/// Takes one replica of `model` on `node` out of `current`, if there is one.
fn without(current: &mut Vec<Assignment>, model: &str, node: &str) {
    if let Some(i) = current
        .iter()
        .position(|a| a.model == model && a.node == node)
    {
        current.remove(i);
    }
}

/// Computes the placement for a state (and a move in progress) and what must change in
/// etcd to get there.
pub fn plan(s: &ClusterState, step: Step<'_>) -> Plan {
    let (nodes, specs, mut current) = s.placement_inputs();
    match step {
        // The extra replica is not the placement's to keep or drop: it is added back.
        Step::Making(mv) => without(&mut current, &mv.model, &mv.to),
        Step::Breaking(mv) => without(&mut current, &mv.model, &mv.from),
        Step::Settled => {}
    }
    let mut p = placement::place(&nodes, &specs, &current);
    if let Step::Making(mv) = step
        && s.nodes.contains_key(&mv.to)
    {
        p.assignments.push(Assignment {
            model: mv.model.clone(),
            node: mv.to.clone(),
            gpu: mv.gpu,
        });
    }

    let mut want: BTreeMap<(String, String), PlacementValue> = BTreeMap::new();
    for a in p.assignments {
        let e = want.entry((a.model, a.node)).or_insert(PlacementValue {
            count: 0,
            gpu: a.gpu,
        });
        e.count += 1;
    }
    let mut out = Plan::default();
    for (k, v) in &want {
        if s.placements.get(k) != Some(v) {
            out.put_placements.push((k.clone(), *v));
        }
    }
    for k in s.placements.keys() {
        if !want.contains_key(k) {
            out.delete_placements.push(k.clone());
        }
    }
    let pending: BTreeMap<String, PendingValue> = p
        .pending
        .into_iter()
        .map(|x| {
            (
                x.model,
                PendingValue {
                    missing: x.missing,
                    reason: x.reason,
                },
            )
        })
        .collect();
    for (k, v) in &pending {
        if s.pending.get(k) != Some(v) {
            out.put_pending.push((k.clone(), v.clone()));
        }
    }
    for k in s.pending.keys() {
        if !pending.contains_key(k) {
            out.delete_pending.push(k.clone());
        }
    }
    out
}

/// etcd's default limit of operations in one transaction (`--max-txn-ops`).
const MAX_TXN_OPS: usize = 128;

/// The leadership a placement write is conditioned on: the election key this router
/// holds, at the revision it was created with.
#[derive(Debug, Clone)]
pub struct Fence {
    pub key: Vec<u8>,
    pub rev: i64,
}

/// One change of a plan, logged once written.
enum Change<'a> {
    Placed(&'a str, &'a str, &'a PlacementValue),
    Unplaced(&'a str, &'a str),
    Pending(&'a str, &'a PendingValue),
    Cleared(&'a str),
}

impl Change<'_> {
    fn log(&self) {
        match self {
            Change::Placed(model, node, v) => {
                info!(model = %model, node = %node, replicas = v.count, gpu = ?v.gpu, "placed")
            }
            Change::Unplaced(model, node) => info!(model = %model, node = %node, "unplaced"),
            Change::Pending(model, v) => {
                warn!(model = %model, missing = v.missing, reason = %v.reason, "replicas pending")
            }
            Change::Cleared(model) => info!(model = %model, "no replicas pending"),
        }
    }
}

/// The plan as etcd operations, each with its change.
fn operations(plan: &Plan) -> Vec<(TxnOp, Change<'_>)> {
    let mut ops = Vec::new();
    for ((model, node), v) in &plan.put_placements {
        ops.push((
            TxnOp::put(
                format!("{PLACEMENTS}{model}/{node}"),
                serde_json::to_vec(v).unwrap_or_default(),
                None,
            ),
            Change::Placed(model, node, v),
        ));
    }
    for (model, node) in &plan.delete_placements {
        ops.push((
            TxnOp::delete(format!("{PLACEMENTS}{model}/{node}"), None),
            Change::Unplaced(model, node),
        ));
    }
    for (model, v) in &plan.put_pending {
        ops.push((
            TxnOp::put(
                format!("{PENDING}{model}"),
                serde_json::to_vec(v).unwrap_or_default(),
                None,
            ),
            Change::Pending(model, v),
        ));
    }
    for model in &plan.delete_pending {
        ops.push((
            TxnOp::delete(format!("{PENDING}{model}"), None),
            Change::Cleared(model),
        ));
    }
    ops
}

/// Writes the plan in transactions that each hold only while `fence` is still the
/// election's key: a deposed leader's writes are refused by etcd, and it stops leading.
async fn apply(client: &mut Client, plan: &Plan, fence: &Fence) -> Result<(), etcd_client::Error> {
    let ops = operations(plan);
    for chunk in ops.chunks(MAX_TXN_OPS) {
        let txn = Txn::new()
            .when([Compare::create_revision(
                fence.key.clone(),
                CompareOp::Equal,
                fence.rev,
            )])
            .and_then(chunk.iter().map(|(op, _)| op.clone()).collect::<Vec<_>>());
        if !client.txn(txn).await?.succeeded() {
            return Err(etcd_client::Error::ElectError(
                "no longer the placement leader: the election key changed; placement not written"
                    .into(),
            ));
        }
        for (_, change) in chunk {
            change.log();
        }
    }
    Ok(())
}

/// Campaigns for leadership and places while leader, until `stop`.
pub async fn run(
    store: Arc<Store>,
    endpoints: Vec<String>,
    id: String,
    is_leader: Arc<AtomicBool>,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(2));
    loop {
        let r = lead(&store, &endpoints, &id, &is_leader, &mut stop).await;
        is_leader.store(false, Ordering::Release);
        match r {
            Ok(()) => return,
            Err(e) => {
                warn!(router = %id, error = %e, "placement leadership lost or not reachable; campaigning again")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff.next_delay()) => {}
            _ = stop.changed() => return,
        }
    }
}

async fn lead(
    store: &Store,
    endpoints: &[String],
    id: &str,
    is_leader: &AtomicBool,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), etcd_client::Error> {
    let mut client = troupe_proto::cluster::connect_etcd(endpoints, Duration::from_secs(5)).await?;
    let lease = client.lease_grant(3, None).await?.id();
    let (mut keeper, mut answers) = client.lease_keep_alive(lease).await?;
    // Keep the lease alive while campaigning and leading; report when it is lost.
    let (lost_tx, mut lost) = oneshot::channel::<String>();
    let keepalive = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let ok = keeper.keep_alive().await.is_ok()
                && matches!(tokio::time::timeout(Duration::from_secs(2), answers.message()).await, Ok(Ok(Some(r))) if r.ttl() > 0);
            if !ok {
                let _ = lost_tx.send("lease keep-alive failed".into());
                return;
            }
        }
    });
    let _guard = AbortOnDrop(keepalive);
    let campaign = tokio::select! {
        r = client.campaign(LEADER, id, lease) => r?,
        e = &mut lost => return Err(etcd_client::Error::LeaseKeepAliveError(e.unwrap_or_default())),
        _ = stop.changed() => return Ok(()),
    };
    let leader_key = campaign.leader().cloned();
    let fence = leader_key.as_ref().map(|k| Fence {
        key: k.key().to_vec(),
        rev: k.rev(),
    });
    let Some(fence) = fence else {
        return Err(etcd_client::Error::ElectError(
            "campaign answered without a leader key".into(),
        ));
    };
    is_leader.store(true, Ordering::Release);
    info!(router = %id, "elected placement leader");
    let mut changed = store.subscribe();
    let mut spread = Spread::default();
    loop {
        if store.synced() {
            let started = Instant::now();
            let s = store.snapshot();
            spread.observe(&s);
            let p = plan(&s, spread.step());
            if !p.is_empty() {
                apply(&mut client, &p, &fence).await?;
                info!(
                    ms = started.elapsed().as_millis() as u64,
                    placed = p.put_placements.len(),
                    unplaced = p.delete_placements.len(),
                    "placement applied"
                );
            } else if spread.consider(&s) {
                // A move starts: place its new replica at once.
                continue;
            }
        }
        tokio::select! {
            _ = changed.changed() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            e = &mut lost => return Err(etcd_client::Error::LeaseKeepAliveError(e.unwrap_or_default())),
            _ = stop.changed() => {
                if let Some(k) = leader_key {
                    let _ = client.resign(Some(ResignOptions::new().with_leader(k))).await;
                }
                let _ = client.lease_revoke(lease).await;
                return Ok(());
            }
        }
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);
impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{Capacity, NodeRecord};
    use troupe_proto::troupe::{BackendKind, ModelSpec, Resources};

    fn state() -> ClusterState {
        let mut s = ClusterState::default();
        for id in ["a", "b", "c"] {
            s.nodes.insert(
                id.into(),
                NodeRecord {
                    id: id.into(),
                    addr: format!("{id}:1"),
                    capacity: Capacity {
                        cpu_millis: 4000,
                        memory_bytes: 8 << 30,
                        gpus: vec![],
                    },
                    ..Default::default()
                },
            );
        }
        s.models.insert(
            "m".into(),
            ModelSpec {
                name: "m".into(),
                backend: BackendKind::Onnx as i32,
                replicas: 2,
                resources: Some(Resources {
                    cpu: 1.0,
                    memory_bytes: 1 << 30,
                    gpu_memory_bytes: 0,
                }),
                ..Default::default()
            },
        );
        s
    }

    #[test]
    fn places_then_is_quiet_then_moves_off_a_lost_node() {
        let mut s = state();
        let p = plan(&s, Step::Settled);
        assert_eq!(p.put_placements.len(), 2);
        for (k, v) in &p.put_placements {
            s.placements.insert(k.clone(), *v);
        }
        assert!(
            plan(&s, Step::Settled).is_empty(),
            "a placed cluster needs no change"
        );
        let lost = p.put_placements[0].0.1.clone();
        s.nodes.remove(&lost);
        let p2 = plan(&s, Step::Settled);
        assert_eq!(p2.delete_placements, vec![("m".to_string(), lost.clone())]);
        assert_eq!(p2.put_placements.len(), 1);
        assert_ne!(p2.put_placements[0].0.1, lost);
    }

    #[test]
    fn too_big_is_pending_with_a_reason() {
        let mut s = state();
        s.models.get_mut("m").unwrap().resources = Some(Resources {
            cpu: 1.0,
            memory_bytes: 64 << 30,
            gpu_memory_bytes: 0,
        });
        let p = plan(&s, Step::Settled);
        assert!(p.put_placements.is_empty());
        assert_eq!(p.put_pending[0].0, "m");
        assert!(
            p.put_pending[0].1.reason.contains("memory"),
            "{}",
            p.put_pending[0].1.reason
        );
    }
}
