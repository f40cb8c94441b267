//! A replica: one loaded backend instance ([`Instance`]) and the actor whose loop pulls
//! batches from its model's queue, runs them (inline when fast, else on a blocking
//! thread) and answers each call. A caller whose call would leave the queue at once (the
//! queue is empty and no batch is running) and whose model is fast runs it on an idle
//! instance itself, on its own task (`Instance::run_direct`): no hand-off to the actor's
//! task and back. One batch at a time holds an instance's turn.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::sync::{MutexGuard, Notify};
use troupe_backends::{Backend, BackendError, Tensor};

use crate::batcher::{Entry, Queue, Work, concat, split};
use crate::error::NodeError;
use crate::model::LoadedModel;

/// Work for one replica: `Serve` starts its loop of pulling batches from the model's
/// queue, sent once when the actor starts.
pub enum ReplicaMsg {
    Serve,
}

/// The actor of one backend instance. It takes batches from its model's queue one at a
/// time; a batch that fails the instance (a panic, an injected fault) stops it, and the
/// supervisor restarts it.
pub struct ReplicaActor;

/// One backend instance, shared by its actor's loop and by callers running a call
/// themselves.
pub struct Instance {
    backend: Arc<dyn Backend>,
    model: Weak<LoadedModel>,
    queue: Arc<Queue>,
    index: usize,
    /// Held by the one batch running on this instance.
    turn: tokio::sync::Mutex<()>,
    /// Why a caller's own batch failed this instance; its actor stops on it.
    failure: parking_lot::Mutex<Option<String>>,
    failed: Notify,
}

/// Batches faster than this (moving average) run on the task that took them.
const INLINE_BELOW: Duration = Duration::from_micros(50);

/// True when `model`'s batches have been taking less than [`INLINE_BELOW`]: a hand-off to
/// another thread costs more than its whole forward pass.
pub(crate) fn runs_inline(model: &LoadedModel) -> bool {
    model.compute_ewma_ns.load(Ordering::Relaxed) < INLINE_BELOW.as_nanos() as u64
}

/// Folds one compute time into a model's moving average (weight 1/8).
fn record_compute(ewma_ns: &std::sync::atomic::AtomicU64, d: Duration) {
    let new = d.as_nanos().min(u64::MAX as u128) as u64;
    let old = ewma_ns.load(Ordering::Relaxed);
    let next = if old == u64::MAX {
        new
    } else {
        old - old / 8 + new / 8
    };
    ewma_ns.store(next, Ordering::Relaxed);
}

/// The text of a caught panic.
fn panic_message(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// Answers every call of a batch with the same error.
fn fail_all(batch: Vec<Entry>, err: impl Fn() -> NodeError) {
    for e in batch {
        let _ = e.reply.send(Err(err()));
    }
}

/// A batch on an instance: while it lives its calls count as running on the queue and in
/// the replica's `in_flight`; dropped, also when its caller went away mid-batch.
struct Running<'a> {
    instance: &'a Instance,
    calls: usize,
}

impl<'a> Running<'a> {
    fn new(instance: &'a Instance, calls: usize) -> Self {
        if let Some(m) = instance.model.upgrade() {
            m.replicas[instance.index]
                .in_flight
                .store(calls as u64, Ordering::Relaxed);
        }
        Self { instance, calls }
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        if let Some(m) = self.instance.model.upgrade() {
            m.replicas[self.instance.index]
                .in_flight
                .store(0, Ordering::Relaxed);
        }
        self.instance.queue.finished(self.calls);
    }
}

impl Instance {
    pub fn new(
        backend: Arc<dyn Backend>,
        model: Weak<LoadedModel>,
        queue: Arc<Queue>,
        index: usize,
    ) -> Arc<Self> {
        Arc::new(Self {
            backend,
            model,
            queue,
            index,
            turn: tokio::sync::Mutex::new(()),
            failure: parking_lot::Mutex::new(None),
            failed: Notify::new(),
        })
    }

