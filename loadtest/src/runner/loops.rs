//! The load loops of one step: closed-loop workers, or the open-loop scheduler.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::task::JoinSet;

use super::call::{DROPPED, Failure, call};
use super::config::{Load, RunConfig};
use super::shared::Shared;
use crate::stats::micros;
use crate::target::{Client, Target};

/// Runs `load` until the step ends; the open loop returns its largest lag behind
/// schedule (µs).
pub(super) async fn drive(
    sh: Arc<Shared>,
    target: Target,
    cfg: &RunConfig,
    load: Load,
    index: usize,
    step_start: Instant,
) -> Option<u64> {
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
            let lag = open_loop(sh, target, rate, step_start, cfg.max_outstanding, rng).await;
            Some(lag)
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
