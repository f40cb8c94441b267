//! Retention: predictions older than an age, and the oldest past a size, leave the store
//! (`Store::prune`), checked by one task at a fixed pace.

use std::time::Duration;

use tracing::{info, warn};

use crate::record::now_ms;
use crate::store::Store;

/// How long and how much the store keeps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Retention {
    /// Predictions older than this go (None: kept whatever their age).
    pub max_age: Option<Duration>,
    /// The oldest predictions go while the rows take more than this (None: no limit).
    pub max_bytes: Option<u64>,
}

/// How often retention runs.
pub const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Runs retention on `store` every `every` (the first run at once) until the runtime
/// ends or the handle is aborted.
pub fn start(store: Store, retention: Retention, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if retention.max_age.is_none() && retention.max_bytes.is_none() {
            return;
        }
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match store
                .prune(retention.max_age, retention.max_bytes, now_ms())
                .await
            {
                Ok(0) => {}
                Ok(n) => {
                    info!(store = %store.shown(), predictions = n, "retention: old predictions removed")
                }
                Err(e) => {
                    warn!(store = %store.shown(), error = %e, "retention failed; trying again later")
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Prediction, Summary};

    #[tokio::test]
    async fn old_predictions_leave_at_the_pace_set() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("s.db").display());
        let store = Store::open(&url).await.unwrap();
        let old = Prediction {
            request_id: "old".into(),
            model: "m".into(),
            version: "1".into(),
            digest: String::new(),
            time_ms: 0,
            node: "n".into(),
            trace_id: String::new(),
            summary: Summary::Value(1.0),
            inputs: None,
            review: None,
        };
        let new = Prediction {
            request_id: "new".into(),
            time_ms: now_ms(),
            ..old.clone()
        };
        store.insert(&[old, new]).await.unwrap();
        let task = start(
            store.clone(),
            Retention {
                max_age: Some(Duration::from_secs(3600)),
                max_bytes: None,
            },
            Duration::from_millis(20),
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while store.count().await.unwrap() > 1 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        task.abort();
        assert_eq!(store.count().await.unwrap(), 1);
        assert!(store.get("new").await.unwrap().is_some());
    }
}
