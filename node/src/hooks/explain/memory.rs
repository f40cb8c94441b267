//! The memory explanations may hold, counted in bytes of perturbed inputs in flight: a
//! budget for the whole node, shared by every explanation, and a cap for each call.
//! Perturbed inputs are made a chunk at a time, and a chunk is made only once its bytes
//! are reserved, so an explanation of any size runs in bounded memory; one that cannot
//! get room even for its smallest chunk is answered RESOURCE_EXHAUSTED with the figures.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::NodeError;

/// The semaphore counts KiB (its permits are u32).
const PERMIT_BYTES: usize = 1024;

/// Default node-wide budget: 1 GiB.
pub const DEFAULT_NODE_BYTES: usize = 1 << 30;
/// Default cap per explanation: 256 MiB.
pub const DEFAULT_CALL_BYTES: usize = 256 << 20;

/// The node's explanation memory.
#[derive(Debug)]
pub struct ExplainMemory {
    node: Arc<Semaphore>,
    node_bytes: usize,
    call_bytes: usize,
}

impl Default for ExplainMemory {
    fn default() -> Self {
        Self::new(DEFAULT_NODE_BYTES, DEFAULT_CALL_BYTES)
    }
}

fn permits(bytes: usize) -> u32 {
    u32::try_from(bytes.div_ceil(PERMIT_BYTES)).unwrap_or(u32::MAX)
}

fn mib(bytes: usize) -> String {
    format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
}

impl ExplainMemory {
    /// `node_bytes` for all explanations of the node together, `call_bytes` for one.
    pub fn new(node_bytes: usize, call_bytes: usize) -> Self {
        let node_bytes = node_bytes.max(PERMIT_BYTES);
        Self {
            node: Arc::new(Semaphore::new(permits(node_bytes) as usize)),
            node_bytes,
            call_bytes: call_bytes.clamp(PERMIT_BYTES, node_bytes),
        }
    }

    /// The cap of one explanation.
    pub fn call_bytes(&self) -> usize {
        self.call_bytes
    }

    /// Bytes reserved by explanations now.
    pub fn in_use(&self) -> usize {
        let free = self.node.available_permits() * PERMIT_BYTES;
        self.node_bytes.saturating_sub(free)
    }

    /// Checks that one chunk of `unit_bytes` fits the per-call cap at all.
    pub fn check_unit(&self, unit_bytes: usize) -> Result<(), NodeError> {
        if unit_bytes > self.call_bytes {
            return Err(NodeError::TooLarge(format!(
                "an explanation of this call needs {} for one perturbed copy of its inputs; \
                 one explanation may hold at most {} (--explain-call-memory-mb)",
                mib(unit_bytes),
                mib(self.call_bytes)
            )));
        }
        Ok(())
    }

    /// Reserves `bytes` of the node's budget, if free now.
    pub fn try_reserve(&self, bytes: usize) -> Option<OwnedSemaphorePermit> {
        self.node
            .clone()
            .try_acquire_many_owned(permits(bytes))
            .ok()
    }

    /// The answer when an explanation holds nothing and still finds no room.
    pub fn exhausted(&self, bytes: usize) -> NodeError {
        NodeError::TooLarge(format!(
            "explanations on this node hold {} of their {} budget (--explain-memory-mb); \
             this one needs {} to go on: try again later",
            mib(self.in_use()),
            mib(self.node_bytes),
            mib(bytes)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_are_bounded_by_the_node_budget_and_released() {
        let m = ExplainMemory::new(10 << 20, 4 << 20);
        let a = m.try_reserve(6 << 20).unwrap();
        assert_eq!(m.in_use(), 6 << 20);
        assert!(m.try_reserve(6 << 20).is_none(), "over the node budget");
        let b = m.try_reserve(4 << 20).unwrap();
        drop(a);
        assert_eq!(m.in_use(), 4 << 20);
        drop(b);
        assert_eq!(m.in_use(), 0);
        let e = m.exhausted(1 << 20).to_string();
        assert!(e.contains("10.0 MiB budget"), "{e}");
    }

    #[test]
    fn a_unit_over_the_call_cap_is_refused_with_the_figures() {
        let m = ExplainMemory::new(10 << 20, 1 << 20);
        assert!(m.check_unit(1 << 20).is_ok());
        let e = m.check_unit(3 << 20).unwrap_err();
        assert!(matches!(e, NodeError::TooLarge(_)), "{e}");
        assert!(e.to_string().contains("3.0 MiB"), "{e}");
        assert!(e.to_string().contains("1.0 MiB"), "{e}");
        // The cap never exceeds the node budget.
        assert_eq!(ExplainMemory::new(1 << 20, 8 << 20).call_bytes(), 1 << 20);
    }
}
