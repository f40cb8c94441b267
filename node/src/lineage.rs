//! A model's lineage at load: the artifact's digest, its `[provenance]`, and the check of
//! its detached ed25519 signature (`[signing]`, the format is `troupe_proto::signing`'s)
//! against a key from the config or the node's `--trust-file`. A signature that does not
//! hold refuses the load (FAILED_PRECONDITION, naming both digests when they differ), or
//! under `policy = "flag"` lets it load with the failure in its lineage.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use troupe_monitor::lineage::{Lineage, SignatureCheck, SignatureState};
use troupe_monitor::now_ms;
use troupe_proto::digest;
use troupe_proto::signing::{
    Covers, PublicKey, SignatureFile, default_signature_path, parse_public_key,
};

use crate::config::{ModelDef, Policy};
use crate::error::NodeError;

/// The node's `--trust-file`: named public keys that model configs refer to
/// (`[signing] key = "NAME"`). TOML: `[keys]` then `NAME = "<PEM, or hex/base64>"`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustFile {
    #[serde(default)]
    keys: BTreeMap<String, String>,
    #[serde(skip)]
    path: Option<PathBuf>,
}

impl TrustFile {
    /// Reads and checks every key of the file.
    pub fn read(path: &Path) -> Result<TrustFile, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("--trust-file {}: {e}", path.display()))?;
        let mut t: TrustFile =
            toml::from_str(&text).map_err(|e| format!("--trust-file {}: {e}", path.display()))?;
        for (name, key) in &t.keys {
            parse_public_key(key)
                .map_err(|e| format!("--trust-file {}: key '{name}': {e}", path.display()))?;
        }
        t.path = Some(path.to_path_buf());
        Ok(t)
    }

    fn key(&self, name: &str) -> Result<&str, String> {
        match (&self.path, self.keys.get(name)) {
            (_, Some(k)) => Ok(k),
            (None, None) => Err(format!(
                "[signing] names key '{name}', but this node has no --trust-file"
            )),
            (Some(p), None) => Err(format!(
                "[signing] names key '{name}', which {} does not hold",
                p.display()
            )),
        }
    }
}

/// The lineage of `def` loaded from an artifact whose sha256 is `digest`; an error when
/// its signature must hold and does not.
pub fn check(
    def: &ModelDef,
    digest: &str,
    trust: &TrustFile,
    node: &str,
) -> Result<Lineage, NodeError> {
    let mut lineage = Lineage {
        model: def.name.clone(),
        version: def.version.clone(),
        digest: digest.to_string(),
        manifest_digest: String::new(),
        provenance: def.provenance.clone(),
        signature: SignatureCheck {
            state: SignatureState::Unsigned,
            key: String::new(),
            covers: String::new(),
            signed_digest: String::new(),
            reason: String::new(),
        },
        node: node.to_string(),
        loaded_ms: now_ms(),
    };
    let Some(cfg) = &def.signing else {
        return Ok(lineage);
    };
    let refuse = |m: String| NodeError::FailedPrecondition(format!("model '{}': {m}", def.name));
    // The key is the config's to name: a key that cannot be found is a config error,
    // refused whatever the policy.
    let (key_name, key_text) = match (&cfg.key, &cfg.public_key) {
        (Some(name), _) => (name.clone(), trust.key(name).map_err(refuse)?.to_string()),
        (None, Some(k)) => ("inline".to_string(), k.clone()),
        (None, None) => return Err(refuse("[signing] names no key".into())),
    };
    let key = parse_public_key(&key_text).map_err(|e| refuse(format!("[signing] key: {e}")))?;
    lineage.signature.key = key_name.clone();
    let dir = def.artifact.parent().unwrap_or(Path::new("."));
    let sig_path = match &cfg.signature {
        Some(f) => dir.join(f),
        None => default_signature_path(&def.artifact),
    };
    let verdict = verify(&sig_path, &def.artifact, dir, digest, &key, &mut lineage);
    match verdict {
        Ok(()) => {
            lineage.signature.state = SignatureState::Verified;
            tracing::info!(model = %def.name, version = %def.version, key = %key_name, covers = %lineage.signature.covers, "model signature verified");
            Ok(lineage)
        }
        Err(why) if cfg.policy == Policy::Refuse => Err(refuse(why)),
        Err(why) => {
            tracing::warn!(model = %def.name, version = %def.version, key = %key_name, reason = %why, "model signature failed; loaded anyway (policy flag)");
            lineage.signature.state = SignatureState::Failed;
            lineage.signature.reason = why;
            Ok(lineage)
        }
    }
}

/// Checks the signature file at `sig_path` with `key`, over the digest of what it covers.
fn verify(
    sig_path: &Path,
    artifact: &Path,
    dir: &Path,
    digest: &str,
    key: &PublicKey,
    lineage: &mut Lineage,
) -> Result<(), String> {
    let sig = SignatureFile::read(sig_path)?;
    lineage.signature.covers = sig.covers.as_str().to_string();
    lineage.signature.signed_digest = sig.digest.clone();
    sig.verify(key)?;
    let (what, actual) = match sig.covers {
        Covers::Artifact => (artifact.display().to_string(), digest.to_string()),
        Covers::Folder => {
            let m = digest::manifest(dir)?;
            lineage.manifest_digest = m.clone();
            (format!("the manifest of {}", dir.display()), m)
        }
    };
    if !sig.digest.eq_ignore_ascii_case(&actual) {
        return Err(format!(
            "{what} has digest {actual}, but its signature {} is over digest {}: the weights are not the ones signed",
            sig_path.display(),
            sig.digest
        ));
    }
    Ok(())
}
