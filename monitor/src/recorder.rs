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
/// Rows per write.
const BATCH: usize = 512;
/// How long the writer waits for more rows before a partial batch.
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
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        // Linger briefly for a fuller batch.
        if batch.len() < BATCH {
            let _ = tokio::time::timeout(LINGER, async {
                while batch.len() < BATCH {
                    let room = BATCH - batch.len();
                    if rx.recv_many(&mut batch, room).await == 0 {
                        break;
                    }
                }
            })
            .await;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Summary;

    fn call(i: usize) -> Prediction {
        Prediction {
            request_id: format!("r{i}"),
            model: "m".into(),
            version: "1".into(),
            digest: String::new(),
            time_ms: i as i64,
            node: "n".into(),
            trace_id: String::new(),
            summary: Summary::Value(i as f64),
            inputs: None,
            review: None,
        }
    }

    #[tokio::test]
    async fn every_call_is_written_or_counted_as_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("s.db").display());
        let store = Store::open(&url).await.unwrap();
        // A queue of 100 and 1,000 calls at once: most are dropped, all are counted.
        let r = Recorder::start(store.clone(), 100);
        for i in 0..1000 {
            r.record(call(i));
        }
        assert_eq!(r.drain(Duration::from_secs(10)).await, 0);
        let c = r.counts();
        let written = c.written.load(Ordering::Relaxed);
        assert!(c.dropped_queue_full.load(Ordering::Relaxed) > 0);
        assert_eq!(written + c.dropped(), 1000);
        assert_eq!(store.count().await.unwrap(), written);
    }
}
