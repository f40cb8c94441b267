//! The prediction store: SQLite (a file, no setup) or PostgreSQL (shared by the nodes and
//! routers of a cluster), through sqlx's `Any` driver, with the schema in `migrations/`.
//! Statements are portable SQL with `$N` placeholders, which both accept; multi-row
//! inserts name theirs as each database binds them fastest ([`Params`]).

use std::time::Duration;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AnyPool, AssertSqlSafe, Row, SqlStr};

use crate::error::MonitorError;
use crate::record::{Prediction, Summary, Truth, TruthValue};

/// The schema, embedded: a binary needs no files beside it.
fn migrator() -> Migrator {
    Migrator::with_migrations(vec![
        Migration::new(
            1,
            "predictions".into(),
            MigrationType::Simple,
            SqlStr::from_static(include_str!("../migrations/0001_predictions.sql")),
            false,
        ),
        Migration::new(
            2,
            "drift".into(),
            MigrationType::Simple,
            SqlStr::from_static(include_str!("../migrations/0002_drift.sql")),
            false,
        ),
        Migration::new(
            3,
            "lineage_review".into(),
            MigrationType::Simple,
            SqlStr::from_static(include_str!("../migrations/0003_lineage_review.sql")),
            false,
        ),
    ])
}

/// The store of a node given no `--store`: a SQLite file in its working directory (one
/// name, so a restarted node finds its predictions and drift reference again; nodes
/// started in one folder share it, as SQLite allows).
pub const DEFAULT_STORE: &str = "sqlite://troupe-store.db";

/// Rows per INSERT statement (14 parameters each: under both databases' limits).
const ROWS_PER_INSERT: usize = 64;
/// Parameters per statement for lists of ids.
const IDS_PER_QUERY: usize = 500;
/// The most rows one window reads (a time window over a busy model is capped here).
pub const MAX_WINDOW_ROWS: i64 = 100_000;

/// Which calls a window holds: the last `n`, or those of the last stretch of time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Window {
    Calls(u32),
    Since(Duration),
}

/// One stored call of a window, with its truth when one was given.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowRow {
    pub request_id: String,
    pub time_ms: i64,
    pub class: Option<String>,
    pub score: Option<f64>,
    pub value: Option<f64>,
    /// Each class's score (classifiers), empty when none was stored.
    pub scores: Vec<f64>,
    pub truth: Option<TruthValue>,
    pub truth_time_ms: Option<i64>,
}

/// A window: its calls counted, and the labelled ones.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct WindowCalls {
    pub calls: u64,
    /// The calls with a truth, newest first.
    pub labelled: Vec<WindowRow>,
}

/// A stored call and what it got.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    pub prediction: Prediction,
    pub truth: Option<Truth>,
}

/// A connection pool to the store.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    /// How this database numbers a statement's parameters.
    params: Params,
    /// The URL as given, for messages (no password: see [`Store::shown`]).
    shown: String,
}

/// `url` with any password replaced by `***`.
fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

