//! The in-process app over a real database (a SQLite file in a temp dir, or a fresh Postgres
//! database), with a Docker client pointed at a loopback port where nothing listens: every
//! decision these tests look at is taken before Docker is asked.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use airlock::accounts::credential::{NewToken, TokenKind};
use airlock::accounts::user::{Role, Scopes, TokenScope, UserId};
use airlock::accounts::{bootstrap_admin, Clock};
use airlock::api::{app, AppState, Auth};
use airlock::config::{Config, DatabaseConfig, DockerConfig, Secret};
use airlock::docker::DockerClient;
use airlock::folder::{FolderId, FolderMode, FolderName};
use airlock::sandbox::{SandboxId, SandboxRequest};
use airlock::secrets::vault::{SecretKey, Vault};
use airlock::services::{Services, Settings};
use airlock::store::{
    ApiToken, Created, NewApiToken, NewSandbox, NewUser, Scope, Store, UserUpdate,
};
use airlock::store::{NewFolder, NewVolume};
use airlock::volume::{QuotaMode, VolumeId, VolumeName, VolumeQuota, VolumeSpec};
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use test_support::postgres::TestDatabase;
use time::OffsetDateTime;
use tokio::net::TcpSocket;
use tower::ServiceExt;

/// Which database a test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Db {
    Sqlite,
    Postgres,
}

/// What keeps the database alive.
#[allow(dead_code)]
pub(crate) enum Keep {
    Dir(tempfile::TempDir),
    Pg(TestDatabase),
}

/// The app and its store.
pub(crate) struct Harness {
    pub(crate) state: AppState,
    pub(crate) store: Store,
    pub(crate) database: DatabaseConfig,
    /// How far the accounts' clock runs ahead of the system clock, in seconds.
    ahead: Arc<AtomicU64>,
    _keep: Keep,
    // Holds the loopback port bound but not listening, so connections to it are refused.
    _closed: TcpSocket,
}

/// One response.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    /// The JSON body; a non-JSON body as a string; an empty one as `null`.
    pub(crate) body: Value,
    /// The raw body text.
    pub(crate) text: String,
}

/// A user and a login session for them.
#[derive(Clone, Debug)]
pub(crate) struct Account {
    pub(crate) id: UserId,
    pub(crate) email: String,
    pub(crate) session: String,
}

/// Opens a fresh database of kind `db`.
pub(crate) async fn database(db: Db) -> (DatabaseConfig, Store, Keep) {
    match db {
        Db::Sqlite => {
            let dir = tempfile::tempdir().unwrap();
            let config = DatabaseConfig::Sqlite {
                path: dir.path().join("airlock.db"),
            };
            let store = Store::connect(&config).await.unwrap();
            (config, store, Keep::Dir(dir))
        }
        Db::Postgres => {
            let pg = tokio::task::spawn_blocking(test_support::postgres::database)
                .await
                .unwrap()
                .unwrap();
            let config = DatabaseConfig::Postgres {
                url: Secret::new(pg.url()),
            };
            let store = Store::connect(&config).await.unwrap();
            (config, store, Keep::Pg(pg))
        }
    }
}

/// The app over a fresh `db`, with no `AIRLOCK_ADMIN_TOKEN` and no account yet (so it is not
/// bootstrapped).
pub(crate) async fn harness(db: Db) -> Harness {
    let (database, store, keep) = database(db).await;
    harness_on(database, store, keep).await
}

