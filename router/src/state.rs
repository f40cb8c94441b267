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
use troupe_proto::backoff::Backoff;
use troupe_proto::troupe::{BackendKind, DevicePreference, ModelSpec};

use crate::placement::{self, Assignment, Device};

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

    /// Replicas of `model` placed on any node.
    pub fn placed_replicas(&self, model: &str) -> u64 {
        self.placements
            .iter()
            .filter(|((m, _), _)| m == model)
            .map(|(_, p)| u64::from(p.count))
            .sum()
    }

    /// What the replicas placed on `node` need, summed: the one count of a node's use that
    /// placement, metrics and `troupe cluster nodes` share.
    pub fn placed_on(&self, node: &str) -> Demand {
        let mut used = Demand::default();
        for ((m, n), p) in &self.placements {
            let Some(spec) = self.models.get(m).filter(|_| n == node) else {
                continue;
            };
            let d = self.demand(m, spec);
            let count = u64::from(p.count);
            used.cpu_millis += d.cpu_millis * count;
            used.memory_bytes += d.memory_bytes * count;
            if let Some(g) = p.gpu {
                *used.gpu_memory_bytes.entry(g).or_default() += d.gpu_memory_bytes * count;
            }
        }
        used
    }

    /// What one replica of `model` needs: its spec's figures, with GPU memory the larger
    /// of the declared and the largest any node measured when the model loaded there
    /// (declared figures are only promises: ray#41432).
    pub fn demand(&self, model: &str, spec: &ModelSpec) -> ReplicaDemand {
        let measured = self
            .status
            .values()
            .flat_map(|s| &s.models)
            .filter(|m| m.name == model)
            .map(|m| m.gpu_memory_bytes)
            .max()
            .unwrap_or(0);
        let declared = ReplicaDemand::of(spec);
        ReplicaDemand {
            gpu_memory_bytes: declared.gpu_memory_bytes.max(measured),
            ..declared
        }
    }

    /// What a node's GPU `index` offers placement: its memory less what other processes
    /// use there, as the node last measured it.
    fn gpu_room(&self, node: &str, index: u32, memory_bytes: u64) -> u64 {
        let foreign = self
            .status
            .get(node)
            .and_then(|s| s.gpus.iter().find(|g| g.index == index))
            .map_or(0, |g| g.foreign_bytes);
        memory_bytes.saturating_sub(foreign)
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

/// What one replica of a model needs, in the units placement counts in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplicaDemand {
    /// Millicores (the spec's `cpu` cores, rounded; negative counts as none).
    pub cpu_millis: u64,
    pub memory_bytes: u64,
    pub gpu_memory_bytes: u64,
}

impl ReplicaDemand {
    pub fn of(spec: &ModelSpec) -> Self {
        let r = spec.resources.unwrap_or_default();
        Self {
            cpu_millis: (r.cpu.max(0.0) * 1000.0).round() as u64,
            memory_bytes: r.memory_bytes,
            gpu_memory_bytes: r.gpu_memory_bytes,
        }
    }
}

/// What the replicas placed on one node need, summed (GPU memory by GPU index).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Demand {
    pub cpu_millis: u64,
    pub memory_bytes: u64,
    pub gpu_memory_bytes: BTreeMap<u32, u64>,
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
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
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
            _ = tokio::time::sleep(backoff.next_delay()) => {}
            _ = stop.changed() => return,
        }
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

