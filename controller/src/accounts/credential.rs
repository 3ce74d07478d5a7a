//! Secrets users hold: passwords and bearer tokens. Neither is ever stored.
//!
//! - Passwords are hashed with argon2id (OWASP minimum: m = 19 MiB, t = 2, p = 1) into a PHC
//!   string. Hashing and verifying are CPU-heavy, so the async helpers run them on the
//!   blocking pool. Verifying for a user who does not exist runs against a dummy hash, so the
//!   answer takes about as long either way.
//! - Tokens are 256 random bits, hex-encoded behind a kind prefix (`als_` login session,
//!   `alt_` API token, `ali_` invite). The store keeps only the hex SHA-256 of the whole text
//!   and looks tokens up by it, so no constant-time comparison is needed.

use std::fmt;
use std::sync::LazyLock;

use argon2::password_hash::SaltString;
use argon2::{Algorithm, Argon2, Params, PasswordHash, PasswordHasher, PasswordVerifier, Version};
use rand::rngs::OsRng;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// Argon2id memory cost in KiB (OWASP minimum).
const ARGON2_M_KIB: u32 = 19_456;
/// Argon2id passes.
const ARGON2_T: u32 = 2;
/// Argon2id lanes.
const ARGON2_P: u32 = 1;
/// Shortest accepted password.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// Longest accepted password (argon2 takes any length; this bounds the work per request).
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// What a bearer token stands for, from its prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenKind {
    /// A login session (`als_`).
    Session,
    /// A named API token (`alt_`).
    Api,
    /// A single-use invite (`ali_`).
    Invite,
}

/// A freshly minted token: the text (shown once) and its hash (stored).
#[derive(Clone)]
pub struct NewToken {
    /// The full token text; give it to the user once, keep it nowhere.
    pub text: String,
    /// Hex SHA-256 of `text`.
    pub hash: String,
}

/// Why hashing or verifying a password failed for a reason other than a wrong password.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// argon2 refused its input or parameters.
    #[error("password hashing failed: {0}")]
    Hash(String),
    /// The blocking task did not complete.
    #[error("password hashing task failed: {0}")]
    Task(#[source] tokio::task::JoinError),
}

/// A dummy PHC string verified against when the account does not exist.
static DUMMY_HASH: LazyLock<Option<String>> =
    LazyLock::new(|| hash_password_sync("airlock-dummy-password").ok());

// === impl TokenKind ===

impl TokenKind {
    /// The token prefix.
    pub fn prefix(self) -> &'static str {
        match self {
            Self::Session => "als_",
            Self::Api => "alt_",
            Self::Invite => "ali_",
        }
    }

    /// The kind a token's text claims, from its prefix.
    pub fn of(token: &str) -> Option<TokenKind> {
        [Self::Session, Self::Api, Self::Invite]
            .into_iter()
            .find(|kind| token.starts_with(kind.prefix()))
    }
}

// === impl NewToken ===

impl NewToken {
    /// 256 random bits from the OS behind `kind`'s prefix.
    pub fn generate(kind: TokenKind) -> NewToken {
        let mut bytes = [0u8; 32];
        OsRng.fill_bytes(&mut bytes);
        let text = format!("{}{}", kind.prefix(), to_hex(&bytes));
        let hash = hash_token(&text);
        NewToken { text, hash }
    }
}

impl fmt::Debug for NewToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewToken")
            .field("text", &"***")
            .field("hash", &self.hash)
            .finish()
    }
}

/// The stored form of a token: hex SHA-256 of its text.
pub fn hash_token(text: &str) -> String {
    to_hex(&Sha256::digest(text.as_bytes()))
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn argon2() -> Result<Argon2<'static>, CredentialError> {
    let params = Params::new(ARGON2_M_KIB, ARGON2_T, ARGON2_P, None)
        .map_err(|e| CredentialError::Hash(e.to_string()))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Hashes `password` into an argon2id PHC string, on the calling thread.
pub fn hash_password_sync(password: &str) -> Result<String, CredentialError> {
    let salt = SaltString::generate(&mut OsRng);
    argon2()?
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| CredentialError::Hash(e.to_string()))
}

/// Whether `password` matches the PHC string `stored`, on the calling thread. `None` (no
/// account, or no password set) verifies against a dummy hash and answers `false`.
pub fn verify_password_sync(password: &str, stored: Option<&str>) -> bool {
    let (phc, real) = match stored {
        Some(phc) => (Some(phc), true),
        None => (DUMMY_HASH.as_deref(), false),
    };
    let Some(parsed) = phc.and_then(|phc| PasswordHash::new(phc).ok()) else {
        return false;
    };
    let Ok(argon2) = argon2() else {
        return false;
    };
    let ok = argon2.verify_password(password.as_bytes(), &parsed).is_ok();
    ok && real
}

/// [`hash_password_sync`] on the blocking pool.
pub async fn hash_password(password: String) -> Result<String, CredentialError> {
    tokio::task::spawn_blocking(move || hash_password_sync(&password))
        .await
        .map_err(CredentialError::Task)?
}

/// [`verify_password_sync`] on the blocking pool.
pub async fn verify_password(
    password: String,
    stored: Option<String>,
) -> Result<bool, CredentialError> {
    tokio::task::spawn_blocking(move || verify_password_sync(&password, stored.as_deref()))
        .await
        .map_err(CredentialError::Task)
}

/// Why a new password is refused, if it is.
pub fn password_problem(password: &str) -> Option<String> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Some(format!("must be at least {MIN_PASSWORD_CHARS} characters"));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Some(format!("must be at most {MAX_PASSWORD_BYTES} bytes"));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_prefixed_random_and_hashed() {
        let a = NewToken::generate(TokenKind::Api);
        let b = NewToken::generate(TokenKind::Api);
        assert_ne!(a.text, b.text);
        assert!(a.text.starts_with("alt_"));
        assert_eq!(a.text.len(), 4 + 64);
        assert_eq!(a.hash, hash_token(&a.text));
        assert_eq!(a.hash.len(), 64);
        assert!(!format!("{a:?}").contains(&a.text));
        assert_eq!(TokenKind::of(&a.text), Some(TokenKind::Api));
        assert_eq!(TokenKind::of("als_x"), Some(TokenKind::Session));
        assert_eq!(TokenKind::of("nope"), None);
    }

    #[test]
    fn passwords_verify_only_against_their_hash() {
        let phc = hash_password_sync("correct horse battery").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(verify_password_sync("correct horse battery", Some(&phc)));
        assert!(!verify_password_sync("wrong horse battery", Some(&phc)));
        assert!(!verify_password_sync("airlock-dummy-password", None));
        assert!(!verify_password_sync("x", Some("not a phc string")));
    }

    #[test]
    fn short_passwords_are_refused() {
        assert!(password_problem("short").is_some());
        assert!(password_problem("twelve chars").is_none());
    }
}