/// The app over an opened database.
pub(crate) async fn harness_on(database: DatabaseConfig, store: Store, keep: Keep) -> Harness {
    let closed = TcpSocket::new_v4().unwrap();
    closed
        .bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .unwrap();
    let docker = DockerClient::new(&DockerConfig::InsecureTcp {
        host: "127.0.0.1".to_owned(),
        port: closed.local_addr().unwrap().port(),
    })
    .unwrap();
    // What `airlock serve` does: the user the admin token would act as always exists.
    let token_admin = bootstrap_admin(&store).await.unwrap();
    let config = Config::from_lookup(|_| None).unwrap();
    let vault = Vault::new(&SecretKey::generate());
    // Account expiries read a clock the tests move forward instead of sleeping.
    let ahead = Arc::new(AtomicU64::new(0));
    let clock = {
        let ahead = ahead.clone();
        Clock::new(move || {
            OffsetDateTime::now_utc() + Duration::from_secs(ahead.load(Ordering::Relaxed))
        })
    };
    let services = Services::builder(store.clone(), docker, Settings::from_config(&config))
        .vault(vault)
        .clock(clock);
    let state = AppState::new(services.build(), Auth::new(None, token_admin));
    Harness {
        state,
        store,
        database,
        ahead,
        _keep: keep,
        _closed: closed,
    }
}

/// A request to send.
pub(crate) struct Call<'a> {
    pub(crate) method: Method,
    pub(crate) uri: String,
    /// The whole `Authorization` header value.
    pub(crate) authorization: Option<String>,
    pub(crate) body: Option<&'a str>,
    pub(crate) source: Option<IpAddr>,
}

// === impl Call ===

impl<'a> Call<'a> {
    pub(crate) fn new(method: Method, uri: impl Into<String>) -> Self {
        Self {
            method,
            uri: uri.into(),
            authorization: None,
            body: None,
            source: None,
        }
    }

    pub(crate) fn bearer(mut self, token: &str) -> Self {
        self.authorization = Some(format!("Bearer {token}"));
        self
    }

    pub(crate) fn body(mut self, body: &'a str) -> Self {
        self.body = Some(body);
        self
    }
}

// === impl Harness ===

