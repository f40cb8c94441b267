//! Human review: a queue in the prediction store, filled by a model's rules
//! (`[monitoring.review]`: a random share, a low top-class score, an outlier score over
//! a threshold, any call while a drift alert holds). A reviewer takes the oldest open
//! call (`next`, which leases it for [`LEASE`]), sees its inputs, outputs and
//! explanation, and decides (`label`): the decision is stored as the call's ground truth,
//! so it counts in the live quality metrics like any other feedback.

use std::time::Duration;

use serde::Deserialize;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::error::MonitorError;
use crate::record::{Truth, TruthValue};
use crate::store::Store;

/// How long a call handed out by `next` stays with its reviewer before `next` hands it
/// to another.
pub const LEASE: Duration = Duration::from_secs(600);
/// Open calls a model's queue holds by default; calls beyond are not queued.
pub const MAX_QUEUED: u64 = 10_000;
/// Reviews one export returns at most.
pub const MAX_EXPORT: i64 = 100_000;

/// `[monitoring.review]`: which calls are queued for a person to check. A call is
/// queued for the first rule it meets, in the order below.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ReviewRules {
    /// Calls whose outlier score is above this (needs `[monitoring.drift]`).
    #[serde(default)]
    pub outlier_above: Option<f64>,
    /// Classifier calls whose top-class score is below this.
    #[serde(default)]
    pub score_below: Option<f64>,
    /// Every call while the model's drift alert holds.
    #[serde(default)]
    pub while_drifting: bool,
    /// A random share of all calls (0 to 1).
    #[serde(default)]
    pub sample: f64,
    /// Open calls the queue holds at most.
    #[serde(default = "max_queued")]
    pub max_queued: u64,
}

fn max_queued() -> u64 {
    MAX_QUEUED
}

impl ReviewRules {
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.sample) {
            return Err(format!(
                "[monitoring.review] sample must be within 0 and 1, not {}",
                self.sample
            ));
        }
        if self.max_queued == 0 {
            return Err("[monitoring.review] max_queued must be at least 1".into());
        }
        Ok(())
    }
}

/// The rule that queued a call (`as usize` indexes [`Reason::ALL`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Outlier = 0,
    LowScore = 1,
    Drift = 2,
    Sample = 3,
}

impl Reason {
    /// Every reason, in the order of their rules.
    pub const ALL: [Reason; 4] = [
        Reason::Outlier,
        Reason::LowScore,
        Reason::Drift,
        Reason::Sample,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Outlier => "outlier",
            Reason::LowScore => "low_score",
            Reason::Drift => "drift",
            Reason::Sample => "sample",
        }
    }
}

/// What a call offers the rules.
#[derive(Debug, Clone, Copy, Default)]
pub struct Facts {
    pub outlier_score: Option<f64>,
    pub top_score: Option<f64>,
    pub drifting: bool,
    /// A uniform draw in [0, 1) for the random share.
    pub draw: f64,
}

impl ReviewRules {
    /// The first rule the call meets, if any.
    pub fn reason(&self, f: Facts) -> Option<Reason> {
        if let (Some(t), Some(s)) = (self.outlier_above, f.outlier_score)
            && s > t
        {
            return Some(Reason::Outlier);
        }
        if let (Some(t), Some(s)) = (self.score_below, f.top_score)
            && s < t
        {
            return Some(Reason::LowScore);
        }
        if self.while_drifting && f.drifting {
            return Some(Reason::Drift);
        }
        (f.draw < self.sample).then_some(Reason::Sample)
    }
}

/// A call queued for review, as recorded with its prediction.
#[derive(Debug, Clone, PartialEq)]
pub struct Queued {
    pub reason: Reason,
    /// JSON objects: the call's inputs (None when over the size cap), its outputs, and
    /// its explanation if one was asked.
    pub inputs: Option<String>,
    pub outputs: String,
    pub explanation: Option<String>,
    /// The model's queue bound.
    pub max_queued: u64,
}

