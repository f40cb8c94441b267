//! Cluster membership: with `--etcd`, a node registers itself in etcd under a lease and
//! publishes its models' readiness and load every second. If etcd is unreachable the node
//! keeps serving what it holds and registers again (with a new lease) when etcd is back.
//! On shutdown it revokes its lease first, so routers stop sending it calls at once.
//!
//! Keys (JSON values, both attached to the node's lease):
//! * `/troupe/nodes/<node_id>`: [`NodeRecord`], the node and its capacity;
//! * `/troupe/status/<node_id>`: [`StatusRecord`], its models' readiness and load.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use etcd_client::PutOptions;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::registry::Registry;
use troupe_proto::backoff::Backoff;

pub use troupe_proto::cluster::{
    Capacity, FailedModel, GpuRecord, ModelLoad, NODES as NODES_PREFIX, NodeRecord,
    STATUS as STATUS_PREFIX, StatusRecord,
};

/// How a node takes part in a cluster.
#[derive(Debug, Clone)]
pub struct MembershipConfig {
    pub endpoints: Vec<String>,
    pub node: NodeRecord,
    /// Lease time to live; the node's keys vanish this long after it stops renewing.
    pub lease_ttl: Duration,
    /// How often the lease is renewed and the status published.
    pub interval: Duration,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

/// This machine's CPU and memory, with its GPUs (measured or declared, `crate::gpu`).
pub fn detect_capacity(gpus: Vec<GpuRecord>) -> Capacity {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1) as u64;
    let memory_bytes = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0);
    Capacity {
        cpu_millis: cpus * 1000,
        memory_bytes,
        gpus,
    }
}

fn status(registry: &Registry, id: &str) -> StatusRecord {
    let loaded = registry.list();
    // What this node's models took on each GPU, so that the rest counts as foreign.
    let mut ours = std::collections::BTreeMap::<u32, u64>::new();
    let models = loaded
        .iter()
        .inspect(|m| {
            if let Some(g) = m.gpu() {
                *ours.entry(g).or_default() += m
                    .gpu_memory_bytes
                    .load(std::sync::atomic::Ordering::Relaxed)
                    * m.replicas.len() as u64;
            }
        })
        .map(|m| ModelLoad {
            name: m.def.name.clone(),
            version: m.def.version.clone(),
            ready: m.is_ready(),
            ready_instances: m.ready_replicas() as u32,
            instances: m.replicas.len() as u32,
            queue_length: m.queue.len() as u64,
            in_flight: m.queue.running(),
            gpu_memory_bytes: m
                .gpu_memory_bytes
                .load(std::sync::atomic::Ordering::Relaxed),
        })
        .collect();
    let failed = registry
        .failures()
        .into_iter()
        .map(|(name, reason)| FailedModel { name, reason })
        .collect();
    StatusRecord {
        id: id.to_string(),
        updated_ms: now_ms(),
        models,
        failed,
        gpus: registry.opts.gpus.uses(&ours),
    }
}

/// Keeps the node registered until `stop` turns true; then revokes its lease.
pub async fn run(cfg: MembershipConfig, registry: Arc<Registry>, mut stop: watch::Receiver<bool>) {
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(2));
    loop {
        match session(&cfg, &registry, &mut stop).await {
            Ok(()) => return,
            Err(e) => {
                warn!(node = %cfg.node.id, error = %e, "etcd unreachable; serving on and registering again when it is back");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff.next_delay()) => {}
            _ = stop.changed() => return,
        }
    }
}

async fn session(
    cfg: &MembershipConfig,
    registry: &Registry,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), etcd_client::Error> {
    if *stop.borrow() {
        return Ok(());
    }
    let mut client =
        troupe_proto::cluster::connect_etcd(&cfg.endpoints, Duration::from_secs(2)).await?;
    let ttl = cfg.lease_ttl.as_secs().max(1) as i64;
    let lease = client.lease_grant(ttl, None).await?.id();
    let put = || Some(PutOptions::new().with_lease(lease));
    let node_json = serde_json::to_vec(&cfg.node).unwrap_or_default();
    client
        .put(format!("{NODES_PREFIX}{}", cfg.node.id), node_json, put())
        .await?;
    let status_key = format!("{STATUS_PREFIX}{}", cfg.node.id);
    let s = serde_json::to_vec(&status(registry, &cfg.node.id)).unwrap_or_default();
    client.put(status_key.clone(), s, put()).await?;
    info!(node = %cfg.node.id, addr = %cfg.node.addr, lease, ttl, "registered in etcd");
    let (mut keeper, mut answers) = client.lease_keep_alive(lease).await?;
    let mut tick = tokio::time::interval(cfg.interval);
    loop {
        tokio::select! {
            _ = stop.changed() => {
                // Leave at once: routers watching the keys stop routing here.
                let _ = client.lease_revoke(lease).await;
                info!(node = %cfg.node.id, "left the cluster (lease revoked)");
                return Ok(());
            }
            _ = tick.tick() => {
                // The answer is awaited at most one lease TTL: past it the lease is gone
                // anyway, and the session starts again.
                let answer = tokio::time::timeout(cfg.lease_ttl, async {
                    keeper.keep_alive().await?;
                    answers.message().await
                })
                .await
                .map_err(|_| {
                    etcd_client::Error::LeaseKeepAliveError(format!(
                        "no keep-alive answer for lease {lease} within {:?}",
                        cfg.lease_ttl
                    ))
                })??;
                match answer {
                    Some(r) if r.ttl() > 0 => {}
                    _ => return Err(etcd_client::Error::LeaseKeepAliveError(format!("lease {lease} expired"))),
                }
                let s = serde_json::to_vec(&status(registry, &cfg.node.id)).unwrap_or_default();
                client.put(status_key.clone(), s, put()).await?;
            }
        }
    }
}