impl Harness {
    /// Moves the accounts' clock forward by `by`, so tokens and sessions expire without a
    /// wait.
    pub(crate) fn advance(&self, by: Duration) {
        self.ahead.fetch_add(by.as_secs(), Ordering::Relaxed);
    }
    pub(crate) async fn send(&self, call: Call<'_>) -> Reply {
        let mut request = Request::builder()
            .method(call.method)
            .uri(&call.uri)
            .header("content-type", "application/json");
        if let Some(value) = &call.authorization {
            request = request.header("authorization", value);
        }
        let mut request = request
            .body(
                call.body
                    .map_or_else(Body::empty, |b| Body::from(b.to_owned())),
            )
            .unwrap();
        if let Some(ip) = call.source {
            // What `into_make_service_with_connect_info` hands the handlers in production.
            request
                .extensions_mut()
                .insert(ConnectInfo(SocketAddr::new(ip, 40_000)));
        }
        let response = app(self.state.clone()).oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(text.clone()))
        };
        Reply {
            status,
            headers,
            body,
            text,
        }
    }

    /// `method uri` with `token` and an optional JSON body.
    pub(crate) async fn call(
        &self,
        method: Method,
        uri: &str,
        token: &str,
        body: Option<&str>,
    ) -> Reply {
        let mut call = Call::new(method, uri).bearer(token);
        call.body = body;
        self.send(call).await
    }

    /// A user with no password, and a 1-hour login session for them.
    pub(crate) async fn account(&self, email: &str, role: Role) -> Account {
        let user = self
            .store
            .create_user(NewUser {
                email: email.to_owned(),
                display_name: email.to_owned(),
                role,
            })
            .await
            .unwrap();
        let session = self.session(user.id, Duration::from_secs(3600)).await;
        Account {
            id: user.id,
            email: email.to_owned(),
            session,
        }
    }

    /// A session for `user` that ends `ttl` from now.
    pub(crate) async fn session(&self, user: UserId, ttl: Duration) -> String {
        self.session_until(user, OffsetDateTime::now_utc() + ttl)
            .await
    }

    /// A session for `user` that ends at `at` (in the past for an expired one).
    pub(crate) async fn session_until(&self, user: UserId, at: OffsetDateTime) -> String {
        let token = NewToken::generate(TokenKind::Session);
        self.store
            .create_session(user, &token.hash, at)
            .await
            .unwrap();
        token.text
    }

    /// An API token for `user` with `scopes`, expiring at `expires_at`.
    pub(crate) async fn api_token(
        &self,
        user: UserId,
        scopes: &[TokenScope],
        expires_at: Option<OffsetDateTime>,
    ) -> (String, ApiToken) {
        let token = NewToken::generate(TokenKind::Api);
        let new = NewApiToken {
            user,
            name: "test".to_owned(),
            scopes: scopes.iter().copied().collect::<Scopes>(),
            hash: token.hash.clone(),
            expires_at,
        };
        let stored = self.store.create_api_token(new).await.unwrap();
        (token.text, stored)
    }

    /// A revoked API token for `user`.
    pub(crate) async fn revoked_token(&self, user: UserId) -> String {
        let (text, stored) = self
            .api_token(user, &[TokenScope::SandboxesRead], None)
            .await;
        self.store
            .revoke_api_token(Scope::All, stored.id)
            .await
            .unwrap();
        text
    }

    /// An API token of `user` that expired a second ago.
    pub(crate) async fn expired_token(&self, user: UserId) -> String {
        let past = OffsetDateTime::now_utc() - Duration::from_secs(1);
        self.api_token(user, &[TokenScope::SandboxesRead], Some(past))
            .await
            .0
    }

    /// A sandbox row owned by `owner` (state `creating`; no container).
    pub(crate) async fn sandbox(&self, owner: UserId) -> SandboxId {
        let config = Config::from_lookup(|_| None).unwrap();
        let spec = SandboxRequest {
            image: "airlock/testbox:dev".to_owned(),
            ..SandboxRequest::default()
        }
        .validate(&config.maximums)
        .unwrap();
        let new = NewSandbox {
            owner,
            spec,
            idempotency_key: None,
            node: None,
        };
        match self.store.create_sandbox(new).await.unwrap() {
            Created::New(sandbox) => sandbox.id,
            Created::Existing(_) => panic!("expected a new sandbox"),
        }
    }

    /// A volume row of `owner` (no Docker volume: the walk never mounts it).
    pub(crate) async fn volume(&self, owner: UserId) -> VolumeId {
        let name = format!("walk-{}", uuid::Uuid::now_v7().simple());
        let new = NewVolume {
            id: VolumeId::new(),
            owner,
            spec: VolumeSpec::from_stored(VolumeName::parse(&name).unwrap(), 1, Default::default()),
            node: "local".to_owned(),
            quota_mode: QuotaMode::Soft,
        };
        let created = self
            .store
            .create_volume_within_quota(new, VolumeQuota::UNLIMITED);
        created.await.unwrap().id
    }

    /// A folder row granted to `owner` (its path need not exist: the walk never mounts it).
    pub(crate) async fn folder(&self, owner: UserId) -> FolderId {
        let name = format!("walk-{}", uuid::Uuid::now_v7().simple());
        let new = NewFolder {
            name: FolderName::parse(&name).unwrap(),
            path: format!("/walk/{name}"),
            realpath: format!("/walk/{name}").into(),
            mode: FolderMode::ReadOnly,
            grants: vec![owner],
            created_by: None,
        };
        self.store.create_folder(new).await.unwrap().id
    }

    /// Disables `user`.
    pub(crate) async fn disable(&self, user: UserId) {
        let update = UserUpdate {
            role: None,
            disabled: Some(true),
        };
        self.store.update_user(user, update).await.unwrap();
    }
}

/// Asserts the status and the error code.
#[track_caller]
pub(crate) fn assert_error(reply: &Reply, status: StatusCode, code: &str) {
    assert_eq!(reply.status, status, "body: {}", reply.text);
    assert_eq!(reply.body["error"], code, "body: {}", reply.text);
}
