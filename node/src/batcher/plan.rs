//! The batching decision, as a pure function of what is queued: take calls now, or
//! wait at most so long for more.

use std::time::Duration;

/// How a model's queue forms batches.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchConfig {
    /// Largest batch (sum of the calls' dim 0); 0 or 1 means one call at a time.
    pub max_batch_size: usize,
    /// How long the oldest call may wait for others to join it (with `adaptive`: at
    /// most this long).
    pub max_queue_delay: Duration,
    /// The window follows the measured compute time and arrival rate
    /// (`max_queue_delay_us = "auto"`, see `adaptive.rs`).
    pub adaptive: bool,
    /// Sizes that leave at once when reachable.
    pub preferred_batch_sizes: Vec<usize>,
    /// Calls that may wait; more get RESOURCE_EXHAUSTED.
    pub max_queue_size: usize,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            max_batch_size: 0,
            max_queue_delay: Duration::ZERO,
            adaptive: false,
            preferred_batch_sizes: Vec::new(),
            max_queue_size: 1024,
        }
    }
}

impl BatchConfig {
    pub fn batching(&self) -> bool {
        self.max_batch_size > 1
    }
}

/// What the batcher decided for the calls now queued (sizes in queue order).
#[derive(Debug, PartialEq, Eq)]
pub enum Plan {
    /// Take this many calls from the front now.
    Take(usize),
    /// Wait for more calls, at most this long.
    Wait(Duration),
    /// Nothing queued.
    Idle,
}

/// The batching decision as a pure function (unit-tested below): `delay` is how long the
/// oldest call may wait now (the configured delay, or the adaptive window).
pub fn plan(sizes: &[usize], oldest_wait: Duration, delay: Duration, cfg: &BatchConfig) -> Plan {
    if sizes.is_empty() {
        return Plan::Idle;
    }
    if !cfg.batching() {
        return Plan::Take(1);
    }
    // Longest prefix that fits, and the longest prefix that hits a preferred size.
    let (mut sum, mut fit, mut preferred) = (0usize, 0usize, None);
    for (i, &s) in sizes.iter().enumerate() {
        if sum + s > cfg.max_batch_size {
            break;
        }
        sum += s;
        fit = i + 1;
        if cfg.preferred_batch_sizes.contains(&sum) {
            preferred = Some(fit);
        }
    }
    if fit == 0 {
        return Plan::Take(1); // a single call larger than the batch limit runs alone
    }
    let full = sum == cfg.max_batch_size || fit < sizes.len();
    if full {
        return Plan::Take(fit);
    }
    if let Some(n) = preferred.filter(|&n| n == fit) {
        return Plan::Take(n);
    }
    if oldest_wait >= delay {
        return Plan::Take(fit);
    }
    Plan::Wait(delay - oldest_wait)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(in crate::batcher) fn cfg(max: usize, delay_ms: u64, preferred: &[usize]) -> BatchConfig {
        BatchConfig {
            max_batch_size: max,
            max_queue_delay: Duration::from_millis(delay_ms),
            adaptive: false,
            preferred_batch_sizes: preferred.to_vec(),
            max_queue_size: 8,
        }
    }

    #[test]
    fn plan_rules() {
        let c = cfg(8, 5, &[4]);
        let d = c.max_queue_delay;
        assert_eq!(plan(&[], Duration::ZERO, d, &c), Plan::Idle);
        // Not full, not preferred, young: wait out the delay.
        assert_eq!(
            plan(&[1, 1], Duration::from_millis(1), d, &c),
            Plan::Wait(Duration::from_millis(4))
        );
        // Old enough: go with what fits.
        assert_eq!(
            plan(&[1, 1], Duration::from_millis(5), d, &c),
            Plan::Take(2)
        );
        // A preferred size leaves at once.
        assert_eq!(plan(&[2, 2], Duration::ZERO, d, &c), Plan::Take(2));
        // Full leaves at once; the rest waits.
        assert_eq!(plan(&[4, 4, 1], Duration::ZERO, d, &c), Plan::Take(2));
        assert_eq!(plan(&[3, 3, 3], Duration::ZERO, d, &c), Plan::Take(2));
        // A call larger than the batch runs alone.
        assert_eq!(plan(&[9, 1], Duration::ZERO, d, &c), Plan::Take(1));
        // No batching: one at a time.
        assert_eq!(
            plan(
                &[1, 1, 1],
                Duration::ZERO,
                Duration::ZERO,
                &BatchConfig::default()
            ),
            Plan::Take(1)
        );
    }
}
