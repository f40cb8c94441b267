//! The actors: one [`ReplicaActor`] per loaded backend instance, all linked under one
//! [`NodeSupervisor`] that restarts a replica that fails (reloading its backend from the
//! artifact) while its model reports not-ready.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use tracing::{error, info, warn};
use troupe_backends::{Backend, BackendError};

use crate::batcher::{Entry, Queue, Work, concat, split};
use crate::error::NodeError;
use crate::registry::LoadedModel;

/// Work for one replica: `Serve` starts its loop of pulling batches from the model's
/// queue, sent once when the actor starts.
pub enum ReplicaMsg {
    Serve,
}

/// One backend instance. It takes batches from its model's queue one at a time and runs
/// each on a blocking thread, so the async runtime is never blocked.
pub struct ReplicaActor;

pub struct ReplicaState {
    backend: Arc<dyn Backend>,
    model: Weak<LoadedModel>,
    queue: Arc<Queue>,
    index: usize,
}

/// Answers every call of a batch with the same error.
fn fail_all(batch: Vec<Entry>, err: impl Fn() -> NodeError) {
    for e in batch {
        let _ = e.reply.send(Err(err()));
    }
}

impl ReplicaState {
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
        model.metrics.compute.observe_duration(started.elapsed());
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

    /// Runs one batch. Err means this instance must be restarted.
    async fn run(&self, mut batch: Vec<Entry>) -> Result<(), String> {
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
        let inputs = match concat(&mut batch) {
            Ok(i) => i,
            Err(e) => {
                fail_all(batch, || {
                    NodeError::backend(&name, BackendError::InvalidInput(e.to_string()))
                });
                return Ok(());
            }
        };
        let started = Instant::now();
        let backend = self.backend.clone();
        let joined = tokio::task::spawn_blocking(move || backend.infer(&inputs)).await;
        let compute = started.elapsed();
        drop(spans);
        model
            .stats
            .record_execution(started.duration_since(oldest), compute, rows.iter().sum());
        model
            .metrics
            .queue
            .observe_duration(started.duration_since(oldest));
        model.metrics.compute.observe_duration(compute);
        model
            .metrics
            .batch
            .observe(rows.iter().sum::<usize>() as f64);
        match joined {
            Ok(Ok(outputs)) => {
                if let Err(e) = model.def.signature.check_outputs(&outputs) {
                    fail_all(batch, || {
                        NodeError::backend(&name, BackendError::OutputMismatch(e.to_string()))
                    });
                    return Ok(());
                }
                match split(outputs, &rows) {
                    Ok(parts) => {
                        for (e, out) in batch.into_iter().zip(parts) {
                            let _ = e.reply.send(Ok(out));
                        }
                    }
                    Err(e) => fail_all(batch, || {
                        NodeError::backend(&name, BackendError::OutputMismatch(e.to_string()))
                    }),
                }
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
        }
    }
}

impl Actor for ReplicaActor {
    type Msg = ReplicaMsg;
    type State = ReplicaState;
    type Arguments = (Arc<dyn Backend>, Weak<LoadedModel>, Arc<Queue>, usize);

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        (backend, model, queue, index): Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(ReplicaState {
            backend,
            model,
            queue,
            index,
        })
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
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            ReplicaMsg::Serve => {
                // Until the queue is closed and empty (unload or shutdown).
                while let Some(batch) = state.queue.next_batch().await {
                    let calls = batch.len();
                    let busy = state.model.upgrade();
                    if let Some(m) = &busy {
                        m.replicas[state.index]
                            .in_flight
                            .store(calls as u64, std::sync::atomic::Ordering::Relaxed);
                    }
                    let result = state.run(batch).await;
                    if let Some(m) = &busy {
                        m.replicas[state.index]
                            .in_flight
                            .store(0, std::sync::atomic::Ordering::Relaxed);
                    }
                    state.queue.finished(calls);
                    result?;
                }
                Ok(())
            }
        }
    }
}

