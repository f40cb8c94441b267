//! Nodes follow placements: with `--etcd`, a node watches what the router's placement
//! leader assigned to it and loads or unloads models to match. Readiness goes back to the
//! router through the status record ([`crate::membership`]).
//!
//! Keys read (docs/ARCHITECTURE.md §11):
//! * `/troupe/models/<name>`: the desired model, a prost-encoded `troupe.v1.ModelSpec`;
//! * `/troupe/placements/<name>/<node_id>`: JSON [`Placement`], `count` replicas of
//!   `<name>` on this node, i.e. one load with `max(spec.instances, 1) * count` instances.
//!
//! The follower reads both prefixes at one revision, reconciles, then watches both from
//! the next revision. On any etcd error it keeps serving what it holds, backs off
//! (200 ms up to 2 s) and reads everything again. It only ever unloads models it loaded
//! itself: models of the local `--model-repository` (or of a local Models.Create) are left
//! alone even when a placement names them.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{EventType, GetOptions, WatchOptions};
use prost::Message;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, info, warn};
use troupe_proto::troupe as pb;

use crate::config::{ModelDef, no_describe};
use crate::error::NodeError;
use crate::registry::Registry;
use troupe_proto::backoff::Backoff;

pub use troupe_proto::cluster::MODELS as MODELS_PREFIX;
pub use troupe_proto::cluster::PLACEMENTS as PLACEMENTS_PREFIX;
/// Most backend instances one placement may ask of a node.
pub const MAX_INSTANCES: usize = 256;

/// Between etcd sessions.
const SESSION_RETRY: Backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(2));
/// Between tries to load a placed model that failed to load.
const LOAD_RETRY: Backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
/// How often the follower checks, without etcd events, that what is loaded still
/// matches (a model unloaded by hand comes back).
const RECHECK: Duration = Duration::from_secs(5);

/// `/troupe/placements/<model>/<node_id>`: replicas of the model this node should run, and
/// the GPU the placement chose.
pub use troupe_proto::cluster::PlacementValue as Placement;

/// What etcd asks of this node.
#[derive(Debug, Default)]
struct Desired {
    /// This node's placements, by model (Err: the value did not parse).
    placements: BTreeMap<String, Result<Placement, String>>,
    /// Every model's spec, as stored.
    specs: BTreeMap<String, Vec<u8>>,
}

impl Desired {
    /// Applies one key's new value (None: deleted). Returns whether this node's targets
    /// may have changed.
    fn apply(&mut self, node_id: &str, key: &str, value: Option<&[u8]>) -> bool {
        if let Some(name) = key.strip_prefix(MODELS_PREFIX) {
            if name.is_empty() || name.contains('/') {
                return false;
            }
            match value {
                Some(v) => self.specs.insert(name.to_string(), v.to_vec()),
                None => self.specs.remove(name),
            };
            return self.placements.contains_key(name);
        }
        let Some((name, node)) = key
            .strip_prefix(PLACEMENTS_PREFIX)
            .and_then(|rest| rest.split_once('/'))
        else {
            return false;
        };
        if node != node_id || name.is_empty() {
            return false;
        }
        match value {
            Some(v) => {
                let p = serde_json::from_slice::<Placement>(v)
                    .map_err(|e| format!("placement value at {key} is not valid: {e}"));
                self.placements.insert(name.to_string(), p);
            }
            None => {
                self.placements.remove(name);
            }
        }
        true
    }

    /// The model definitions this node should serve (Err: why one cannot be). Models
    /// placed here whose spec is not (or no longer) in etcd are left out.
    fn targets(&self) -> BTreeMap<String, Result<ModelDef, String>> {
        let mut out = BTreeMap::new();
        for (name, p) in &self.placements {
            let p = match p {
                Ok(p) if p.count == 0 => continue,
                Ok(p) => p,
                Err(e) => {
                    out.insert(name.clone(), Err(e.clone()));
                    continue;
                }
            };
            let Some(spec) = self.specs.get(name) else {
                debug!(model = %name, "placed here but no spec in etcd yet");
                continue;
            };
            out.insert(name.clone(), target(name, spec, p));
        }
        out
    }
}

