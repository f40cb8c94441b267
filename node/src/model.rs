//! One loaded model version at run time: its replica slots, queue, statistics, metrics,
//! hooks and text pipeline; loading and warming up one backend instance; queueing a call
//! and waiting for its answer; stopping. The registry (`registry.rs`) owns the table of
//! these and orchestrates loads and unloads; the replica actors (`actors.rs`) run them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::{Mutex, RwLock};
use ractor::ActorRef;
use troupe_backends::{Backend, BackendError, LoadOptions, Signature, Tensor};

use crate::actors::ReplicaMsg;
use crate::actors::replica::{Instance, runs_inline};
use crate::batcher::Queue;
use crate::config::ModelDef;
use crate::error::NodeError;
use crate::hooks::{HookSet, HookedModel};
use crate::metrics::{DriftSample, ModelMetrics, ModelSample};
use crate::pipeline::TextPipeline;

/// A duration counter as Triton reports it.
#[derive(Default)]
pub struct DurationStat {
    pub count: AtomicU64,
    pub ns: AtomicU64,
}

impl DurationStat {
    fn add(&self, d: Duration) {
        self.count.fetch_add(1, Ordering::Relaxed);
        self.ns.fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
    }
}

/// How long one execution took in each phase: waiting (its oldest call), joining the
/// inputs, the backend, and checking and sending out the answers.
#[derive(Debug, Clone, Copy)]
pub struct Phases {
    pub queue: Duration,
    pub input: Duration,
    pub infer: Duration,
    pub output: Duration,
}

/// The executions of one batch size: how many, and the ns of each compute phase.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct BatchStat {
    pub count: u64,
    pub input_ns: u64,
    pub infer_ns: u64,
    pub output_ns: u64,
}

/// Per-model counters behind ModelStatistics.
#[derive(Default)]
pub struct Stats {
    pub success: DurationStat,
    pub fail: DurationStat,
    pub queue: DurationStat,
    pub inference_count: AtomicU64,
    pub execution_count: AtomicU64,
    pub last_inference_ms: AtomicU64,
    /// Executions by batch size (rows).
    pub batches: Mutex<BTreeMap<usize, BatchStat>>,
}

impl Stats {
    /// Counts one execution of `rows` rows with the time of each phase.
    pub fn record_execution(&self, p: Phases, rows: usize) {
        self.queue.add(p.queue);
        self.execution_count.fetch_add(1, Ordering::Relaxed);
        let mut b = self.batches.lock();
        let e = b.entry(rows).or_default();
        e.count += 1;
        e.input_ns += p.input.as_nanos() as u64;
        e.infer_ns += p.infer.as_nanos() as u64;
        e.output_ns += p.output.as_nanos() as u64;
    }

    /// The executions of every batch size together (ModelStatistics' compute phases:
    /// one count, as Triton's tools check that compute_input, compute_infer and
    /// compute_output count alike).
    pub fn all_batches(&self) -> BatchStat {
        self.batches
            .lock()
            .values()
            .fold(BatchStat::default(), |a, b| BatchStat {
                count: a.count + b.count,
                input_ns: a.input_ns + b.input_ns,
                infer_ns: a.infer_ns + b.infer_ns,
                output_ns: a.output_ns + b.output_ns,
            })
    }

    fn record_call(&self, ok: bool, batch: usize, total: Duration) {
        if ok {
            self.success.add(total);
            self.inference_count
                .fetch_add(batch as u64, Ordering::Relaxed);
        } else {
            self.fail.add(total);
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as u64;
        self.last_inference_ms.store(now, Ordering::Relaxed);
    }
}

/// One replica slot: the actor and its instance when it is running, `None` while it
/// restarts.
#[derive(Default)]
pub struct Replica {
    actor: RwLock<Option<(ActorRef<ReplicaMsg>, Arc<Instance>)>>,
    /// Calls in the batch this replica is running now.
    pub in_flight: AtomicU64,
    pub restarts: AtomicU32,
    last_error: Mutex<Option<String>>,
}

impl Replica {
    pub fn set_actor(&self, actor: ActorRef<ReplicaMsg>, instance: Arc<Instance>) {
        *self.actor.write() = Some((actor, instance));
    }
    /// The running instance.
    pub fn instance(&self) -> Option<Arc<Instance>> {
        self.actor.read().as_ref().map(|(_, i)| i.clone())
    }
    pub fn mark_failed(&self, err: String) {
        *self.actor.write() = None;
        self.restarts.fetch_add(1, Ordering::Relaxed);
        *self.last_error.lock() = Some(err);
    }
    pub fn set_error(&self, err: String) {
        *self.last_error.lock() = Some(err);
    }
    pub fn is_ready(&self) -> bool {
        self.actor.read().is_some()
    }
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().clone()
    }
}

