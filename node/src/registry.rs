//! The node's table of loaded models and the orchestration of loads and unloads.
//!
//! Who owns what: the [`Registry`] owns the table (read on every call, written on load and
//! unload); each [`LoadedModel`] (`model.rs`) owns its replica slots, queue and statistics;
//! the supervisor actor owns the replica actors' lifecycles.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use parking_lot::RwLock;
use ractor::rpc::CallResult;
use ractor::{Actor, ActorRef};
use tracing::{info, instrument, warn};
use troupe_backends::{BackendError, Device, LoadOptions};

use crate::actors::{NodeSupervisor, SupervisorMsg};
use crate::config::{ModelDef, validate_name, validate_version};
use crate::error::NodeError;
use crate::hooks::{AuditLog, ExplainMemory, HookSet, MonitorHook, Monitoring};
use crate::metrics::NodeMetrics;
use crate::model::LoadedModel;
use crate::pipeline::TextPipeline;

/// Node-wide settings the registry needs.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    pub repository: Option<PathBuf>,
    pub backend_threads: usize,
    pub onnxruntime_lib: Option<PathBuf>,
    pub max_tensor_bytes: usize,
    pub fault_injection: bool,
    /// Where models with `[hooks] audit = true` write their audit lines (opened at
    /// the first such model). None: such models fail to load.
    pub audit_log: Option<PathBuf>,
    /// This node's id, written in audit lines.
    pub node_id: String,
    /// Bytes all explanations of the node may hold at once (`--explain-memory-mb`).
    pub explain_memory_bytes: usize,
    /// Bytes one explanation may hold (`--explain-call-memory-mb`).
    pub explain_call_bytes: usize,
    /// Where artifacts may be loaded from (`--model-root`), besides the repository.
    pub model_roots: Vec<PathBuf>,
    /// The prediction store (`--store`: `sqlite://PATH` or `postgres://...`); None: a
    /// SQLite file `troupe-store.db` in the working directory, opened at the first
    /// model with `[monitoring]`.
    pub store: Option<String>,
    /// Predictions that may wait for the store's writer (`--store-queue`).
    pub store_queue: usize,
    /// How long and how much the store keeps (`--store-max-age`, `--store-max-mb`).
    pub retention: troupe_monitor::Retention,
    /// Named public keys model signatures are checked with (`--trust-file`).
    pub trust: crate::lineage::TrustFile,
    /// This machine's GPUs, measured (NVML) or declared (`--gpu-memory-mb`).
    pub gpus: crate::gpu::Gpus,
}

impl Default for NodeOptions {
    fn default() -> Self {
        Self {
            repository: None,
            backend_threads: 1,
            onnxruntime_lib: None,
            max_tensor_bytes: 64 << 20,
            fault_injection: false,
            audit_log: None,
            node_id: String::new(),
            explain_memory_bytes: crate::hooks::explain::memory::DEFAULT_NODE_BYTES,
            explain_call_bytes: crate::hooks::explain::memory::DEFAULT_CALL_BYTES,
            model_roots: Vec::new(),
            store: None,
            store_queue: troupe_monitor::RECORD_QUEUE,
            retention: troupe_monitor::Retention {
                max_age: None,
                max_bytes: None,
            },
            trust: crate::lineage::TrustFile::default(),
            gpus: crate::gpu::Gpus::default(),
        }
    }
}

/// The loaded models of this node.
pub struct Registry {
    pub opts: NodeOptions,
    /// Node-wide metrics (calls by status).
    pub metrics: NodeMetrics,
    audit: parking_lot::Mutex<Option<Arc<AuditLog>>>,
    /// The prediction store and its recorder, opened at the first model that monitors
    /// (or at start, with `--store`).
    monitoring: tokio::sync::OnceCell<Monitoring>,
    /// The explanation memory budget every model's explain hook shares.
    pub explain_memory: Arc<ExplainMemory>,
    models: RwLock<BTreeMap<String, BTreeMap<u64, Arc<LoadedModel>>>>,
    failures: RwLock<BTreeMap<String, String>>,
    admin: tokio::sync::Mutex<()>,
    supervisor: ActorRef<SupervisorMsg>,
}

