//! The queue's time: now, and a wait that ends within microseconds of its deadline.
//!
//! Tokio's timer counts whole milliseconds, so a 500 µs batch delay waited on it lasts
//! up to 2 ms. [`Precise`] waits on one timer thread instead: the thread parks until the
//! earliest deadline (a futex wait, with the thread's timer slack cut to 1 µs), wakes the
//! waiting task [`EARLY`] before it, and the task yields until the deadline itself. The
//! queue reads time through [`Clock`], so its unit tests run it on a clock they move.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::thread::Thread;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::oneshot;

/// A future the queue waits on.
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send>>;

/// What the queue reads time from.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Instant;
    /// Resolves at `deadline` (never before it).
    fn sleep_until(&self, deadline: Instant) -> Sleep;
}

/// How long before its deadline the timer thread wakes a waiting task, which then
/// yields until the deadline (a cross-thread wake takes a few microseconds).
pub const EARLY: Duration = Duration::from_micros(30);

/// How long before a deadline a long park of the timer thread ends, to park once more
/// for the rest.
const LONG_EARLY: Duration = Duration::from_micros(300);

/// The real clock, with waits precise to microseconds.
#[derive(Debug, Default, Clone, Copy)]
pub struct Precise;

impl Clock for Precise {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn sleep_until(&self, deadline: Instant) -> Sleep {
        let woken = (deadline.saturating_duration_since(Instant::now()) > EARLY)
            .then(|| timers().at(deadline - EARLY));
        Box::pin(async move {
            if let Some(w) = woken {
                let _ = w.await;
            }
            while Instant::now() < deadline {
                tokio::task::yield_now().await;
            }
        })
    }
}

/// One deadline the timer thread keeps: wake `tx` at `at`.
struct Due {
    at: Instant,
    seq: u64,
    tx: oneshot::Sender<()>,
}

impl PartialEq for Due {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Due {}
impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Due {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// The timer thread's deadlines, earliest first, and the thread to unpark when a new
/// one comes before them.
struct Timers {
    due: Mutex<(BinaryHeap<Reverse<Due>>, u64)>,
    /// None when no thread could be started: every wait then ends at once (batches
    /// leave early rather than never).
    thread: Option<Thread>,
}

impl Timers {
    /// A receiver the thread completes at `at`.
    fn at(&self, at: Instant) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        let Some(thread) = &self.thread else {
            let _ = tx.send(());
            return rx;
        };
        let earliest = {
            let mut d = self.due.lock();
            let (heap, seq) = &mut *d;
            *seq += 1;
            let earliest = heap.peek().is_none_or(|Reverse(first)| at < first.at);
            heap.push(Reverse(Due { at, seq: *seq, tx }));
            earliest
        };
        if earliest {
            thread.unpark();
        }
        rx
    }

    /// Completes what is due; the next deadline.
    fn fire(&self, now: Instant) -> Option<Instant> {
        let mut d = self.due.lock();
        let heap = &mut d.0;
        while heap.peek().is_some_and(|Reverse(first)| first.at <= now) {
            if let Some(Reverse(due)) = heap.pop() {
                // A waiter that stopped waiting (its batch filled up) dropped its receiver.
                let _ = due.tx.send(());
            }
        }
        heap.peek().map(|Reverse(first)| first.at)
    }
}

/// The process's timer thread, started on first use.
fn timers() -> &'static Timers {
    static TIMERS: OnceLock<&'static Timers> = OnceLock::new();
    TIMERS.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel::<&'static Timers>();
        let thread = std::thread::Builder::new()
            .name("troupe-timer".into())
            .spawn(move || {
                // Wake within a microsecond of the asked time, not the default 50 µs.
                // SAFETY: prctl(PR_SET_TIMERSLACK) only sets this thread's timer slack.
                unsafe {
                    libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong);
                }
                let Ok(timers) = rx.recv() else { return };
                loop {
                    match timers.fire(Instant::now()) {
                        Some(next) => {
                            // A long park wakes late (the CPU idles deeper): park until
                            // LONG_EARLY before the deadline, then again, briefly.
                            let wait = next.saturating_duration_since(Instant::now());
                            std::thread::park_timeout(if wait > 2 * LONG_EARLY {
                                wait - LONG_EARLY
                            } else {
                                wait
                            })
                        }
                        None => std::thread::park(),
                    }
                }
            })
            .map(|h| h.thread().clone());
        let timers: &'static Timers = Box::leak(Box::new(Timers {
            due: Mutex::new((BinaryHeap::new(), 0)),
            thread: thread.ok(),
        }));
        let _ = tx.send(timers);
        timers
    })
}

/// A clock that moves only when told (the queue's unit tests).
#[cfg(test)]
pub mod manual {
    use super::*;
    use tokio::sync::watch;

    pub struct Manual {
        base: Instant,
        offset: watch::Sender<Duration>,
    }

    impl Manual {
        pub fn new() -> std::sync::Arc<Self> {
            std::sync::Arc::new(Self {
                base: Instant::now(),
                offset: watch::Sender::new(Duration::ZERO),
            })
        }

        /// Moves time on by `d`, waking the waits it ends.
        pub fn advance(&self, d: Duration) {
            self.offset.send_modify(|o| *o += d);
        }
    }

    impl Clock for Manual {
        fn now(&self) -> Instant {
            self.base + *self.offset.borrow()
        }

        fn sleep_until(&self, deadline: Instant) -> Sleep {
            let mut rx = self.offset.subscribe();
            let base = self.base;
            Box::pin(async move {
                while base + *rx.borrow_and_update() < deadline {
                    if rx.changed().await.is_err() {
                        return;
                    }
                }
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_precise_wait_never_ends_early() {
        for us in [0u64, 10, 100, 700, 3000] {
            let start = Instant::now();
            let deadline = start + Duration::from_micros(us);
            Precise.sleep_until(deadline).await;
            assert!(Instant::now() >= deadline, "{us} µs ended early");
        }
    }

    #[tokio::test]
    async fn waits_end_in_deadline_order_whatever_order_they_began() {
        let now = Instant::now();
        let late = Precise.sleep_until(now + Duration::from_millis(20));
        let soon = Precise.sleep_until(now + Duration::from_millis(2));
        tokio::select! {
            _ = late => panic!("the later wait ended first"),
            _ = soon => {}
        }
    }
}
