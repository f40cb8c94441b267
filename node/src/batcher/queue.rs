//! The per-model request queue: bounded, fed by every call, drained a batch at a time
//! by each idle replica.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use parking_lot::Mutex;
use tokio::sync::{Notify, oneshot};
use troupe_backends::Tensor;

use super::adaptive::Estimator;
use super::clock::{Clock, Precise};
use super::plan::{BatchConfig, Plan, plan};
use crate::error::NodeError;

/// What a queued call asks of the backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Work {
    /// A forward pass (batched with others).
    Infer,
    /// Input gradients of `output[r, targets[r]]` (explanations); always runs alone.
    Gradient { output: usize, targets: Vec<usize> },
}

/// One queued call.
pub struct Entry {
    id: u64,
    pub inputs: Vec<Tensor>,
    /// Rows along dim 0 (1 when the model does not batch).
    pub rows: usize,
    pub enqueued: Instant,
    pub deadline: Option<Instant>,
    /// Fault injection: the instance that takes this call fails.
    pub fault: bool,
    pub work: Work,
    /// The caller's span (traced calls only; else `Span::none()`).
    pub span: tracing::Span,
    /// Open while the call waits; the replica closes it when the batch starts.
    pub queue_span: tracing::Span,
    pub reply: oneshot::Sender<Result<Vec<Tensor>, NodeError>>,
}

/// A model's queue.
pub struct Queue {
    model: String,
    cfg: BatchConfig,
    entries: Mutex<VecDeque<Entry>>,
    notify: Notify,
    closed: AtomicBool,
    next_id: AtomicU64,
    /// Calls taken by an instance and not answered yet.
    running: AtomicU64,
    clock: Arc<dyn Clock>,
    /// What the adaptive window is computed from (adaptive queues only).
    estimator: Option<Mutex<Estimator>>,
}

/// Held by the caller while its call is queued; dropping it (the client cancelled)
/// takes the call out of the queue.
pub struct Ticket {
    queue: Arc<Queue>,
    id: u64,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut q = self.queue.entries.lock();
        if let Some(pos) = q.iter().position(|e| e.id == self.id) {
            q.remove(pos);
        }
    }
}

impl Queue {
    pub fn new(model: &str, cfg: BatchConfig) -> Arc<Self> {
        Self::with_clock(model, cfg, Arc::new(Precise))
    }

    /// A queue reading time from `clock`.
    pub fn with_clock(model: &str, cfg: BatchConfig, clock: Arc<dyn Clock>) -> Arc<Self> {
        Arc::new(Self {
            model: model.to_string(),
            estimator: (cfg.batching() && cfg.adaptive).then(Mutex::default),
            clock,
            cfg,
            entries: Mutex::new(VecDeque::new()),
            notify: Notify::new(),
            closed: AtomicBool::new(false),
            next_id: AtomicU64::new(0),
            running: AtomicU64::new(0),
        })
    }

    pub fn config(&self) -> &BatchConfig {
        &self.cfg
    }