impl Store {
    /// Opens (and creates, for SQLite) the store at `url` (`sqlite://PATH`,
    /// `postgres://...`) and brings its schema up to date.
    pub async fn open(url: &str) -> Result<Store, MonitorError> {
        sqlx::any::install_default_drivers();
        let shown = redact(url);
        let (url, connections) = if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err(MonitorError::BadUrl {
                    url: shown,
                    why: "no file named".into(),
                });
            }
            if let Some(dir) = std::path::Path::new(path.split('?').next().unwrap_or(path))
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                && !dir.is_dir()
            {
                return Err(MonitorError::BadUrl {
                    url: shown,
                    why: format!("the folder {} does not exist", dir.display()),
                });
            }
            let url = if path.contains("mode=") {
                url.to_string()
            } else if path.contains('?') {
                format!("{url}&mode=rwc")
            } else {
                format!("{url}?mode=rwc")
            };
            (url, 4)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (url.to_string(), 8)
        } else {
            return Err(MonitorError::BadUrl {
                url: shown,
                why: "unknown scheme".into(),
            });
        };
        let sqlite = url.starts_with("sqlite:");
        let pool = AnyPoolOptions::new()
            // SQLite: a write-ahead log, synced at checkpoints rather than at every
            // commit (a crash of the machine may lose the last commits, never corrupt
            // the file; a crash of the node loses nothing committed), and pages read
            // through a memory map (up to 256 MiB) rather than copied by a read per page.
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if sqlite {
                        use sqlx::Executor;
                        conn.execute(
                            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA mmap_size = 268435456",
                        )
                        .await?;
                    }
                    Ok(())
                })
            })
            .max_connections(connections)
            .acquire_timeout(Duration::from_secs(5))
            .connect(&url)
            .await
            .map_err(|source| MonitorError::Open {
                url: shown.clone(),
                source,
            })?;
        migrator().run(&pool).await?;
        let params = if sqlite {
            Params::Anonymous
        } else {
            Params::Numbered
        };
        Ok(Store {
            pool,
            params,
            shown,
        })
    }

    /// The store's URL, without its password.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// The pool, for the store's other tables (`lineage`, `review`).
    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Stores predictions (a request id already stored keeps its first row). How many
    /// rows were new.
    pub async fn insert(&self, rows: &[Prediction]) -> Result<u64, MonitorError> {
        let mut tx = self.pool.begin().await?;
        let mut added = 0;
        for chunk in rows.chunks(ROWS_PER_INSERT) {
            let sql = format!(
                "INSERT INTO predictions (request_id, model, version, digest, time_ms, node, trace_id, class, score, value, scores, outputs_sha256, inputs, bytes) VALUES {} ON CONFLICT (request_id) DO NOTHING",
                self.params.rows(chunk.len(), 14)
            );
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for p in chunk {
                let (class, score, value, scores, digest) = match &p.summary {
                    Summary::Class {
                        class,
                        score,
                        scores,
                    } => (Some(class.clone()), *score, None, json(scores), None),
                    Summary::Value(v) => (None, None, Some(*v), None, None),
                    Summary::Values(v) => (None, None, None, json(v), None),
                    Summary::Digest(d) => (None, None, None, None, Some(d.clone())),
                };
                q = q
                    .bind(p.request_id.clone())
                    .bind(p.model.clone())
                    .bind(p.version.clone())
                    .bind(p.digest.clone())
                    .bind(p.time_ms)
                    .bind(p.node.clone())
                    .bind(p.trace_id.clone())
                    .bind(class)
                    .bind(score)
                    .bind(value)
                    .bind(scores)
                    .bind(digest)
                    .bind(p.inputs.clone())
                    .bind(p.bytes());
            }
            added += q.execute(&mut *tx).await?.rows_affected();
        }
        let reviews: Vec<_> = rows
            .iter()
            .filter_map(|p| {
                let q = p.review.as_ref()?;
                Some((
                    p.request_id.as_str(),
                    p.model.as_str(),
                    p.version.as_str(),
                    p.time_ms,
                    q,
                ))
            })
            .collect();
        if !reviews.is_empty() {
            Store::queue_reviews(&mut tx, &reviews).await?;
        }
        tx.commit().await?;
        Ok(added)
    }

    /// Records ground truth (a later label for the same id replaces the earlier one).
    /// How many of the ids have a stored prediction now (the others join when theirs
    /// arrives).
    pub async fn submit(&self, truths: &[Truth]) -> Result<u64, MonitorError> {
        if let Some(t) = truths.iter().find(|t| t.request_id.is_empty()) {
            return Err(MonitorError::InvalidArgument(format!(
                "a truth without a request id (from {})",
                t.source
            )));
        }
        let mut tx = self.pool.begin().await?;
        for chunk in truths.chunks(ROWS_PER_INSERT) {
            let sql = format!(
                "INSERT INTO feedback (request_id, label, value, time_ms, source) VALUES {} ON CONFLICT (request_id) DO UPDATE SET label = excluded.label, value = excluded.value, time_ms = excluded.time_ms, source = excluded.source",
                self.params.rows(chunk.len(), 5)
            );
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for t in chunk {
                let (label, value) = match &t.label {
                    TruthValue::Class(c) => (Some(c.clone()), None),
                    TruthValue::Value(v) => (None, Some(*v)),
                };
                q = q
                    .bind(t.request_id.clone())
                    .bind(label)
                    .bind(value)
                    .bind(t.time_ms)
                    .bind(t.source.clone());
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        let mut matched = 0;
        for chunk in truths.chunks(IDS_PER_QUERY) {
            let sql = format!(
                "SELECT COUNT(*) FROM predictions WHERE request_id IN {}",
                self.params.rows(1, chunk.len())
            );
            let mut q = sqlx::query_scalar::<_, i64>(AssertSqlSafe(sql));
            for t in chunk {
                q = q.bind(t.request_id.clone());
            }
            matched += q.fetch_one(&self.pool).await?.max(0) as u64;
        }
        Ok(matched)
    }

    /// The calls of `model`/`version` in `window`: how many, and those with a truth
    /// (newest first). The database counts and joins; only labelled rows are read.
    pub async fn window(
        &self,
        model: &str,
        version: &str,
        window: Window,
        now_ms: i64,
    ) -> Result<WindowCalls, MonitorError> {
        const CALLS: &str = "SELECT p.request_id, p.time_ms, p.class, p.score, p.value, p.scores FROM predictions p WHERE p.model = $1 AND p.version = $2 AND p.time_ms >= $3 ORDER BY p.time_ms DESC LIMIT $4";
        let (since, limit) = match window {
            Window::Calls(n) => (i64::MIN, i64::from(n).min(MAX_WINDOW_ROWS)),
            Window::Since(d) => (now_ms.saturating_sub(d.as_millis() as i64), MAX_WINDOW_ROWS),
        };
        let count = format!("SELECT COUNT(*) FROM ({CALLS}) w");
        let calls: i64 = sqlx::query_scalar(AssertSqlSafe(count))
            .bind(model.to_string())
            .bind(version.to_string())
            .bind(since)
            .bind(limit)
            .fetch_one(&self.pool)
            .await?;
        let labelled = format!(
            "SELECT w.request_id, w.time_ms, w.class, w.score, w.value, w.scores, f.label, f.value AS truth_value, f.time_ms AS truth_time_ms FROM ({CALLS}) w JOIN feedback f ON f.request_id = w.request_id ORDER BY w.time_ms DESC"
        );
        let rows = sqlx::query(AssertSqlSafe(labelled))
            .bind(model.to_string())
            .bind(version.to_string())
            .bind(since)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        Ok(WindowCalls {
            calls: calls.max(0) as u64,
            labelled: rows.iter().map(window_row).collect::<Result<_, _>>()?,
        })
    }

    /// The stored call `request_id` and its truth.
    pub async fn get(&self, request_id: &str) -> Result<Option<Stored>, MonitorError> {
        let row = sqlx::query(
            "SELECT p.request_id, p.model, p.version, p.digest, p.time_ms, p.node, p.trace_id, p.class, p.score, p.value, p.scores, p.outputs_sha256, p.inputs, f.label, f.value AS truth_value, f.time_ms AS truth_time_ms, f.source FROM predictions p LEFT JOIN feedback f ON f.request_id = p.request_id WHERE p.request_id = $1",
        )
        .bind(request_id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else { return Ok(None) };
        let w = window_row(&r)?;
        let summary = match (
            &w.class,
            w.value,
            r.try_get::<Option<String>, _>("outputs_sha256")?,
        ) {
            (Some(class), _, _) => Summary::Class {
                class: class.clone(),
                score: w.score,
                scores: w.scores.clone(),
            },
            (None, Some(v), _) => Summary::Value(v),
            (None, None, Some(d)) => Summary::Digest(d),
            (None, None, None) => Summary::Values(w.scores.clone()),
        };
        let prediction = Prediction {
            request_id: w.request_id.clone(),
            model: r.try_get("model")?,
            version: r.try_get("version")?,
            digest: r.try_get("digest")?,
            time_ms: w.time_ms,
            node: r.try_get("node")?,
            trace_id: r.try_get("trace_id")?,
            summary,
            inputs: r.try_get("inputs")?,
            review: None,
        };
        let truth = match (w.truth, w.truth_time_ms) {
            (Some(label), Some(time_ms)) => Some(Truth {
                request_id: w.request_id,
                label,
                time_ms,
                source: r
                    .try_get::<Option<String>, _>("source")?
                    .unwrap_or_default(),
            }),
            _ => None,
        };
        Ok(Some(Stored { prediction, truth }))
    }

    /// Stored predictions (all models).
    pub async fn count(&self) -> Result<u64, MonitorError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM predictions")
            .fetch_one(&self.pool)
            .await?;
        Ok(n.max(0) as u64)
    }

    /// Retention: drops predictions (and truths) older than `max_age`, then the oldest
    /// predictions while the rows take more than `max_bytes`. How many predictions went.
    pub async fn prune(
        &self,
        max_age: Option<Duration>,
        max_bytes: Option<u64>,
        now_ms: i64,
    ) -> Result<u64, MonitorError> {
        let mut gone = 0;
        if let Some(age) = max_age {
            let cut = now_ms.saturating_sub(age.as_millis() as i64);
            gone += sqlx::query("DELETE FROM predictions WHERE time_ms < $1")
                .bind(cut)
                .execute(&self.pool)
                .await?
                .rows_affected();
            sqlx::query("DELETE FROM feedback WHERE time_ms < $1")
                .bind(cut)
                .execute(&self.pool)
                .await?;
        }
        if let Some(max) = max_bytes {
            let max = i64::try_from(max).unwrap_or(i64::MAX);
            let (total, rows): (i64, i64) = sqlx::query_as(
                "SELECT CAST(COALESCE(SUM(bytes), 0) AS BIGINT), COUNT(*) FROM predictions",
            )
            .fetch_one(&self.pool)
            .await?;
            if total > max && rows > 0 {
                // Drop the oldest share of rows that brings the total under the limit
                // (by the mean row size), and a tenth more, so pruning is not constant.
                let mean = (total / rows).max(1);
                let excess = (total - max) / mean + 1;
                let n = (excess + rows / 10).min(rows);
                gone += sqlx::query(
                    "DELETE FROM predictions WHERE request_id IN (SELECT request_id FROM predictions ORDER BY time_ms LIMIT $1)",
                )
                .bind(n)
                .execute(&self.pool)
                .await?
                .rows_affected();
            }
        }
        Ok(gone)
    }

    /// Keeps `rows` as the drift reference of `model`/`version` (replacing any).
    pub async fn save_reference(
        &self,
        model: &str,
        version: &str,
        rows: &[Vec<f64>],
    ) -> Result<(), MonitorError> {
        let text = serde_json::to_string(rows).unwrap_or_default();
        sqlx::query(
            "INSERT INTO drift_references (model, version, rows, time_ms) VALUES ($1, $2, $3, $4) ON CONFLICT (model, version) DO UPDATE SET rows = excluded.rows, time_ms = excluded.time_ms",
        )
        .bind(model.to_string())
        .bind(version.to_string())
        .bind(text)
        .bind(crate::record::now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The drift reference of `model`/`version`, if one was kept.
    pub async fn load_reference(
        &self,
        model: &str,
        version: &str,
    ) -> Result<Option<Vec<Vec<f64>>>, MonitorError> {
        let text: Option<String> = sqlx::query_scalar(
            "SELECT rows FROM drift_references WHERE model = $1 AND version = $2",
        )
        .bind(model.to_string())
        .bind(version.to_string())
        .fetch_optional(&self.pool)
        .await?;
        Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
    }

    /// Records one tested drift window.
    pub async fn save_window(
        &self,
        model: &str,
        version: &str,
        node: &str,
        w: &crate::watch::WindowResult,
    ) -> Result<(), MonitorError> {
        sqlx::query(
            "INSERT INTO drift_windows (model, version, time_ms, node, alerting, result) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(model.to_string())
        .bind(version.to_string())
        .bind(w.time_ms)
        .bind(node.to_string())
        .bind(i64::from(w.alerting))
        .bind(serde_json::to_string(w).unwrap_or_default())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The latest tested drift window of `model`/`version`, and how many were tested.
    pub async fn latest_window(
        &self,
        model: &str,
        version: &str,
    ) -> Result<Option<(crate::watch::WindowResult, u64)>, MonitorError> {
        let text: Option<String> = sqlx::query_scalar(
            "SELECT result FROM drift_windows WHERE model = $1 AND version = $2 ORDER BY time_ms DESC LIMIT 1",
        )
        .bind(model.to_string())
        .bind(version.to_string())
        .fetch_optional(&self.pool)
        .await?;
        let Some(w) = text.and_then(|t| serde_json::from_str(&t).ok()) else {
            return Ok(None);
        };
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM drift_windows WHERE model = $1 AND version = $2",
        )
        .bind(model.to_string())
        .bind(version.to_string())
        .fetch_one(&self.pool)
        .await?;
        Ok(Some((w, n.max(0) as u64)))
    }
}

/// `($1, ..., $cols), ($cols+1, ...)` for `rows` rows.
/// How a multi-row statement names its parameters. PostgreSQL needs `$N`; SQLite takes
/// `?` too, and sqlx binds `$N` there by asking SQLite each parameter's name, a linear
/// search per parameter (so a statement of n parameters costs n² steps: 14 columns × 64
/// rows made it the largest cost of recording), while `?` binds in order.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Params {
    /// `?`, bound in order (SQLite).
    Anonymous,
    /// `$1`, `$2`, ... (PostgreSQL).
    Numbered,
}

impl Params {
    /// `(p, p, p), (p, p, p)`: `rows` tuples of `cols` parameters.
    fn rows(self, rows: usize, cols: usize) -> String {
        (0..rows)
            .map(|r| {
                let row: Vec<String> = (1..=cols)
                    .map(|c| match self {
                        Params::Anonymous => "?".to_string(),
                        Params::Numbered => format!("${}", r * cols + c),
                    })
                    .collect();
                format!("({})", row.join(", "))
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn json(v: &[f64]) -> Option<String> {
    (!v.is_empty()).then(|| serde_json::to_string(v).unwrap_or_default())
}

fn window_row(r: &AnyRow) -> Result<WindowRow, MonitorError> {
    let scores: Option<String> = r.try_get("scores")?;
    let label: Option<String> = r.try_get("label")?;
    let truth_value: Option<f64> = r.try_get("truth_value")?;
    Ok(WindowRow {
        request_id: r.try_get("request_id")?,
        time_ms: r.try_get("time_ms")?,
        class: r.try_get("class")?,
        score: r.try_get("score")?,
        value: r.try_get("value")?,
        scores: scores
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or_default(),
        truth: match (label, truth_value) {
            (Some(l), _) => Some(TruthValue::Class(l)),
            (None, Some(v)) => Some(TruthValue::Value(v)),
            (None, None) => None,
        },
        truth_time_ms: r.try_get("truth_time_ms")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_number_every_parameter() {
        assert_eq!(Params::Numbered.rows(2, 3), "($1, $2, $3), ($4, $5, $6)");
        assert_eq!(Params::Anonymous.rows(2, 2), "(?, ?), (?, ?)");
    }

    #[test]
    fn passwords_are_not_shown() {
        assert_eq!(
            redact("postgres://troupe:secret@127.0.0.1:5432/db"),
            "postgres://troupe:***@127.0.0.1:5432/db"
        );
        assert_eq!(
            redact("postgres://troupe@127.0.0.1/db"),
            "postgres://troupe@127.0.0.1/db"
        );
        assert_eq!(redact("sqlite:///tmp/a.db"), "sqlite:///tmp/a.db");
    }

    fn call(id: &str, t: i64, class: &str) -> Prediction {
        Prediction {
            request_id: id.into(),
            model: "iris".into(),
            version: "1".into(),
            digest: "ab".into(),
            time_ms: t,
            node: "n1".into(),
            trace_id: String::new(),
            summary: Summary::Class {
                class: class.into(),
                score: Some(0.75),
                scores: vec![0.75, 0.25],
            },
            inputs: None,
            review: None,
        }
    }

    #[tokio::test]
    async fn predictions_and_truths_join_by_request_id_in_a_sqlite_file() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("store.db").display());
        let s = Store::open(&url).await.unwrap();
        assert_eq!(
            s.insert(&[call("a", 1, "0"), call("b", 2, "1"), call("a", 3, "1")])
                .await
                .unwrap(),
            2,
            "a repeated id keeps its first row"
        );
        let truth = |id: &str, label: &str| Truth {
            request_id: id.into(),
            label: TruthValue::Class(label.into()),
            time_ms: 10,
            source: "tester".into(),
        };
        // "z" has no prediction yet: kept, joined when one comes.
        assert_eq!(
            s.submit(&[truth("a", "1"), truth("z", "0")]).await.unwrap(),
            1
        );
        assert_eq!(s.submit(&[truth("a", "0")]).await.unwrap(), 1);
        let w = s.window("iris", "1", Window::Calls(10), 100).await.unwrap();
        assert_eq!(w.calls, 2);
        assert_eq!(w.labelled.len(), 1, "only a has a truth");
        assert_eq!(w.labelled[0].request_id, "a");
        assert_eq!(w.labelled[0].truth, Some(TruthValue::Class("0".into())));
        assert_eq!(w.labelled[0].scores, vec![0.75, 0.25]);
        // The count window holds the newest calls only: b, not a.
        let w = s.window("iris", "1", Window::Calls(1), 100).await.unwrap();
        assert_eq!((w.calls, w.labelled.len()), (1, 0));
        let got = s.get("a").await.unwrap().unwrap();
        assert_eq!(got.prediction, call("a", 1, "0"));
        assert_eq!(got.truth.unwrap().source, "tester");
        assert!(s.get("nope").await.unwrap().is_none());

        // Reopened: the schema is not applied twice, the rows are there.
        drop(s);
        let s = Store::open(&url).await.unwrap();
        assert_eq!(s.count().await.unwrap(), 2);
        let w = s
            .window("iris", "1", Window::Since(Duration::from_millis(98)), 100)
            .await
            .unwrap();
        assert_eq!(w.calls, 1, "only b is within 98 ms of t = 100");
        assert_eq!(
            s.prune(Some(Duration::from_millis(98)), None, 100)
                .await
                .unwrap(),
            1
        );
        assert_eq!(s.count().await.unwrap(), 1);
    }

    #[tokio::test]
    async fn retention_by_size_drops_the_oldest() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("s.db").display());
        let s = Store::open(&url).await.unwrap();
        let rows: Vec<Prediction> = (0..100)
            .map(|i| call(&format!("r{i:03}"), i, "0"))
            .collect();
        s.insert(&rows).await.unwrap();
        let each = rows[0].bytes() as u64;
        let gone = s.prune(None, Some(each * 50), 1000).await.unwrap();
        assert!(gone >= 50, "{gone}");
        let left = s
            .window("iris", "1", Window::Calls(1000), 1000)
            .await
            .unwrap();
        assert_eq!(left.calls, 100 - gone);
        // The oldest went first.
        assert!(s.get(&format!("r{:03}", gone - 1)).await.unwrap().is_none());
        assert!(s.get(&format!("r{gone:03}")).await.unwrap().is_some());
    }

    #[tokio::test]
    async fn a_store_that_cannot_be_opened_says_so() {
        let e = Store::open("sqlite:///nonexistent-dir/x/store.db")
            .await
            .unwrap_err();
        assert!(e.to_string().contains("/nonexistent-dir/x"), "{e}");
        let e = Store::open("mysql://x").await.unwrap_err();
        assert!(e.to_string().contains("unknown scheme"), "{e}");
        // /proc takes no new files, even from root.
        let e = Store::open("sqlite:///proc/troupe-store.db")
            .await
            .unwrap_err();
        assert!(e.to_string().contains("could not be opened"), "{e}");
    }
}
