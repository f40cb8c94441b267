//! Alerts: a model's threshold crossed (drift starting or ending, outliers) posted as
//! JSON to the webhook of its `[monitoring.webhook]`, never on the call path: alerts go
//! through a bounded queue to one task per model, which tries each up to `1 + retries`
//! times with a doubling pause. What is posted, given up on, or dropped on a full queue
//! is counted.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use troupe_proto::troupe as pb;

/// Attempts after the first, by default.
pub const RETRIES: u32 = 3;
/// Per attempt, by default.
pub const TIMEOUT_MS: u64 = 2000;
/// Alerts that may wait for the poster.
const QUEUE: usize = 64;
/// The pause before the first retry (doubling after each).
const FIRST_PAUSE: Duration = Duration::from_millis(200);

/// `[monitoring.webhook]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WebhookCfg {
    pub url: String,
    #[serde(default = "retries")]
    pub retries: u32,
    #[serde(default = "timeout_ms")]
    pub timeout_ms: u64,
}

fn retries() -> u32 {
    RETRIES
}
fn timeout_ms() -> u64 {
    TIMEOUT_MS
}

impl WebhookCfg {
    pub fn validate(&self) -> Result<(), String> {
        let ok = reqwest::Url::parse(&self.url)
            .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
        if !ok {
            return Err(format!(
                "[monitoring.webhook] url '{}' is not an http:// or https:// URL",
                self.url
            ));
        }
        if self.retries > 10 || self.timeout_ms == 0 || self.timeout_ms > 60_000 {
            return Err(
                "[monitoring.webhook] retries must be at most 10, timeout_ms within 1 and 60000"
                    .into(),
            );
        }
        Ok(())
    }

    pub fn from_spec(w: &pb::Webhook) -> Self {
        WebhookCfg {
            url: w.url.clone(),
            retries: if w.retries > 0 { w.retries } else { RETRIES },
            timeout_ms: if w.timeout_ms > 0 {
                u64::from(w.timeout_ms)
            } else {
                TIMEOUT_MS
            },
        }
    }

    pub fn to_spec(&self) -> pb::Webhook {
        pb::Webhook {
            url: self.url.clone(),
            retries: self.retries,
            timeout_ms: self.timeout_ms.min(u64::from(u32::MAX)) as u32,
        }
    }
}

/// One alert, as posted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// `drift` (an alert starts), `drift_ended`, or `outliers`.
    pub alert: String,
    pub model: String,
    pub version: String,
    pub node: String,
    /// ms since the epoch.
    pub time_ms: i64,
    /// What crossed: the drifted features' tests, or the outlier scores.
    pub detail: serde_json::Value,
}

/// What became of a model's alerts.
#[derive(Debug, Default)]
pub struct AlertCounts {
    pub posted: AtomicU64,
    /// Given up on after every attempt failed.
    pub failed: AtomicU64,
    /// Dropped because alerts were coming faster than the webhook took them.
    pub dropped: AtomicU64,
}

/// The handle alerts are raised through (cheap to clone).
#[derive(Debug, Clone)]
pub struct Alerter {
    tx: mpsc::Sender<Alert>,
    counts: Arc<AlertCounts>,
}

impl Alerter {
    /// Starts the poster task for `cfg` on the current runtime.
    pub fn start(cfg: WebhookCfg) -> Alerter {
        let (tx, rx) = mpsc::channel(QUEUE);
        let counts = Arc::new(AlertCounts::default());
        tokio::spawn(post_loop(cfg, rx, counts.clone()));
        Alerter { tx, counts }
    }

    /// Hands an alert to the poster; never waits.
    pub fn raise(&self, a: Alert) {
        if self.tx.try_send(a).is_err() {
            self.counts.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn counts(&self) -> &AlertCounts {
        &self.counts
    }
}

async fn post_loop(cfg: WebhookCfg, mut rx: mpsc::Receiver<Alert>, counts: Arc<AlertCounts>) {
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_millis(cfg.timeout_ms))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(url = %cfg.url, error = %e, "webhook client not built; alerts are not posted");
            return;
        }
    };
    while let Some(alert) = rx.recv().await {
        let mut pause = FIRST_PAUSE;
        let mut attempt = 0;
        loop {
            let outcome = match client.post(&cfg.url).json(&alert).send().await {
                Ok(r) if r.status().is_success() => Ok(()),
                Ok(r) => Err(format!("the webhook answered {}", r.status())),
                Err(e) => Err(e.to_string()),
            };
            match outcome {
                Ok(()) => {
                    counts.posted.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(url = %cfg.url, alert = %alert.alert, model = %alert.model, attempt, "alert posted to the webhook");
                    break;
                }
                Err(e) if attempt >= cfg.retries => {
                    counts.failed.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(url = %cfg.url, alert = %alert.alert, model = %alert.model, attempts = attempt + 1, error = %e, "alert not posted: the webhook failed every attempt");
                    break;
                }
                Err(e) => {
                    tracing::debug!(url = %cfg.url, attempt, error = %e, "webhook attempt failed; retrying");
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                    attempt += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_http_urls_are_webhooks() {
        let cfg = |url: &str| WebhookCfg {
            url: url.into(),
            retries: RETRIES,
            timeout_ms: TIMEOUT_MS,
        };
        assert!(cfg("http://127.0.0.1:8080/hook").validate().is_ok());
        assert!(cfg("ftp://x/").validate().unwrap_err().contains("ftp://x/"));
        assert!(cfg("not a url").validate().is_err());
        assert_eq!(
            WebhookCfg::from_spec(&cfg("http://h/").to_spec()),
            cfg("http://h/")
        );
    }

    #[tokio::test]
    async fn an_unreachable_webhook_is_retried_then_counted_as_failed() {
        // A port nothing listens on: every attempt is refused at once.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let a = Alerter::start(WebhookCfg {
            url: format!("http://127.0.0.1:{port}/hook"),
            retries: 2,
            timeout_ms: 500,
        });
        a.raise(Alert {
            alert: "drift".into(),
            model: "m".into(),
            version: "1".into(),
            node: "n".into(),
            time_ms: 0,
            detail: serde_json::json!({}),
        });
        for _ in 0..100 {
            if a.counts().failed.load(Ordering::Relaxed) == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(a.counts().failed.load(Ordering::Relaxed), 1);
        assert_eq!(a.counts().posted.load(Ordering::Relaxed), 0);
    }
}