impl ClusterState {
    /// The placement's inputs: live nodes, wanted models (with a backend), and the
    /// replicas placed now.
    pub fn placement_inputs(
        &self,
    ) -> (
        Vec<placement::Node>,
        Vec<placement::ModelSpec>,
        Vec<Assignment>,
    ) {
        let s = self;
        let nodes: Vec<placement::Node> = s
            .nodes
            .iter()
            .map(|(id, n)| placement::Node {
                id: id.clone(),
                cpu_millis: n.capacity.cpu_millis,
                memory_bytes: n.capacity.memory_bytes,
                gpus: n
                    .capacity
                    .gpus
                    .iter()
                    .map(|g| placement::Gpu {
                        index: g.index,
                        memory_bytes: s.gpu_room(id, g.index, g.memory_bytes),
                    })
                    .collect(),
            })
            .collect();
        let specs: Vec<placement::ModelSpec> = s
            .models
            .iter()
            .filter(|(_, m)| m.backend != BackendKind::Unspecified as i32)
            .map(|(name, m)| {
                let d = s.demand(name, m);
                placement::ModelSpec {
                    key: name.clone(),
                    replicas: m.replicas.max(1),
                    cpu_millis: d.cpu_millis,
                    memory_bytes: d.memory_bytes,
                    gpu_memory_bytes: d.gpu_memory_bytes,
                    device: match DevicePreference::try_from(m.device) {
                        Ok(DevicePreference::Cpu) => Device::Cpu,
                        Ok(DevicePreference::Gpu) => Device::Gpu,
                        _ => Device::Any,
                    },
                }
            })
            .collect();
        let current: Vec<Assignment> = s
            .placements
            .iter()
            .flat_map(|((model, node), v)| {
                (0..v.count).map(move |_| Assignment {
                    model: model.clone(),
                    node: node.clone(),
                    gpu: v.gpu,
                })
            })
            .collect();
        (nodes, specs, current)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use troupe_proto::troupe::Resources;

    /// A record as etcd holds it.
    macro_rules! json {
        ($v:expr) => {
            serde_json::to_vec(&$v).unwrap()
        };
    }

    fn spec(cpu: f64, memory_bytes: u64, gpu_memory_bytes: u64) -> Vec<u8> {
        ModelSpec {
            name: "m".into(),
            replicas: 2,
            resources: Some(Resources {
                cpu,
                memory_bytes,
                gpu_memory_bytes,
            }),
            ..Default::default()
        }
        .encode_to_vec()
    }

    fn node(id: &str) -> Vec<u8> {
        json!(NodeRecord {
            id: id.into(),
            addr: format!("http://{id}:1"),
            ..Default::default()
        })
    }

    #[test]
    fn apply_puts_and_deletes_every_kind_of_key() {
        let mut s = ClusterState::default();
        s.apply(&format!("{NODES}a"), Some(&node("a")));
        s.apply(&format!("{MODELS}m"), Some(&spec(0.5, 10, 0)));
        let placed = json!(PlacementValue {
            count: 2,
            gpu: None
        });
        s.apply(&format!("{PLACEMENTS}m/a"), Some(&placed));
        let pending = json!(PendingValue {
            missing: 1,
            ..Default::default()
        });
        s.apply(&format!("{PENDING}m"), Some(&pending));
        let status = json!(StatusRecord {
            id: "a".into(),
            models: vec![crate::records::ModelLoad {
                name: "m".into(),
                ready: true,
                ..Default::default()
            }],
            ..Default::default()
        });
        s.apply(&format!("{STATUS}a"), Some(&status));
        assert_eq!(s.nodes["a"].addr, "http://a:1");
        assert_eq!(s.models["m"].replicas, 2);
        assert_eq!(s.placements[&("m".into(), "a".into())].count, 2);
        assert_eq!(s.pending["m"].missing, 1);
        assert_eq!(
            s.ready_replicas("m"),
            vec![Replica {
                node: "a".into(),
                addr: "http://a:1".into()
            }]
        );

        // A delete (no value) removes each kind.
        for key in [
            format!("{STATUS}a"),
            format!("{PENDING}m"),
            format!("{PLACEMENTS}m/a"),
            format!("{MODELS}m"),
            format!("{NODES}a"),
        ] {
            s.apply(&key, None);
        }
        assert!(s.nodes.is_empty() && s.models.is_empty() && s.status.is_empty());
        assert!(s.placements.is_empty() && s.pending.is_empty());
    }

    /// Placement with fake GPU readings, as a node publishes them: measured memory takes
    /// over from a smaller declared figure, and a GPU that other processes fill takes no
    /// replica.
    #[test]
    fn measured_gpu_memory_takes_over_from_declared_and_a_really_full_gpu_takes_nothing() {
        use crate::records::{Capacity, GpuRecord, GpuUse, ModelLoad};
        let gib = 1u64 << 30;
        let mut s = ClusterState::default();
        let rec = json!(NodeRecord {
            id: "a".into(),
            addr: "http://a:1".into(),
            capacity: Capacity {
                cpu_millis: 8000,
                memory_bytes: 64 * gib,
                gpus: vec![GpuRecord {
                    index: 0,
                    memory_bytes: 16 * gib,
                }],
            },
            ..Default::default()
        });
        s.apply(&format!("{NODES}a"), Some(&rec));
        let m = ModelSpec {
            name: "m".into(),
            replicas: 2,
            backend: BackendKind::Onnx as i32,
            device: DevicePreference::Gpu as i32,
            resources: Some(Resources {
                cpu: 1.0,
                memory_bytes: gib,
                gpu_memory_bytes: gib,
            }),
            ..Default::default()
        };
        s.apply(&format!("{MODELS}m"), Some(&m.encode_to_vec()));
        let place = |s: &ClusterState| {
            let (nodes, specs, _) = s.placement_inputs();
            placement::place(&nodes, &specs, &[])
        };
        let status = |model_bytes: u64, foreign_bytes: u64| {
            json!(StatusRecord {
                id: "a".into(),
                models: vec![ModelLoad {
                    name: "m".into(),
                    ready: true,
                    gpu_memory_bytes: model_bytes,
                    ..Default::default()
                }],
                gpus: vec![GpuUse {
                    index: 0,
                    used_bytes: foreign_bytes,
                    foreign_bytes,
                    utilization_percent: 0,
                }],
                ..Default::default()
            })
        };
        // Declared 1 GiB a replica, nothing measured: both fit on the 16 GiB GPU.
        let p = place(&s);
        assert_eq!(p.assignments.len(), 2, "{p:?}");
        assert!(p.assignments.iter().all(|a| a.gpu == Some(0)));
        // The node measured 10 GiB a replica when it loaded: one fits, one waits.
        s.apply(&format!("{STATUS}a"), Some(&status(10 * gib, 0)));
        assert_eq!(s.demand("m", &m).gpu_memory_bytes, 10 * gib);
        let p = place(&s);
        assert_eq!(p.assignments.len(), 1, "{p:?}");
        assert_eq!(p.pending.len(), 1, "{p:?}");
        assert!(
            p.pending[0].reason.contains("GPU"),
            "{}",
            p.pending[0].reason
        );
        // Another process holds 15.5 GiB of the GPU: not even the declared 1 GiB fits.
        s.apply(&format!("{STATUS}a"), Some(&status(0, 31 * gib / 2)));
        assert_eq!(s.demand("m", &m).gpu_memory_bytes, gib);
        let p = place(&s);
        assert!(p.assignments.is_empty(), "{p:?}");
        assert_eq!(p.pending[0].missing, 2, "{p:?}");
    }

    #[test]
    fn apply_drops_values_it_cannot_read_and_ignores_other_keys() {
        let mut s = ClusterState::default();
        s.apply(&format!("{NODES}a"), Some(&node("a")));
        // A corrupt value replaces nothing with garbage: the entry goes.
        s.apply(&format!("{NODES}a"), Some(b"{not json"));
        assert!(s.nodes.is_empty());
        // A placement key without its node part, and keys outside the layout.
        s.apply(&format!("{PLACEMENTS}m"), Some(b"{\"count\":1}"));
        s.apply("/troupe/unknown/x", Some(b"1"));
        s.apply(crate::records::LEADER, Some(b"router-1"));
        assert!(s.placements.is_empty());
        assert_eq!(format!("{s:?}"), format!("{:?}", ClusterState::default()));
    }

    #[test]
    fn placed_on_sums_what_a_node_runs_with_one_cpu_rounding() {
        let mut s = ClusterState::default();
        s.apply(&format!("{MODELS}m"), Some(&spec(0.25, 100, 7)));
        s.apply(&format!("{MODELS}neg"), Some(&spec(-1.0, 1, 0)));
        let on_gpu = json!(PlacementValue {
            count: 3,
            gpu: Some(1),
        });
        s.apply(&format!("{PLACEMENTS}m/a"), Some(&on_gpu));
        let once = json!(PlacementValue {
            count: 1,
            gpu: None
        });
        s.apply(&format!("{PLACEMENTS}neg/a"), Some(&once));
        s.apply(&format!("{PLACEMENTS}m/b"), Some(&once));
        let a = s.placed_on("a");
        assert_eq!(a.cpu_millis, 750, "negative cpu counts as none");
        assert_eq!(a.memory_bytes, 301);
        assert_eq!(a.gpu_memory_bytes, BTreeMap::from([(1, 21)]));
        assert_eq!(s.placed_on("b").cpu_millis, 250);
        assert_eq!(s.placed_on("c"), Demand::default());
        assert_eq!(s.placed_replicas("m"), 4);
    }
}