impl Registry {
    /// Starts the supervisor. Models are loaded with [`Registry::load_repository`] or [`Registry::load`].
    pub async fn start(opts: NodeOptions) -> Result<Arc<Self>, NodeError> {
        let (supervisor, _join) = Actor::spawn(None, NodeSupervisor, ())
            .await
            .map_err(|e| NodeError::Internal(format!("cannot start the supervisor: {e}")))?;
        let explain_memory = Arc::new(ExplainMemory::new(
            opts.explain_memory_bytes,
            opts.explain_call_bytes,
        ));
        Ok(Arc::new(Self {
            opts,
            metrics: NodeMetrics::default(),
            audit: parking_lot::Mutex::new(None),
            monitoring: tokio::sync::OnceCell::new(),
            explain_memory,
            models: RwLock::default(),
            failures: RwLock::default(),
            admin: tokio::sync::Mutex::new(()),
            supervisor,
        }))
    }

    /// Refuses an artifact outside the model roots (`--model-root` and the repository).
    fn check_root(&self, artifact: &std::path::Path) -> Result<(), NodeError> {
        let mut roots = self.opts.model_roots.clone();
        roots.extend(self.opts.repository.clone());
        troupe_proto::auth::check_artifact(&artifact.display().to_string(), &roots)
            .map_err(|s| NodeError::PermissionDenied(s.message().to_string()))
    }

    /// The URL of the node's prediction store (`--store`, else its default file).
    pub fn store_url(&self) -> String {
        self.opts
            .store
            .clone()
            .unwrap_or_else(|| troupe_monitor::store::DEFAULT_STORE.to_string())
    }

    /// The prediction store, opened (and its schema brought up to date) on first use.
    pub async fn monitoring(&self) -> Result<&Monitoring, NodeError> {
        self.monitoring
            .get_or_try_init(|| async {
                let url = self.store_url();
                let store = troupe_monitor::Store::open(&url)
                    .await
                    .map_err(|e| NodeError::FailedPrecondition(e.to_string()))?;
                tracing::info!(store = %store.shown(), "prediction store opened");
                let recorder =
                    troupe_monitor::Recorder::start(store.clone(), self.opts.store_queue);
                troupe_monitor::retention::start(
                    store.clone(),
                    self.opts.retention,
                    troupe_monitor::retention::PRUNE_EVERY,
                );
                Ok(Monitoring { store, recorder })
            })
            .await
    }

    /// The prediction store, if it is open.
    pub fn open_monitoring(&self) -> Option<&Monitoring> {
        self.monitoring.get()
    }

    /// The node's audit file, if a model has opened it.
    pub fn open_audit_log(&self) -> Option<Arc<AuditLog>> {
        self.audit.lock().clone()
    }

    /// The node's audit file, opened on first use.
    fn audit_log(&self) -> Result<Option<Arc<AuditLog>>, NodeError> {
        let Some(path) = &self.opts.audit_log else {
            return Ok(None);
        };
        let mut slot = self.audit.lock();
        if let Some(log) = slot.as_ref() {
            return Ok(Some(log.clone()));
        }
        let log = Arc::new(AuditLog::open(path, &self.opts.node_id).map_err(|e| {
            NodeError::FailedPrecondition(format!(
                "cannot open the audit log {}: {e}",
                path.display()
            ))
        })?);
        tracing::info!(path = %path.display(), "audit log opened");
        *slot = Some(log.clone());
        Ok(Some(log))
    }

    /// The model to serve `name` / `version` ("" = latest loaded).
    pub fn get(&self, name: &str, version: &str) -> Result<Arc<LoadedModel>, NodeError> {
        let not_found = || NodeError::ModelNotFound {
            name: name.to_string(),
            version: version.to_string(),
        };
        let models = self.models.read();
        let versions = models.get(name).ok_or_else(not_found)?;
        if version.is_empty() {
            versions.values().next_back().cloned().ok_or_else(not_found)
        } else {
            let v = version.parse::<u64>().map_err(|_| not_found())?;
            versions.get(&v).cloned().ok_or_else(not_found)
        }
    }