/// The definition one placement of a stored spec loads.
fn target(name: &str, spec: &[u8], p: &Placement) -> Result<ModelDef, String> {
    let mut spec = pb::ModelSpec::decode(spec)
        .map_err(|e| format!("spec at {MODELS_PREFIX}{name} does not decode: {e}"))?;
    if spec.name.is_empty() {
        spec.name = name.to_string();
    } else if spec.name != name {
        return Err(format!(
            "spec at {MODELS_PREFIX}{name} names model '{}'",
            spec.name
        ));
    }
    // Cluster specs declare their tensors (the router checks), so nothing is described here.
    let mut def = ModelDef::from_spec(&spec, &no_describe).map_err(|e| e.to_string())?;
    let instances = def.instances.saturating_mul(p.count as usize);
    if instances > MAX_INSTANCES {
        return Err(format!(
            "placement asks for {} replicas of {} instances: more than {MAX_INSTANCES} instances on one node",
            p.count, def.instances
        ));
    }
    def.instances = instances;
    def.gpu = p.gpu;
    Ok(def)
}

/// A failed load, retried with backoff until it succeeds or the target changes.
struct Retry {
    def: ModelDef,
    backoff: Backoff,
    at: Instant,
}

struct Follower {
    node_id: String,
    registry: Arc<Registry>,
    desired: Desired,
    /// Models this follower loaded (or tried to): the only ones it unloads.
    managed: BTreeSet<String>,
    retries: BTreeMap<String, Retry>,
    /// Placed models already loaded locally (warned about once).
    local: BTreeSet<String>,
}

impl Follower {
    /// Loads and unloads until the registry matches the targets.
    async fn reconcile(&mut self) {
        let targets = self.desired.targets();
        let gone: Vec<String> = self
            .managed
            .iter()
            .filter(|n| !targets.contains_key(*n))
            .cloned()
            .collect();
        for name in gone {
            self.managed.remove(&name);
            self.retries.remove(&name);
            match self.registry.unload(&name, None).await {
                Ok(()) => {
                    info!(node = %self.node_id, model = %name, "no longer placed here; unloaded")
                }
                Err(NodeError::ModelNotFound { .. }) => {}
                Err(e) => warn!(node = %self.node_id, model = %name, error = %e, "cannot unload"),
            }
            self.registry.clear_failure(&name);
        }
        self.local.retain(|n| targets.contains_key(n));
        for (name, target) in targets {
            let loaded = self.registry.get(&name, "").ok();
            if loaded.is_some() && !self.managed.contains(&name) {
                if self.local.insert(name.clone()) {
                    warn!(
                        node = %self.node_id,
                        model = %name,
                        "placed here but already loaded locally (repository or Models.Create); leaving it as it is"
                    );
                }
                continue;
            }
            let def = match target {
                Ok(def) => def,
                Err(reason) => {
                    if self.registry.failures().get(&name) != Some(&reason) {
                        warn!(node = %self.node_id, model = %name, error = %reason, "placed model cannot be loaded");
                    }
                    self.managed.insert(name.clone());
                    self.retries.remove(&name);
                    self.registry.record_failure(&name, reason);
                    continue;
                }
            };
            if loaded.as_ref().is_some_and(|m| m.def == def) {
                self.retries.remove(&name);
                continue;
            }
            let previous = self.retries.get(&name).filter(|r| r.def == def);
            if previous.is_some_and(|r| Instant::now() < r.at) {
                continue;
            }
            let mut backoff = previous.map_or(LOAD_RETRY, |r| r.backoff);
            let delay = backoff.next_delay();
            self.managed.insert(name.clone());
            let instances = def.instances;
            match self.registry.load(def.clone(), true).await {
                Ok(m) => {
                    self.retries.remove(&name);
                    info!(
                        node = %self.node_id,
                        model = %name,
                        version = %m.def.version,
                        instances,
                        "placed model loaded"
                    );
                }
                Err(e) => {
                    warn!(
                        node = %self.node_id,
                        model = %name,
                        error = %e,
                        retry_in_ms = delay.as_millis() as u64,
                        "cannot load placed model; will retry"
                    );
                    self.retries.insert(
                        name,
                        Retry {
                            def,
                            backoff,
                            at: Instant::now() + delay,
                        },
                    );
                }
            }
        }
    }

