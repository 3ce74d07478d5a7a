//! Setup shared by the controller's integration tests: store rows (a fresh member, a fresh
//! sandbox) and the in-process app (`app(state).oneshot(..)` over in-memory SQLite with a
//! Docker client pointed at a loopback port where nothing listens). Each test crate uses only
//! part of it.
#![allow(
    dead_code,
    unused_imports,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

pub(crate) mod backends;
pub(crate) mod upgrade;

use std::collections::HashMap;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use airlock::accounts::bootstrap_admin;
use airlock::accounts::credential::{NewToken, TokenKind};
use airlock::accounts::user::{Role, UserId};
use airlock::api::{AppState, Auth};
use airlock::config::{Config, DockerConfig, Secret};
use airlock::docker::DockerClient;
use airlock::egress::EgressPlane;
use airlock::sandbox::{Cpus, Limits, Maximums, SandboxRequest};
use airlock::secrets::vault::{KeySource, SecretKey, Vault};
use airlock::services::{Services, Settings};
use airlock::store::{Created, NewSandbox, NewUser, Sandbox, Store, User};
use tokio::net::TcpSocket;

/// Generous maximums for specs validated outside a config.
pub(crate) fn maximums() -> Maximums {
    Maximums {
        limits: Limits {
            cpus: Cpus::from_millis(4000),
            memory_mb: 4096,
            pids: 1024,
            disk_mb: None,
        },
        timeout: Duration::from_secs(3600),
        default_timeout: Duration::from_secs(600),
    }
}

/// A fresh member named `name`, with a unique email.
pub(crate) async fn user(store: &Store, name: &str) -> User {
    store
        .create_user(NewUser {
            email: format!("{name}-{}@example.test", uuid::Uuid::new_v4()),
            display_name: name.into(),
            role: Role::Member,
        })
        .await
        .unwrap()
}

/// A fresh user with `role` and a 1-hour login session for them.
pub(crate) async fn account(store: &Store, name: &str, role: Role) -> (User, String) {
    let user = store
        .create_user(NewUser {
            email: format!("{name}-{}@example.test", uuid::Uuid::new_v4()),
            display_name: name.into(),
            role,
        })
        .await
        .unwrap();
    let token = NewToken::generate(TokenKind::Session);
    let until = time::OffsetDateTime::now_utc() + Duration::from_secs(3600);
    store
        .create_session(user.id, &token.hash, until)
        .await
        .unwrap();
    (user, token.text)
}

/// A fresh member named `name` and a fresh sandbox row of theirs (`airlock/testbox:dev`, no
/// node, no container), validated against small maximums (1 CPU, 512 MB, 64 pids, a 60 s
/// default timeout).
pub(crate) async fn sandbox(store: &Store, name: &str) -> Sandbox {
    let owner = user(store, name).await;
    let maximums = Maximums {
        limits: Limits {
            cpus: Cpus::from_millis(1000),
            memory_mb: 512,
            pids: 64,
            disk_mb: None,
        },
        timeout: Duration::from_secs(600),
        default_timeout: Duration::from_secs(60),
    };
    let spec = SandboxRequest {
        image: "airlock/testbox:dev".into(),
        ..SandboxRequest::default()
    }
    .validate(&maximums)
    .unwrap();
    let new = NewSandbox {
        owner: owner.id,
        spec,
        idempotency_key: None,
        node: None,
    };
    match store.create_sandbox(new).await.unwrap() {
        Created::New(sandbox) => sandbox,
        Created::Existing(_) => panic!("a fresh sandbox"),
    }
}

/// How [`app_with`] builds the app; the default has no admin token, no variables and no vault.
#[derive(Default)]
pub(crate) struct AppOptions<'a> {
    /// The admin's bearer token.
    pub(crate) token: Option<&'a str>,
    /// The environment the config is read from (nothing else is).
    pub(crate) vars: &'a [(&'a str, &'a str)],
    /// Opens a vault with a fresh key.
    pub(crate) vault: bool,
    /// Puts the service behind an egress plane built from the config (its admin TLS files go
    /// under `AIRLOCK_DATA_DIR`, which the vars must then set).
    pub(crate) egress: bool,
}

/// The app's state over in-memory SQLite, and what the tests reach behind it.
pub(crate) struct TestApp {
    pub(crate) state: AppState,
    pub(crate) store: Store,
    /// The Docker client, pointed at a port that refuses connections.
    pub(crate) docker: DockerClient,
    pub(crate) config: Config,
    pub(crate) admin: UserId,
    /// The egress plane, with [`AppOptions::egress`].
    pub(crate) plane: Option<EgressPlane>,
    // Holds the loopback port bound but not listening, so connections to it are refused.
    _closed: TcpSocket,
}

/// A fresh app: a new in-memory store with the bootstrap admin, the config read from
/// `options.vars`, and Docker at a loopback port that refuses connections.
pub(crate) async fn app_with(options: AppOptions<'_>) -> TestApp {
    let closed = TcpSocket::new_v4().unwrap();
    closed
        .bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .unwrap();
    let port = closed.local_addr().unwrap().port();
    let docker = DockerClient::new(&DockerConfig::InsecureTcp {
        host: "127.0.0.1".to_owned(),
        port,
    })
    .unwrap();
    let store = Store::sqlite_in_memory().await.unwrap();
    let admin = bootstrap_admin(&store).await.unwrap();
    let vars: HashMap<String, String> = options
        .vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let config = Config::from_lookup(|var| vars.get(var).cloned()).unwrap();
    let plane = options.egress.then(|| {
        EgressPlane::from_config(&config, docker.clone(), store.clone(), "local")
            .unwrap()
            .unwrap()
    });
    let mut services = Services::builder(
        store.clone(),
        docker.clone(),
        Settings::from_config(&config),
    );
    if let Some(plane) = &plane {
        services = services.egress(plane.clone());
    }
    if options.vault {
        let vault = Vault::open(&store, &SecretKey::generate(), &KeySource::Env)
            .await
            .unwrap();
        services = services.vault(vault);
    }
    let auth = Auth::new(options.token.map(Secret::new), admin);
    TestApp {
        state: AppState::new(services.build(), auth),
        store,
        docker,
        config,
        admin,
        plane,
        _closed: closed,
    }
}

/// Calls the in-process API as `token`; returns the status and the JSON body (`Null` when the
/// body is not JSON).
pub(crate) async fn call(
    h: &TestApp,
    token: &str,
    method: axum::http::Method,
    uri: &str,
    body: Option<serde_json::Value>,
) -> (axum::http::StatusCode, serde_json::Value) {
    let request = axum::http::Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(body.map_or_else(axum::body::Body::empty, |b| {
            axum::body::Body::from(b.to_string())
        }))
        .unwrap();
    let response = tower::ServiceExt::oneshot(airlock::api::app(h.state.clone()), request)
        .await
        .unwrap();
    let status = response.status();
    let bytes = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    )
}

/// Runs the `airlock` binary with `args`, only `vars` in its environment, and `stdin` written
/// to its standard input; waits for it to end.
pub(crate) fn airlock(args: &[&str], vars: &[(&str, &str)], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(args)
        .env_clear()
        .envs(vars.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}
