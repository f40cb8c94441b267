//! The etcd key layout and the values the router reads and writes (docs/ARCHITECTURE.md
//! §11). Node records are read tolerantly: unknown fields are ignored.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub const ROOT: &str = "/troupe/";
pub const NODES: &str = "/troupe/nodes/";
pub const STATUS: &str = "/troupe/status/";
pub const MODELS: &str = "/troupe/models/";
pub const PLACEMENTS: &str = "/troupe/placements/";
pub const PENDING: &str = "/troupe/pending/";
pub const LEADER: &str = "/troupe/leader";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct GpuRecord {
    pub index: u32,
    pub memory_bytes: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Capacity {
    pub cpu_millis: u64,
    pub memory_bytes: u64,
    pub gpus: Vec<GpuRecord>,
}

/// `/troupe/nodes/<id>`, written by the node under its lease.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NodeRecord {
    pub id: String,
    pub addr: String,
    pub capacity: Capacity,
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ModelLoad {
    pub name: String,
    pub version: String,
    pub ready: bool,
    pub queue_length: u64,
    pub in_flight: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FailedModel {
    pub name: String,
    pub reason: String,
}

/// `/troupe/status/<id>`, written by the node under its lease.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StatusRecord {
    pub id: String,
    pub models: Vec<ModelLoad>,
    pub failed: Vec<FailedModel>,
}

/// `/troupe/placements/<model>/<node>`, written by the placement leader.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacementValue {
    pub count: u32,
    pub gpu: Option<u32>,
}

/// `/troupe/pending/<model>`, written by the placement leader.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingValue {
    pub missing: u32,
    pub reason: String,
}
