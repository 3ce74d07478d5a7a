//! The controller's admin client against the real proxy's admin API over mutual TLS (in
//! process, on loopback, certificates from `airlock_certs::init`): an unbound pool member is
//! registered, its traffic is refused `sandbox_not_claimed`, a claim binds its address to a
//! sandbox, a stale or foreign claim is refused, and a removal frees the address.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use airlock::egress::admin::AdminClient;
use airlock::egress::EgressError;
use airlock_egress::admin::{load_admin_tls, serve_admin, AdminState};
use airlock_egress::config::{self, Config};
use airlock_egress::infra::{InfraSet, SystemInterfaces};
use airlock_egress::ledger::Ledger;
use airlock_egress::metrics::Metrics;
use airlock_egress::registry::{basic_credential, credential_hash, Registry};
use airlock_egress::resolve::{DnsStatus, StaticResolve};
use airlock_egress::{serve, Services};
use airlock_wire::{PutMember, PutOutcome, PutSandbox};
use test_support::upstream::EchoServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket};
use tokio::task::JoinHandle;

/// The member's source address.
const MEMBER_SRC: &str = "127.0.0.6";

struct RealProxy {
    proxy: SocketAddr,
    client: AdminClient,
    echo: EchoServer,
    tasks: Vec<JoinHandle<std::io::Result<()>>>,
    _certs: tempfile::TempDir,
}

