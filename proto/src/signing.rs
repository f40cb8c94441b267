//! Model signatures: a detached ed25519 signature over a model's digest, in a small JSON
//! file beside the artifact, made by `troupe sign` (or openssl) and checked by the node
//! at load. One format, shared by the signer and the verifier.
//!
//! The signed message is the digest as 64 lowercase hex characters, as `sha256sum`
//! prints it: the artifact's sha256, or with `covers = "folder"` the sha256 of the version
//! folder's manifest ([`crate::digest::manifest`]). The file (`<artifact>.sig` by default):
//!
//! ```json
//! {"covers": "artifact", "digest": "ab12…", "signature": "<base64 of the 64 bytes>"}
//! ```
//!
//! Keys: public keys as PEM (`openssl pkey -pubout`), or the 32 raw bytes in hex or
//! base64; private keys as PKCS#8 PEM (`openssl genpkey -algorithm ed25519`).

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePublicKey};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

/// An ed25519 public key.
pub use ed25519_dalek::VerifyingKey as PublicKey;

/// What a signature covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Covers {
    /// The artifact file's sha256.
    #[default]
    Artifact,
    /// The sha256 of the version folder's manifest (every file but `*.sig`).
    Folder,
}

impl Covers {
    pub fn as_str(self) -> &'static str {
        match self {
            Covers::Artifact => "artifact",
            Covers::Folder => "folder",
        }
    }
}

/// A detached signature file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignatureFile {
    #[serde(default)]
    pub covers: Covers,
    /// The digest signed (64 lowercase hex characters).
    pub digest: String,
    /// The ed25519 signature over `digest`'s text, base64.
    pub signature: String,
}

/// The signature file of `artifact` by default: `<artifact>.sig`.
pub fn default_signature_path(artifact: &Path) -> PathBuf {
    let mut name = artifact.file_name().unwrap_or_default().to_os_string();
    name.push(".sig");
    artifact.with_file_name(name)
}

/// Reads a public key: PEM, or the 32 raw bytes as hex or base64.
pub fn parse_public_key(text: &str) -> Result<VerifyingKey, String> {
    let text = text.trim();
    if text.starts_with("-----BEGIN") {
        return VerifyingKey::from_public_key_pem(text)
            .map_err(|e| format!("not an ed25519 public key in PEM: {e}"));
    }
    let bytes = hex::decode(text)
        .ok()
        .or_else(|| STANDARD.decode(text).ok())
        .ok_or("an ed25519 public key must be PEM, or 32 bytes in hex or base64")?;
    let bytes: [u8; 32] = bytes
        .try_into()
        .map_err(|b: Vec<u8>| format!("an ed25519 public key has 32 bytes, not {}", b.len()))?;
    VerifyingKey::from_bytes(&bytes).map_err(|e| format!("not an ed25519 public key: {e}"))
}

/// A public key as PEM (what `troupe sign` prints for configs and trust files).
pub fn public_key_pem(key: &VerifyingKey) -> String {
    key.to_public_key_pem(Default::default())
        .unwrap_or_default()
}

/// Reads a private key (PKCS#8 PEM).
pub fn parse_private_key(pem: &str) -> Result<SigningKey, String> {
    SigningKey::from_pkcs8_pem(pem.trim())
        .map_err(|e| format!("not an ed25519 private key in PKCS#8 PEM: {e}"))
}

/// Signs `digest` (hex) with `key`.
pub fn sign(key: &SigningKey, covers: Covers, digest: &str) -> SignatureFile {
    let digest = digest.to_ascii_lowercase();
    let sig = key.sign(digest.as_bytes());
    SignatureFile {
        covers,
        digest,
        signature: STANDARD.encode(sig.to_bytes()),
    }
}

impl SignatureFile {
    /// Reads a signature file.
    pub fn read(path: &Path) -> Result<SignatureFile, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the signature {}: {e}", path.display()))?;
        serde_json::from_str(&text).map_err(|e| {
            format!(
                "the signature {} is not a signature file: {e}",
                path.display()
            )
        })
    }

    /// Checks that the signature is `key`'s over the digest the file names (which the
    /// caller compares with the digest it computed).
    pub fn verify(&self, key: &VerifyingKey) -> Result<(), String> {
        let bytes = STANDARD
            .decode(self.signature.trim())
            .map_err(|e| format!("the signature is not base64: {e}"))?;
        let sig = Signature::from_slice(&bytes)
            .map_err(|_| format!("an ed25519 signature has 64 bytes, not {}", bytes.len()))?;
        key.verify_strict(self.digest.to_ascii_lowercase().as_bytes(), &sig)
            .map_err(|_| {
                format!(
                    "the signature over digest {} does not verify with the key",
                    self.digest
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[7u8; 32])
    }

    #[test]
    fn a_signature_verifies_with_its_key_only() {
        let digest = "ab".repeat(32);
        let f = sign(&key(), Covers::Artifact, &digest);
        let public = parse_public_key(&public_key_pem(&key().verifying_key())).unwrap();
        assert_eq!(f.verify(&public), Ok(()));
        let hexkey = hex::encode(key().verifying_key().to_bytes());
        assert_eq!(f.verify(&parse_public_key(&hexkey).unwrap()), Ok(()));
        let other = SigningKey::from_bytes(&[8u8; 32]).verifying_key();
        assert!(f.verify(&other).unwrap_err().contains("does not verify"));
        let mut forged = f.clone();
        forged.digest = "cd".repeat(32);
        assert!(forged.verify(&public).is_err());
        assert!(parse_public_key("abcd").unwrap_err().contains("32 bytes"));
    }
}
