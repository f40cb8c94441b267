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

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::Serialize;
use tokio::task::JoinSet;
use troupe_proto::codes::code_name;
use troupe_proto::inference::ModelInferRequest;

use crate::error::LoadError;
use crate::format::trim_float;
use crate::inputs::{ModelWorkload, Workload};
use crate::report::{ModelInfo, ModelReport, Report, StepReport};
use crate::stats::{BAD_RESPONSE, DROPPED, Recorder, micros, summarize};
use crate::target::{Client, Target};

/// One load level.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub enum Load {
    /// `concurrency` calls in flight at all times.
    Closed { concurrency: usize },
    /// `rate` calls per second, on schedule.
    Open { rate: f64 },
}

impl fmt::Display for Load {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Load::Closed { concurrency } => write!(f, "concurrency {concurrency}"),
            Load::Open { rate } => write!(f, "rate {}/s", trim_float(*rate)),
        }
    }
}

/// When a step's measurement ends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stop {
    /// After this long (calls in flight then are still awaited and counted).
    Duration(Duration),
    /// After this many calls have been sent.
    Requests(u64),
}

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stop::Duration(d) => write!(f, "{}s", trim_float(d.as_secs_f64())),
            Stop::Requests(n) => write!(f, "{n} requests"),
        }
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// One entry for a single run; several for a sweep (run in order).
    pub steps: Vec<Load>,
    /// Load applied before each step's measurement starts, not counted.
    pub warmup: Duration,
    pub stop: Stop,
    /// Deadline of each call (sent as the gRPC deadline and enforced here too).
    pub timeout: Duration,
    /// Open loop: most calls in flight before due calls are dropped.
    pub max_outstanding: usize,
    /// Seed for the choice of model and of input variant.
    pub seed: u64,
    /// Width of the time windows of [`StepReport::windows`].
    pub window: Duration,
}

impl Default for RunConfig {
    fn default() -> Self {
        Self {
            steps: vec![Load::Closed { concurrency: 1 }],
            warmup: Duration::ZERO,
            stop: Stop::Duration(Duration::from_secs(10)),
            timeout: Duration::from_secs(30),
            max_outstanding: 1000,
            seed: 0,
            window: Duration::from_secs(1),
        }
    }
}

impl RunConfig {
    /// Checks the values (everything positive, finite, at least one step).
    pub fn validate(&self) -> Result<(), LoadError> {
        let bad = |m: String| Err(LoadError::Invalid(m));
        if self.steps.is_empty() {
            return bad("no load step to run".into());
        }
        for s in &self.steps {
            match *s {
                Load::Closed { concurrency } if concurrency == 0 || concurrency > 100_000 => {
                    return bad(format!("concurrency must be 1..=100000, not {concurrency}"));
                }
                Load::Open { rate } if !(rate.is_finite() && rate > 0.0 && rate <= 1e7) => {
                    return bad(format!(
                        "rate must be a positive number of requests/s, not {rate}"
                    ));
                }
                _ => {}
            }
        }
        match self.stop {
            Stop::Duration(d) if d.is_zero() => return bad("duration must be positive".into()),
            Stop::Requests(0) => return bad("requests must be at least 1".into()),
            _ => {}
        }
        if self.timeout.is_zero() {
            return bad("timeout must be positive".into());
        }
        if self.max_outstanding == 0 {
            return bad("max outstanding must be at least 1".into());
        }
        if self.window < Duration::from_millis(10) {
            return bad("window must be at least 10ms".into());
        }
        Ok(())
    }
}

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

/// State shared by the tasks of one step.
struct Shared {
    workload: Workload,
    recorder: Mutex<Recorder>,
    model_sent: Vec<AtomicU64>,
    sent: AtomicU64,
    answers: AtomicU64,
    errors: AtomicU64,
    /// Nanoseconds after `measure_start` of the last counted send.
    last_send_ns: AtomicU64,
    stop: AtomicBool,
    measure_start: Instant,
    end: Option<Instant>,
    limit: Option<u64>,
    tickets: AtomicU64,
    timeout: Duration,
}