/// A loaded model version.
pub struct LoadedModel {
    pub def: ModelDef,
    /// What the weights are: the artifact's sha256 (`digest`), provenance, signature check.
    pub lineage: troupe_monitor::lineage::Lineage,
    /// The lineage as `troupe.lineage.*` pairs (metadata, audit lines, spans).
    pub lineage_fields: Vec<(String, String)>,
    pub replicas: Vec<Replica>,
    pub stats: Stats,
    /// Prometheus histograms (see `metrics.rs`).
    pub metrics: ModelMetrics,
    /// Call hooks (explanation, audit, drift), from the model's config.
    pub hooks: HookSet,
    /// The text pipeline of a `[text]` model (tokenizer and pooling).
    pub pipeline: Option<Arc<TextPipeline>>,
    /// How long the load took, µs.
    pub load_micros: AtomicU64,
    /// Moving average of a batch's compute time, ns (u64::MAX until the first batch):
    /// fast models run on the replica's task instead of a blocking thread.
    pub compute_ewma_ns: AtomicU64,
    /// GPU memory one replica took when it loaded, measured (0 on the CPU).
    pub gpu_memory_bytes: AtomicU64,
    pub queue: Arc<Queue>,
    pub loaded_at: SystemTime,
    unloading: AtomicBool,
    load_opts: LoadOptions,
}

impl LoadedModel {
    pub fn is_unloading(&self) -> bool {
        self.unloading.load(Ordering::Acquire)
    }

    /// Ready when at least one replica is running.
    pub fn is_ready(&self) -> bool {
        !self.is_unloading() && self.replicas.iter().any(Replica::is_ready)
    }

