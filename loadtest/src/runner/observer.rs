//! Hooks for a user interface: where a step is, and progress snapshots.

use std::time::Duration;

use serde::Serialize;

use super::config::Load;
use crate::report::StepReport;

/// Where a step is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Phase {
    WarmUp,
    Measure,
    /// No new calls; waiting for the ones in flight.
    Drain,
}

/// A snapshot for progress display, about every 100 ms.
#[derive(Debug, Clone)]
pub struct Progress {
    pub step: usize,
    pub steps: usize,
    pub load: Load,
    pub phase: Phase,
    /// Since the step started, warm-up included.
    pub elapsed: Duration,
    /// Counted (post-warm-up) calls so far.
    pub sent: u64,
    pub answers: u64,
    pub errors: u64,
}

/// Hooks for a user interface. All have empty defaults; `()` implements it.
pub trait Observer: Send + Sync {
    fn step_started(&self, _step: usize, _steps: usize, _load: Load) {}
    fn tick(&self, _progress: &Progress) {}
    fn step_finished(&self, _step: usize, _report: &StepReport) {}
    /// Polled about every 100 ms; `true` stops sending (the step is reported as
    /// interrupted, and later steps are skipped).
    fn should_stop(&self) -> bool {
        false
    }
}

impl Observer for () {}