    /// One connection: read everything, reconcile, then follow the watch. Ok when `stop`
    /// turned true.
    async fn session(
        &mut self,
        endpoints: &[String],
        stop: &mut watch::Receiver<bool>,
        backoff: &mut Backoff,
    ) -> Result<(), etcd_client::Error> {
        let mut client =
            troupe_proto::cluster::connect_etcd(endpoints, Duration::from_secs(2)).await?;
        let placements = client
            .get(PLACEMENTS_PREFIX, Some(GetOptions::new().with_prefix()))
            .await?;
        let rev = placements.header().map(|h| h.revision()).unwrap_or(0);
        // The specs at the same revision, so the watch replays nothing older than what
        // was read.
        let specs = client
            .get(
                MODELS_PREFIX,
                Some(GetOptions::new().with_prefix().with_revision(rev)),
            )
            .await?;
        let mut desired = Desired::default();
        for kv in specs.kvs().iter().chain(placements.kvs()) {
            if let Ok(key) = std::str::from_utf8(kv.key()) {
                desired.apply(&self.node_id, key, Some(kv.value()));
            }
        }
        info!(
            node = %self.node_id,
            revision = rev,
            placed = desired.placements.len(),
            models = desired.specs.len(),
            "read placements from etcd"
        );
        self.desired = desired;
        self.reconcile().await;
        backoff.reset();

        let from = || {
            Some(
                WatchOptions::new()
                    .with_prefix()
                    .with_start_revision(rev + 1),
            )
        };
        let mut stream = client.watch(PLACEMENTS_PREFIX, from()).await?;
        stream.watch(MODELS_PREFIX, from()).await?;
        let mut recheck = tokio::time::interval_at(Instant::now() + RECHECK, RECHECK);
        loop {
            let next_retry = self.retries.values().map(|r| r.at).min();
            tokio::select! {
                _ = stop.changed() => return Ok(()),
                msg = stream.message() => {
                    let Some(resp) = msg? else {
                        return Err(etcd_client::Error::WatchError("watch stream ended".into()));
                    };
                    if resp.canceled() {
                        return Err(etcd_client::Error::WatchError(format!(
                            "watch canceled: {} (compacted at revision {})",
                            resp.cancel_reason(),
                            resp.compact_revision()
                        )));
                    }
                    let mut changed = false;
                    for ev in resp.events() {
                        let Some(kv) = ev.kv() else { continue };
                        let Ok(key) = std::str::from_utf8(kv.key()) else { continue };
                        let value = match ev.event_type() {
                            EventType::Put => Some(kv.value()),
                            EventType::Delete => None,
                        };
                        changed |= self.desired.apply(&self.node_id, key, value);
                    }
                    if changed {
                        self.reconcile().await;
                    }
                }
                _ = tokio::time::sleep_until(next_retry.unwrap_or_else(Instant::now)), if next_retry.is_some() => {
                    self.reconcile().await;
                }
                _ = recheck.tick() => self.reconcile().await,
            }
        }
    }
}