    /// This instance's turn, if no batch holds it now.
    pub(crate) fn idle(&self) -> Option<MutexGuard<'_, ()>> {
        self.turn.try_lock().ok()
    }

    /// Runs one call taken from nobody's queue (`Queue::take`) on the caller's task, in
    /// the turn `idle` gave. A failure of the instance stops its actor, which the
    /// supervisor restarts.
    pub(crate) async fn run_direct(&self, entry: Entry, _turn: MutexGuard<'_, ()>) {
        let _running = Running::new(self, 1);
        if let Err(why) = self.run(vec![entry], true).await {
            *self.failure.lock() = Some(why);
            self.failed.notify_one();
        }
    }

    /// Waits until a caller's batch failed this instance.
    async fn failed(&self) -> String {
        loop {
            let woken = self.failed.notified();
            if let Some(why) = self.failure.lock().clone() {
                return why;
            }
            woken.await;
        }
    }

    /// The actor's loop: batches from the queue, one at a time in this instance's turn,
    /// until the queue is closed and empty (unload or shutdown). Err stops the actor.
    async fn serve(&self) -> Result<(), String> {
        loop {
            let batch = tokio::select! {
                biased;
                why = self.failed() => return Err(why),
                batch = self.queue.next_batch() => batch,
            };
            let Some(batch) = batch else {
                return Ok(());
            };
            let _running = Running::new(self, batch.len());
            let _turn = self.turn.lock().await;
            if let Some(why) = self.failure.lock().clone() {
                let name = self
                    .model
                    .upgrade()
                    .map(|m| m.def.name.clone())
                    .unwrap_or_default();
                fail_all(batch, || {
                    NodeError::Unavailable(format!("{name} (its replica failed during the call)"))
                });
                return Err(why);
            }
            self.run(batch, false).await?;
        }
    }

    /// One `batch` span (size, calls) and its `backend` span (backend, device) in each
    /// traced call of the batch; open while the batch runs. Empty when tracing is off.
    fn spans(&self, batch: &[Entry], work: &'static str) -> Vec<tracing::Span> {
        if !troupe_telemetry::enabled() {
            return Vec::new();
        }
        let size: usize = batch.iter().map(|e| e.rows).sum();
        let mut spans = Vec::new();
        for e in batch.iter().filter(|e| !e.span.is_none()) {
            let b = tracing::info_span!(parent: &e.span, "batch", size = size as i64, calls = batch.len() as i64, instance = self.index as i64);
            let k = tracing::info_span!(parent: &b, "backend", backend = %self.backend.kind(), device = %self.backend.device(), work);
            // Children first: they close before their parents.
            spans.push(k);
            spans.push(b);
        }
        spans
    }

    /// Runs one gradient call (explanations). Err means this instance must be restarted.
    async fn run_gradient(
        &self,
        model: &LoadedModel,
        mut batch: Vec<Entry>,
        output: usize,
        targets: Vec<usize>,
    ) -> Result<(), String> {
        let Some(mut entry) = batch.pop() else {
            return Ok(());
        };
        let inputs = std::mem::take(&mut entry.inputs);
        let backend = self.backend.clone();
        let started = Instant::now();
        let joined =
            tokio::task::spawn_blocking(move || backend.gradients(&inputs, output, &targets)).await;
        model
            .metrics
            .compute
            .observe(started.elapsed().as_secs_f64());
        let name = &model.def.name;
        match joined {
            Ok(r) => {
                let _ = entry.reply.send(r.map_err(|e| NodeError::backend(name, e)));
                Ok(())
            }
            Err(join_err) => {
                let _ = entry.reply.send(Err(NodeError::Unavailable(format!(
                    "{name} (its replica failed during the call)"
                ))));
                Err(format!("backend panicked computing gradients: {join_err}"))
            }
        }
    }

    /// Runs one batch (inline on this task when `inline`, or when the model is fast).
    /// Err means this instance must be restarted.
    async fn run(&self, mut batch: Vec<Entry>, inline: bool) -> Result<(), String> {
        let Some(model) = self.model.upgrade() else {
            return Ok(());
        };
        let name = model.def.name.clone();
        if batch.iter().any(|e| e.fault) {
            // Fault injection: fail this instance; the batch's callers see UNAVAILABLE.
            drop(batch);
            return Err("fault injected: replica crashed on request".into());
        }
        // The calls stop waiting: their queue_wait spans end here.
        for e in batch.iter_mut() {
            e.queue_span = tracing::Span::none();
        }
        if let [entry] = batch.as_mut_slice()
            && let Work::Gradient { output, targets } = entry.work.clone()
        {
            let _spans = self.spans(&batch, "gradient");
            return self.run_gradient(&model, batch, output, targets).await;
        }
        let rows: Vec<usize> = batch.iter().map(|e| e.rows).collect();
        let spans = self.spans(&batch, "infer");
        let oldest = batch
            .iter()
            .map(|e| e.enqueued)
            .min()
            .unwrap_or_else(Instant::now);
        let joining = Instant::now();
        let joined_inputs = match &model.pipeline {
            Some(p) => p.concat(&mut batch),
            None => concat(&mut batch),
        };
        let inputs = match joined_inputs {
            Ok(i) => i,
            Err(e) => {
                fail_all(batch, || {
                    NodeError::backend(&name, BackendError::InvalidInput(e.to_string()))
                });
                return Ok(());
            }
        };
        let started = Instant::now();
        // Fast batches run right here; slower ones go to a blocking thread, so the async
        // runtime is never held up.
        let inline = inline || runs_inline(&model);
        // The backend, then a text model's pooling (in a `pool` span of each traced call).
        let pool_parents: Vec<tracing::Span> = spans.iter().skip(1).step_by(2).cloned().collect();
        let compute = move |backend: &dyn Backend, m: &LoadedModel| {
            let out = backend.infer(&inputs)?;
            match &m.pipeline {
                Some(p) => {
                    let _pool: Vec<_> = pool_parents
                        .iter()
                        .map(|b| {
                            tracing::info_span!(parent: b, "pool", pooling = p.def.pooling.as_str())
                                .entered()
                        })
                        .collect();
                    p.pool(out, &inputs, &m.metrics)
                }
                None => Ok(out),
            }
        };
        let joined: Result<Result<Vec<Tensor>, BackendError>, String> = if inline {
            let backend = &self.backend;
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                compute(backend.as_ref(), &model)
            }))
            .map_err(|p| panic_message(&p))
        } else {
            let backend = self.backend.clone();
            let m = model.clone();
            tokio::task::spawn_blocking(move || compute(backend.as_ref(), &m))
                .await
                .map_err(|e| e.to_string())
        };
        let compute = started.elapsed();
        record_compute(&model.compute_ewma_ns, compute);
        self.queue.measured(rows.iter().sum(), compute);
        drop(spans);
        model
            .metrics
            .queue
            .observe(joining.duration_since(oldest).as_secs_f64());
        model.metrics.compute.observe(compute.as_secs_f64());
        model
            .metrics
            .batch
            .observe(rows.iter().sum::<usize>() as f64);
        // The answers (or the failure) go out, then the execution is counted with the time
        // of each of its phases at once.
        let answering = Instant::now();
        let result = match joined {
            Ok(Ok(outputs)) => {
                answer(&model, &name, batch, outputs, &rows);
                Ok(())
            }
            Ok(Err(e)) => {
                let msg = e.to_string();
                let kind = |m: &str| match &e {
                    BackendError::InvalidInput(_) => BackendError::InvalidInput(m.to_string()),
                    BackendError::Shape(_) => BackendError::Shape(m.to_string()),
                    BackendError::UnsupportedType(_) => {
                        BackendError::UnsupportedType(m.to_string())
                    }
                    _ => BackendError::Runtime(m.to_string()),
                };
                fail_all(batch, || NodeError::backend(&name, kind(&msg)));
                Ok(())
            }
            Err(join_err) => {
                // The backend panicked: this instance may be in a bad state.
                let msg = format!("backend panicked: {join_err}");
                fail_all(batch, || {
                    NodeError::Unavailable(format!("{name} (its replica failed during the call)"))
                });
                Err(msg)
            }
        };
        model.stats.record_execution(
            crate::model::Phases {
                queue: joining.duration_since(oldest),
                input: started.duration_since(joining),
                infer: compute,
                output: answering.elapsed(),
            },
            rows.iter().sum(),
        );
        result
    }
}

