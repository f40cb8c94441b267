//! troupe-router: places model replicas on nodes and (next) routes calls to them.
//!
//! Today this crate holds the placement decision, a pure function of (nodes, specs,
//! current placement) — see [`placement`]. The etcd membership, the placement leader and
//! the routing service are tracked in the cluster issue and build on it.

pub mod placement;