impl Drop for RealProxy {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

async fn real_proxy() -> RealProxy {
    let certs = tempfile::tempdir().unwrap();
    let loopback: IpAddr = "127.0.0.1".parse().unwrap();
    airlock_certs::init(
        &airlock_certs::InitOptions::new(certs.path()).san(airlock_certs::San::Ip(loopback)),
    )
    .unwrap();
    let echo = EchoServer::start("127.0.0.2:0".parse().unwrap())
        .await
        .unwrap();
    let vars = HashMap::from([
        (config::ENV_MODE, "controlled".to_owned()),
        (config::ENV_LISTEN, "127.0.0.1:0".to_owned()),
        (config::ENV_ALLOW_CIDRS, "127.0.0.2/32".to_owned()),
    ]);
    let config = Config::from_lookup(|k| vars.get(k).cloned()).unwrap();
    let infra = InfraSet::new(vec![], &[config.listen], Box::new(SystemInterfaces));
    infra.refresh().unwrap();
    let state = AdminState {
        registry: Arc::new(Registry::controlled()),
        ledger: Arc::new(Ledger::with_limits(
            config.spool_capacity,
            config.spool_per_sandbox,
        )),
        metrics: Arc::new(Metrics::new()),
        infra: Arc::new(infra),
        dns: DnsStatus::Configured,
        upstream_ca: Vec::new(),
    };
    let services = Services {
        resolver: Arc::new(StaticResolve::new()),
        registry: Arc::clone(&state.registry),
        ledger: Arc::clone(&state.ledger),
        metrics: Arc::clone(&state.metrics),
        infra: Arc::clone(&state.infra),
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy = listener.local_addr().unwrap();
    let proxy_task = tokio::spawn(serve(
        listener,
        Arc::new(config),
        services,
        std::future::pending(),
    ));
    let admin_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = admin_listener.local_addr().unwrap();
    let tls = load_admin_tls(&certs.path().join("server")).unwrap();
    let admin_task = tokio::spawn(serve_admin(
        admin_listener,
        Some(tls),
        state,
        std::future::pending(),
    ));
    let client = AdminClient::new(admin, &certs.path().join("client")).unwrap();
    RealProxy {
        proxy,
        client,
        echo,
        tasks: vec![proxy_task, admin_task],
        _certs: certs,
    }
}

impl RealProxy {
    /// `CONNECT echo` from `src` with sandbox `id`'s credential: (status, error code).
    async fn connect(&self, src: &str, id: &str) -> (u16, String) {
        let socket = TcpSocket::new_v4().unwrap();
        socket
            .bind(SocketAddr::new(src.parse().unwrap(), 0))
            .unwrap();
        let mut stream = socket.connect(self.proxy).await.unwrap();
        let target = self.echo.addr();
        let head = format!(
            "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nProxy-Authorization: {}\r\n\r\n",
            basic_credential(id, &format!("token-{id}"))
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        let mut byte = [0u8; 1];
        while !raw.ends_with(b"\r\n\r\n") {
            let n =
                tokio::time::timeout(std::time::Duration::from_secs(10), stream.read(&mut byte))
                    .await
                    .unwrap()
                    .unwrap();
            assert_eq!(n, 1, "closed before the head ended");
            raw.push(byte[0]);
        }
        let raw = String::from_utf8(raw).unwrap();
        let status: u16 = raw.split(' ').nth(1).unwrap().parse().unwrap();
        if status == 200 {
            return (status, String::new());
        }
        // The proxy keeps the connection: read exactly the announced body.
        let length: usize = raw
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0);
        let mut body = vec![0u8; length];
        stream.read_exact(&mut body).await.unwrap();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        (
            status,
            json["error"].as_str().unwrap_or_default().to_owned(),
        )
    }

    fn entry(&self, id: &str, generation: u64) -> PutSandbox {
        let policy = serde_json::json!({ "allow_ports": [self.echo.addr().port()] });
        PutSandbox {
            sandbox_id: None,
            source_addrs: vec![MEMBER_SRC.parse().unwrap()],
            credential_hash: credential_hash(&format!("token-{id}")),
            policy: Some(serde_json::from_value(policy).unwrap()),
            generation,
            ceiling: None,
            inspection: None,
            member: None,
        }
    }
}

fn refused_with(result: Result<impl std::fmt::Debug, EgressError>, code: &str) {
    match result {
        Err(EgressError::Admin {
            status: 409,
            message,
        }) => {
            assert!(message.contains(&format!("\"{code}\"")), "{message}");
        }
        other => panic!("expected a 409 {code}, got {other:?}"),
    }
}

#[tokio::test]
async fn the_admin_client_registers_claims_and_removes_members() {
    let p = real_proxy().await;
    let member = PutMember {
        source_addrs: vec![MEMBER_SRC.parse().unwrap()],
        generation: 1,
    };
    let reply = p.client.put_member("m1", &member).await.unwrap();
    assert_eq!(reply.outcome, PutOutcome::Created);
    assert_eq!(p.client.list_members().await.unwrap().members.len(), 1);

    // Unclaimed: even a sandbox's valid credential is refused, and nothing reaches upstream.
    p.client
        .put_sandbox("other", &{
            let mut other = p.entry("other", 1);
            other.source_addrs = vec!["127.0.0.7".parse().unwrap()];
            other
        })
        .await
        .unwrap();
    assert_eq!(
        p.connect(MEMBER_SRC, "other").await,
        (403, "sandbox_not_claimed".to_owned())
    );
    assert_eq!(p.echo.connections(), 0);

    // The claim: the member's address becomes sandbox s1's.
    let bound = p.client.bind_member("s1", "m1", &p.entry("s1", 1)).await;
    assert_eq!(bound.unwrap().outcome, PutOutcome::Created);
    assert!(p.client.list_members().await.unwrap().members.is_empty());
    assert_eq!(p.connect(MEMBER_SRC, "s1").await, (200, String::new()));
    let again = p.client.bind_member("s1", "m1", &p.entry("s1", 1)).await;
    assert_eq!(again.unwrap().outcome, PutOutcome::Unchanged);
    refused_with(
        p.client.bind_member("s1", "m1", &p.entry("s1", 0)).await,
        "stale_generation",
    );
    refused_with(
        p.client.bind_member("s2", "m1", &p.entry("s2", 1)).await,
        "address_in_use",
    );

    // Removal: the sandbox goes, and a fresh member on the address is refused again.
    p.client.delete_member("m1").await.unwrap();
    p.client.delete_sandbox("s1").await.unwrap();
    assert_eq!(
        p.connect(MEMBER_SRC, "s1").await,
        (403, "unknown_source".to_owned())
    );
    let member = PutMember {
        generation: 2,
        ..member
    };
    p.client.put_member("m2", &member).await.unwrap();
    assert_eq!(
        p.connect(MEMBER_SRC, "s1").await,
        (403, "sandbox_not_claimed".to_owned())
    );
    p.client.delete_member("m2").await.unwrap();
    p.client.delete_member("m2").await.unwrap();
    assert!(p.client.list_members().await.unwrap().members.is_empty());
}