/// A queued call as a reviewer sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReviewItem {
    pub request_id: String,
    pub model: String,
    pub version: String,
    pub reason: String,
    pub time_ms: i64,
    pub inputs: Option<String>,
    pub outputs: String,
    pub explanation: Option<String>,
    /// The prediction: its class (classifiers) and score, or value.
    pub class: Option<String>,
    pub score: Option<f64>,
    pub value: Option<f64>,
    /// The decision, once made.
    pub decision: Option<TruthValue>,
    pub reviewer: Option<String>,
    pub decided_ms: Option<i64>,
}

/// Which reviews an export holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportState {
    All,
    Open,
    Decided,
}

const ITEM: &str = "SELECT r.request_id, r.model, r.version, r.reason, r.time_ms, r.inputs, r.outputs, r.explanation, r.label, r.value, r.reviewer, r.decided_ms, p.class, p.score, p.value AS predicted_value FROM reviews r LEFT JOIN predictions p ON p.request_id = r.request_id";

fn item(r: &AnyRow) -> Result<ReviewItem, MonitorError> {
    let label: Option<String> = r.try_get("label")?;
    let value: Option<f64> = r.try_get("value")?;
    let decision = match (label, value) {
        (Some(l), _) => Some(TruthValue::Class(l)),
        (None, Some(v)) => Some(TruthValue::Value(v)),
        _ => None,
    };
    Ok(ReviewItem {
        request_id: r.try_get("request_id")?,
        model: r.try_get("model")?,
        version: r.try_get("version")?,
        reason: r.try_get("reason")?,
        time_ms: r.try_get("time_ms")?,
        inputs: r.try_get("inputs")?,
        outputs: r.try_get("outputs")?,
        explanation: r.try_get("explanation")?,
        class: r.try_get("class")?,
        score: r.try_get("score")?,
        value: r.try_get("predicted_value")?,
        decision,
        reviewer: r.try_get("reviewer")?,
        decided_ms: r.try_get("decided_ms")?,
    })
}

impl Store {
    /// Queues calls for review inside a write (`rows`: request id, model, version, time
    /// and what to show), each model's queue up to its bound; how many were queued.
    pub(crate) async fn queue_reviews(
        tx: &mut sqlx::AnyConnection,
        rows: &[(&str, &str, &str, i64, &Queued)],
    ) -> Result<u64, MonitorError> {
        let mut queued = 0;
        let mut room: Vec<(String, i64)> = Vec::new();
        for (id, model, version, time_ms, q) in rows {
            let left = match room.iter_mut().find(|(m, _)| m == model) {
                Some((_, left)) => left,
                None => {
                    let open: i64 = sqlx::query_scalar(
                        "SELECT COUNT(*) FROM reviews WHERE model = $1 AND decided_ms IS NULL",
                    )
                    .bind(model.to_string())
                    .fetch_one(&mut *tx)
                    .await?;
                    let bound = i64::try_from(q.max_queued).unwrap_or(i64::MAX);
                    room.push((model.to_string(), bound - open));
                    &mut room.last_mut().expect("just pushed").1
                }
            };
            if *left <= 0 {
                continue;
            }
            let n = sqlx::query(
                "INSERT INTO reviews (request_id, model, version, reason, time_ms, inputs, outputs, explanation) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (request_id) DO NOTHING",
            )
            .bind(id.to_string())
            .bind(model.to_string())
            .bind(version.to_string())
            .bind(q.reason.as_str())
            .bind(*time_ms)
            .bind(q.inputs.clone())
            .bind(q.outputs.clone())
            .bind(q.explanation.clone())
            .execute(&mut *tx)
            .await?
            .rows_affected();
            *left -= n as i64;
            queued += n;
        }
        Ok(queued)
    }

