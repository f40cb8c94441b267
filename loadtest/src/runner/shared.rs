//! The state that the tasks of one step share: admission, counters, the recorder, and
//! the step's report made from them.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::call::{Failure, Outcome};
use super::config::{Load, RunConfig, Stop};
use super::observer::Phase;
use crate::inputs::Workload;
use crate::report::{ModelReport, StepReport};
use crate::stats::{Recorder, summarize};

/// State shared by the tasks of one step.
pub(super) struct Shared {
    pub workload: Workload,
    recorder: Mutex<Recorder>,
    model_sent: Vec<AtomicU64>,
    pub sent: AtomicU64,
    pub answers: AtomicU64,
    pub errors: AtomicU64,
    /// Nanoseconds after `measure_start` of the last counted send.
    last_send_ns: AtomicU64,
    pub stop: AtomicBool,
    pub measure_start: Instant,
    end: Option<Instant>,
    limit: Option<u64>,
    tickets: AtomicU64,
    pub timeout: Duration,
}

impl Shared {
    /// A step of `cfg` over `workload` whose measurement starts at `measure_start`.
    pub fn new(workload: &Workload, cfg: &RunConfig, measure_start: Instant) -> Self {
        let models = workload.models().len();
        Self {
            workload: workload.clone(),
            recorder: Mutex::new(Recorder::new(measure_start, cfg.window, models)),
            model_sent: (0..models).map(|_| AtomicU64::new(0)).collect(),
            sent: AtomicU64::new(0),
            answers: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            last_send_ns: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            measure_start,
            end: match cfg.stop {
                Stop::Duration(d) => Some(measure_start + d),
                Stop::Requests(_) => None,
            },
            limit: match cfg.stop {
                Stop::Requests(n) => Some(n),
                Stop::Duration(_) => None,
            },
            tickets: AtomicU64::new(0),
            timeout: cfg.timeout,
        }
    }

    fn recorder(&self) -> MutexGuard<'_, Recorder> {
        // A task that panicked while holding the lock leaves consistent counters.
        self.recorder.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// May a counted call be sent at `at`? Takes a ticket when counting requests.
    pub fn admit(&self, at: Instant) -> bool {
        if self.stop.load(Ordering::Relaxed) {
            return false;
        }
        if self.end.is_some_and(|end| at >= end) {
            return false;
        }
        if let Some(n) = self.limit {
            return self.tickets.fetch_add(1, Ordering::Relaxed) < n;
        }
        true
    }

    pub fn sent(&self, model: usize, at: Instant) {
        self.sent.fetch_add(1, Ordering::Relaxed);
        if let Some(c) = self.model_sent.get(model) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        let ns = u64::try_from(at.saturating_duration_since(self.measure_start).as_nanos())
            .unwrap_or(u64::MAX);
        self.last_send_ns.fetch_max(ns, Ordering::Relaxed);
    }

    pub fn finish(&self, model: usize, from: Instant, done: Instant, outcome: Outcome) {
        let mut rec = self.recorder();
        match outcome {
            Ok(()) => {
                rec.answer(model, done.saturating_duration_since(from), done);
                self.answers.fetch_add(1, Ordering::Relaxed);
            }
            Err(Failure { code, message }) => {
                rec.error(model, code, message, done);
                self.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    pub fn phase(&self, now: Instant) -> Phase {
        if now < self.measure_start {
            Phase::WarmUp
        } else if self.stop.load(Ordering::Relaxed)
            || self.end.is_some_and(|e| now >= e)
            || self
                .limit
                .is_some_and(|n| self.tickets.load(Ordering::Relaxed) >= n)
        {
            Phase::Drain
        } else {
            Phase::Measure
        }
    }

    /// The step's report, once its calls have all ended; `max_lag` is the open loop's
    /// largest lag behind schedule (µs).
    pub fn report(&self, cfg: &RunConfig, load: Load, max_lag: Option<u64>) -> StepReport {
        let sh = self;
        let measure_start = self.measure_start;
        let interrupted = sh.stop.load(Ordering::Relaxed);
        let rec = sh.recorder();
        let last_send =
            measure_start + Duration::from_nanos(sh.last_send_ns.load(Ordering::Relaxed));
        let last = rec.last_event.map_or(last_send, |e| e.max(last_send));
        let mut measured = last.saturating_duration_since(measure_start);
        if let (Stop::Duration(d), false) = (cfg.stop, interrupted) {
            measured = measured.max(d);
        }
        let secs = measured.as_secs_f64();
        let per_sec = |n: u64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
        let model_reports = sh
            .workload
            .models()
            .iter()
            .zip(&rec.models)
            .zip(&sh.model_sent)
            .map(|((m, t), sent)| ModelReport {
                label: m.label.clone(),
                sent: sent.load(Ordering::Relaxed),
                answers: t.answers,
                errors: t.error_count(),
                errors_by_code: t.errors.clone(),
                throughput: per_sec(t.answers),
                latency: summarize(&t.hist),
            })
            .collect();
        let (mode, concurrency, rate) = match load {
            Load::Closed { concurrency } => ("closed", Some(concurrency), None),
            Load::Open { rate } => ("open", None, Some(rate)),
        };
        StepReport {
            mode: mode.into(),
            concurrency,
            rate,
            duration_s: secs,
            sent: sh.sent.load(Ordering::Relaxed),
            answers: rec.total.answers,
            errors: rec.total.error_count(),
            errors_by_code: rec.total.errors.clone(),
            error_messages: rec.messages.clone(),
            throughput: per_sec(rec.total.answers),
            latency: summarize(&rec.total.hist),
            max_schedule_lag_us: max_lag,
            models: model_reports,
            window_s: cfg.window.as_secs_f64(),
            windows: rec.windows(),
            interrupted,
        }
    }
}
