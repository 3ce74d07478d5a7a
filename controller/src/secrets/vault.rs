//! Secrets at rest: XChaCha20-Poly1305 with one 32-byte key.
//!
//! - Each seal draws a fresh random 24-byte nonce; the stored value is `nonce || ciphertext`.
//! - The associated data binds a secret to its owner and name, so a sealed value copied to
//!   another row does not open.
//! - The key comes from `AIRLOCK_SECRET_KEY` (64 hex digits or standard base64 of 32 bytes),
//!   or is generated on first boot into `<data_dir>/secret.key` (mode 0600).
//! - A key check value (a fixed text sealed with the key) is kept in the store; at boot,
//!   [`Vault::open`] refuses a key that does not open it, so a wrong or rotated key is an
//!   error, never a silent fallback.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;

use crate::accounts::user::UserId;
use crate::config::{parse_secret_key, Secret};
use crate::store::{Store, StoreError};

/// The key file's name under the data dir.
pub const KEY_FILE: &str = crate::config::DEFAULT_SECRET_KEY_FILE;
/// Nonce length of XChaCha20-Poly1305.
const NONCE_LEN: usize = 24;
/// The plaintext of the key check value.
const CHECK_TEXT: &[u8] = b"airlock secret key check v1";
/// The associated data of the key check value.
const CHECK_AAD: &[u8] = b"airlock:key-check:v1";

/// A 32-byte secret key; `Debug` prints `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey([u8; 32]);

/// Where the key came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeySource {
    /// `AIRLOCK_SECRET_KEY`.
    Env,
    /// A key file (generated on first boot, or given to `rotate-key`).
    File(PathBuf),
}

/// Seals and opens secrets with a key the store has confirmed.
#[derive(Clone)]
pub struct Vault {
    cipher: XChaCha20Poly1305,
}

/// Why the key or a secret could not be used.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// The key text is not 32 bytes in hex or base64.
    #[error("{what} must be 32 bytes as 64 hex digits or base64")]
    BadKey {
        /// Which key.
        what: String,
    },
    /// The key file could not be read or written.
    #[error("secret key file {path}: {source}")]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The key does not open the stored key check value.
    #[error(
        "the secret key ({source_name}) does not match the key the stored secrets were \
         encrypted with; restore the previous key (AIRLOCK_SECRET_KEY or {KEY_FILE} in the \
         data dir), or re-encrypt with `airlock admin rotate-key --new-key-file F` using the \
         previous key"
    )]
    KeyMismatch {
        /// Where the key came from.
        source_name: String,
    },
    /// A stored secret did not open (tampered, or sealed for another owner or name).
    #[error("secret {name} does not decrypt with the current key")]
    Corrupt {
        /// The secret's name.
        name: String,
    },
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

// === impl SecretKey ===