    /// The oldest open review of `model` no one holds (or whose lease ran out), leased to
    /// the caller now; None when none waits.
    pub async fn next_review(
        &self,
        model: &str,
        now_ms: i64,
    ) -> Result<Option<ReviewItem>, MonitorError> {
        let expired = now_ms.saturating_sub(LEASE.as_millis() as i64);
        // Two reviewers may pick the same row; the lease's update lets one win.
        for _ in 0..8 {
            let sql = format!(
                "{ITEM} WHERE r.model = $1 AND r.decided_ms IS NULL AND (r.claimed_ms IS NULL OR r.claimed_ms < $2) ORDER BY r.time_ms, r.request_id LIMIT 1"
            );
            let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(model.to_string())
                .bind(expired)
                .fetch_optional(self.pool())
                .await?;
            let Some(row) = row else { return Ok(None) };
            let it = item(&row)?;
            let won = sqlx::query(
                "UPDATE reviews SET claimed_ms = $1 WHERE request_id = $2 AND decided_ms IS NULL AND (claimed_ms IS NULL OR claimed_ms < $3)",
            )
            .bind(now_ms)
            .bind(it.request_id.clone())
            .bind(expired)
            .execute(self.pool())
            .await?
            .rows_affected();
            if won == 1 {
                return Ok(Some(it));
            }
        }
        Ok(None)
    }

