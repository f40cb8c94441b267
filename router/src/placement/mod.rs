//! The placement decision: a pure function of the live nodes, the desired model specs
//! and the current placement. It
//!
//! * never over-commits a node's CPU, memory or a GPU's memory;
//! * spreads the replicas of one model over different nodes while room allows;
//! * puts GPU replicas only on a GPU with enough free memory;
//! * keeps a replica that fits nowhere pending, with the short resource named;
//! * keeps replicas that are fine where they are (stable), and moves only those whose
//!   node is gone;
//! * and, apart from `place`, finds the one move that restores spread once it is
//!   possible ([`next_move`]): the leader makes it before it breaks, and paces it.
//!
//! Deterministic: the same input gives the same output (ties break by node id).

use std::collections::{BTreeMap, BTreeSet};

/// A GPU of a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gpu {
    pub index: u32,
    pub memory_bytes: u64,
}

/// A live node and what it offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub id: String,
    pub cpu_millis: u64,
    pub memory_bytes: u64,
    pub gpus: Vec<Gpu>,
}

/// Where a model wants to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Device {
    /// A GPU when one has room, else CPU.
    #[default]
    Any,
    Cpu,
    Gpu,
}

/// What one replica of a model needs, and how many replicas are wanted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSpec {
    /// `name:version`, unique.
    pub key: String,
    pub replicas: u32,
    pub cpu_millis: u64,
    pub memory_bytes: u64,
    pub gpu_memory_bytes: u64,
    pub device: Device,
}

/// One replica placed on a node (and a GPU of it, for GPU replicas).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Assignment {
    pub model: String,
    pub node: String,
    pub gpu: Option<u32>,
}

/// Replicas that could not be placed, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub model: String,
    pub missing: u32,
    pub reason: String,
}

/// The outcome.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Placement {
    pub assignments: Vec<Assignment>,
    pub pending: Vec<Pending>,
}

#[derive(Debug, Clone)]
struct Free {
    cpu: u64,
    mem: u64,
    gpus: BTreeMap<u32, u64>,
}

fn gib(b: u64) -> String {
    format!("{:.2} GiB", b as f64 / (1u64 << 30) as f64)
}

impl Free {
    fn of(n: &Node) -> Self {
        Free {
            cpu: n.cpu_millis,
            mem: n.memory_bytes,
            gpus: n.gpus.iter().map(|g| (g.index, g.memory_bytes)).collect(),
        }
    }

    /// The GPU with the least free memory that still fits (best fit), if any.
    fn gpu_for(&self, need: u64) -> Option<u32> {
        self.gpus
            .iter()
            .filter(|(_, free)| **free >= need)
            .min_by_key(|(i, free)| (**free, **i))
            .map(|(i, _)| *i)
    }

    /// Where a replica fits on this node: Some(gpu choice) or None.
    fn fits(&self, m: &ModelSpec) -> Option<Option<u32>> {
        if self.cpu < m.cpu_millis || self.mem < m.memory_bytes {
            return None;
        }
        match m.device {
            Device::Cpu => Some(None),
            Device::Gpu => self.gpu_for(m.gpu_memory_bytes).map(Some),
            Device::Any if m.gpu_memory_bytes > 0 => Some(self.gpu_for(m.gpu_memory_bytes)),
            Device::Any => Some(None),
        }
    }

    fn take(&mut self, m: &ModelSpec, gpu: Option<u32>) {
        self.cpu -= m.cpu_millis;
        self.mem -= m.memory_bytes;
        if let Some(g) = gpu
            && let Some(free) = self.gpus.get_mut(&g)
        {
            *free -= m.gpu_memory_bytes;
        }
    }

    /// How full the node would be: the larger of its CPU and memory shares in use, in
    /// millionths (for least-loaded choice).
    fn load(&self, n: &Node) -> u64 {
        let share = |free: u64, cap: u64| {
            (u128::from(cap - free) * 1_000_000)
                .checked_div(u128::from(cap))
                .map_or(1_000_000, |v| v as u64)
        };
        share(self.cpu, n.cpu_millis).max(share(self.mem, n.memory_bytes))
    }
}

