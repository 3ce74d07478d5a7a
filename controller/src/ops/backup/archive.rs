//! The backup file: a plain POSIX tar with three members, in this order.
//!
//! - `manifest.json`: `{format: "airlock-backup", version: 1, schema, backend, created_at,
//!   database, database_sha256, kdf: {algorithm: "argon2id", m_cost_kib, t_cost, p_cost,
//!   salt}, aead: {algorithm: "xchacha20poly1305", nonce}}` (salt and nonce in base64);
//! - the database: `database.sqlite` (SQLite's `VACUUM INTO` copy) or `database.pgdump`
//!   (`pg_dump --format=custom`);
//! - `secret.key.sealed`: the 32-byte secret key sealed with XChaCha20-Poly1305 under a key
//!   derived from the passphrase by argon2id. The associated data binds the format, version,
//!   backend, schema and the database's SHA-256, so a wrong passphrase and a swapped or
//!   edited database both fail to open.

use std::io::{Read, Write};
use std::path::Path;

use argon2::{Algorithm, Argon2, Params, Version};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::BackupError;

/// The `format` of every backup manifest.
pub const FORMAT: &str = "airlock-backup";
/// The manifest version this binary writes and reads.
pub const VERSION: u32 = 1;
/// The manifest's member name.
pub const MANIFEST: &str = "manifest.json";
/// The sealed key's member name.
pub const SEALED_KEY: &str = "secret.key.sealed";
/// Shortest passphrase accepted.
pub const MIN_PASSPHRASE: usize = 12;

/// argon2id memory cost in KiB (64 MiB).
const M_COST_KIB: u32 = 64 * 1024;
/// argon2id passes.
const T_COST: u32 = 3;
/// argon2id lanes.
const P_COST: u32 = 1;
/// Largest member read back (a manifest or a sealed key).
const SMALL_MEMBER: u64 = 64 * 1024;

/// The manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: String,
    /// The manifest version ([`VERSION`]).
    pub version: u32,
    /// The newest migration applied to the database when it was dumped.
    pub schema: i64,
    /// `sqlite` or `postgres`.
    pub backend: String,
    /// When the backup was taken (RFC 3339).
    pub created_at: String,
    /// The database member's name.
    pub database: String,
    /// Hex SHA-256 of the database member.
    pub database_sha256: String,
    /// How the passphrase becomes a key.
    pub kdf: Kdf,
    /// How the secret key is sealed.
    pub aead: Sealing,
}

/// The key derivation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kdf {
    /// `argon2id`.
    pub algorithm: String,
    /// Memory in KiB.
    pub m_cost_kib: u32,
    /// Passes.
    pub t_cost: u32,
    /// Lanes.
    pub p_cost: u32,
    /// 16 random bytes, base64.
    pub salt: String,
}

/// The sealing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sealing {
    /// `xchacha20poly1305`.
    pub algorithm: String,
    /// 24 random bytes, base64.
    pub nonce: String,
}

/// A backup read back: the manifest, the database member's bytes on disk, the sealed key.
#[derive(Debug)]
pub struct Opened {
    /// The manifest.
    pub manifest: Manifest,
    /// The sealed key.
    pub sealed_key: Vec<u8>,
}

// === impl Manifest ===

impl Manifest {
    /// A manifest for a fresh backup, with a fresh salt and nonce.
    pub fn new(backend: &str, schema: i64, database: &str, database_sha256: String) -> Self {
        let mut salt = [0_u8; 16];
        let mut nonce = [0_u8; 24];
        rand::rngs::OsRng.fill_bytes(&mut salt);
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let created_at = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        Self {
            format: FORMAT.to_owned(),
            version: VERSION,
            schema,
            backend: backend.to_owned(),
            created_at,
            database: database.to_owned(),
            database_sha256,
            kdf: Kdf {
                algorithm: "argon2id".to_owned(),
                m_cost_kib: M_COST_KIB,
                t_cost: T_COST,
                p_cost: P_COST,
                salt: BASE64.encode(salt),
            },
            aead: Sealing {
                algorithm: "xchacha20poly1305".to_owned(),
                nonce: BASE64.encode(nonce),
            },
        }
    }

    /// What the seal binds besides the key.
    fn associated_data(&self) -> Vec<u8> {
        format!(
            "{}|{}|{}|{}|{}",
            self.format, self.version, self.backend, self.schema, self.database_sha256
        )
        .into_bytes()
    }

    fn cipher(&self, passphrase: &str) -> Result<(XChaCha20Poly1305, XNonce), BackupError> {
        let bad = |what: &str| BackupError::Corrupt(format!("manifest {what}"));
        if self.kdf.algorithm != "argon2id" || self.aead.algorithm != "xchacha20poly1305" {
            return Err(bad("names an unknown algorithm"));
        }
        // Bounds keep a hostile manifest from asking for unbounded memory or time.
        if self.kdf.m_cost_kib > 1024 * 1024 || self.kdf.t_cost > 16 || self.kdf.p_cost > 8 {
            return Err(bad("asks for more KDF work than allowed"));
        }
        let salt = BASE64
            .decode(&self.kdf.salt)
            .map_err(|_invalid| bad("salt"))?;
        let nonce: [u8; 24] = BASE64
            .decode(&self.aead.nonce)
            .ok()
            .and_then(|n| n.try_into().ok())
            .ok_or_else(|| bad("nonce"))?;
        let params = Params::new(
            self.kdf.m_cost_kib,
            self.kdf.t_cost,
            self.kdf.p_cost,
            Some(32),
        )
        .map_err(|_invalid| bad("KDF parameters"))?;
        let mut key = [0_u8; 32];
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password_into(passphrase.as_bytes(), &salt, &mut key)
            .map_err(|_invalid| bad("salt"))?;
        Ok((XChaCha20Poly1305::new((&key).into()), nonce.into()))
    }

