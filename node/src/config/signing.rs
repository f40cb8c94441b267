//! `[signing]` of a model config (or `ModelSpec.signing`): the detached ed25519 signature
//! its artifact must carry, and what a failed check does. The check itself is
//! `crate::lineage`'s, at load.

use serde::Deserialize;
use troupe_proto::troupe as pb;

/// What a signature that does not hold does to the load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// The load fails with FAILED_PRECONDITION.
    #[default]
    Refuse,
    /// The model loads; its lineage says the check failed, and why.
    Flag,
}

/// `[signing]`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SigningCfg {
    /// A key named in the node's `--trust-file`.
    #[serde(default)]
    pub key: Option<String>,
    /// Or the public key itself (PEM, or its 32 bytes in hex or base64).
    #[serde(default)]
    pub public_key: Option<String>,
    /// The signature file in the version folder (default: `<artifact>.sig`).
    #[serde(default)]
    pub signature: Option<String>,
    #[serde(default)]
    pub policy: Policy,
}

impl SigningCfg {
    pub fn validate(&self) -> Result<(), String> {
        match (&self.key, &self.public_key) {
            (None, None) => Err(
                "[signing] names no key: set key (from the node's --trust-file) or public_key"
                    .into(),
            ),
            (Some(_), Some(_)) => Err("[signing] sets both key and public_key: keep one".into()),
            _ => {
                if let Some(s) = &self.signature
                    && (s.contains('/') || s.contains(".."))
                {
                    return Err(format!(
                        "[signing] signature '{s}' must be a file name inside the version folder"
                    ));
                }
                Ok(())
            }
        }
    }

    /// From the wire (None when the spec names no key).
    pub fn from_spec(s: &pb::Signing) -> Option<Self> {
        let some = |v: &String| (!v.is_empty()).then(|| v.clone());
        let cfg = SigningCfg {
            key: some(&s.key),
            public_key: some(&s.public_key),
            signature: some(&s.signature),
            policy: match pb::SigningPolicy::try_from(s.policy) {
                Ok(pb::SigningPolicy::Flag) => Policy::Flag,
                _ => Policy::Refuse,
            },
        };
        (cfg.key.is_some() || cfg.public_key.is_some()).then_some(cfg)
    }

    pub fn to_spec(&self) -> pb::Signing {
        pb::Signing {
            key: self.key.clone().unwrap_or_default(),
            public_key: self.public_key.clone().unwrap_or_default(),
            signature: self.signature.clone().unwrap_or_default(),
            policy: match self.policy {
                Policy::Refuse => pb::SigningPolicy::Refuse,
                Policy::Flag => pb::SigningPolicy::Flag,
            } as i32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signing_table_names_one_key() {
        let c: SigningCfg = toml::from_str("key = \"release\"\npolicy = \"flag\"\n").unwrap();
        assert!(c.validate().is_ok());
        assert_eq!(SigningCfg::from_spec(&c.to_spec()), Some(c));
        let none = SigningCfg::default();
        assert!(none.validate().unwrap_err().contains("names no key"));
        let path = SigningCfg {
            public_key: Some("ab".into()),
            signature: Some("../x.sig".into()),
            ..Default::default()
        };
        assert!(
            path.validate()
                .unwrap_err()
                .contains("inside the version folder")
        );
        assert_eq!(SigningCfg::from_spec(&pb::Signing::default()), None);
    }
}
