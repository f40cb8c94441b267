//! The etcd key layout and values, shared with the nodes (see `troupe_proto::cluster`).

pub use troupe_proto::cluster::*;
