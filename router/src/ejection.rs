//! Outlier ejection: a node the router could not reach (its connection broke, or a
//! connect timed out) is left out of replica picking for a while, so that calls do not
//! each wait out a connect timeout on a node cut off the router while its lease, and so
//! its place in the routing table, lives on. The time out doubles with each failure in a
//! row (1 s up to 30 s) and ends at the first answer; when every replica is out, picking
//! ignores ejection (a call always goes somewhere).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::RwLock;

/// The first time out of picking, doubled with each failure in a row.
pub const FIRST_EJECTION: Duration = Duration::from_secs(1);
/// The longest time out.
pub const MAX_EJECTION: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy)]
struct Ejection {
    until: Instant,
    /// Failures in a row.
    strikes: u32,
}

/// The nodes out of picking, and until when.
#[derive(Debug, Default)]
pub(crate) struct Ejections {
    nodes: RwLock<HashMap<String, Ejection>>,
}

impl Ejections {
    /// Counts a failure to reach `node` at `now`; how long it is out of picking.
    pub(crate) fn eject(&self, node: &str, now: Instant) -> Duration {
        let mut nodes = self.nodes.write();
        let e = nodes.entry(node.to_string()).or_insert(Ejection {
            until: now,
            strikes: 0,
        });
        let time_out = FIRST_EJECTION
            .saturating_mul(1 << e.strikes.min(5))
            .min(MAX_EJECTION);
        e.strikes = e.strikes.saturating_add(1);
        e.until = now + time_out;
        time_out
    }

    /// An answer from `node`: it is back in picking, its count of failures reset.
    /// Whether it had been ejected.
    pub(crate) fn restore(&self, node: &str) -> bool {
        if !self.nodes.read().contains_key(node) {
            return false;
        }
        self.nodes.write().remove(node).is_some()
    }

    /// Whether `node` is out of picking at `now`.
    pub(crate) fn is_out(&self, node: &str, now: Instant) -> bool {
        self.nodes.read().get(node).is_some_and(|e| now < e.until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_time_out_doubles_with_each_failure_and_is_capped() {
        let e = Ejections::default();
        let t = Instant::now();
        let outs: Vec<u64> = (0..8).map(|_| e.eject("n", t).as_secs()).collect();
        assert_eq!(outs, vec![1, 2, 4, 8, 16, 30, 30, 30]);
    }

    #[test]
    fn a_node_is_out_until_its_time_ends_or_it_answers() {
        let e = Ejections::default();
        let t = Instant::now();
        assert!(!e.is_out("n", t));
        e.eject("n", t);
        assert!(e.is_out("n", t + Duration::from_millis(999)));
        assert!(!e.is_out("n", t + Duration::from_secs(1)));
        assert!(!e.is_out("m", t));
        // Failed again when tried after its time out: out for longer.
        assert_eq!(
            e.eject("n", t + Duration::from_secs(1)),
            Duration::from_secs(2)
        );
        assert!(e.restore("n"));
        assert!(!e.is_out("n", t + Duration::from_secs(1)));
        assert!(!e.restore("n"));
        // The count starts again after an answer.
        assert_eq!(e.eject("n", t), Duration::from_secs(1));
    }
}
