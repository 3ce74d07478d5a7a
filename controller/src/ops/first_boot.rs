//! First boot with no configuration: when no bootstrap admin is configured
//! (`AIRLOCK_BOOTSTRAP_ADMIN_*`), no admin token is set and no account can log in, `airlock
//! serve` gives the bootstrap admin (`admin@airlock.local`) a random password and an API
//! token, and writes both to `<data_dir>/initial-admin.json` (mode 0600). Only the file's
//! path is logged, never the secrets.
//!
//! Invariants: the secrets exist only in that file (the store keeps their hashes). The file
//! is written to a 0600 temporary sibling and renamed into place after the store accepted
//! them, so it is never half-written; if that write fails, the start fails, and
//! `airlock admin create-user` recovers. The token expires after `AIRLOCK_INITIAL_TOKEN_TTL`
//! (default 7 days), and the file says when.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rand::rngs::OsRng;
use rand::RngCore;
use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use tracing::info;

use crate::accounts::user::Scopes;
use crate::accounts::{
    AccountError, Accounts, CreateToken, EnsureBootstrapAdmin, TokenOwner, ADMIN_EMAIL,
};
use crate::audit::{Actor, AuditLog};
use crate::config::{BootstrapAdmin, Config, Secret};
use crate::store::Store;

/// The file's name under the data dir.
pub const INITIAL_ADMIN_FILE: &str = "initial-admin.json";

/// Why the first-boot admin could not be made.
#[derive(Debug, thiserror::Error)]
pub enum FirstBootError {
    /// The account or token could not be created.
    #[error(transparent)]
    Accounts(#[from] AccountError),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
    /// The file could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

#[derive(Serialize)]
struct InitialAdmin<'a> {
    email: &'a str,
    password: &'a str,
    token: &'a str,
    /// When the token stops working (RFC 3339).
    expires_at: String,
    note: &'static str,
}

/// Creates the first-boot admin when nothing else can log in; returns the file written.
pub async fn ensure_initial_admin(
    config: &Config,
    store: &Store,
) -> Result<Option<PathBuf>, FirstBootError> {
    if config.bootstrap_admin.is_some()
        || config.admin_token.is_some()
        || store.has_credentials().await?
    {
        return Ok(None);
    }
    let path = config.data_dir.join(INITIAL_ADMIN_FILE);
    let password = random_hex(16);
    let partial = path.with_extension("json.partial");
    let admin = BootstrapAdmin {
        email: ADMIN_EMAIL.to_owned(),
        password: Secret::new(password.clone()),
    };
    let accounts = Accounts::new(store.clone(), AuditLog::new(store.clone()), config.quota);
    let boot = Actor::boot();
    accounts.run(&boot, EnsureBootstrapAdmin { admin }).await?;
    let create = CreateToken {
        owner: TokenOwner::Email(ADMIN_EMAIL.to_owned()),
        name: "initial-admin".to_owned(),
        scopes: Scopes::FULL,
        expires_in: Some(config.initial_token_ttl),
    };
    let issued = accounts.run(&boot, create).await?;
    let expires_at = issued
        .token
        .expires_at
        .and_then(|at| at.format(&Rfc3339).ok())
        .unwrap_or_default();
    let body = InitialAdmin {
        email: ADMIN_EMAIL,
        password: &password,
        token: &issued.text,
        expires_at,
        note: "generated on first boot; the token expires at expires_at; log in, create your \
               own admin, then delete this file",
    };
    write_private(&partial, &path, &body).map_err(|source| FirstBootError::Io {
        path: path.clone(),
        source,
    })?;
    info!(path = %path.display(), "First boot: initial admin credentials written (mode 0600)");
    Ok(Some(path))
}

/// Writes `body` as JSON to `partial` (created 0600), then renames it to `path`.
fn write_private(partial: &Path, path: &Path, body: &impl Serialize) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    drop(std::fs::remove_file(partial));
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(partial)?;
    let text = serde_json::to_vec_pretty(body).map_err(std::io::Error::other)?;
    file.write_all(&text)?;
    file.write_all(b"\n")?;
    file.sync_all()?;
    std::fs::rename(partial, path)
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    OsRng.fill_bytes(&mut buf);
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::accounts::credential::hash_token;

    fn config(dir: &Path, extra: &[(&str, &str)]) -> Config {
        let mut vars: HashMap<String, String> = extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        vars.insert("AIRLOCK_DATA_DIR".to_owned(), dir.display().to_string());
        Config::from_lookup(|var| vars.get(var).cloned()).unwrap()
    }

    #[tokio::test]
    async fn writes_a_private_file_once_whose_token_opens_the_api() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::sqlite_in_memory().await.unwrap();
        let config = config(dir.path(), &[]);
        let path = ensure_initial_admin(&config, &store)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(path, dir.path().join(INITIAL_ADMIN_FILE));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let token = json["token"].as_str().unwrap();
        // The token expires in seven days, and the file says when.
        let expires_at = json["expires_at"].as_str().unwrap();
        let expires_at = time::OffsetDateTime::parse(expires_at, &Rfc3339).unwrap();
        let left = expires_at - crate::store::now();
        assert!(
            left > time::Duration::days(7) - time::Duration::minutes(1),
            "{left}"
        );
        assert!(left <= time::Duration::days(7), "{left}");
        let bearer = store
            .api_token_bearer(&hash_token(token), crate::store::now())
            .await
            .unwrap();
        assert!(bearer.is_some());
        let password = json["password"].as_str().unwrap();
        let (_user, hash) = store.user_login(ADMIN_EMAIL).await.unwrap().unwrap();
        assert!(crate::accounts::credential::verify_password_sync(
            password,
            hash.as_deref()
        ));
        // The second boot finds credentials and leaves the file alone.
        let again = ensure_initial_admin(&config, &store).await.unwrap();
        assert_eq!(again, None);
        assert!(!dir.path().join("initial-admin.json.partial").exists());
    }

    #[tokio::test]
    async fn configured_admins_skip_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::sqlite_in_memory().await.unwrap();
        let token = [("AIRLOCK_ADMIN_TOKEN", "0123456789abcdef0123")];
        let config = config(dir.path(), &token);
        assert_eq!(ensure_initial_admin(&config, &store).await.unwrap(), None);
        assert!(!dir.path().join(INITIAL_ADMIN_FILE).exists());
    }
}
