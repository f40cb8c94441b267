//! Lineage: what a loaded model version is — the digest of its weights, where they came
//! from (`[provenance]` of its config), and whether their signature held — kept in the
//! store once per (model, version, digest). Each stored prediction names its model,
//! version and digest, so `troupe lineage REQUEST_ID` joins an answer to its lineage and
//! its label.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sqlx::Row;
use troupe_proto::troupe as pb;

use crate::error::MonitorError;
use crate::record::now_ms;
use crate::store::{Store, Stored};

/// `[provenance]` of a model config: where its weights came from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provenance {
    /// Where the weights were published (a URI).
    #[serde(default)]
    pub source: String,
    /// The training run that made them (an MLflow run id, a job name).
    #[serde(default)]
    pub training_run: String,
    /// The commit of the training code.
    #[serde(default)]
    pub code_commit: String,
    /// A digest of the training data (e.g. `sha256:...`, DVC's md5).
    #[serde(default)]
    pub data_digest: String,
    /// Free labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

impl Provenance {
    pub fn is_empty(&self) -> bool {
        self == &Provenance::default()
    }

    pub fn from_spec(p: &pb::Provenance) -> Self {
        Provenance {
            source: p.source.clone(),
            training_run: p.training_run.clone(),
            code_commit: p.code_commit.clone(),
            data_digest: p.data_digest.clone(),
            labels: p.labels.clone().into_iter().collect(),
        }
    }

    pub fn to_spec(&self) -> pb::Provenance {
        pb::Provenance {
            source: self.source.clone(),
            training_run: self.training_run.clone(),
            code_commit: self.code_commit.clone(),
            data_digest: self.data_digest.clone(),
            labels: self.labels.clone().into_iter().collect(),
        }
    }
}

/// What the signature check at load found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignatureState {
    /// The config names no key: nothing was checked.
    Unsigned,
    /// The signature verifies with the named key, over the artifact's own digest.
    Verified,
    /// The check failed and the policy let the model load anyway (flagged).
    Failed,
}

impl SignatureState {
    pub fn as_str(self) -> &'static str {
        match self {
            SignatureState::Unsigned => "unsigned",
            SignatureState::Verified => "verified",
            SignatureState::Failed => "failed",
        }
    }
}

/// The signature check of one load.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignatureCheck {
    pub state: SignatureState,
    /// The key's name (in the trust file), or "inline".
    #[serde(default)]
    pub key: String,
    /// What the signature covers: "artifact" (its sha256) or "folder" (the manifest's).
    #[serde(default)]
    pub covers: String,
    /// The digest the signature file names.
    #[serde(default)]
    pub signed_digest: String,
    /// Why the check failed, or why the model is unsigned.
    #[serde(default)]
    pub reason: String,
}

/// The lineage of one loaded model version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lineage {
    pub model: String,
    pub version: String,
    /// sha256 of the artifact (what each prediction of it records).
    pub digest: String,
    /// sha256 of the version folder's manifest, when the signature covers the folder.
    #[serde(default)]
    pub manifest_digest: String,
    pub provenance: Provenance,
    pub signature: SignatureCheck,
    /// The node that loaded it, and when (ms since the epoch).
    pub node: String,
    pub loaded_ms: i64,
}

impl Lineage {
    pub fn to_proto(&self) -> pb::Lineage {
        pb::Lineage {
            model: self.model.clone(),
            version: self.version.clone(),
            digest: self.digest.clone(),
            manifest_digest: self.manifest_digest.clone(),
            provenance: Some(self.provenance.to_spec()),
            signature: Some(pb::SignatureCheck {
                state: self.signature.state.as_str().to_string(),
                key: self.signature.key.clone(),
                covers: self.signature.covers.clone(),
                signed_digest: self.signature.signed_digest.clone(),
                reason: self.signature.reason.clone(),
            }),
            node: self.node.clone(),
            loaded_ms: self.loaded_ms,
        }
    }