    /// Calls waiting now.
    pub fn len(&self) -> usize {
        self.entries.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Calls taken by an instance and not answered yet.
    pub fn running(&self) -> u64 {
        self.running.load(Ordering::Relaxed)
    }

    /// Queues a call. RESOURCE_EXHAUSTED when the queue is full, UNAVAILABLE when closed.
    #[allow(clippy::type_complexity)]
    pub fn push(
        self: &Arc<Self>,
        inputs: Vec<Tensor>,
        rows: usize,
        deadline: Option<Instant>,
        fault: bool,
    ) -> Result<(Ticket, oneshot::Receiver<Result<Vec<Tensor>, NodeError>>), NodeError> {
        self.push_work(inputs, rows, deadline, fault, Work::Infer)
    }

    /// Queues a call of any kind (see [`Work`]).
    #[allow(clippy::type_complexity)]
    pub fn push_work(
        self: &Arc<Self>,
        inputs: Vec<Tensor>,
        rows: usize,
        deadline: Option<Instant>,
        fault: bool,
        work: Work,
    ) -> Result<(Ticket, oneshot::Receiver<Result<Vec<Tensor>, NodeError>>), NodeError> {
        self.open()?;
        let now = self.clock.now();
        let (entry, rx) = self.entry(inputs, rows, deadline, fault, work, now);
        let id = entry.id;
        {
            let mut q = self.entries.lock();
            if q.len() >= self.cfg.max_queue_size {
                prune(&mut q, now);
            }
            if q.len() >= self.cfg.max_queue_size {
                return Err(NodeError::QueueFull {
                    model: self.model.clone(),
                    size: self.cfg.max_queue_size,
                });
            }
            q.push_back(entry);
        }
        if let Some(e) = &self.estimator {
            e.lock().arrival(now);
        }
        self.notify.notify_waiters();
        Ok((
            Ticket {
                queue: self.clone(),
                id,
            },
            rx,
        ))
    }

    /// A forward pass that its caller runs at once on an idle instance (see
    /// `Instance::run_direct`): never queued, counted as running until the instance
    /// finishes it. Its spans and its arrival are a queued call's.
    #[allow(clippy::type_complexity)]
    pub fn take(
        &self,
        inputs: Vec<Tensor>,
        rows: usize,
        deadline: Option<Instant>,
    ) -> Result<(Entry, oneshot::Receiver<Result<Vec<Tensor>, NodeError>>), NodeError> {
        self.open()?;
        let now = self.clock.now();
        let taken = self.entry(inputs, rows, deadline, false, Work::Infer, now);
        if let Some(e) = &self.estimator {
            e.lock().arrival(now);
        }
        self.running.fetch_add(1, Ordering::Relaxed);
        Ok(taken)
    }

    /// UNAVAILABLE once the queue is closed.
    fn open(&self) -> Result<(), NodeError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(NodeError::Unavailable(format!(
                "{} (unloading)",
                self.model
            )));
        }
        Ok(())
    }

    /// A call's entry and the receiver of its answer; traced calls get their
    /// `queue_wait` span.
    #[allow(clippy::type_complexity)]
    fn entry(
        &self,
        inputs: Vec<Tensor>,
        rows: usize,
        deadline: Option<Instant>,
        fault: bool,
        work: Work,
        now: Instant,
    ) -> (Entry, oneshot::Receiver<Result<Vec<Tensor>, NodeError>>) {
        let (tx, rx) = oneshot::channel();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        // Only sampled calls get queue_wait, batch and backend spans.
        let traced = troupe_telemetry::enabled()
            .then(tracing::Span::current)
            .filter(troupe_telemetry::sampled);
        let (span, queue_span) = match traced {
            Some(span) => {
                let q = tracing::info_span!(parent: &span, "queue_wait", model = %self.model, rows = rows as i64);
                (span, q)
            }
            None => (tracing::Span::none(), tracing::Span::none()),
        };
        let entry = Entry {
            id,
            inputs,
            rows,
            enqueued: now,
            deadline,
            fault,
            work,
            span,
            queue_span,
            reply: tx,
        };
        (entry, rx)
    }

    /// Stops taking calls; instances finish what is queued, then `next_batch` returns None.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    /// Waits for the next batch. None when the queue is closed and empty.
    pub async fn next_batch(&self) -> Option<Vec<Entry>> {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let wait = {
                let mut q = self.entries.lock();
                let now = self.clock.now();
                prune(&mut q, now);
                // Only calls whose non-batch dimensions match the oldest one can join it.
                let sizes: Vec<usize> = match q.front() {
                    Some(first) if first.work != Work::Infer => vec![first.rows],
                    Some(first) => q
                        .iter()
                        .take_while(|e| same_tail(e, first))
                        .map(|e| e.rows)
                        .collect(),
                    None => Vec::new(),
                };
                let blocked = sizes.len() < q.len();
                let oldest = q
                    .front()
                    .map(|e| now.saturating_duration_since(e.enqueued))
                    .unwrap_or_default();
                let delay = match &self.estimator {
                    Some(e) => e.lock().window(self.cfg.max_queue_delay),
                    None => self.cfg.max_queue_delay,
                };
                // No call can join before the delay ends when no other instance is running
                // a batch (whose answers free callers to send again) and nothing else is
                // queued: no delay, fixed or adaptive, is waited out for calls that cannot
                // come.
                let none_can_come = self.running() == 0 && sizes.len() == q.len();
                let decision = match plan(&sizes, oldest, delay, &self.cfg) {
                    // The next call cannot join: waiting would only delay this batch.
                    Plan::Wait(_) if blocked || none_can_come => Plan::Take(sizes.len()),
                    d => d,
                };
                match decision {
                    Plan::Take(n) => {
                        let batch: Vec<Entry> = q.drain(..n).collect();
                        self.running
                            .fetch_add(batch.len() as u64, Ordering::Relaxed);
                        return Some(batch);
                    }
                    Plan::Wait(d) => Some(now + d),
                    Plan::Idle if self.closed.load(Ordering::Acquire) => return None,
                    Plan::Idle => None,
                }
            };
            match wait {
                Some(until) => {
                    tokio::select! {
                        _ = self.clock.sleep_until(until) => {}
                        _ = notified => {}
                    }
                }
                None => notified.await,
            }
        }
    }

    /// Answers every queued call with an error (used after the last instance stopped).
    pub fn fail_remaining(&self, err: impl Fn() -> NodeError) {
        let drained: Vec<Entry> = self.entries.lock().drain(..).collect();
        for e in drained {
            let _ = e.reply.send(Err(err()));
        }
    }

    /// Notes how long a batch of `rows` took in the backend (the adaptive window's fit).
    pub fn measured(&self, rows: usize, compute: std::time::Duration) {
        if let Some(e) = &self.estimator {
            e.lock().batch(rows, compute);
        }
    }

    /// Marks a batch answered. Queued calls are planned again: a delay waited because
    /// this batch was running may be over now that none can come.
    pub fn finished(&self, calls: usize) {
        self.running.fetch_sub(calls as u64, Ordering::Relaxed);
        if !self.is_empty() {
            self.notify.notify_waiters();
        }
    }
}

