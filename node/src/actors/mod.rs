//! The actors: one [`ReplicaActor`] per loaded backend instance, all linked under one
//! [`NodeSupervisor`] that restarts a replica that fails (reloading its backend from the
//! artifact) while its model reports not-ready.
//!
//! * [`replica`]: a replica actor, its batch loop and backend calls;
//! * [`supervisor`]: starting, watching and restarting replicas.

pub mod replica;
pub mod supervisor;

pub use replica::{ReplicaActor, ReplicaMsg};
pub use supervisor::{NodeSupervisor, SupervisorMsg};
