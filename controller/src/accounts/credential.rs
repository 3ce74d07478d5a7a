//! Secrets users hold: passwords and bearer tokens. Neither is ever stored.
//!
//! - Passwords are hashed with argon2id (OWASP minimum: m = 19 MiB, t = 2, p = 1) into a PHC
//!   string. Hashing and verifying are CPU-heavy, so the async helpers run them on one worker
//!   thread per core (each hash holds 19 MiB), with a short queue behind; past the queue they
//!   fail at once with [`CredentialError::Busy`] (the API's `503` with `Retry-After`), so a
//!   flood of logins or invite acceptances costs neither unbounded CPU nor memory. Verifying for a user who does not exist runs against a dummy hash, so the
//!   answer takes about as long either way.
//! - Tokens are 256 random bits, hex-encoded behind a kind prefix (`als_` login session,
//!   `alt_` API token, `ali_` invite). The store keeps only the hex SHA-256 of the whole text
//!   and looks tokens up by it, so no constant-time comparison is needed.

use std::fmt;
use std::sync::LazyLock;

use argon2::password_hash::{Output, ParamsString, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, PasswordHash, Version};
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
    /// Every argon2 worker is busy and the queue behind them is full; retry shortly.
    #[error("too many password checks at once; retry shortly")]
    Busy,
}

/// Jobs allowed to wait for an argon2 worker, per worker.
const QUEUE_PER_WORKER: usize = 4;

/// One argon2 job: it runs on a worker thread and sends its answer back itself.
type Job = Box<dyn FnOnce() + Send>;

/// The argon2 workers: one thread per core, fed by a bounded queue. Dedicated threads (not
/// the runtime's blocking pool, which grows to hundreds) keep the 19 MiB blocks in as many
/// allocator arenas as there are cores, so the memory a flood can make resident is bounded.
struct Workers {
    jobs: std::sync::mpsc::SyncSender<Job>,
}

/// Every argon2 hash or verify of the async helpers runs on these workers.
static WORKERS: LazyLock<Workers> = LazyLock::new(|| {
    let cores = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
    let (jobs, queue) = std::sync::mpsc::sync_channel::<Job>(cores * QUEUE_PER_WORKER);
    let queue = std::sync::Arc::new(std::sync::Mutex::new(queue));
    for n in 0..cores {
        let queue = queue.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("argon2-{n}"))
            .spawn(move || loop {
                let job = match queue.lock() {
                    Ok(queue) => queue.recv(),
                    Err(_poisoned) => return,
                };
                match job {
                    Ok(job) => job(),
                    Err(_closed) => return,
                }
            });
        if let Err(error) = spawned {
            tracing::error!(%error, "Cannot start an argon2 worker");
        }
    }
    Workers { jobs }
});

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

thread_local! {
    /// This thread's argon2 memory, allocated once and reused by every hash and verify on
    /// it: the allocator is never asked for 19 MiB per call, so a flood cannot leave freed
    /// blocks resident across its arenas.
    static BLOCKS: std::cell::RefCell<Vec<Block>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The largest memory cost a stored hash may ask for, in KiB (a bound on [`BLOCKS`]).
const MAX_M_KIB: u32 = 256 * 1024;

fn argon2() -> Result<Argon2<'static>, CredentialError> {
    let params = Params::new(ARGON2_M_KIB, ARGON2_T, ARGON2_P, None)
        .map_err(|e| CredentialError::Hash(e.to_string()))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Hashes `password` with `salt` into `out`, in this thread's reused memory.
fn raw_hash(
    argon2: &Argon2<'_>,
    params: &Params,
    password: &[u8],
    salt: &[u8],
    out: &mut [u8],
) -> Result<(), argon2::Error> {
    BLOCKS.with(|blocks| {
        let mut blocks = blocks.borrow_mut();
        let needed = params.block_count();
        if blocks.len() < needed {
            blocks.resize(needed, Block::default());
        }
        argon2.hash_password_into_with_memory(password, salt, out, &mut blocks[..needed])
    })
}

/// Hashes `password` into an argon2id PHC string, on the calling thread.
pub fn hash_password_sync(password: &str) -> Result<String, CredentialError> {
    let failed = |e: &dyn fmt::Display| CredentialError::Hash(e.to_string());
    let argon2 = argon2()?;
    let params = argon2.params().clone();
    let salt = SaltString::generate(&mut OsRng);
    let mut salt_bytes = [0u8; 64];
    let salt_bytes = salt
        .as_salt()
        .decode_b64(&mut salt_bytes)
        .map_err(|e| failed(&e))?;
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    raw_hash(&argon2, &params, password.as_bytes(), salt_bytes, &mut out)
        .map_err(|e| failed(&e))?;
    let hash = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(|e| failed(&e))?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&out).map_err(|e| failed(&e))?),
    };
    Ok(hash.to_string())
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
    let ok = verify_parsed(password, &parsed).unwrap_or(false);
    ok && real
}

