//! The router's view of the cluster, kept from etcd by one prefix watch (no etcd round
//! trip per call). Readers take a snapshot (`Arc`) and a routing table rebuilt on change.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use etcd_client::{EventType, GetOptions, WatchOptions};
use parking_lot::RwLock;
use prost::Message;
use tokio::sync::watch;
use tracing::{info, warn};
use troupe_proto::troupe::ModelSpec;

use crate::records::{
    MODELS, NODES, NodeRecord, PENDING, PLACEMENTS, PendingValue, PlacementValue, ROOT, STATUS,
    StatusRecord,
};

/// Everything under `/troupe/`.
#[derive(Debug, Clone, Default)]
pub struct ClusterState {
    pub nodes: BTreeMap<String, NodeRecord>,
    pub status: BTreeMap<String, StatusRecord>,
    pub models: BTreeMap<String, ModelSpec>,
    /// (model, node) -> placement.
    pub placements: BTreeMap<(String, String), PlacementValue>,
    pub pending: BTreeMap<String, PendingValue>,
}

impl ClusterState {
    fn apply(&mut self, key: &str, value: Option<&[u8]>) {
        if let Some(id) = key.strip_prefix(NODES) {
            match value.and_then(|v| serde_json::from_slice(v).ok()) {
                Some(r) => self.nodes.insert(id.to_string(), r),
                None => self.nodes.remove(id),
            };
        } else if let Some(id) = key.strip_prefix(STATUS) {
            match value.and_then(|v| serde_json::from_slice(v).ok()) {
                Some(r) => self.status.insert(id.to_string(), r),
                None => self.status.remove(id),
            };
        } else if let Some(name) = key.strip_prefix(MODELS) {
            match value.and_then(|v| ModelSpec::decode(v).ok()) {
                Some(s) => self.models.insert(name.to_string(), s),
                None => self.models.remove(name),
            };
        } else if let Some(rest) = key.strip_prefix(PLACEMENTS) {
            if let Some((model, node)) = rest.split_once('/') {
                let k = (model.to_string(), node.to_string());
                match value.and_then(|v| serde_json::from_slice(v).ok()) {
                    Some(p) => self.placements.insert(k, p),
                    None => self.placements.remove(&k),
                };
            }
        } else if let Some(name) = key.strip_prefix(PENDING) {
            match value.and_then(|v| serde_json::from_slice(v).ok()) {
                Some(p) => self.pending.insert(name.to_string(), p),
                None => self.pending.remove(name),
            };
        }
    }

    /// Nodes (id, addr) that are alive and report `model` ready.
    pub fn ready_replicas(&self, model: &str) -> Vec<Replica> {
        self.status
            .iter()
            .filter(|(_, s)| s.models.iter().any(|m| m.name == model && m.ready))
            .filter_map(|(id, _)| {
                self.nodes.get(id).map(|n| Replica {
                    node: id.clone(),
                    addr: n.addr.clone(),
                })
            })
            .collect()
    }
}

/// One ready replica of a model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replica {
    pub node: String,
    pub addr: String,
}

/// The shared state and its routing table.
pub struct Store {
    state: RwLock<Arc<ClusterState>>,
    routes: RwLock<Arc<HashMap<String, Vec<Replica>>>>,
    synced: AtomicBool,
    changed: watch::Sender<u64>,
    /// The etcd revision the state reflects.
    revision: watch::Sender<i64>,
}

impl Default for Store {
    fn default() -> Self {
        Self {
            state: RwLock::default(),
            routes: RwLock::default(),
            synced: AtomicBool::new(false),
            changed: watch::channel(0).0,
            revision: watch::channel(0).0,
        }
    }
}

impl Store {
    pub fn snapshot(&self) -> Arc<ClusterState> {
        self.state.read().clone()
    }

    /// Ready replicas of a model (from the routing table; no etcd call).
    pub fn routes(&self, model: &str) -> Vec<Replica> {
        self.routes.read().get(model).cloned().unwrap_or_default()
    }

    /// True once the first full read of etcd succeeded.
    pub fn synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    /// Notified on every change.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Waits until the state reflects etcd revision `rev` (read-your-writes for the
    /// `Models` service); false if `within` passed first.
    pub async fn caught_up(&self, rev: i64, within: Duration) -> bool {
        let mut rx = self.revision.subscribe();
        tokio::time::timeout(within, rx.wait_for(|r| *r >= rev))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    fn replace(&self, s: ClusterState, rev: i64) {
        let mut routes: HashMap<String, Vec<Replica>> = HashMap::new();
        for name in s
            .status
            .values()
            .flat_map(|st| st.models.iter().map(|m| m.name.clone()))
        {
            if let std::collections::hash_map::Entry::Vacant(e) = routes.entry(name) {
                let r = s.ready_replicas(e.key());
                e.insert(r);
            }
        }
        *self.routes.write() = Arc::new(routes);
        *self.state.write() = Arc::new(s);
        self.changed.send_modify(|v| *v += 1);
        self.revision.send_if_modified(|r| {
            let newer = rev > *r;
            if newer {
                *r = rev;
            }
            newer
        });
    }
}

/// Keeps `store` in step with etcd until `stop`; on errors keeps the last state (routing
/// goes on) and reads everything again once etcd answers.
pub async fn sync(store: Arc<Store>, endpoints: Vec<String>, mut stop: watch::Receiver<bool>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        tokio::select! {
            r = session(&store, &endpoints) => {
                if let Err(e) = r {
                    warn!(error = %e, "cluster watch lost; routing on the last known state");
                }
            }
            _ = stop.changed() => return,
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.changed() => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

async fn session(store: &Store, endpoints: &[String]) -> Result<(), etcd_client::Error> {
    let mut client = troupe_proto::cluster::connect_etcd(endpoints, Duration::from_secs(5)).await?;
    let resp = client
        .get(ROOT, Some(GetOptions::new().with_prefix()))
        .await?;
    let rev = resp.header().map(|h| h.revision()).unwrap_or(0);
    let mut s = ClusterState::default();
    for kv in resp.kvs() {
        if let Ok(k) = kv.key_str() {
            s.apply(k, Some(kv.value()));
        }
    }
    info!(
        nodes = s.nodes.len(),
        models = s.models.len(),
        placements = s.placements.len(),
        revision = rev,
        "cluster state read"
    );
    store.replace(s, rev);
    store.synced.store(true, Ordering::Release);
    let mut stream = client
        .watch(
            ROOT,
            Some(
                WatchOptions::new()
                    .with_prefix()
                    .with_start_revision(rev + 1),
            ),
        )
        .await?;
    while let Some(resp) = stream.message().await? {
        if resp.canceled() {
            return Err(etcd_client::Error::WatchError(format!(
                "watch cancelled: {}",
                resp.cancel_reason()
            )));
        }
        let mut s = (*store.snapshot()).clone();
        for ev in resp.events() {
            let Some(kv) = ev.kv() else { continue };
            let Ok(k) = kv.key_str() else { continue };
            match ev.event_type() {
                EventType::Put => s.apply(k, Some(kv.value())),
                EventType::Delete => s.apply(k, None),
            }
        }
        store.replace(s, resp.header().map_or(0, |h| h.revision()));
    }
    Err(etcd_client::Error::WatchError("watch stream ended".into()))
}