/// True when two calls have the same shapes apart from the batch dimension (and are both
/// forward passes: gradient calls never join a batch).
fn same_tail(a: &Entry, b: &Entry) -> bool {
    a.work == Work::Infer
        && b.work == Work::Infer
        && a.inputs.len() == b.inputs.len()
        && a.inputs
            .iter()
            .zip(&b.inputs)
            .all(|(x, y)| x.dtype == y.dtype && x.shape.get(1..) == y.shape.get(1..))
}

/// Drops calls whose client went away and answers those whose deadline passed.
fn prune(q: &mut VecDeque<Entry>, now: Instant) {
    q.retain_mut(|e| {
        if e.reply.is_closed() {
            return false;
        }
        if e.deadline.is_some_and(|d| d <= now) {
            let (tx, _) = oneshot::channel();
            let reply = std::mem::replace(&mut e.reply, tx);
            let _ = reply.send(Err(NodeError::DeadlineExceeded(format!(
                "the call's deadline passed after {:?} in the queue; it was not run",
                now.saturating_duration_since(e.enqueued)
            ))));
            return false;
        }
        true
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batcher::clock::manual::Manual;
    use crate::batcher::join::{concat, split};
    use crate::batcher::plan::tests::cfg;
    use std::time::Duration;

    fn t(rows: usize, v: f32) -> Tensor {
        Tensor::from_f32(vec![rows, 2], &vec![v; rows * 2]).unwrap()
    }

    #[tokio::test]
    async fn queue_bounds_batches_and_cancels() {
        let q = Queue::new("m", cfg(4, 1000, &[]));
        let mut held = Vec::new();
        for i in 0..8 {
            held.push(q.push(vec![t(1, i as f32)], 1, None, false).unwrap());
        }
        let e = q.push(vec![t(1, 0.0)], 1, None, false).err().unwrap();
        assert!(matches!(e, NodeError::QueueFull { size: 8, .. }), "{e}");
        // A cancelled call (dropped ticket and receiver) leaves the queue at once.
        drop(held.remove(0));
        assert_eq!(q.len(), 7);
        let mut batch = q.next_batch().await.unwrap();
        assert_eq!(batch.len(), 4);
        let joined = concat(&mut batch).unwrap();
        assert_eq!(joined[0].shape, vec![4, 2]);
        assert_eq!(joined[0].to_f32().unwrap()[..2], [1.0, 1.0]);
        let parts = split(joined, &[1, 1, 1, 1]).unwrap();
        assert_eq!(parts[3][0].to_f32().unwrap(), vec![4.0, 4.0]);
        q.finished(4);
        drop(held);
        assert_eq!(q.len(), 0);
        q.close();
        assert!(q.next_batch().await.is_none());
    }

    #[tokio::test]
    async fn calls_with_other_non_batch_dims_do_not_join() {
        let q = Queue::new("m", cfg(8, 1000, &[]));
        let (_a, _ra) = q.push(vec![t(1, 0.0)], 1, None, false).unwrap();
        let (_b, _rb) = q.push(vec![t(1, 1.0)], 1, None, false).unwrap();
        let odd = Tensor::from_f32(vec![1, 3], &[2.0; 3]).unwrap();
        let (_c, _rc) = q.push(vec![odd], 1, None, false).unwrap();
        // The first two leave together at once (the third cannot join them)...
        let first = q.next_batch().await.unwrap();
        assert_eq!(first.len(), 2);
        q.finished(2);
        // ...and the third waits for its own companions, then goes alone.
        let second = tokio::time::timeout(Duration::from_secs(3), q.next_batch())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(second[0].inputs[0].shape, vec![1, 3]);
    }

    #[tokio::test]
    async fn expired_calls_are_answered_and_not_run() {
        let q = Queue::new("m", cfg(4, 0, &[]));
        let (_t1, rx) = q
            .push(vec![t(1, 0.0)], 1, Some(Instant::now()), false)
            .unwrap();
        let (_t2, _rx2) = q.push(vec![t(1, 1.0)], 1, None, false).unwrap();
        let batch = q.next_batch().await.unwrap();
        assert_eq!(batch.len(), 1);
        assert_eq!(batch[0].inputs[0].to_f32().unwrap(), vec![1.0, 1.0]);
        let r = rx.await.unwrap();
        assert!(matches!(r, Err(NodeError::DeadlineExceeded(_))));
    }

    /// A batching config with a delay in microseconds.
    fn cfg_us(max: usize, delay_us: u64, adaptive: bool) -> BatchConfig {
        BatchConfig {
            max_queue_delay: Duration::from_micros(delay_us),
            adaptive,
            max_queue_size: 1024,
            ..cfg(max, 0, &[])
        }
    }

    /// Lets spawned tasks run on the test's runtime.
    async fn settle() {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
    }

    /// The next batch's size, taken on another task.
    fn next(q: &Arc<Queue>) -> tokio::task::JoinHandle<Option<usize>> {
        let q = q.clone();
        tokio::spawn(async move { q.next_batch().await.map(|b| b.len()) })
    }

    #[tokio::test]
    async fn a_batch_leaves_when_its_oldest_call_has_waited_the_delay_to_the_microsecond() {
        let clock = Manual::new();
        let q = Queue::with_clock("m", cfg_us(8, 500, false), clock.clone());
        // Another instance is running a call (its answer frees a caller to send again).
        let (_r, _rr) = q.push(vec![t(1, 0.0)], 1, None, false).unwrap();
        assert_eq!(next(&q).await.unwrap(), Some(1));
        let (_a, _ra) = q.push(vec![t(1, 0.0)], 1, None, false).unwrap();
        clock.advance(Duration::from_micros(100));
        let (_b, _rb) = q.push(vec![t(1, 1.0)], 1, None, false).unwrap();
        let batch = next(&q);
        // 499 µs after the oldest call: still waiting for more.
        clock.advance(Duration::from_micros(399));
        settle().await;
        assert!(!batch.is_finished(), "left before the delay");
        // 500 µs: both leave together.
        clock.advance(Duration::from_micros(1));
        assert_eq!(batch.await.unwrap(), Some(2));
    }

    #[tokio::test]
    async fn with_every_other_instance_idle_a_batch_does_not_wait_for_calls_that_cannot_come() {
        let clock = Manual::new();
        let q = Queue::with_clock("m", cfg_us(8, 100_000, false), clock.clone());
        let (_a, _ra) = q.push(vec![t(1, 0.0)], 1, None, false).unwrap();
        let (_b, _rb) = q.push(vec![t(1, 1.0)], 1, None, false).unwrap();
        // Nothing runs and nothing else is queued: the two leave with no time passed.
        assert_eq!(next(&q).await.unwrap(), Some(2));
        // While they run, a new call waits out the delay for company.
        let (_c, _rc) = q.push(vec![t(1, 2.0)], 1, None, false).unwrap();
        let batch = next(&q);
        clock.advance(Duration::from_micros(99_999));
        settle().await;
        assert!(!batch.is_finished());
        clock.advance(Duration::from_micros(1));
        assert_eq!(batch.await.unwrap(), Some(1));
    }

    #[tokio::test]
    async fn a_call_its_caller_runs_counts_as_running_and_its_end_frees_the_queue() {
        let clock = Manual::new();
        let q = Queue::with_clock("m", cfg_us(8, 100_000, false), clock.clone());
        // A caller runs its call on an idle instance itself: not queued, but running.
        let (taken, _rt) = q.take(vec![t(1, 0.0)], 1, None).unwrap();
        assert_eq!((q.len(), q.running()), (0, 1));
        assert_eq!(taken.rows, 1);
        // Meanwhile a call waits for company, since the running one may free a caller.
        let (_a, _ra) = q.push(vec![t(1, 1.0)], 1, None, false).unwrap();
        let batch = next(&q);
        clock.advance(Duration::from_micros(50));
        settle().await;
        assert!(!batch.is_finished());
        // Once the caller's call is done no other can come: it leaves, no more time passed.
        q.finished(1);
        assert_eq!(batch.await.unwrap(), Some(1));
        q.close();
        assert!(
            q.take(vec![t(1, 0.0)], 1, None).is_err(),
            "a closed queue takes nothing"
        );
    }

    #[tokio::test]
    async fn a_call_joining_a_full_batch_sends_it_at_once() {
        let clock = Manual::new();
        let q = Queue::with_clock("m", cfg_us(2, 100_000, false), clock.clone());
        // Another instance is busy, so the first call waits for company.
        let (_r, _rr) = q.push(vec![t(1, 0.0)], 1, None, false).unwrap();
        assert_eq!(next(&q).await.unwrap(), Some(1));
        let (_a, _ra) = q.push(vec![t(1, 0.0)], 1, None, false).unwrap();
        let batch = next(&q);
        settle().await;
        assert!(!batch.is_finished());
        let (_b, _rb) = q.push(vec![t(1, 1.0)], 1, None, false).unwrap();
        settle().await;
        // No time passed: the second call filled the batch.
        assert!(batch.is_finished());
        assert_eq!(batch.await.unwrap(), Some(2));
    }

    #[tokio::test]
    async fn an_adaptive_queue_waits_only_when_calls_come_faster_than_a_batch_costs() {
        let clock = Manual::new();
        let q = Queue::with_clock("m", cfg_us(8, 10_000, true), clock.clone());
        // Nothing measured yet: a lone call leaves at once.
        let (_a, _ra) = q.push(vec![t(1, 0.0)], 1, None, false).unwrap();
        assert_eq!(next(&q).await.unwrap(), Some(1));
        q.finished(1);
        // Batches cost 40 µs + 3 µs a row; calls come 10 µs apart.
        for n in [1, 2, 4, 8].into_iter().cycle().take(64) {
            q.measured(n, Duration::from_micros(40 + 3 * n as u64));
        }
        let mut held = Vec::new();
        for _ in 0..64 {
            clock.advance(Duration::from_micros(10));
            held.push(q.push(vec![t(1, 0.0)], 1, None, false).unwrap());
        }
        drop(held);
        // Another instance is busy (else no call could come and the batch would leave).
        let (_r, _rr) = q.push(vec![t(1, 0.0)], 1, None, false).unwrap();
        assert_eq!(next(&q).await.unwrap(), Some(1));
        let (_b, _rb) = q.push(vec![t(1, 0.0)], 1, None, false).unwrap();
        let batch = next(&q);
        clock.advance(Duration::from_micros(39));
        settle().await;
        assert!(
            !batch.is_finished(),
            "the window is the 40 µs a batch costs"
        );
        clock.advance(Duration::from_micros(1));
        assert_eq!(batch.await.unwrap(), Some(1));
        q.finished(1);
        // Calls now 1 ms apart (a lone client): no window.
        for _ in 0..600 {
            clock.advance(Duration::from_millis(1));
            drop(q.push(vec![t(1, 0.0)], 1, None, false).unwrap());
        }
        let (_c, _rc) = q.push(vec![t(1, 0.0)], 1, None, false).unwrap();
        assert_eq!(next(&q).await.unwrap(), Some(1));
    }
}
