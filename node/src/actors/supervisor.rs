//! The node's supervisor: parent of every replica actor; restarts a failed replica after
//! reloading its backend from the artifact (with backoff), while its model reports
//! not-ready.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use tracing::{error, info, warn};
use troupe_backends::Backend;
use troupe_proto::backoff::Backoff;

use super::replica::{Instance, ReplicaActor};
use crate::model::LoadedModel;

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
    let instance = Instance::new(backend, Arc::downgrade(model), model.queue.clone(), index);
    let (actor, _join) =
        Actor::spawn_linked(None, ReplicaActor, instance.clone(), myself.get_cell())
            .await
            .map_err(|e| format!("cannot start replica actor: {e}"))?;
    state
        .children
        .insert(actor.get_id(), (Arc::downgrade(model), index));
    model.replicas[index].set_actor(actor, instance);
    Ok(())
}

/// Reloads a failed replica's backend off the runtime, retrying until it loads or the
/// model is unloaded, then asks the supervisor to start it.
fn reload(myself: ActorRef<SupervisorMsg>, model: Weak<LoadedModel>, index: usize) {
    tokio::spawn(async move {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
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
            tokio::time::sleep(backoff.next_delay()).await;
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