    /// What the metrics endpoint reads of this model at a scrape.
    pub fn sample(&self) -> ModelSample<'_> {
        ModelSample {
            name: &self.def.name,
            version: &self.def.version,
            metrics: &self.metrics,
            in_flight: self.queue.running(),
            queued: self.queue.len(),
            ready: self.is_ready(),
            load_seconds: self.load_micros.load(Ordering::Relaxed) as f64 / 1e6,
            text: self.pipeline.is_some(),
            drift: self.hooks.drift.as_ref().map(|d| DriftSample {
                score: d.last_score(),
                alerting: d.alerting.load(Ordering::Relaxed) != 0,
                alerts: d.alerts.load(Ordering::Relaxed),
            }),
            quality: self.hooks.monitor.as_ref().and_then(|m| m.quality()),
            feature_drift: self
                .hooks
                .monitor
                .as_ref()
                .and_then(|m| m.watch.as_ref())
                .map(|w| {
                    let (last, windows, alerting, outliers) = w.status();
                    crate::metrics::FeatureDriftSample {
                        last,
                        windows,
                        alerting,
                        outliers,
                    }
                }),
            reviews: self.hooks.monitor.as_ref().and_then(|m| m.reviews()),
            alerts: self.hooks.monitor.as_ref().and_then(|m| m.alerts()),
        }
    }

    /// The GPU this model's replicas run on, if any.
    pub fn gpu(&self) -> Option<u32> {
        match self.load_opts.device {
            troupe_backends::Device::Cuda(i) => Some(i as u32),
            troupe_backends::Device::Cpu => None,
        }
    }

    pub fn ready_replicas(&self) -> usize {
        self.replicas.iter().filter(|r| r.is_ready()).count()
    }

    /// Loads one backend instance and warms it up (blocking).
    pub fn load_backend(&self) -> Result<Arc<dyn Backend>, BackendError> {
        let b = troupe_backends::load(
            self.def.backend,
            &self.def.artifact,
            self.def.model_signature(),
            &self.load_opts,
        )?;
        match &self.pipeline {
            Some(p) => warm_up_text(b.as_ref(), p, &self.def.signature, &self.metrics)?,
            None => warm_up(b.as_ref(), &self.def.signature)?,
        }
        Ok(Arc::from(b))
    }

    /// Queues one validated call and waits for its answer, at most until `deadline`.
    /// UNAVAILABLE at once when no replica is running; RESOURCE_EXHAUSTED when the
    /// queue is full. Dropping the future (the client cancelled) takes the call out of
    /// the queue.
    pub async fn infer(
        &self,
        inputs: Vec<Tensor>,
        rows: usize,
        deadline: Option<Instant>,
        fault: bool,
    ) -> Result<Vec<Tensor>, NodeError> {
        let start = Instant::now();
        let result = self.infer_inner(inputs, rows, deadline, fault).await;
        self.metrics.total.observe(start.elapsed().as_secs_f64());
        self.stats
            .record_call(result.is_ok(), rows, start.elapsed());
        result
    }

    /// Queues a gradient call (explanations) and waits for the input gradients.
    pub async fn gradients(
        &self,
        inputs: Vec<Tensor>,
        rows: usize,
        output: usize,
        targets: Vec<usize>,
        deadline: Option<Instant>,
    ) -> Result<Vec<Tensor>, NodeError> {
        let name = &self.def.name;
        if !self.is_ready() {
            return Err(NodeError::Unavailable(name.clone()));
        }
        self.not_expired(deadline)?;
        let work = crate::batcher::Work::Gradient { output, targets };
        let (_ticket, rx) = self.queue.push_work(inputs, rows, deadline, false, work)?;
        self.wait(rx, deadline).await
    }

    /// DEADLINE_EXCEEDED at once, without queueing, when the deadline already passed
    /// (a timer would answer only at its next tick).
    fn not_expired(&self, deadline: Option<Instant>) -> Result<(), NodeError> {
        if deadline.is_some_and(|d| d <= Instant::now()) {
            return Err(NodeError::DeadlineExceeded(format!(
                "the call's deadline passed before model '{}' could run it",
                self.def.name
            )));
        }
        Ok(())
    }

    async fn wait(
        &self,
        rx: tokio::sync::oneshot::Receiver<Result<Vec<Tensor>, NodeError>>,
        deadline: Option<Instant>,
    ) -> Result<Vec<Tensor>, NodeError> {
        let name = &self.def.name;
        let answer = match deadline {
            Some(d) => tokio::time::timeout_at(d.into(), rx).await.map_err(|_| {
                NodeError::DeadlineExceeded(format!(
                    "model '{name}' did not answer within the call's deadline"
                ))
            })?,
            None => rx.await,
        };
        answer.map_err(|_| {
            NodeError::Unavailable(format!("{name} (its replica failed during the call)"))
        })?
    }

    async fn infer_inner(
        &self,
        inputs: Vec<Tensor>,
        rows: usize,
        deadline: Option<Instant>,
        fault: bool,
    ) -> Result<Vec<Tensor>, NodeError> {
        let name = &self.def.name;
        if !self.is_ready() {
            return Err(NodeError::Unavailable(name.clone()));
        }
        self.not_expired(deadline)?;
        // A call that would leave the queue at once on an idle instance (nothing queued,
        // no batch running) of a fast model runs here, on this task: no hand-off to the
        // replica's task and back.
        if !fault && runs_inline(self) && self.queue.running() == 0 && self.queue.is_empty() {
            for instance in self.replicas.iter().filter_map(Replica::instance) {
                let Some(turn) = instance.idle() else {
                    continue;
                };
                // Taken first: checked again once the instance is this call's.
                if self.queue.running() != 0 || !self.queue.is_empty() {
                    break;
                }
                let (entry, rx) = self.queue.take(inputs, rows, deadline)?;
                instance.run_direct(entry, turn).await;
                return self.wait(rx, deadline).await;
            }
        }
        let (_ticket, rx) = self.queue.push(inputs, rows, deadline, fault)?;
        self.wait(rx, deadline).await
    }
}

impl LoadedModel {
    /// A model about to start: its replica slots empty, its queue open.
    pub fn new(
        def: ModelDef,
        lineage: troupe_monitor::lineage::Lineage,
        hooks: HookSet,
        pipeline: Option<Arc<TextPipeline>>,
        load_opts: LoadOptions,
    ) -> Arc<Self> {
        let queue = Queue::new(&def.name, def.batching.clone());
        Arc::new(Self {
            replicas: (0..def.instances).map(|_| Replica::default()).collect(),
            def,
            lineage_fields: lineage.fields(),
            lineage,
            stats: Stats::default(),
            metrics: ModelMetrics::default(),
            hooks,
            pipeline,
            load_micros: AtomicU64::new(0),
            compute_ewma_ns: AtomicU64::new(u64::MAX),
            gpu_memory_bytes: AtomicU64::new(0),
            queue,
            loaded_at: SystemTime::now(),
            unloading: AtomicBool::new(false),
            load_opts,
        })
    }
}