/// Messages to the supervisor.
pub enum SupervisorMsg {
    /// Start replica `index` of `model` with a loaded backend.
    Spawn {
        model: Arc<LoadedModel>,
        index: usize,
        backend: Arc<dyn Backend>,
        reply: RpcReplyPort<Result<(), String>>,
    },
    /// A failed replica's backend was reloaded: start it again.
    Respawn {
        model: Weak<LoadedModel>,
        index: usize,
        backend: Arc<dyn Backend>,
    },
}

/// Parent of every replica actor.
pub struct NodeSupervisor;

#[derive(Default)]
pub struct SupervisorState {
    children: HashMap<ActorId, (Weak<LoadedModel>, usize)>,
}

async fn spawn_replica(
    myself: &ActorRef<SupervisorMsg>,
    state: &mut SupervisorState,
    model: &Arc<LoadedModel>,
    index: usize,
    backend: Arc<dyn Backend>,
) -> Result<(), String> {
    let (actor, _join) = Actor::spawn_linked(
        None,
        ReplicaActor,
        (backend, Arc::downgrade(model), model.queue.clone(), index),
        myself.get_cell(),
    )
    .await
    .map_err(|e| format!("cannot start replica actor: {e}"))?;
    state
        .children
        .insert(actor.get_id(), (Arc::downgrade(model), index));
    model.replicas[index].set_actor(Some(actor));
    Ok(())
}

/// Reloads a failed replica's backend off the runtime, retrying until it loads or the
/// model is unloaded, then asks the supervisor to start it.
fn reload(myself: ActorRef<SupervisorMsg>, model: Weak<LoadedModel>, index: usize) {
    tokio::spawn(async move {
        let mut delay = Duration::from_millis(100);
        loop {
            let Some(m) = model.upgrade() else { return };
            if m.is_unloading() {
                return;
            }
            let loader = m.clone();
            match tokio::task::spawn_blocking(move || loader.load_backend()).await {
                Ok(Ok(backend)) => {
                    let _ = myself.cast(SupervisorMsg::Respawn {
                        model: model.clone(),
                        index,
                        backend,
                    });
                    return;
                }
                Ok(Err(e)) => {
                    error!(model = %m.def.name, replica = index, error = %e, "replica reload failed; retrying");
                    m.replicas[index].set_error(e.to_string());
                }
                Err(e) => {
                    error!(model = %m.def.name, replica = index, error = %e, "replica reload panicked; retrying");
                }
            }
            drop(m);
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    });
}

impl Actor for NodeSupervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = ();

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        _: (),
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(SupervisorState::default())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SupervisorMsg::Spawn {
                model,
                index,
                backend,
                reply,
            } => {
                let r = spawn_replica(&myself, state, &model, index, backend).await;
                let _ = reply.send(r);
            }
            SupervisorMsg::Respawn {
                model,
                index,
                backend,
            } => {
                let Some(m) = model.upgrade() else {
                    return Ok(());
                };
                if m.is_unloading() {
                    return Ok(());
                }
                match spawn_replica(&myself, state, &m, index, backend).await {
                    Ok(()) => info!(model = %m.def.name, replica = index, "replica restarted"),
                    Err(e) => {
                        error!(model = %m.def.name, replica = index, error = %e, "replica restart failed");
                        reload(myself.clone(), model, index);
                    }
                }
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        evt: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match evt {
            SupervisionEvent::ActorFailed(cell, err) => {
                let Some((model, index)) = state.children.remove(&cell.get_id()) else {
                    return Ok(());
                };
                let Some(m) = model.upgrade() else {
                    return Ok(());
                };
                m.replicas[index].mark_failed(err.to_string());
                warn!(model = %m.def.name, replica = index, error = %err, "replica failed; restarting");
                if !m.is_unloading() {
                    reload(myself, model, index);
                }
            }
            SupervisionEvent::ActorTerminated(cell, _, _) => {
                state.children.remove(&cell.get_id());
            }
            _ => {}
        }
        Ok(())
    }
}
