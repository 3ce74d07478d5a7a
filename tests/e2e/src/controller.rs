//! The controller's parts wired to a test DinD, for e2e tests that drive the API in-process:
//! a config from explicit `AIRLOCK_*` pairs (with `AIRLOCK_INIT_BINARY` at
//! [`crate::init_binary`]), a SQLite store in a tempdir, a Docker client over
//! mTLS and the bootstrap admin. Each test composes the service, reconciler and API it needs;
//! [`api_call`] is the one in-process JSON request they all send.
// This is test harness code: a failed step must fail the calling test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;

use airlock::accounts::bootstrap_admin;
use airlock::accounts::user::UserId;
use airlock::config::{Config, DatabaseConfig, DockerConfig};
use airlock::docker::DockerClient;
use airlock::store::Store;
use tempfile::TempDir;
use test_support::dind::{Dind, DIND_TLS_PORT};

/// What every in-process controller test starts from.
#[derive(Debug)]
pub struct Parts {
    /// Holds the SQLite file; keep it alive as long as the store.
    pub dir: TempDir,
    /// The configuration parsed from the given variables only.
    pub config: Config,
    /// A migrated SQLite store under `dir`.
    pub store: Store,
    /// A client of the DinD over mTLS.
    pub docker: DockerClient,
    /// The bootstrap admin the admin token maps to.
    pub admin: UserId,
}

/// The default quotas lifted: these tests measure the controller, not the quotas (which
/// `controller_secrets_quota.rs` and the in-process tests cover), and some create hundreds of
/// sandboxes as one user.
pub const UNLIMITED_QUOTAS: [(&str, &str); 6] = [
    ("AIRLOCK_QUOTA_MAX_SANDBOXES", "unlimited"),
    ("AIRLOCK_QUOTA_MAX_MEMORY_MB", "unlimited"),
    ("AIRLOCK_QUOTA_MAX_CPUS", "unlimited"),
    ("AIRLOCK_QUOTA_MAX_LIFETIME_S", "unlimited"),
    ("AIRLOCK_QUOTA_CREATES_PER_MIN", "unlimited"),
    ("AIRLOCK_QUOTA_CREATES_PER_HOUR", "unlimited"),
];

/// Builds [`Parts`] for `dind`, with the `AIRLOCK_*` variables in `env` over
/// [`UNLIMITED_QUOTAS`].
pub async fn parts(dind: &Dind, env: &[(&str, &str)]) -> Parts {
    let dir = tempfile::tempdir().unwrap();
    let init = crate::init_binary().to_string_lossy().into_owned();
    let vars: HashMap<&str, &str> = [("AIRLOCK_INIT_BINARY", init.as_str())]
        .iter()
        .chain(UNLIMITED_QUOTAS.iter())
        .chain(env)
        .copied()
        .collect();
    let config = Config::from_lookup(|var| vars.get(var).map(|v| (*v).to_owned())).unwrap();
    let store = Store::connect(&DatabaseConfig::Sqlite {
        path: dir.path().join("airlock.db"),
    })
    .await
    .unwrap();
    let docker = DockerClient::connect(&DockerConfig::Tls {
        host: dind.ip().to_string(),
        port: DIND_TLS_PORT,
        cert_dir: dind.cert_dir().join("client"),
    })
    .await
    .unwrap();
    let admin = bootstrap_admin(&store).await.unwrap();
    Parts {
        dir,
        config,
        store,
        docker,
        admin,
    }
}

/// One in-process JSON request to the API with bearer `token`: the status and the body
/// (`Null` when empty or not JSON).
pub async fn api_call(
    state: &airlock::api::AppState,
    token: &str,
    method: axum::http::Method,
    uri: &str,
    body: Option<serde_json::Value>,
) -> (axum::http::StatusCode, serde_json::Value) {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let request = axum::http::Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(body.map_or_else(axum::body::Body::empty, |b| {
            axum::body::Body::from(b.to_string())
        }))
        .unwrap();
    let response = airlock::api::app(state.clone())
        .oneshot(request)
        .await
        .unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    )
}

/// Runs `state`'s pool tending (refill and member reconcile) until the returned sender is
/// dropped; await the handle to see it end.
pub fn tend(
    state: &airlock::api::AppState,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let sandboxes = state.services.sandboxes.clone();
    let task = tokio::spawn(sandboxes.tend_pools(async move { drop(stopped.await) }));
    (stop, task)
}
