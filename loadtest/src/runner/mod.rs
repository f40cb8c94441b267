//! The load loops.
//!
//! * **Closed loop**: `concurrency` workers, each sending its next call as soon as the
//!   previous one is answered. Latency is send → answer.
//! * **Open loop**: one scheduler sends call `k` at `start + k / rate`, whatever the
//!   state of earlier calls, and latency is measured from that *intended* time. A server
//!   stall therefore shows up in every call that should have been sent during it, not
//!   just in the one call a closed loop would have waiting (coordinated omission).
//!   When `max_outstanding` calls are in flight, a due call is not sent and counts as
//!   the error `dropped`.
//!
//! Calls sent during warm-up are not counted. After the measured phase ends (duration
//! or request count reached), no new call is sent and the ones in flight are awaited,
//! so every counted call ends as an answer or an error (`sent == answers + errors`).

mod call;
mod config;
mod loops;
mod observer;
mod shared;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::error::LoadError;
use crate::inputs::{ModelWorkload, Workload};
use crate::report::{ModelInfo, Report, StepReport};
use crate::target::Target;
use shared::Shared;

pub use call::{BAD_RESPONSE, DROPPED};
pub use config::{Load, RunConfig, Stop};
pub use observer::{Observer, Phase, Progress};

/// Runs every step of `cfg` against `target` and reports.
pub async fn run(
    target: &Target,
    workload: &Workload,
    cfg: &RunConfig,
    observer: &dyn Observer,
) -> Result<Report, LoadError> {
    cfg.validate()?;
    if target.client(0).is_none() {
        return Err(LoadError::Invalid("the target has no channel".into()));
    }
    let mut steps = Vec::new();
    let mut interrupted = false;
    for (i, load) in cfg.steps.iter().enumerate() {
        if observer.should_stop() {
            interrupted = true;
            break;
        }
        observer.step_started(i, cfg.steps.len(), *load);
        let report = run_step(target, workload, cfg, *load, i, observer).await;
        observer.step_finished(i, &report);
        let stop = report.interrupted;
        steps.push(report);
        if stop {
            interrupted = true;
            break;
        }
    }
    Ok(Report {
        target: target.address().to_string(),
        models: workload.models().iter().map(ModelInfo::from).collect(),
        warmup_s: cfg.warmup.as_secs_f64(),
        stop: cfg.stop.to_string(),
        timeout_s: cfg.timeout.as_secs_f64(),
        seed: cfg.seed,
        sweep: cfg.steps.len() > 1,
        interrupted,
        steps,
    })
}

impl From<&ModelWorkload> for ModelInfo {
    fn from(m: &ModelWorkload) -> Self {
        Self {
            label: m.label.clone(),
            name: m.name.clone(),
            version: m.version.clone(),
            weight: m.weight,
            inputs: m.inputs.clone(),
        }
    }
}

/// One step: its load loops, a progress tick about every 100 ms, then its report.
async fn run_step(
    target: &Target,
    workload: &Workload,
    cfg: &RunConfig,
    load: Load,
    index: usize,
    observer: &dyn Observer,
) -> StepReport {
    let step_start = Instant::now();
    let measure_start = step_start + cfg.warmup;
    let sh = Arc::new(Shared::new(workload, cfg, measure_start));
    let work = loops::drive(sh.clone(), target.clone(), cfg, load, index, step_start);
    tokio::pin!(work);
    let mut ticker = tokio::time::interval(Duration::from_millis(100));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let max_lag = loop {
        tokio::select! {
            lag = &mut work => break lag,
            _ = ticker.tick() => {
                if observer.should_stop() {
                    sh.stop.store(true, Ordering::Relaxed);
                }
                let now = Instant::now();
                observer.tick(&Progress {
                    step: index,
                    steps: cfg.steps.len(),
                    load,
                    phase: sh.phase(now),
                    elapsed: now.saturating_duration_since(step_start),
                    sent: sh.sent.load(Ordering::Relaxed),
                    answers: sh.answers.load(Ordering::Relaxed),
                    errors: sh.errors.load(Ordering::Relaxed),
                });
            }
        }
    };
    sh.report(cfg, load, max_lag)
}
