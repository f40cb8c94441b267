//! The audit trail: one JSON line per call, appended to the node's `--audit-log`.
//!
//! ```json
//! {"time":"2026-11-27T07:00:00.123456Z","node":"n1","model":"mlp","version":"1",
//!  "sha256":"ab12…","trace_id":"4bf9…","inputs_sha256":"…","outputs_sha256":"…",
//!  "status":"OK","message":"","duration_us":412,"explain":null,
//!  "provenance":{"source":"…","training_run":"run-17",…},"signature":"verified"}
//! ```
//!
//! `sha256`, `provenance` and `signature` are the weights' lineage (`crate::lineage`).
//! Digests: SHA-256 over each tensor's name, data type, shape and bytes, in order (the
//! request's as sent; the answer's outputs). Lines are written by one task in the order
//! calls finished; the file is opened for append, so a restart adds to it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tracing::warn;

use super::call::{CallCtx, CallHook, Outcome};
use troupe_proto::codes::code_name;

use crate::metrics::AuditLosses;

/// One line of the audit file.
#[derive(Debug, Serialize)]
pub struct AuditRecord {
    pub time: String,
    pub node: String,
    pub model: String,
    pub version: String,
    pub sha256: String,
    pub trace_id: String,
    /// Who called: the token's name (never the token), or "anonymous".
    pub caller: String,
    pub inputs_sha256: String,
    pub outputs_sha256: Option<String>,
    pub status: String,
    pub message: String,
    pub duration_us: u64,
    pub explain: Option<String>,
    /// Where the weights came from, and their signature check.
    pub provenance: Option<troupe_monitor::lineage::Provenance>,
    pub signature: &'static str,
}

/// Lines that may wait for the writer; past it, lines are dropped and counted.
pub const AUDIT_QUEUE: usize = 16_384;

/// The node's audit file, written by one background thread through a bounded queue.
pub struct AuditLog {
    tx: mpsc::Sender<Vec<u8>>,
    node: String,
    path: PathBuf,
    losses: Arc<AuditLosses>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("path", &self.path)
            .finish()
    }
}

impl AuditLog {
    /// Opens `path` for append (created if missing) and starts the writer task.
    pub fn open(path: &Path, node: &str) -> std::io::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(AUDIT_QUEUE);
        let shown = path.display().to_string();
        let losses = Arc::new(AuditLosses::default());
        let writer_losses = losses.clone();
        std::thread::Builder::new()
            .name("troupe-audit".into())
            .spawn(move || {
                while let Some(line) = rx.blocking_recv() {
                    let mut buf = line;
                    let mut lines = 1u64;
                    // Take whatever else is waiting: one write for many lines.
                    while let Ok(more) = rx.try_recv() {
                        buf.extend_from_slice(&more);
                        lines += 1;
                    }
                    if let Err(e) = file.write_all(&buf).and_then(|_| file.flush()) {
                        let lost = writer_losses.failed.fetch_add(lines, Ordering::Relaxed) + lines;
                        warn!(path = %shown, error = %e, lines, lost_total = lost, "audit lines lost");
                    }
                }
            })?;
        Ok(Self {
            tx,
            node: node.to_string(),
            path: path.to_path_buf(),
            losses,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Lines that did not reach the file.
    pub fn losses(&self) -> &AuditLosses {
        &self.losses
    }

    pub fn write(&self, rec: &AuditRecord) {
        match serde_json::to_vec(rec) {
            Ok(mut line) => {
                line.push(b'\n');
                if self.tx.try_send(line).is_err() {
                    let n = self.losses.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                    // Once per 1,024 drops: the log must not become the next flood.
                    if n % 1024 == 1 {
                        warn!(path = %self.path.display(), dropped_total = n, "audit queue full; lines dropped");
                    }
                }
            }
            Err(e) => warn!(error = %e, "audit record not serializable"),
        }
    }
}

/// RFC 3339 UTC time with microseconds.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_micros(t).to_string()
}

fn digest_request(req: &troupe_proto::inference::ModelInferRequest) -> String {
    let mut h = Sha256::new();
    for (i, t) in req.inputs.iter().enumerate() {
        h.update(t.name.as_bytes());
        h.update([0]);
        h.update(t.datatype.as_bytes());
        for d in &t.shape {
            h.update(d.to_le_bytes());
        }
        match req.raw_input_contents.get(i) {
            Some(raw) => h.update(raw),
            None => h.update(prost::Message::encode_to_vec(
                &t.contents.clone().unwrap_or_default(),
            )),
        }
    }
    hex::encode(h.finalize())
}

fn digest_outputs(resp: &troupe_proto::inference::ModelInferResponse) -> String {
    let mut h = Sha256::new();
    for (t, raw) in resp.outputs.iter().zip(&resp.raw_output_contents) {
        h.update(t.name.as_bytes());
        h.update([0]);
        h.update(t.datatype.as_bytes());
        for d in &t.shape {
            h.update(d.to_le_bytes());
        }
        h.update(raw);
    }
    hex::encode(h.finalize())
}

/// Writes one audit line per call of its model.
pub struct AuditHook {
    log: std::sync::Arc<AuditLog>,
}

impl AuditHook {
    pub fn new(log: std::sync::Arc<AuditLog>) -> Self {
        Self { log }
    }
}

#[tonic::async_trait]
impl CallHook for AuditHook {
    fn name(&self) -> &'static str {
        "audit"
    }

