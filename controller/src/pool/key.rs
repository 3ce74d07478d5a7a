//! [`PoolKey`]: what two members must share for either to serve a claim.

use std::fmt;

use sha2::{Digest, Sha256};

use crate::sandbox::{RootFs, RunAs};

/// Hex characters of [`PoolKey::hash`].
pub const POOL_KEY_HASH_LEN: usize = 16;

/// What makes members interchangeable. Everything else a sandbox asks for either binds at
/// claim (argv, env, workdir, policy, CA) or is updated at claim (limits); a request whose
/// key no pool has, or with mounts, takes the cold path.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PoolKey {
    /// The image id (`sha256:<hex>`) the members run, never a tag.
    pub image_digest: String,
    /// The numeric user the members run as.
    pub user: RunAs,
    /// Whether the members have a TTY.
    pub tty: bool,
    /// The security profile fixed at creation: the root filesystem mode.
    pub rootfs: RootFs,
}

// === impl PoolKey ===

impl PoolKey {
    /// The canonical text of the key: `digest|uid:gid|tty|rootfs`.
    pub fn canonical(&self) -> String {
        let rootfs = match self.rootfs {
            RootFs::ReadOnly => "ro",
            RootFs::Writable => "rw",
        };
        format!(
            "{}|{}|{}|{rootfs}",
            self.image_digest,
            self.user,
            if self.tty { "tty" } else { "notty" }
        )
    }

    /// A short stable name of the key (the first [`POOL_KEY_HASH_LEN`] hex digits of the
    /// SHA-256 of [`PoolKey::canonical`]): the `airlock.pool` label and the store's
    /// `pool_key` column.
    pub fn hash(&self) -> String {
        let digest = Sha256::digest(self.canonical().as_bytes());
        let mut text = hex::encode(digest);
        text.truncate(POOL_KEY_HASH_LEN);
        text
    }

    /// Whether `digest` is an image id this key can hold (`sha256:` and 64 lowercase hex).
    pub fn is_image_digest(digest: &str) -> bool {
        digest.strip_prefix("sha256:").is_some_and(|hex| {
            hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        })
    }
}

impl fmt::Display for PoolKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.canonical())
    }
}