/// Recomputes `parsed`'s hash for `password` (its algorithm, version, parameters and salt)
/// and compares in constant time (`Output`'s equality).
fn verify_parsed(password: &str, parsed: &PasswordHash<'_>) -> Option<bool> {
    let algorithm = Algorithm::try_from(parsed.algorithm).ok()?;
    let version = match parsed.version {
        Some(version) => Version::try_from(version).ok()?,
        None => Version::default(),
    };
    let params = Params::try_from(parsed).ok()?;
    if params.m_cost() > MAX_M_KIB {
        return None;
    }
    let expected = parsed.hash?;
    let mut salt = [0u8; 64];
    let salt = parsed.salt?.decode_b64(&mut salt).ok()?;
    let argon2 = Argon2::new(algorithm, version, params.clone());
    let mut out = vec![0u8; expected.len()];
    raw_hash(&argon2, &params, password.as_bytes(), salt, &mut out).ok()?;
    Some(Output::new(&out).ok()? == expected)
}

/// Runs `work` on an argon2 worker, or fails at once with [`CredentialError::Busy`] when the
/// queue is full. A caller that goes away does not stop the work, so it still holds its worker.
async fn on_worker<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, CredentialError> {
    let (answer, answered) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(move || {
        // The caller may be gone; the work is done either way.
        let _unheard = answer.send(work());
    });
    WORKERS
        .jobs
        .try_send(job)
        .map_err(|_full_or_gone| CredentialError::Busy)?;
    answered.await.map_err(|_worker_gone| CredentialError::Busy)
}

/// [`hash_password_sync`] on an argon2 worker.
pub async fn hash_password(password: String) -> Result<String, CredentialError> {
    on_worker(move || hash_password_sync(&password)).await?
}

/// [`verify_password_sync`] on an argon2 worker.
pub async fn verify_password(
    password: String,
    stored: Option<String>,
) -> Result<bool, CredentialError> {
    on_worker(move || verify_password_sync(&password, stored.as_deref())).await
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
    fn hashes_made_by_the_argon2_crate_still_verify() {
        use argon2::PasswordHasher;
        let salt = SaltString::generate(&mut OsRng);
        let phc = argon2()
            .unwrap()
            .hash_password(b"an older stored password", &salt)
            .unwrap()
            .to_string();
        assert!(verify_password_sync("an older stored password", Some(&phc)));
        assert!(!verify_password_sync("another password", Some(&phc)));
        let ours = hash_password_sync("an older stored password").unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        use argon2::PasswordVerifier;
        assert!(argon2()
            .unwrap()
            .verify_password(b"an older stored password", &parsed)
            .is_ok());
    }

    #[test]
    fn short_passwords_are_refused() {
        assert!(password_problem("short").is_some());
        assert!(password_problem("twelve chars").is_none());
    }
}