    /// Every loaded model version.
    pub fn list(&self) -> Vec<Arc<LoadedModel>> {
        self.models
            .read()
            .values()
            .flat_map(|v| v.values().cloned())
            .collect()
    }

    /// Models that failed their last load, with the reason.
    pub fn failures(&self) -> BTreeMap<String, String> {
        self.failures.read().clone()
    }

    /// Records why a model cannot be loaded when the failure comes before any load
    /// (e.g. an invalid spec in etcd).
    pub fn record_failure(&self, name: &str, reason: String) {
        self.failures.write().insert(name.to_string(), reason);
    }

    /// Forgets a model's failure (the model is no longer wanted here).
    pub fn clear_failure(&self, name: &str) {
        self.failures.write().remove(name);
    }

    /// What a model file says about its tensors (auto-complete), read with this node's
    /// libraries. Blocking: it may open the model.
    pub fn describe(
        &self,
        kind: troupe_backends::BackendKind,
        path: &std::path::Path,
    ) -> Result<Vec<troupe_backends::FullSpec>, BackendError> {
        describe(self.opts.onnxruntime_lib.clone(), kind, path)
    }

    fn load_options(&self, def: &ModelDef) -> Result<LoadOptions, NodeError> {
        let device = self
            .opts
            .gpus
            .device(def.device, def.gpu, def.resources.gpu_memory_mb << 20)
            .map_err(|e| NodeError::FailedPrecondition(format!("model '{}': {e}", def.name)))?;
        Ok(LoadOptions {
            threads: def.threads.unwrap_or(self.opts.backend_threads).max(1),
            device,
            onnxruntime_lib: self.opts.onnxruntime_lib.clone(),
        })
    }

    /// Loads a model version. With `replace`, other loaded versions of the same name are
    /// unloaded once the new one is ready (repository semantics: one version served);
    /// without it, loading an existing name and version is ALREADY_EXISTS.
    #[instrument(skip_all, fields(model = %def.name, version = %def.version, backend = %def.backend))]
    pub async fn load(&self, def: ModelDef, replace: bool) -> Result<Arc<LoadedModel>, NodeError> {
        let _admin = self.admin.lock().await;
        let name = def.name.clone();
        let result = self.load_locked(def, replace).await;
        match &result {
            Ok(_) => {
                self.failures.write().remove(&name);
            }
            Err(e) => {
                warn!(model = %name, error = %e, "load failed");
                self.failures.write().insert(name, e.to_string());
            }
        }
        result
    }

