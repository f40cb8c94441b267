//! troupe-monitor: the MLOps loop's store and arithmetic, shared by nodes and routers.
//!
//! * [`store`]: the prediction store (SQLite or PostgreSQL through sqlx, the schema in
//!   `migrations/`): predictions, ground truth joined by request id, windows, retention;
//! * [`recorder`]: recording off the call path, through a bounded queue whose drops are
//!   counted; [`retention`]: by age and by size;
//! * [`quality`]: live quality metrics (accuracy, precision/recall/F1, ROC AUC, ECE, MAE,
//!   RMSE), pure functions;
//! * [`record`]: what is stored; [`config`]: `[monitoring]` of a model;
//! * [`drift`]: per-feature two-sample tests (KS, chi-square, PSI); [`outlier`]: the
//!   Mahalanobis score; [`watch`]: a model's reference, windows and alert;
//! * [`report`]: a model's quality over its windows; [`service`]: `troupe.v1.Feedback`,
//!   `troupe.v1.Monitor` and `troupe.v1.Review`, the same on nodes and routers;
//! * [`lineage`]: what each loaded model version is (digest, provenance, signature);
//! * [`review`]: the human review queue and its rules; [`alert`]: thresholds crossed,
//!   posted to a webhook off the call path.

pub mod alert;
pub mod config;
pub mod drift;
pub mod error;
pub mod lineage;
pub mod outlier;
pub mod quality;
pub mod record;
pub mod recorder;
pub mod report;
pub mod retention;
pub mod review;
pub mod service;
pub mod store;
pub mod watch;

pub use config::MonitorCfg;
pub use error::MonitorError;
pub use record::{Prediction, Summary, Truth, TruthValue, now_ms};
pub use recorder::{RECORD_QUEUE, RecordCounts, Recorder};
pub use retention::Retention;
pub use store::{Store, Window, WindowCalls, WindowRow};
