//! The cluster's records in etcd (docs/ARCHITECTURE.md §11–12): the keys and the JSON
//! values nodes and routers exchange. Readers are tolerant: missing fields take defaults,
//! unknown ones are ignored.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Everything Troupe keeps in etcd is under this prefix.
pub const ROOT: &str = "/troupe/";
/// `/troupe/nodes/<node_id>`: [`NodeRecord`], under the node's lease.
pub const NODES: &str = "/troupe/nodes/";
/// `/troupe/status/<node_id>`: [`StatusRecord`], under the node's lease.
pub const STATUS: &str = "/troupe/status/";
/// `/troupe/models/<name>`: the desired `troupe.v1.ModelSpec`, prost-encoded.
pub const MODELS: &str = "/troupe/models/";
/// `/troupe/placements/<name>/<node_id>`: [`PlacementValue`].
pub const PLACEMENTS: &str = "/troupe/placements/";
/// `/troupe/pending/<name>`: [`PendingValue`].
pub const PENDING: &str = "/troupe/pending/";
/// The routers' election for the placement leader.
pub const LEADER: &str = "/troupe/leader";

/// How long node and router wait for etcd to accept a connection.
pub const ETCD_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Connects to etcd the one way node and router do: [`ETCD_CONNECT_TIMEOUT`] to connect,
/// `request` at most per call, and HTTP/2 keep-alive pings (every 5 s, 3 s to answer), so
/// a connection to a dead or partitioned member is noticed instead of hanging.
///
/// The client talks to one member: the first, from a rotating start, that answers and
/// knows a leader (one in the quorum; while the members elect one, for up to `request`).
/// A client balanced over every endpoint sends some calls to a member that is down and
/// fails them; this one fails over when it connects again (every caller reconnects after
/// an error).
#[cfg(feature = "etcd")]
pub async fn connect_etcd(
    endpoints: &[String],
    request: std::time::Duration,
) -> Result<etcd_client::Client, etcd_client::Error> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let opts = etcd_client::ConnectOptions::new()
        .with_connect_timeout(ETCD_CONNECT_TIMEOUT)
        .with_timeout(request)
        .with_keep_alive(Duration::from_secs(5), Duration::from_secs(3));
    if endpoints.len() <= 1 {
        return etcd_client::Client::connect(endpoints, Some(opts)).await;
    }
    // Members that answer but know no leader are electing one (a member was lost):
    // rounds go on, backing off, for up to `request`.
    let until = std::time::Instant::now() + request;
    let mut pause = Duration::from_millis(50);
    let mut last = None;
    loop {
        let start = NEXT.fetch_add(1, Ordering::Relaxed);
        let mut electing = false;
        for i in 0..endpoints.len() {
            let ep = &endpoints[(start + i) % endpoints.len()];
            match etcd_client::Client::connect([ep], Some(opts.clone())).await {
                Ok(mut c) => match c.status().await {
                    Ok(st) if st.leader() != 0 => return Ok(c),
                    Ok(_) => {
                        electing = true;
                        last = Some(etcd_client::Error::EndpointError(format!(
                            "etcd member {ep} knows no leader (is the cluster's quorum lost?)"
                        )));
                    }
                    Err(e) => last = Some(e),
                },
                Err(e) => last = Some(e),
            }
        }
        if !electing || std::time::Instant::now() + pause > until {
            break;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(500));
    }
    Err(last.unwrap_or_else(|| etcd_client::Error::InvalidArgs("no etcd endpoint given".into())))
}

/// A GPU a node offers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct GpuRecord {
    pub index: u32,
    pub memory_bytes: u64,
}

/// What a node offers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Capacity {
    pub cpu_millis: u64,
    pub memory_bytes: u64,
    pub gpus: Vec<GpuRecord>,
}

/// A node and what it offers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NodeRecord {
    pub id: String,
    /// Where routers reach its gRPC services.
    pub addr: String,
    pub capacity: Capacity,
    pub labels: BTreeMap<String, String>,
    pub started_ms: u64,
}

/// One loaded model version on a node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ModelLoad {
    pub name: String,
    pub version: String,
    pub ready: bool,
    pub ready_instances: u32,
    pub instances: u32,
    /// Calls waiting in the model's queue.
    pub queue_length: u64,
    /// Calls being run now.
    pub in_flight: u64,
    /// GPU memory one replica took when it loaded, measured (0: on the CPU, or not
    /// measured). Placement counts the larger of this and the declared figure.
    pub gpu_memory_bytes: u64,
}

/// One GPU of a node as measured now.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct GpuUse {
    pub index: u32,
    pub used_bytes: u64,
    /// Used by anything but this node's models (other processes): room placement must
    /// not count on.
    pub foreign_bytes: u64,
    /// Utilisation now, in percent.
    pub utilization_percent: u32,
}

/// A model whose last load failed on a node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FailedModel {
    pub name: String,
    pub reason: String,
}

/// A node's models: readiness, load and failures.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StatusRecord {
    pub id: String,
    pub updated_ms: u64,
    pub models: Vec<ModelLoad>,
    pub failed: Vec<FailedModel>,
    /// Its GPUs now (none without GPUs or NVML).
    pub gpus: Vec<GpuUse>,
}

impl StatusRecord {
    /// The names of the models this node reports ready.
    pub fn ready_models(&self) -> Vec<String> {
        self.models
            .iter()
            .filter(|m| m.ready)
            .map(|m| m.name.clone())
            .collect()
    }
}

/// Run `count` replicas of a model on a node (on `gpu`, if set).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacementValue {
    pub count: u32,
    #[serde(default)]
    pub gpu: Option<u32>,
}

/// Replicas of a model that fit nowhere, and why.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PendingValue {
    pub missing: u32,
    pub reason: String,
}