    async fn load_locked(
        &self,
        def: ModelDef,
        replace: bool,
    ) -> Result<Arc<LoadedModel>, NodeError> {
        validate_name(&def.name)?;
        let version = validate_version(&def.version)?;
        self.check_root(&def.artifact)?;
        if !replace && self.get(&def.name, &def.version).is_ok() {
            return Err(NodeError::AlreadyExists {
                name: def.name.clone(),
                version: def.version.clone(),
            });
        }
        let started = Instant::now();
        let load_opts = self.load_options(&def)?;
        let artifact = def.artifact.clone();
        if !artifact.is_file() {
            return Err(NodeError::Load {
                model: def.name.clone(),
                source: BackendError::Load(format!("artifact {} not found", artifact.display())),
            });
        }
        let digest =
            tokio::task::spawn_blocking(move || troupe_proto::digest::sha256_file(&artifact))
                .await
                .map_err(|e| NodeError::Internal(e.to_string()))?
                .map_err(|m| NodeError::Load {
                    model: def.name.clone(),
                    source: BackendError::Load(m),
                })?;
        if let Some(want) = &def.sha256
            && want != &digest
        {
            return Err(NodeError::Checksum {
                path: def.artifact.display().to_string(),
                expected: want.clone(),
                actual: digest,
            });
        }
        let lineage = {
            let (def, digest) = (def.clone(), digest.clone());
            let (trust, node) = (self.opts.trust.clone(), self.opts.node_id.clone());
            tokio::task::spawn_blocking(move || crate::lineage::check(&def, &digest, &trust, &node))
                .await
                .map_err(|e| NodeError::Internal(e.to_string()))??
        };
        let instances = def.instances;
        let audit = if def.hooks.audit {
            self.audit_log()?
        } else {
            None
        };
        let monitor = match &def.monitoring {
            Some(cfg) => {
                let inputs: Vec<String> = def
                    .signature
                    .inputs
                    .iter()
                    .map(|i| i.name.clone())
                    .collect();
                let dir = def
                    .artifact
                    .parent()
                    .map(std::path::Path::to_path_buf)
                    .unwrap_or_default();
                Some(Arc::new(MonitorHook::new(
                    cfg.clone(),
                    self.monitoring().await?.clone(),
                    &self.opts.node_id,
                    (&def.name, &def.version),
                    &inputs,
                    &dir,
                )?))
            }
            None => None,
        };
        let hooks = HookSet::build(
            &def.hooks,
            &def.name,
            &def.version,
            audit.as_ref(),
            &self.explain_memory,
            monitor,
        )?;
        let pipeline = match &def.text {
            Some(t) => Some(Arc::new(TextPipeline::load(t).map_err(|m| {
                NodeError::Load {
                    model: def.name.clone(),
                    source: BackendError::Load(m),
                }
            })?)),
            None => None,
        };
        if def.monitoring.is_some() {
            let store = self.monitoring().await?.store.clone();
            let l = lineage.clone();
            tokio::spawn(async move {
                if let Err(e) = store.save_lineage(&l).await {
                    tracing::warn!(model = %l.model, error = %e, "lineage not kept in the store");
                }
            });
        }
        let model = LoadedModel::new(def, lineage, hooks, pipeline, load_opts);
        // Load every instance first (each its own session), then start the actors. On a
        // GPU, what the loads took is measured (the GPU's used memory before and after).
        let gpu = model.gpu();
        let used_before = gpu.and_then(|g| self.opts.gpus.used(g));
        let mut backends = Vec::with_capacity(instances);
        for _ in 0..instances {
            let m = model.clone();
            let b = tokio::task::spawn_blocking(move || m.load_backend())
                .await
                .map_err(|e| NodeError::Internal(format!("loader panicked: {e}")))?
                .map_err(|source| NodeError::Load {
                    model: model.def.name.clone(),
                    source,
                })?;
            backends.push(b);
        }
        if let (Some(g), Some(before)) = (gpu, used_before)
            && let Some(after) = self.opts.gpus.used(g)
        {
            let per_replica = crate::gpu::per_replica(before, after, instances);
            model.gpu_memory_bytes.store(per_replica, Ordering::Relaxed);
            info!(model = %model.def.name, gpu = g, gpu_memory_bytes = per_replica, "GPU memory measured");
        }
        for (index, backend) in backends.into_iter().enumerate() {
            let m = model.clone();
            let spawned = self
                .supervisor
                .call(
                    |reply| SupervisorMsg::Spawn {
                        model: m,
                        index,
                        backend,
                        reply,
                    },
                    None,
                )
                .await
                .map_err(|e| NodeError::Internal(format!("supervisor unavailable: {e}")))
                .and_then(|r| match r {
                    CallResult::Success(r) => r.map_err(NodeError::Internal),
                    _ => Err(NodeError::Internal("supervisor did not answer".into())),
                });
            if let Err(e) = spawned {
                // Stop the replicas this load already started.
                model.stop().await;
                return Err(e);
            }
        }
        model
            .load_micros
            .store(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        let old: Vec<Arc<LoadedModel>> = {
            let mut models = self.models.write();
            let versions = models.entry(model.def.name.clone()).or_default();
            let old = if replace {
                std::mem::take(versions).into_values().collect()
            } else {
                Vec::new()
            };
            versions.insert(version, model.clone());
            old
        };
        for o in old {
            o.stop().await;
        }
        info!(
            model = %model.def.name,
            version = %model.def.version,
            backend = %model.def.backend,
            instances,
            ms = started.elapsed().as_millis() as u64,
            "model loaded"
        );
        Ok(model)
    }

    /// Loads (or reloads) a model from the repository, latest version.
    pub async fn load_from_repository(&self, name: &str) -> Result<Arc<LoadedModel>, NodeError> {
        validate_name(name)?;
        let repo = self.opts.repository.clone().ok_or_else(|| {
            NodeError::FailedPrecondition(
                "this node has no model repository (--model-repository)".into(),
            )
        })?;
        let lib = self.opts.onnxruntime_lib.clone();
        let model = name.to_string();
        // Completing a config may open the model file: off the async runtime.
        let read = tokio::task::spawn_blocking(move || {
            ModelDef::from_repository(&repo, &model, None, &|k, p| describe(lib.clone(), k, p))
        })
        .await
        .map_err(|e| NodeError::Internal(format!("config reader panicked: {e}")))?;
        let def = match read {
            Ok(d) => d,
            Err(e) => {
                if !matches!(e, NodeError::NotInRepository { .. }) {
                    self.failures
                        .write()
                        .insert(name.to_string(), e.to_string());
                }
                return Err(e);
            }
        };
        self.load(def, true).await
    }

    /// Model names in the repository (folders with a config.toml, or with a version
    /// directory holding a model that describes itself).
    pub fn repository_models(&self) -> Vec<String> {
        let Some(repo) = &self.opts.repository else {
            return Vec::new();
        };
        let Ok(entries) = std::fs::read_dir(repo) else {
            return Vec::new();
        };
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter(|e| crate::config::file::is_model_dir(&e.path()))
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter(|n| validate_name(n).is_ok())
            .collect();
        names.sort();
        names
    }

    /// Loads every model of the repository; a model that fails is recorded and skipped.
    pub async fn load_repository(&self) -> Vec<(String, Result<(), NodeError>)> {
        let mut out = Vec::new();
        for name in self.repository_models() {
            let r = self.load_from_repository(&name).await.map(|_| ());
            out.push((name, r));
        }
        out
    }

    /// Unloads a model (all versions when `version` is None). Calls already queued finish.
    #[instrument(skip_all, fields(model = %name))]
    pub async fn unload(&self, name: &str, version: Option<&str>) -> Result<(), NodeError> {
        let _admin = self.admin.lock().await;
        let not_found = || NodeError::ModelNotFound {
            name: name.to_string(),
            version: version.unwrap_or("").to_string(),
        };
        let removed: Vec<Arc<LoadedModel>> = {
            let mut models = self.models.write();
            let versions = models.get_mut(name).ok_or_else(not_found)?;
            let removed = match version.filter(|v| !v.is_empty()) {
                None => std::mem::take(versions).into_values().collect(),
                Some(v) => {
                    let v = v.parse::<u64>().map_err(|_| not_found())?;
                    vec![versions.remove(&v).ok_or_else(not_found)?]
                }
            };
            if versions.is_empty() {
                models.remove(name);
            }
            removed
        };
        self.failures.write().remove(name);
        for m in removed {
            m.stop().await;
            info!(model = %m.def.name, version = %m.def.version, "model unloaded");
        }
        Ok(())
    }

    /// Stops every model (graceful shutdown).
    pub async fn shutdown(&self) {
        let all: Vec<Arc<LoadedModel>> = {
            let mut models = self.models.write();
            std::mem::take(&mut *models)
                .into_values()
                .flat_map(|v| v.into_values())
                .collect()
        };
        for m in all {
            m.stop().await;
        }
        self.supervisor.stop(None);
    }
}

/// What a model file says about its tensors, read with ONNX Runtime from `lib`.
fn describe(
    lib: Option<std::path::PathBuf>,
    kind: troupe_backends::BackendKind,
    path: &std::path::Path,
) -> Result<Vec<troupe_backends::FullSpec>, BackendError> {
    let opts = LoadOptions {
        threads: 1,
        device: Device::Cpu,
        onnxruntime_lib: lib,
    };
    troupe_backends::describe(kind, path, &opts)
}