impl SecretKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        let mut key = [0_u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut key);
        Self(key)
    }

    /// Parses 64 hex digits or base64 of 32 bytes (surrounding whitespace ignored).
    pub fn parse(text: &str) -> Option<Self> {
        parse_secret_key(text).map(Self)
    }

    /// A key from its 32 bytes (a backup's unsealed key).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The 32 key bytes, for sealing into a backup.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0
    }

    /// The key as base64 (what the key file holds).
    pub fn to_base64(&self) -> String {
        BASE64.encode(self.0)
    }

    /// Reads a key file.
    pub fn read_file(path: &Path) -> Result<Self, VaultError> {
        let text = std::fs::read_to_string(path).map_err(|source| VaultError::KeyFile {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text).ok_or_else(|| VaultError::BadKey {
            what: path.display().to_string(),
        })
    }

    /// Writes the key to `path` with mode 0600, replacing it atomically.
    pub fn write_file(&self, path: &Path) -> Result<(), VaultError> {
        use std::os::unix::fs::OpenOptionsExt;
        let file_error = |source| VaultError::KeyFile {
            path: path.to_owned(),
            source,
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(file_error)?;
        let tmp = path.with_extension("key.tmp");
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(file_error)?;
        file.write_all(format!("{}\n", self.to_base64()).as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(file_error)?;
        std::fs::rename(&tmp, path).map_err(file_error)
    }

    /// The configured key without generating one: `AIRLOCK_SECRET_KEY` when set, else the key
    /// file (`AIRLOCK_SECRET_KEY_FILE`, default `<data_dir>/secret.key`; an error when missing).
    pub fn load_existing(
        env: Option<&Secret>,
        key_file: &Path,
    ) -> Result<(Self, KeySource), VaultError> {
        if let Some(text) = env {
            let key = Self::parse(text.expose()).ok_or_else(|| VaultError::BadKey {
                what: crate::config::ENV_SECRET_KEY.to_owned(),
            })?;
            return Ok((key, KeySource::Env));
        }
        let path = key_file.to_owned();
        Ok((Self::read_file(&path)?, KeySource::File(path)))
    }

    /// The configured key: `AIRLOCK_SECRET_KEY` when set, else the key file, generated (0600)
    /// when missing.
    pub fn load_or_generate(
        env: Option<&Secret>,
        key_file: &Path,
    ) -> Result<(Self, KeySource), VaultError> {
        if let Some(text) = env {
            let key = Self::parse(text.expose()).ok_or_else(|| VaultError::BadKey {
                what: crate::config::ENV_SECRET_KEY.to_owned(),
            })?;
            return Ok((key, KeySource::Env));
        }
        let path = key_file.to_owned();
        if !path.exists() {
            Self::generate().write_file(&path)?;
            tracing::info!(path = %path.display(), "Generated the secret key");
        }
        Ok((Self::read_file(&path)?, KeySource::File(path)))
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

// === impl KeySource ===

impl fmt::Display for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Env => f.write_str(crate::config::ENV_SECRET_KEY),
            Self::File(path) => write!(f, "{}", path.display()),
        }
    }
}

// === impl Vault ===

impl Vault {
    /// A vault over `key`, unchecked: use [`Vault::open`] at boot.
    pub fn new(key: &SecretKey) -> Self {
        Self {
            cipher: XChaCha20Poly1305::new((&key.0).into()),
        }
    }

    /// Checks `key` against the store's key check value (recording one when the store has
    /// none yet) and returns the vault; a key that does not match is
    /// [`VaultError::KeyMismatch`].
    pub async fn open(
        store: &Store,
        key: &SecretKey,
        source: &KeySource,
    ) -> Result<Self, VaultError> {
        let vault = Self::new(key);
        let check = store.key_check_or_insert(vault.check_value()).await?;
        if !vault.matches(&check) {
            return Err(VaultError::KeyMismatch {
                source_name: source.to_string(),
            });
        }
        Ok(vault)
    }

    /// A fresh key check value for this key.
    pub fn check_value(&self) -> Vec<u8> {
        self.seal_with(CHECK_TEXT, CHECK_AAD)
    }

    /// Whether this key opens `check`.
    pub fn matches(&self, check: &[u8]) -> bool {
        self.open_with(check, CHECK_AAD)
            .is_some_and(|text| text == CHECK_TEXT)
    }

    /// Seals `owner`'s secret `name`.
    pub fn seal(&self, owner: UserId, name: &str, value: &[u8]) -> Vec<u8> {
        self.seal_with(value, &aad(owner, name))
    }

    /// Opens `owner`'s secret `name`.
    pub fn open_secret(
        &self,
        owner: UserId,
        name: &str,
        sealed: &[u8],
    ) -> Result<Vec<u8>, VaultError> {
        self.open_with(sealed, &aad(owner, name))
            .ok_or_else(|| VaultError::Corrupt {
                name: name.to_owned(),
            })
    }

    fn seal_with(&self, msg: &[u8], aad: &[u8]) -> Vec<u8> {
        let mut nonce = [0_u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let mut out = nonce.to_vec();
        // Encryption fails only for messages beyond the cipher's 256 GiB limit.
        #[allow(clippy::expect_used)]
        let sealed = self
            .cipher
            .encrypt(XNonce::from_slice(&nonce), Payload { msg, aad })
            .expect("XChaCha20-Poly1305 encrypts any message under 256 GiB");
        out.extend_from_slice(&sealed);
        out
    }

    fn open_with(&self, sealed: &[u8], aad: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < NONCE_LEN {
            return None;
        }
        let (nonce, msg) = sealed.split_at(NONCE_LEN);
        self.cipher
            .decrypt(XNonce::from_slice(nonce), Payload { msg, aad })
            .ok()
    }
}

impl fmt::Debug for Vault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Vault(***)")
    }
}

/// The associated data of a secret: a prefix, the owner's 16 bytes, then the name.
fn aad(owner: UserId, name: &str) -> Vec<u8> {
    let mut aad = b"airlock:secret:v1:".to_vec();
    aad.extend_from_slice(owner.as_uuid().as_bytes());
    aad.extend_from_slice(name.as_bytes());
    aad
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_from_hex_and_base64_only_at_32_bytes() {
        let key = SecretKey::generate();
        assert_eq!(SecretKey::parse(&key.to_base64()), Some(key.clone()));
        assert_eq!(SecretKey::parse(&hex::encode(key.0)), Some(key.clone()));
        assert_eq!(SecretKey::parse(&BASE64.encode([0_u8; 31])), None);
        assert_eq!(SecretKey::parse("not a key"), None);
        assert_eq!(format!("{key:?}"), "***");
    }

    #[test]
    fn sealed_secrets_open_only_for_their_owner_name_and_key() {
        let vault = Vault::new(&SecretKey::generate());
        let (alice, bob) = (UserId::new(), UserId::new());
        let a = vault.seal(alice, "db", b"hunter2");
        let b = vault.seal(alice, "db", b"hunter2");
        assert_ne!(a, b, "a fresh nonce each time");
        assert_eq!(vault.open_secret(alice, "db", &a).unwrap(), b"hunter2");
        assert!(vault.open_secret(bob, "db", &a).is_err());
        assert!(vault.open_secret(alice, "db2", &a).is_err());
        let other = Vault::new(&SecretKey::generate());
        assert!(other.open_secret(alice, "db", &a).is_err());
        assert!(vault.matches(&vault.check_value()));
        assert!(!other.matches(&vault.check_value()));
    }

    #[test]
    fn key_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(KEY_FILE);
        let (key, source) = SecretKey::load_or_generate(None, &path).unwrap();
        assert_eq!(source, KeySource::File(path.clone()));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let (again, _) = SecretKey::load_or_generate(None, &path).unwrap();
        assert_eq!(key, again, "generated once, then reused");
    }
}
