//! Central's ed25519 signing key and the signed envelopes it produces.
//!
//! The key file is JSON `{"key_id", "algorithm": "ed25519", "secret_key": hex,
//! "public_key": hex}`, written with mode 0600. The signature covers the exact bytes of
//! `SignedEnvelope.payload` (RFC 8032 Ed25519, hex-encoded); agents verify it with
//! `verify_strict` against a pinned public key before parsing the payload.

use std::io::Write as _;
use std::path::Path;

use anyhow::{Context as _, bail};
use ed25519_dalek::{Signer as _, SigningKey};
use protocol::schema::SignedEnvelope;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    key_id: String,
    algorithm: String,
    secret_key: String,
    public_key: String,
}

/// Key id derived from a public key: `ed25519-` and the first 8 bytes of its SHA-256, so
/// two keys never share an id by accident and an id can be checked against a key.
#[must_use]
pub fn key_id_for(public_key: &[u8; 32]) -> String {
    let h = Sha256::digest(public_key);
    format!("ed25519-{}", hex::encode(&h[..8]))
}

/// Writes a new random signing key to `path` (refusing to overwrite an existing file).
///
/// # Errors
/// When the file exists or cannot be written.
pub fn generate_signing_key(path: &Path) -> anyhow::Result<()> {
    let secret: [u8; 32] = rand::random();
    let key = SigningKey::from_bytes(&secret);
    let public = key.verifying_key().to_bytes();
    let file = KeyFile {
        key_id: key_id_for(&public),
        algorithm: "ed25519".into(),
        secret_key: hex::encode(secret),
        public_key: hex::encode(public),
    };
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).with_context(|| {
        format!(
            "creating key file {} (it must not exist yet)",
            path.display()
        )
    })?;
    serde_json::to_writer_pretty(&mut f, &file)?;
    f.write_all(b"\n")?;
    f.sync_all()?;
    Ok(())
}

/// The loaded signing key.
#[derive(Clone)]
pub struct Signer {
    key_id: String,
    key: SigningKey,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("key_id", &self.key_id)
            .field("public_key", &self.public_key_hex())
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// Loads a key file and checks that its public key matches its secret key.
    ///
    /// # Errors
    /// When the file is unreadable, malformed or inconsistent.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading signing key {}", path.display()))?;
        let file: KeyFile = serde_json::from_str(&text)
            .with_context(|| format!("signing key {} is not a central key file", path.display()))?;
        if file.algorithm != "ed25519" {
            bail!(
                "signing key {}: algorithm {:?}, expected \"ed25519\"",
                path.display(),
                file.algorithm
            );
        }
        let mut secret = [0u8; 32];
        hex::decode_to_slice(file.secret_key.trim(), &mut secret).with_context(|| {
            format!(
                "signing key {}: secret_key is not 64 hex digits",
                path.display()
            )
        })?;
        let key = SigningKey::from_bytes(&secret);
        if hex::encode(key.verifying_key().to_bytes())
            != file.public_key.trim().to_ascii_lowercase()
        {
            bail!(
                "signing key {}: public_key does not belong to secret_key",
                path.display()
            );
        }
        if file.key_id.trim().is_empty() {
            bail!("signing key {}: key_id is empty", path.display());
        }
        Ok(Self {
            key_id: file.key_id,
            key,
        })
    }

    /// The key id agents pin together with the public key.
    #[must_use]
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// Hex of the 32-byte public key.
    #[must_use]
    pub fn public_key_hex(&self) -> String {
        hex::encode(self.key.verifying_key().to_bytes())
    }

    /// Signs `payload` as it is: the envelope carries the same text.
    #[must_use]
    pub fn sign(&self, payload: String) -> SignedEnvelope {
        let sig = self.key.sign(payload.as_bytes());
        SignedEnvelope {
            key_id: self.key_id.clone(),
            payload,
            signature: hex::encode(sig.to_bytes()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signature, VerifyingKey};

    #[test]
    fn generated_key_signs_what_verify_strict_accepts_and_refuses_edits() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("k.json");
        generate_signing_key(&path).expect("generate");
        assert!(
            generate_signing_key(&path).is_err(),
            "never overwrites a key"
        );
        let s = Signer::load(&path).expect("load");
        let env = s.sign("{\"a\":1}".into());
        let mut pk = [0u8; 32];
        hex::decode_to_slice(s.public_key_hex(), &mut pk).expect("hex");
        let vk = VerifyingKey::from_bytes(&pk).expect("key");
        let mut sig = [0u8; 64];
        hex::decode_to_slice(&env.signature, &mut sig).expect("hex");
        let sig = Signature::from_bytes(&sig);
        assert!(vk.verify_strict(env.payload.as_bytes(), &sig).is_ok());
        assert!(vk.verify_strict(b"{\"a\":2}", &sig).is_err());
        assert_eq!(s.key_id(), key_id_for(&pk));
    }
}