/// Why nothing fits, naming the short resource.
fn reason(m: &ModelSpec, nodes: &[&Node], free: &[Free]) -> String {
    if nodes.is_empty() {
        return "no live node".into();
    }
    let max_cpu = free.iter().map(|f| f.cpu).max().unwrap_or(0);
    let max_mem = free.iter().map(|f| f.mem).max().unwrap_or(0);
    let max_gpu = free.iter().flat_map(|f| f.gpus.values().copied()).max();
    let needs_gpu = m.device == Device::Gpu;
    let mut short = Vec::new();
    if max_cpu < m.cpu_millis {
        short.push(format!(
            "cpu: needs {} millicores, most free on one node {}",
            m.cpu_millis, max_cpu
        ));
    }
    if max_mem < m.memory_bytes {
        short.push(format!(
            "memory: needs {}, most free on one node {}",
            gib(m.memory_bytes),
            gib(max_mem)
        ));
    }
    if needs_gpu {
        match max_gpu {
            None => short.push("gpu: no node has a GPU".into()),
            Some(g) if g < m.gpu_memory_bytes => short.push(format!(
                "gpu memory: needs {}, most free on one GPU {}",
                gib(m.gpu_memory_bytes),
                gib(g)
            )),
            _ => {}
        }
    }
    if short.is_empty() {
        "no single node has all the resources at once (cpu, memory and gpu memory together)".into()
    } else {
        short.join("; ")
    }
}

/// The nodes in id order (ties break by id), one per id, and each id's index: nodes are
/// addressed by index from there on.
fn indexed(nodes: &[Node]) -> (Vec<&Node>, BTreeMap<&str, usize>) {
    let mut nodes: Vec<&Node> = nodes.iter().collect();
    nodes.sort_by(|a, b| a.id.cmp(&b.id));
    nodes.dedup_by(|a, b| a.id == b.id);
    let index = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.id.as_str(), i))
        .collect();
    (nodes, index)
}

/// Decides where every replica runs. `current` is the placement now in force.
pub fn place(nodes: &[Node], models: &[ModelSpec], current: &[Assignment]) -> Placement {
    let (nodes, index) = indexed(nodes);
    let mut free: Vec<Free> = nodes.iter().map(|n| Free::of(n)).collect();
    let mut spec_by_key: BTreeMap<&str, &ModelSpec> = BTreeMap::new();
    for m in models {
        spec_by_key.entry(m.key.as_str()).or_insert(m);
    }

    // 1. Keep what is fine: live node, wanted model, still fits (in a stable order).
    let mut kept: BTreeMap<&str, Vec<(usize, Option<u32>)>> = BTreeMap::new();
    let mut cur: Vec<&Assignment> = current.iter().collect();
    cur.sort();
    for a in cur {
        let (Some(m), Some(&ni)) = (
            spec_by_key.get(a.model.as_str()),
            index.get(a.node.as_str()),
        ) else {
            continue;
        };
        let list = kept.entry(m.key.as_str()).or_default();
        if list.len() as u32 >= m.replicas {
            continue; // scale down: drop the surplus
        }
        let f = &mut free[ni];
        let fits = f.cpu >= m.cpu_millis
            && f.mem >= m.memory_bytes
            && match a.gpu {
                Some(g) => f
                    .gpus
                    .get(&g)
                    .is_some_and(|&free| free >= m.gpu_memory_bytes),
                None => m.device != Device::Gpu,
            };
        if !fits {
            continue;
        }
        f.take(m, a.gpu);
        list.push((ni, a.gpu));
    }

    // 2. Place what is missing: the largest needs first (packs better), then by key.
    let mut order: Vec<&ModelSpec> = spec_by_key.values().copied().collect();
    order.sort_by(|a, b| {
        (b.gpu_memory_bytes, b.memory_bytes, b.cpu_millis)
            .cmp(&(a.gpu_memory_bytes, a.memory_bytes, a.cpu_millis))
            .then(a.key.cmp(&b.key))
    });
    let mut out = Placement::default();
    // Nodes ordered by load (then index): the least loaded node that fits is found by
    // walking from the front, usually after a few steps.
    let mut by_load: BTreeSet<(u64, usize)> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (free[i].load(n), i))
        .collect();
    for m in order {
        let list = kept.entry(m.key.as_str()).or_default();
        let mut missing = m.replicas.saturating_sub(list.len() as u32);
        while missing > 0 {
            // Prefer nodes without this model (spread), then the least loaded, then by id.
            let mut fallback = None;
            let mut chosen = None;
            for &(load, ni) in by_load.iter() {
                let Some(gpu) = free[ni].fits(m) else {
                    continue;
                };
                if list.iter().any(|(x, _)| *x == ni) {
                    fallback.get_or_insert((load, ni, gpu));
                } else {
                    chosen = Some((load, ni, gpu));
                    break;
                }
            }
            let Some((load, ni, gpu)) = chosen.or(fallback) else {
                break;
            };
            by_load.remove(&(load, ni));
            free[ni].take(m, gpu);
            by_load.insert((free[ni].load(nodes[ni]), ni));
            list.push((ni, gpu));
            missing -= 1;
        }
        if missing > 0 {
            out.pending.push(Pending {
                model: m.key.clone(),
                missing,
                reason: reason(m, &nodes, &free),
            });
        }
    }
    out.assignments = kept
        .into_iter()
        .flat_map(|(k, v)| v.into_iter().map(move |(ni, gpu)| (k, ni, gpu)))
        .map(|(k, ni, gpu)| Assignment {
            model: k.to_string(),
            node: nodes[ni].id.clone(),
            gpu,
        })
        .collect();
    out.assignments.sort();
    out.pending.sort_by(|a, b| a.model.cmp(&b.model));
    out
}