    /// Seals the 32 key bytes under `passphrase`.
    pub fn seal(&self, passphrase: &str, key: &[u8; 32]) -> Result<Vec<u8>, BackupError> {
        let (cipher, nonce) = self.cipher(passphrase)?;
        let aad = self.associated_data();
        cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: key,
                    aad: &aad,
                },
            )
            .map_err(|_failed| BackupError::Corrupt("sealing failed".to_owned()))
    }

    /// Opens the sealed key; a wrong passphrase (or an edited manifest or database) is
    /// [`BackupError::WrongPassphrase`].
    pub fn open(&self, passphrase: &str, sealed: &[u8]) -> Result<[u8; 32], BackupError> {
        let (cipher, nonce) = self.cipher(passphrase)?;
        let aad = self.associated_data();
        let key = cipher
            .decrypt(
                &nonce,
                Payload {
                    msg: sealed,
                    aad: &aad,
                },
            )
            .map_err(|_failed| BackupError::WrongPassphrase)?;
        key.try_into()
            .map_err(|_len| BackupError::Corrupt("the sealed key is not 32 bytes".to_owned()))
    }
}

/// Hex SHA-256 of the file at `path`.
pub fn sha256_file(path: &Path) -> Result<String, BackupError> {
    let mut file = std::fs::File::open(path).map_err(BackupError::io(path))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).map_err(BackupError::io(path))?;
    Ok(hex::encode(hasher.finalize()))
}

/// Writes the backup to `out` (mode 0600, atomically): the manifest, the database file
/// `database`, the sealed key.
pub fn write(
    out: &Path,
    manifest: &Manifest,
    database: &Path,
    sealed_key: &[u8],
) -> Result<(), BackupError> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = out.with_extension("partial");
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(BackupError::io(&tmp))?;
    let mut tar = tar::Builder::new(file);
    let json = serde_json::to_vec_pretty(manifest)
        .map_err(|e| BackupError::Corrupt(format!("manifest: {e}")))?;
    append_bytes(&mut tar, MANIFEST, &json).map_err(BackupError::io(&tmp))?;
    let mut db = std::fs::File::open(database).map_err(BackupError::io(database))?;
    tar.append_file(&manifest.database, &mut db)
        .map_err(BackupError::io(&tmp))?;
    append_bytes(&mut tar, SEALED_KEY, sealed_key).map_err(BackupError::io(&tmp))?;
    let file = tar.into_inner().map_err(BackupError::io(&tmp))?;
    file.sync_all().map_err(BackupError::io(&tmp))?;
    std::fs::rename(&tmp, out).map_err(BackupError::io(out))
}

fn append_bytes(
    tar: &mut tar::Builder<std::fs::File>,
    name: &str,
    bytes: &[u8],
) -> std::io::Result<()> {
    let mut header = tar::Header::new_ustar();
    header.set_size(bytes.len() as u64);
    header.set_mode(0o600);
    header.set_cksum();
    tar.append_data(&mut header, name, bytes)
}

/// Reads the backup at `path`: checks the manifest's format and version, copies the database
/// member to `database_out` and checks its SHA-256.
pub fn read(path: &Path, database_out: &Path) -> Result<Opened, BackupError> {
    let file = std::fs::File::open(path).map_err(BackupError::io(path))?;
    let mut archive = tar::Archive::new(file);
    let mut manifest: Option<Manifest> = None;
    let mut sealed_key = None;
    let mut database = false;
    let corrupt = |what: String| BackupError::Corrupt(what);
    for entry in archive.entries().map_err(BackupError::io(path))? {
        let mut entry = entry.map_err(BackupError::io(path))?;
        let name = entry
            .path()
            .map_err(BackupError::io(path))?
            .to_string_lossy()
            .into_owned();
        match (name.as_str(), &manifest) {
            (MANIFEST, None) => {
                let mut json = Vec::new();
                (&mut entry)
                    .take(SMALL_MEMBER)
                    .read_to_end(&mut json)
                    .map_err(BackupError::io(path))?;
                let parsed: Manifest = serde_json::from_slice(&json)
                    .map_err(|e| corrupt(format!("manifest.json: {e}")))?;
                if parsed.format != FORMAT {
                    return Err(corrupt(format!(
                        "not an Airlock backup ({})",
                        parsed.format
                    )));
                }
                if parsed.version > VERSION {
                    return Err(BackupError::FormatNewer {
                        version: parsed.version,
                    });
                }
                manifest = Some(parsed);
            }
            (SEALED_KEY, Some(_)) => {
                let mut bytes = Vec::new();
                (&mut entry)
                    .take(SMALL_MEMBER)
                    .read_to_end(&mut bytes)
                    .map_err(BackupError::io(path))?;
                sealed_key = Some(bytes);
            }
            (other, Some(m)) if other == m.database => {
                let mut out =
                    std::fs::File::create(database_out).map_err(BackupError::io(database_out))?;
                std::io::copy(&mut entry, &mut out).map_err(BackupError::io(database_out))?;
                out.flush().map_err(BackupError::io(database_out))?;
                database = true;
            }
            (other, _) => return Err(corrupt(format!("unexpected member {other:?}"))),
        }
    }
    let manifest = manifest.ok_or_else(|| corrupt("no manifest.json".to_owned()))?;
    let sealed_key = sealed_key.ok_or_else(|| corrupt("no sealed key".to_owned()))?;
    if !database {
        return Err(corrupt(format!("no {}", manifest.database)));
    }
    if sha256_file(database_out)? != manifest.database_sha256 {
        return Err(corrupt(
            "the database does not match its checksum".to_owned(),
        ));
    }
    Ok(Opened {
        manifest,
        sealed_key,
    })
}