/// Checks a batch's outputs and sends each call its part of them (or the failure).
fn answer(
    model: &LoadedModel,
    name: &str,
    batch: Vec<Entry>,
    outputs: Vec<Tensor>,
    rows: &[usize],
) {
    if let Err(e) = model.def.signature.check_outputs(&outputs) {
        fail_all(batch, || {
            NodeError::backend(name, BackendError::OutputMismatch(e.to_string()))
        });
        return;
    }
    match split(outputs, rows) {
        Ok(parts) => {
            for (e, out) in batch.into_iter().zip(parts) {
                let _ = e.reply.send(Ok(out));
            }
        }
        Err(e) => fail_all(batch, || {
            NodeError::backend(name, BackendError::OutputMismatch(e.to_string()))
        }),
    }
}

impl Actor for ReplicaActor {
    type Msg = ReplicaMsg;
    type State = Arc<Instance>;
    type Arguments = Arc<Instance>;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        instance: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(instance)
    }

    async fn post_start(
        &self,
        myself: ActorRef<Self::Msg>,
        _state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        myself.send_message(ReplicaMsg::Serve)?;
        Ok(())
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        instance: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            ReplicaMsg::Serve => Ok(instance.serve().await?),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    #[test]
    fn the_compute_average_starts_at_the_first_batch_and_moves_slowly() {
        let a = AtomicU64::new(u64::MAX);
        record_compute(&a, Duration::from_micros(8));
        assert_eq!(a.load(Ordering::Relaxed), 8_000);
        record_compute(&a, Duration::from_micros(808));
        // Each batch moves it by an eighth of the difference.
        assert_eq!(a.load(Ordering::Relaxed), 8_000 - 1_000 + 101_000);
        for _ in 0..40 {
            record_compute(&a, Duration::from_millis(2));
        }
        assert!(a.load(Ordering::Relaxed) > INLINE_BELOW.as_nanos() as u64);
    }

    #[test]
    fn panic_messages_are_kept() {
        let p = std::panic::catch_unwind(|| panic!("boom {}", 1)).unwrap_err();
        assert_eq!(panic_message(&p), "boom 1");
        let p = std::panic::catch_unwind(|| std::panic::panic_any(7u8)).unwrap_err();
        assert_eq!(panic_message(&p), "unknown panic");
    }
}