/// Runs two batch-1 calls of zeros when every dimension is fixed: TorchScript optimizes
/// on its first runs, and a config that does not fit the model fails here, at load time,
/// instead of on the first user call.
fn warm_up(b: &dyn Backend, sig: &Signature) -> Result<(), BackendError> {
    let mut inputs = Vec::with_capacity(sig.inputs.len());
    for spec in &sig.inputs {
        let dims = sig.wire_dims(spec);
        let shape: Vec<usize> = dims
            .iter()
            .enumerate()
            .map(|(i, &d)| {
                if i == 0 && sig.max_batch_size > 0 {
                    1
                } else {
                    d.max(-1) as usize
                }
            })
            .collect();
        if dims
            .iter()
            .skip(usize::from(sig.max_batch_size > 0))
            .any(|&d| d < 0)
        {
            return Ok(()); // variable dims: nothing safe to guess
        }
        let t = match spec.dtype.dense_len(&shape) {
            Some(bytes) => Tensor::new(spec.dtype, shape, vec![0u8; bytes].into())?,
            None => {
                let n = shape.iter().product::<usize>();
                Tensor::from_bytes_elements(shape, std::iter::repeat_n(&b"warm up"[..], n))?
            }
        };
        inputs.push(t);
    }
    for _ in 0..2 {
        let out = b
            .infer(&inputs)
            .map_err(|e| BackendError::Load(format!("warm-up call failed: {e}")))?;
        sig.check_outputs(&out)
            .map_err(|e| BackendError::Load(format!("warm-up: {e}")))?;
    }
    Ok(())
}

/// A text model's warm-up: two texts through tokenizer, model and pooling, checked
/// against what clients will get.
fn warm_up_text(
    b: &dyn Backend,
    p: &TextPipeline,
    sig: &Signature,
    metrics: &ModelMetrics,
) -> Result<(), BackendError> {
    let text =
        Tensor::from_bytes_elements(vec![2, 1], [&b"warm up"[..], &b"a longer warm-up text"[..]])?;
    let (inputs, _) = p
        .encode(&text)
        .map_err(|e| BackendError::Load(format!("warm-up: {e}")))?;
    let hidden = b
        .infer(&inputs)
        .map_err(|e| BackendError::Load(format!("warm-up call failed: {e}")))?;
    let out = p
        .pool(hidden, &inputs, metrics)
        .map_err(|e| BackendError::Load(format!("warm-up: {e}")))?;
    sig.check_outputs(&out)
        .map_err(|e| BackendError::Load(format!("warm-up: {e}")))
}

/// Marks a model unloading and lets each replica finish what it has queued.
impl LoadedModel {
    /// Marks the model unloading and lets each replica finish what it has queued.
    pub async fn stop(self: &Arc<Self>) {
        let m = self;
        m.unloading.store(true, Ordering::Release);
        m.queue.close();
        for r in &m.replicas {
            let actor = r.actor.write().take();
            if let Some((a, _)) = actor
                && a.drain_and_wait(Some(Duration::from_secs(30)))
                    .await
                    .is_err()
            {
                a.stop(Some("unload timed out".into()));
            }
        }
        // Nothing can run what is still queued (every replica was down): answer it.
        m.queue
            .fail_remaining(|| NodeError::Unavailable(format!("{} (unloaded)", m.def.name)));
    }
}

/// The face the call hooks see (explanations run more calls through the queue).
#[tonic::async_trait]
impl HookedModel for LoadedModel {
    fn def(&self) -> &ModelDef {
        &self.def
    }

    fn lineage(&self) -> &troupe_monitor::lineage::Lineage {
        &self.lineage
    }

    fn pipeline(&self) -> Option<&TextPipeline> {
        self.pipeline.as_deref()
    }

    fn metrics(&self) -> &ModelMetrics {
        &self.metrics
    }

    async fn infer(
        &self,
        inputs: Vec<Tensor>,
        rows: usize,
        deadline: Option<Instant>,
    ) -> Result<Vec<Tensor>, NodeError> {
        LoadedModel::infer(self, inputs, rows, deadline, false).await
    }

    async fn gradients(
        &self,
        inputs: Vec<Tensor>,
        rows: usize,
        output: usize,
        targets: Vec<usize>,
        deadline: Option<Instant>,
    ) -> Result<Vec<Tensor>, NodeError> {
        LoadedModel::gradients(self, inputs, rows, output, targets, deadline).await
    }
}