impl Shared {
    fn recorder(&self) -> MutexGuard<'_, Recorder> {
        // A task that panicked while holding the lock leaves consistent counters.
        self.recorder.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// May a counted call be sent at `at`? Takes a ticket when counting requests.
    fn admit(&self, at: Instant) -> bool {
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

    fn sent(&self, model: usize, at: Instant) {
        self.sent.fetch_add(1, Ordering::Relaxed);
        if let Some(c) = self.model_sent.get(model) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        let ns = u64::try_from(at.saturating_duration_since(self.measure_start).as_nanos())
            .unwrap_or(u64::MAX);
        self.last_send_ns.fetch_max(ns, Ordering::Relaxed);
    }

    fn finish(&self, model: usize, from: Instant, done: Instant, outcome: Outcome) {
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

    fn phase(&self, now: Instant) -> Phase {
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
}

/// Why a counted call failed: the name it is counted under, and the server's message.
struct Failure {
    code: &'static str,
    message: String,
}

impl Failure {
    fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

type Outcome = Result<(), Failure>;

/// One call.
async fn call(client: &mut Client, req: ModelInferRequest, timeout: Duration) -> Outcome {
    let start = Instant::now();
    let mut request = tonic::Request::new(req);
    request.set_timeout(timeout);
    match tokio::time::timeout(timeout, client.model_infer(request)).await {
        Err(_) => Err(Failure::new(
            code_name(tonic::Code::DeadlineExceeded),
            format!("no answer within the {timeout:?} timeout"),
        )),
        // A server that enforces the deadline itself may answer CANCELLED (tonic does)
        // just before our own timer fires: that is the deadline too.
        Ok(Err(status))
            if status.code() == tonic::Code::Cancelled && start.elapsed() >= timeout =>
        {
            Err(Failure::new(
                code_name(tonic::Code::DeadlineExceeded),
                status.message(),
            ))
        }
        Ok(Err(status)) => Err(Failure::new(code_name(status.code()), status.message())),
        Ok(Ok(resp)) => {
            let r = resp.get_ref();
            // Raw outputs (one buffer per output), or typed contents (no buffers).
            if r.raw_output_contents.is_empty() || r.raw_output_contents.len() == r.outputs.len() {
                Ok(())
            } else {
                Err(Failure::new(
                    BAD_RESPONSE,
                    format!(
                        "{} outputs but {} raw buffers",
                        r.outputs.len(),
                        r.raw_output_contents.len()
                    ),
                ))
            }
        }
    }
}

fn seed_for(base: u64, step: usize, task: u64) -> u64 {
    base ^ (step as u64).wrapping_mul(0xA076_1D64_78BD_642F)
        ^ task.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

async fn closed_worker(sh: Arc<Shared>, mut client: Client, mut rng: StdRng) {
    loop {
        let start = Instant::now();
        let measured = start >= sh.measure_start;
        if sh.stop.load(Ordering::Relaxed) || (measured && !sh.admit(start)) {
            break;
        }
        let (model, req) = sh.workload.next(&mut rng);
        if measured {
            sh.sent(model, start);
        }
        let outcome = call(&mut client, req, sh.timeout).await;
        if measured {
            sh.finish(model, start, Instant::now(), outcome);
        }
    }
}

/// The open-loop scheduler; returns the largest lag behind schedule (µs).
async fn open_loop(
    sh: Arc<Shared>,
    target: Target,
    rate: f64,
    start: Instant,
    max_outstanding: usize,
    mut rng: StdRng,
) -> u64 {
    let mut tasks = JoinSet::new();
    let outstanding = Arc::new(AtomicUsize::new(0));
    let mut max_lag = Duration::ZERO;
    let mut k: u64 = 0;
    loop {
        let intended = start + Duration::from_secs_f64(k as f64 / rate);
        k += 1;
        let measured = intended >= sh.measure_start;
        if sh.stop.load(Ordering::Relaxed) || (measured && !sh.admit(intended)) {
            break;
        }
        if intended > Instant::now() {
            tokio::time::sleep_until(intended.into()).await;
        }
        let now = Instant::now();
        while tasks.try_join_next().is_some() {}
        let (model, req) = sh.workload.next(&mut rng);
        if measured {
            max_lag = max_lag.max(now.saturating_duration_since(intended));
            sh.sent(model, intended);
        }
        if outstanding.load(Ordering::Acquire) >= max_outstanding {
            if measured {
                let why = format!("{max_outstanding} calls were already in flight");
                sh.finish(model, intended, now, Err(Failure::new(DROPPED, why)));
            }
            continue;
        }
        let Some(mut client) = target.client(k as usize) else {
            break;
        };
        outstanding.fetch_add(1, Ordering::AcqRel);
        let (sh, outstanding) = (sh.clone(), outstanding.clone());
        tasks.spawn(async move {
            let outcome = call(&mut client, req, sh.timeout).await;
            if measured {
                sh.finish(model, intended, Instant::now(), outcome);
            }
            outstanding.fetch_sub(1, Ordering::AcqRel);
        });
    }
    while tasks.join_next().await.is_some() {}
    micros(max_lag)
}

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
    let models = workload.models().len();
    let sh = Arc::new(Shared {
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
    });

    let work = {
        let sh = sh.clone();
        let target = target.clone();
        async move {
            match load {
                Load::Closed { concurrency } => {
                    let mut workers = JoinSet::new();
                    for i in 0..concurrency {
                        if let Some(client) = target.client(i) {
                            let rng = StdRng::seed_from_u64(seed_for(cfg.seed, index, i as u64));
                            workers.spawn(closed_worker(sh.clone(), client, rng));
                        }
                    }
                    while workers.join_next().await.is_some() {}
                    None
                }
                Load::Open { rate } => {
                    let rng = StdRng::seed_from_u64(seed_for(cfg.seed, index, u64::MAX));
                    let lag =
                        open_loop(sh, target, rate, step_start, cfg.max_outstanding, rng).await;
                    Some(lag)
                }
            }
        }
    };
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

    let interrupted = sh.stop.load(Ordering::Relaxed);
    let rec = sh.recorder();
    let last_send = measure_start + Duration::from_nanos(sh.last_send_ns.load(Ordering::Relaxed));
    let last = rec.last_event.map_or(last_send, |e| e.max(last_send));
    let mut measured = last.saturating_duration_since(measure_start);
    if let (Stop::Duration(d), false) = (cfg.stop, interrupted) {
        measured = measured.max(d);
    }
    let secs = measured.as_secs_f64();
    let per_sec = |n: u64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
    let model_reports = workload
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates() {
        assert!(RunConfig::default().validate().is_ok());
        let mut c = RunConfig {
            steps: vec![Load::Closed { concurrency: 0 }],
            ..RunConfig::default()
        };
        assert!(c.validate().is_err());
        c.steps = vec![Load::Open { rate: f64::NAN }];
        assert!(c.validate().is_err());
        c.steps = vec![Load::Open { rate: 10.0 }];
        c.stop = Stop::Requests(0);
        assert!(c.validate().is_err());
        c.stop = Stop::Requests(1);
        assert!(c.validate().is_ok());
        assert_eq!(Load::Open { rate: 12.5 }.to_string(), "rate 12.5/s");
        assert_eq!(
            Stop::Duration(Duration::from_millis(1500)).to_string(),
            "1.5s"
        );
    }
}