    /// Only the outcome matters (`finished`).
    fn wants(&self, _ctx: &CallCtx<'_>) -> bool {
        false
    }

    fn finished(&self, ctx: &CallCtx<'_>, outcome: Outcome<'_>) {
        let (status, message, outputs) = match outcome {
            Ok(outs) => ("OK".to_string(), String::new(), Some(digest_outputs(outs))),
            Err(e) => (code_name(e.code()).to_string(), e.to_string(), None),
        };
        let explain = ctx
            .params()
            .get(troupe_proto::explain::param::METHOD)
            .and_then(|p| match &p.parameter_choice {
                Some(troupe_proto::inference::infer_parameter::ParameterChoice::StringParam(s)) => {
                    Some(s.clone())
                }
                _ => None,
            });
        let m = &ctx.model;
        self.log.write(&AuditRecord {
            time: rfc3339(SystemTime::now()),
            node: self.log.node.clone(),
            model: m.def().name.clone(),
            version: m.def().version.clone(),
            sha256: m.lineage().digest.clone(),
            trace_id: ctx.trace_id.to_string(),
            caller: ctx.caller.to_string(),
            inputs_sha256: digest_request(ctx.request),
            outputs_sha256: outputs,
            status,
            message,
            duration_us: ctx.started.elapsed().as_micros() as u64,
            explain,
            provenance: (!m.lineage().provenance.is_empty())
                .then(|| m.lineage().provenance.clone()),
            signature: m.lineage().signature.state.as_str(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rfc3339_formats_known_instants() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_micros(1_795_000_000_123_456);
        assert_eq!(rfc3339(t), "2026-11-18T11:06:40.123456Z");
        assert_eq!(
            rfc3339(SystemTime::UNIX_EPOCH),
            "1970-01-01T00:00:00.000000Z"
        );
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert!(rfc3339(leap).starts_with("2000-02-29T00:00:00"));
    }

    #[test]
    fn lines_are_appended_across_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/audit.jsonl");
        for round in 0..2 {
            let log = AuditLog::open(&path, "n").unwrap();
            log.write(&AuditRecord {
                time: rfc3339(SystemTime::now()),
                node: "n".into(),
                model: format!("m{round}"),
                version: "1".into(),
                sha256: String::new(),
                trace_id: String::new(),
                caller: String::new(),
                inputs_sha256: String::new(),
                outputs_sha256: None,
                status: "OK".into(),
                message: String::new(),
                duration_us: 1,
                explain: None,
                provenance: None,
                signature: "unsigned",
            });
            drop(log);
            std::thread::sleep(Duration::from_millis(100));
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["model"], "m0");
        assert_eq!(lines[1]["model"], "m1");
    }
}