/// Follows this node's placements until `stop` turns true. Models it loaded stay loaded
/// through etcd outages; the registry's shutdown unloads them.
pub async fn run(
    endpoints: Vec<String>,
    node_id: String,
    registry: Arc<Registry>,
    mut stop: watch::Receiver<bool>,
) {
    let mut f = Follower {
        node_id,
        registry,
        desired: Desired::default(),
        managed: BTreeSet::new(),
        retries: BTreeMap::new(),
        local: BTreeSet::new(),
    };
    let mut backoff = SESSION_RETRY;
    loop {
        if *stop.borrow() {
            return;
        }
        match f.session(&endpoints, &mut stop, &mut backoff).await {
            Ok(()) => return,
            Err(e) => warn!(
                node = %f.node_id,
                error = %e,
                retry_in_ms = backoff.peek().as_millis() as u64,
                "cannot follow placements; serving what is loaded and reading them again"
            ),
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff.next_delay()) => {}
            _ = stop.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, instances: u32) -> Vec<u8> {
        pb::ModelSpec {
            name: name.into(),
            backend: pb::BackendKind::Onnx as i32,
            artifact_uri: "/nowhere/model.onnx".into(),
            inputs: vec![pb::TensorSpec {
                name: "x".into(),
                data_type: "FP32".into(),
                dims: vec![4],
            }],
            outputs: vec![pb::TensorSpec {
                name: "y".into(),
                data_type: "FP32".into(),
                dims: vec![2],
            }],
            instances,
            max_batch_size: 8,
            ..Default::default()
        }
        .encode_to_vec()
    }

    #[test]
    fn only_this_nodes_placements_count() {
        let mut d = Desired::default();
        assert!(!d.apply("n1", "/troupe/models/m", Some(&spec("m", 2))));
        assert!(!d.apply("n1", "/troupe/placements/m/n2", Some(br#"{"count":1}"#)));
        assert!(d.targets().is_empty());
        assert!(d.apply(
            "n1",
            "/troupe/placements/m/n1",
            Some(br#"{"count":3,"gpu":null}"#)
        ));
        let t = d.targets();
        let def = t["m"].as_ref().unwrap();
        assert_eq!(
            (def.instances, def.version.as_str(), def.gpu),
            (6, "1", None)
        );
        // A spec change is a change of this node's targets.
        assert!(d.apply("n1", "/troupe/models/m", Some(&spec("m", 1))));
        assert_eq!(d.targets()["m"].as_ref().unwrap().instances, 3);
        assert!(d.apply("n1", "/troupe/placements/m/n1", None));
        assert!(d.targets().is_empty());
    }

    #[test]
    fn node_ids_may_hold_colons_and_slashes() {
        let mut d = Desired::default();
        d.apply("n1", "/troupe/models/m", Some(&spec("m", 1)));
        d.apply(
            "n1",
            "/troupe/placements/m/10.0.0.1:8001/a",
            Some(br#"{"count":1,"gpu":1}"#),
        );
        assert!(d.targets().is_empty(), "another node's placement");
        let mut d2 = Desired::default();
        d2.apply("10.0.0.1:8001/a", "/troupe/models/m", Some(&spec("m", 1)));
        d2.apply(
            "10.0.0.1:8001/a",
            "/troupe/placements/m/10.0.0.1:8001/a",
            Some(br#"{"count":1,"gpu":1}"#),
        );
        assert_eq!(d2.targets()["m"].as_ref().unwrap().gpu, Some(1));
    }

    #[test]
    fn bad_values_become_reasons_and_missing_specs_wait() {
        let mut d = Desired::default();
        d.apply("n1", "/troupe/placements/m/n1", Some(br#"{"count":1}"#));
        assert!(d.targets().is_empty(), "no spec yet: nothing to load");
        d.apply("n1", "/troupe/models/m", Some(b"\xff\xff not protobuf"));
        assert!(
            d.targets()["m"]
                .as_ref()
                .unwrap_err()
                .contains("does not decode")
        );
        d.apply("n1", "/troupe/models/m", Some(&spec("other", 1)));
        assert!(d.targets()["m"].as_ref().unwrap_err().contains("'other'"));
        d.apply("n1", "/troupe/placements/m/n1", Some(b"nope"));
        assert!(
            d.targets()["m"]
                .as_ref()
                .unwrap_err()
                .contains("placement value")
        );
        d.apply("n1", "/troupe/models/m", Some(&spec("m", 64)));
        d.apply("n1", "/troupe/placements/m/n1", Some(br#"{"count":5}"#));
        assert!(d.targets()["m"].as_ref().unwrap_err().contains("more than"));
        d.apply("n1", "/troupe/placements/m/n1", Some(br#"{"count":0}"#));
        assert!(d.targets().is_empty());
    }
}