    /// Records a reviewer's decision on a queued call, and stores it as the call's ground
    /// truth. Errors when the id was never queued.
    pub async fn decide_review(
        &self,
        request_id: &str,
        decision: TruthValue,
        reviewer: &str,
        now_ms: i64,
    ) -> Result<ReviewItem, MonitorError> {
        let (label, value) = match &decision {
            TruthValue::Class(c) => (Some(c.clone()), None),
            TruthValue::Value(v) => (None, Some(*v)),
        };
        let n = sqlx::query(
            "UPDATE reviews SET label = $1, value = $2, reviewer = $3, decided_ms = $4 WHERE request_id = $5",
        )
        .bind(label)
        .bind(value)
        .bind(reviewer.to_string())
        .bind(now_ms)
        .bind(request_id.to_string())
        .execute(self.pool())
        .await?
        .rows_affected();
        if n == 0 {
            return Err(MonitorError::NotFound(format!(
                "request id '{request_id}' is not in the review queue"
            )));
        }
        self.submit(&[Truth {
            request_id: request_id.to_string(),
            label: decision,
            time_ms: now_ms,
            source: format!("review:{reviewer}"),
        }])
        .await?;
        let sql = format!("{ITEM} WHERE r.request_id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(request_id.to_string())
            .fetch_one(self.pool())
            .await?;
        item(&row)
    }

    /// Reviews, oldest first: of one model (or all), open, decided, or both.
    pub async fn reviews(
        &self,
        model: Option<&str>,
        state: ExportState,
        limit: i64,
    ) -> Result<Vec<ReviewItem>, MonitorError> {
        let decided = match state {
            ExportState::All => "",
            ExportState::Open => " AND r.decided_ms IS NULL",
            ExportState::Decided => " AND r.decided_ms IS NOT NULL",
        };
        let sql = format!(
            "{ITEM} WHERE ($1 = '' OR r.model = $1){decided} ORDER BY r.time_ms, r.request_id LIMIT $2"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(model.unwrap_or("").to_string())
            .bind(limit.clamp(0, MAX_EXPORT))
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(item).collect()
    }

    /// Where a call stands in review: "" (never queued), "open" or "decided".
    pub async fn review_state(&self, request_id: &str) -> Result<&'static str, MonitorError> {
        let decided: Option<Option<i64>> =
            sqlx::query_scalar("SELECT decided_ms FROM reviews WHERE request_id = $1")
                .bind(request_id.to_string())
                .fetch_optional(self.pool())
                .await?;
        Ok(match decided {
            None => "",
            Some(None) => "open",
            Some(Some(_)) => "decided",
        })
    }

    /// Open and decided reviews of `model`.
    pub async fn review_counts(&self, model: &str) -> Result<(u64, u64), MonitorError> {
        let (open, decided): (i64, i64) = sqlx::query_as(
            "SELECT CAST(COALESCE(SUM(CASE WHEN decided_ms IS NULL THEN 1 ELSE 0 END), 0) AS BIGINT), CAST(COALESCE(SUM(CASE WHEN decided_ms IS NULL THEN 0 ELSE 1 END), 0) AS BIGINT) FROM reviews WHERE model = $1",
        )
        .bind(model.to_string())
        .fetch_one(self.pool())
        .await?;
        Ok((open.max(0) as u64, decided.max(0) as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> ReviewRules {
        ReviewRules {
            outlier_above: Some(5.0),
            score_below: Some(0.6),
            while_drifting: true,
            sample: 0.1,
            max_queued: 3,
        }
    }

    #[test]
    fn the_first_rule_met_names_the_reason() {
        let r = rules();
        let f = |o, s, d, draw| Facts {
            outlier_score: o,
            top_score: s,
            drifting: d,
            draw,
        };
        assert_eq!(
            r.reason(f(Some(9.0), Some(0.1), true, 0.0)),
            Some(Reason::Outlier)
        );
        assert_eq!(
            r.reason(f(Some(1.0), Some(0.5), true, 0.0)),
            Some(Reason::LowScore)
        );
        assert_eq!(
            r.reason(f(Some(1.0), Some(0.9), true, 0.5)),
            Some(Reason::Drift)
        );
        assert_eq!(
            r.reason(f(None, Some(0.9), false, 0.05)),
            Some(Reason::Sample)
        );
        assert_eq!(r.reason(f(None, Some(0.9), false, 0.5)), None);
    }

    #[tokio::test]
    async fn next_leases_label_decides_and_the_queue_is_bounded() {
        use crate::record::{Prediction, Summary};
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("s.db").display());
        let store = Store::open(&url).await.unwrap();
        let q = Queued {
            reason: Reason::Sample,
            inputs: Some("{\"x\":[1]}".into()),
            outputs: "{\"y\":[0.2,0.8]}".into(),
            explanation: None,
            max_queued: 3,
        };
        let rows: Vec<Prediction> = (0..5)
            .map(|i| Prediction {
                request_id: format!("r{i}"),
                model: "m".into(),
                version: "1".into(),
                digest: String::new(),
                time_ms: i,
                node: "n".into(),
                trace_id: String::new(),
                summary: Summary::Class {
                    class: "1".into(),
                    score: Some(0.8),
                    scores: vec![0.2, 0.8],
                },
                inputs: None,
                review: Some(q.clone()),
            })
            .collect();
        store.insert(&rows).await.unwrap();
        assert_eq!(store.review_counts("m").await.unwrap(), (3, 0));
        let a = store.next_review("m", 1000).await.unwrap().unwrap();
        assert_eq!(a.request_id, "r0");
        assert_eq!(a.class.as_deref(), Some("1"));
        // Leased: the next reviewer gets the next call, until the lease runs out.
        let b = store.next_review("m", 1001).await.unwrap().unwrap();
        assert_eq!(b.request_id, "r1");
        let late = 1000 + LEASE.as_millis() as i64 + 1;
        assert_eq!(
            store
                .next_review("m", late)
                .await
                .unwrap()
                .unwrap()
                .request_id,
            "r0"
        );
        let d = store
            .decide_review("r0", TruthValue::Class("0".into()), "ann", 2000)
            .await
            .unwrap();
        assert_eq!(d.decision, Some(TruthValue::Class("0".into())));
        let truth = store.get("r0").await.unwrap().unwrap().truth.unwrap();
        assert_eq!(truth.source, "review:ann");
        assert!(matches!(
            store
                .decide_review("r9", TruthValue::Value(1.0), "ann", 1)
                .await,
            Err(MonitorError::NotFound(_))
        ));
        assert_eq!(store.review_counts("m").await.unwrap(), (2, 1));
        let done = store
            .reviews(Some("m"), ExportState::Decided, 10)
            .await
            .unwrap();
        assert_eq!(done.len(), 1);
        assert_eq!(
            store
                .reviews(None, ExportState::All, 10)
                .await
                .unwrap()
                .len(),
            3
        );
    }
}