    /// The lineage as `troupe.lineage.*` key-value pairs (model metadata parameters,
    /// span attributes, audit lines), empty values left out.
    pub fn fields(&self) -> Vec<(String, String)> {
        let p = &self.provenance;
        let mut v = vec![
            ("troupe.lineage.digest".to_string(), self.digest.clone()),
            (
                "troupe.lineage.signature".to_string(),
                self.signature.state.as_str().to_string(),
            ),
        ];
        for (k, val) in [
            ("manifest_digest", &self.manifest_digest),
            ("signature_key", &self.signature.key),
            ("source", &p.source),
            ("training_run", &p.training_run),
            ("code_commit", &p.code_commit),
            ("data_digest", &p.data_digest),
        ] {
            if !val.is_empty() {
                v.push((format!("troupe.lineage.{k}"), val.clone()));
            }
        }
        for (k, val) in &p.labels {
            v.push((format!("troupe.lineage.label.{k}"), val.clone()));
        }
        v
    }
}

impl Store {
    /// Keeps the lineage of a loaded model version (a reload replaces it).
    pub async fn save_lineage(&self, l: &Lineage) -> Result<(), MonitorError> {
        sqlx::query(
            "INSERT INTO lineages (model, version, digest, record, time_ms) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (model, version, digest) DO UPDATE SET record = excluded.record, time_ms = excluded.time_ms",
        )
        .bind(l.model.clone())
        .bind(l.version.clone())
        .bind(l.digest.clone())
        .bind(serde_json::to_string(l).unwrap_or_default())
        .bind(now_ms())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The lineage of the weights `digest` served as `model`/`version`.
    pub async fn lineage(
        &self,
        model: &str,
        version: &str,
        digest: &str,
    ) -> Result<Option<Lineage>, MonitorError> {
        let row = sqlx::query(
            "SELECT record FROM lineages WHERE model = $1 AND version = $2 AND digest = $3",
        )
        .bind(model.to_string())
        .bind(version.to_string())
        .bind(digest.to_string())
        .fetch_optional(self.pool())
        .await?;
        let Some(row) = row else { return Ok(None) };
        let text: String = row.try_get("record")?;
        Ok(serde_json::from_str(&text).ok())
    }

    /// A call's whole record: its stored prediction and truth, and the lineage of the
    /// weights that answered (None when the id is unknown).
    pub async fn call_lineage(
        &self,
        request_id: &str,
    ) -> Result<Option<(Stored, Option<Lineage>)>, MonitorError> {
        let Some(stored) = self.get(request_id).await? else {
            return Ok(None);
        };
        let p = &stored.prediction;
        let lineage = self.lineage(&p.model, &p.version, &p.digest).await?;
        Ok(Some((stored, lineage)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_lineage_is_kept_and_found_again() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("s.db").display());
        let store = Store::open(&url).await.unwrap();
        let l = Lineage {
            model: "m".into(),
            version: "1".into(),
            digest: "ab".into(),
            manifest_digest: String::new(),
            provenance: Provenance {
                training_run: "run-7".into(),
                labels: [("team".to_string(), "vision".to_string())].into(),
                ..Default::default()
            },
            signature: SignatureCheck {
                state: SignatureState::Verified,
                key: "release".into(),
                covers: "artifact".into(),
                signed_digest: "ab".into(),
                reason: String::new(),
            },
            node: "n1".into(),
            loaded_ms: 5,
        };
        store.save_lineage(&l).await.unwrap();
        store.save_lineage(&l).await.unwrap();
        assert_eq!(
            store.lineage("m", "1", "ab").await.unwrap(),
            Some(l.clone())
        );
        assert_eq!(store.lineage("m", "1", "cd").await.unwrap(), None);
        let fields = l.fields();
        assert!(fields.contains(&("troupe.lineage.training_run".into(), "run-7".into())));
        assert!(fields.contains(&("troupe.lineage.label.team".into(), "vision".into())));
        assert!(!fields.iter().any(|(k, _)| k == "troupe.lineage.source"));
    }
}