/// Moving one replica of `model` from `from` (a node holding two or more of them) to
/// `to` (a node holding none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    pub model: String,
    pub from: String,
    pub to: String,
    pub gpu: Option<u32>,
}

/// The first move (by model key) that spreads a model whose replicas share a node onto a
/// node without it that has room now, among the nodes `eligible` allows: the least loaded
/// such node, from the node with the most replicas of it (ties by id). None when the
/// placement is as spread as the room allows.
pub fn next_move(
    nodes: &[Node],
    models: &[ModelSpec],
    current: &[Assignment],
    eligible: &dyn Fn(&str) -> bool,
) -> Option<Move> {
    let (nodes, index) = indexed(nodes);
    let specs: BTreeMap<&str, &ModelSpec> = models.iter().map(|m| (m.key.as_str(), m)).collect();
    let mut free: Vec<Free> = nodes.iter().map(|n| Free::of(n)).collect();
    let mut count: BTreeMap<&str, BTreeMap<usize, u32>> = BTreeMap::new();
    for a in current {
        let (Some(m), Some(&ni)) = (specs.get(a.model.as_str()), index.get(a.node.as_str())) else {
            continue;
        };
        if free[ni].fits(m).is_some() {
            free[ni].take(m, a.gpu);
        }
        *count
            .entry(m.key.as_str())
            .or_default()
            .entry(ni)
            .or_default() += 1;
    }
    for (key, per_node) in &count {
        let m = specs[key];
        // The node with the most replicas of this model (lowest index on ties).
        let Some((&from, &most)) = per_node
            .iter()
            .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
        else {
            continue;
        };
        if most < 2 {
            continue;
        }
        let target = (0..nodes.len())
            .filter(|ni| !per_node.contains_key(ni) && eligible(&nodes[*ni].id))
            .filter_map(|ni| {
                free[ni]
                    .fits(m)
                    .map(|gpu| (free[ni].load(nodes[ni]), ni, gpu))
            })
            .min_by_key(|(load, ni, _)| (*load, *ni));
        if let Some((_, to, gpu)) = target {
            return Some(Move {
                model: key.to_string(),
                from: nodes[from].id.clone(),
                to: nodes[to].id.clone(),
                gpu,
            });
        }
    }
    None
}

#[cfg(test)]
mod tests;
