//! Recording off the call path: calls hand their [`Prediction`] to a bounded queue, and
//! one task writes them to the store in batches. A full queue, or a batch the store
//! refused (the database down), drops rows; each is counted, never silent, so that
//! rows stored + rows dropped = calls recorded, exactly.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::record::Prediction;
use crate::store::Store;

/// Rows that may wait for the writer by default.
pub const RECORD_QUEUE: usize = 16_384;
/// Rows the writer takes at once when it wakes.
const BATCH: usize = 512;
/// Rows per write at most (one transaction).
const MAX_BATCH: usize = 4096;
/// How long the writer lets rows gather after the first before it writes them.
const LINGER: Duration = Duration::from_millis(20);

/// What became of the calls handed to the recorder.
#[derive(Debug, Default)]
pub struct RecordCounts {
    /// Taken into the queue.
    pub queued: AtomicU64,
    /// Written to the store.
    pub written: AtomicU64,
    /// Dropped because the queue was full.
    pub dropped_queue_full: AtomicU64,
    /// Dropped because the store refused their batch (unreachable, failing).
    pub dropped_store_error: AtomicU64,
}

impl RecordCounts {
    pub fn dropped(&self) -> u64 {
        self.dropped_queue_full.load(Ordering::Relaxed)
            + self.dropped_store_error.load(Ordering::Relaxed)
    }
}

/// The handle calls record through (cheap to clone).
#[derive(Debug, Clone)]
pub struct Recorder {
    tx: mpsc::Sender<Prediction>,
    counts: Arc<RecordCounts>,
}

impl Recorder {
    /// Starts the writer task on the current runtime.
    pub fn start(store: Store, capacity: usize) -> Recorder {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let counts = Arc::new(RecordCounts::default());
        tokio::spawn(write_loop(store, rx, counts.clone()));
        Recorder { tx, counts }
    }

    /// Hands one call over; never waits.
    pub fn record(&self, p: Prediction) {
        // Counted before the send, so the writer never writes a row not counted yet.
        self.counts.queued.fetch_add(1, Ordering::Relaxed);
        if self.tx.try_send(p).is_err() {
            self.counts.queued.fetch_sub(1, Ordering::Relaxed);
            let n = self
                .counts
                .dropped_queue_full
                .fetch_add(1, Ordering::Relaxed)
                + 1;
            // Once per 1,024 drops: the log must not become the next flood.
            if n % 1024 == 1 {
                warn!(
                    dropped_total = n,
                    "prediction store queue full; predictions dropped"
                );
            }
        }
    }

    pub fn counts(&self) -> &RecordCounts {
        &self.counts
    }

    /// Rows taken into the queue and not yet written or dropped.
    pub fn pending(&self) -> u64 {
        let c = &self.counts;
        c.queued.load(Ordering::Relaxed).saturating_sub(
            c.written.load(Ordering::Relaxed) + c.dropped_store_error.load(Ordering::Relaxed),
        )
    }

    /// Waits (at most `within`) until every queued row is written or dropped, as a node
    /// does when it stops; the rows still pending then, which are lost.
    pub async fn drain(&self, within: Duration) -> u64 {
        let deadline = tokio::time::Instant::now() + within;
        while self.pending() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.pending()
    }
}

async fn write_loop(store: Store, mut rx: mpsc::Receiver<Prediction>, counts: Arc<RecordCounts>) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut failing = false;
    // Wait for the first row, then let the others gather for LINGER without waking this
    // task per row (a sender's wake-up costs more than its row), and take them all.
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        tokio::time::sleep(LINGER).await;
        while batch.len() < MAX_BATCH && !rx.is_empty() {
            let room = MAX_BATCH - batch.len();
            rx.recv_many(&mut batch, room).await;
        }
        let n = batch.len() as u64;
        match store.insert(&batch).await {
            Ok(_) => {
                counts.written.fetch_add(n, Ordering::Relaxed);
                if failing {
                    failing = false;
                    info!(store = %store.shown(), "prediction store writable again; recording resumed");
                }
            }
            Err(e) => {
                let lost = counts.dropped_store_error.fetch_add(n, Ordering::Relaxed) + n;
                if !failing {
                    failing = true;
                    warn!(store = %store.shown(), error = %e, rows = n, dropped_total = lost, "prediction store write failed; predictions dropped until it is back");
                }
            }
        }
        batch.clear();
    }
}
