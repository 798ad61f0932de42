//! The cluster key: the secret every node of a cluster shares, from a file.
//!
//! The file's bytes (at least 32, surrounding whitespace ignored, so a `base64` line from
//! `head -c 32 /dev/urandom | base64` works) are hashed with SHA-256 under a domain string into
//! the 32-byte Noise pre-shared key. Without a file a node uses the key of the empty secret:
//! still encrypted, but anyone can join, so such a node only accepts and dials loopback peers
//! unless told `--insecure` (see [`super::service`]).

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

const DOMAIN: &[u8] = b"gitdb cluster key v1\0";
/// Fewer bytes than this is too guessable to call a key.
pub const MIN_KEY_BYTES: usize = 32;

#[derive(Clone)]
pub struct ClusterKey {
    psk: [u8; 32],
    secret: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read the cluster key file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the cluster key file {path} holds {len} bytes; a key needs at least {MIN_KEY_BYTES}")]
    Short { path: PathBuf, len: usize },
}

impl ClusterKey {
    pub fn from_file(path: &Path) -> Result<ClusterKey, KeyError> {
        let bytes = std::fs::read(path).map_err(|source| KeyError::Read {
            path: path.to_owned(),
            source,
        })?;
        let secret = bytes.trim_ascii();
        if secret.len() < MIN_KEY_BYTES {
            return Err(KeyError::Short {
                path: path.to_owned(),
                len: secret.len(),
            });
        }
        Ok(ClusterKey::derive(secret, true))
    }

    /// The key of `secret` as a key file holding it would give (without the length check):
    /// for tests and fuzz targets that need a cluster key of their own without a file.
    #[doc(hidden)]
    pub fn from_secret(secret: &[u8]) -> ClusterKey {
        ClusterKey::derive(secret, true)
    }

    /// The key of the empty secret, known to everyone.
    pub fn open() -> ClusterKey {
        ClusterKey::derive(b"", false)
    }

    fn derive(secret: &[u8], is_secret: bool) -> ClusterKey {
        let mut h = Sha256::new();
        h.update(DOMAIN);
        h.update(secret);
        ClusterKey {
            psk: h.finalize().into(),
            secret: is_secret,
        }
    }

    pub fn psk(&self) -> &[u8; 32] {
        &self.psk
    }

    /// Whether the key came from a secret (a key file).
    pub fn is_secret(&self) -> bool {
        self.secret
    }
}

impl std::fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key itself in a log.
        write!(
            f,
            "ClusterKey({})",
            if self.secret { "secret" } else { "open" }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_come_from_files_of_enough_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        std::fs::write(&p, "short\n").unwrap();
        assert!(matches!(
            ClusterKey::from_file(&p),
            Err(KeyError::Short { len: 5, .. })
        ));
        std::fs::write(&p, format!("{}\n", "a".repeat(32))).unwrap();
        let a = ClusterKey::from_file(&p).unwrap();
        std::fs::write(&p, "a".repeat(32)).unwrap();
        let b = ClusterKey::from_file(&p).unwrap();
        assert_eq!(
            a.psk(),
            b.psk(),
            "surrounding whitespace is not part of the key"
        );
        assert_ne!(a.psk(), ClusterKey::open().psk());
        assert!(a.is_secret() && !ClusterKey::open().is_secret());
        assert!(!format!("{a:?}").contains('a'.to_string().repeat(4).as_str()));
    }
}
