//! The network plane wired to a real DinD, for e2e tests that send traffic through the real
//! `airlock-egress` container: the controller's service and API in-process, the proxy
//! bootstrapped by the controller inside the DinD, a fake DNS and a test "internet".
//!
//! Topology (both networks sealed: nothing leaves them):
//! - the **node network** holds the DinD (`.2`) and the fake DNS (`.53`); the controller runs
//!   on the host, whose bridge address (`.1`) is its address as the node sees it. The node
//!   network is infrastructure: no sandbox may reach anything on it through the proxy;
//! - the **internet** network holds the upstream HTTP server (`.80`); the DinD is attached to it
//!   too (`.2`), so the proxy's NATed traffic reaches the upstream directly. The operator
//!   exception `AIRLOCK_EGRESS_ALLOW_CIDRS` admits exactly the upstream's address.
//!
//! Requests are made from inside sandboxes with busybox `nc` (the testbox has no HTTP client),
//! through the sandbox's own `HTTP_PROXY` and credential.
// This is test harness code: a failed step must fail the calling test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use airlock::api::{AppState, Auth};
use airlock::config::DEFAULT_NODE;
use airlock::docker::spec::egress::EGRESS_CONTAINER;
use airlock::egress::EgressPlane;
use airlock::secrets::vault::{SecretKey, Vault};
use airlock::services::{Services, Settings};
use axum::http::{Method, StatusCode};
use base64::Engine as _;
use bollard::query_parameters::InspectContainerOptions;
use serde_json::{json, Value};
use test_support::dind::{Dind, DindOptions, DIND_IMAGE, PROBE_IMAGE, TESTBOX_IMAGE};
use test_support::sealed::{OuterContainer, OuterSpec, SealedNet};

use crate::controller::{parts, Parts};
use crate::Timing;

/// The admin token of every plane fixture.
pub const TOKEN: &str = "e2e-admin-token-0123456789";
/// The egress proxy image.
pub const EGRESS_IMAGE: &str = "airlock/egress:dev";
/// How long any poll here waits.
pub const LIMIT: Duration = Duration::from_secs(30);
/// The upstream's host number on the internet network.
pub const UPSTREAM_HOST: u8 = 80;
/// The TLS upstream's host number on the internet network (next to the upstream, so one
/// `/31` exception admits both).
pub const TLS_UPSTREAM_HOST: u8 = 81;
/// The image the TLS upstream runs in (for its Python).
pub const AGENT_IMAGE: &str = "airlock/agent:dev";

/// What a fixture needs besides the defaults.
#[derive(Debug, Clone)]
pub struct PlaneOptions {
    /// The test's name (DinD and network names).
    pub test: &'static str,
    /// The `fake-dns` binary (`env!("CARGO_BIN_EXE_fake-dns")` in the test).
    pub fake_dns: PathBuf,
    /// Extra fake-DNS answers, `NAME=IP[,IP]` or `NAME=IP/IP` (rebinding); `{upstream}`,
    /// `{dind}` and `{gateway}` are replaced by those addresses.
    pub names: Vec<String>,
    /// Extra `AIRLOCK_*` variables for the controller.
    pub env: Vec<(String, String)>,
    /// A directory with `cert.pem`, `key.pem`, `github-cert.pem` and `github-key.pem`: runs a
    /// TLS echo and Git server (the agent image's Python and Git) at [`TLS_UPSTREAM_HOST`] on
    /// the internet network, admitted like the upstream.
    /// `{tls_upstream}` in `names` is its address.
    pub tls_upstream: Option<PathBuf>,
}

/// The running fixture. Fields drop in order: the DinD (and its node network) before the
/// internet network it is attached to.
#[derive(Debug)]
pub struct Plane {
    /// The node.
    pub dind: Dind,
    /// The API's state.
    pub state: AppState,
    /// The network plane (tests drive its pulls and syncs directly).
    pub plane: EgressPlane,
    /// The controller's configuration.
    pub config: airlock::config::Config,
    /// The controller's store.
    pub store: airlock::store::Store,
    /// The controller's Docker client.
    pub docker: airlock::docker::DockerClient,
    /// The upstream's address.
    pub upstream: Ipv4Addr,
    _dns: OuterContainer,
    _upstream: OuterContainer,
    _tls_upstream: Option<OuterContainer>,
    _internet: SealedNet,
    _dir: tempfile::TempDir,
    _data: tempfile::TempDir,
    /// The bootstrap admin (the admin token's user).
    pub admin: airlock::accounts::user::UserId,
}

/// An API answer.
#[derive(Debug)]
pub struct Reply {
    /// The status.
    pub status: StatusCode,
    /// The JSON body (`Null` when not JSON).
    pub body: Value,
}

/// One proxied exchange from inside a sandbox.
#[derive(Debug)]
pub struct Proxied {
    /// The status code (0: no answer).
    pub status: u16,
    /// The status line and headers.
    pub head: String,
    /// The body.
    pub body: String,
}

// === impl PlaneOptions ===

impl PlaneOptions {
    /// Defaults for `test`.
    pub fn new(test: &'static str, fake_dns: impl Into<PathBuf>) -> Self {
        Self {
            test,
            fake_dns: fake_dns.into(),
            names: Vec::new(),
            env: Vec::new(),
            tls_upstream: None,
        }
    }
}

// === impl Plane ===

impl Plane {
    /// Networks, upstream, DNS, DinD with the images, the controller's parts, and the proxy
    /// bootstrapped by the plane.
    pub async fn start(opts: PlaneOptions, timing: &mut Timing) -> Plane {
        let internet = SealedNet::create(&format!("{}-inet", opts.test))
            .await
            .unwrap();
        let upstream_ip = internet.host(UPSTREAM_HOST);
        let upstream = internet.run(upstream_spec(upstream_ip)).await.unwrap();
        let tls_ip = internet.host(TLS_UPSTREAM_HOST);
        let tls_upstream = match &opts.tls_upstream {
            Some(dir) => Some(internet.run(tls_upstream_spec(tls_ip, dir)).await.unwrap()),
            None => None,
        };
        let node_net = SealedNet::create(opts.test).await.unwrap();
        let dns_ip = node_net.host(SealedNet::DNS_HOST);
        let dind_ip = node_net.host(SealedNet::DIND_HOST);
        let names: Vec<String> = opts
            .names
            .iter()
            .map(|n| {
                n.replace("{upstream}", &upstream_ip.to_string())
                    .replace("{tls_upstream}", &tls_ip.to_string())
                    .replace("{dind}", &dind_ip.to_string())
                    .replace("{gateway}", &node_net.gateway().to_string())
            })
            .collect();
        let dns = start_dns(&node_net, &opts.fake_dns, dns_ip, &names).await;
        let dind = Dind::start_on(node_net, DindOptions::new(opts.test))
            .await
            .unwrap();
        internet
            .attach(dind.container_name(), internet.host(SealedNet::DIND_HOST))
            .await
            .unwrap();
        timing.phase("dind-start");
        for image in [TESTBOX_IMAGE, EGRESS_IMAGE, PROBE_IMAGE] {
            dind.load_image(image).await.unwrap();
        }
        timing.phase("load-images");
        let data = tempfile::tempdir().unwrap();
        let mut extra = opts.env.clone();
        if opts.tls_upstream.is_some() {
            let both = format!("{upstream_ip}/31");
            extra.push(("AIRLOCK_EGRESS_ALLOW_CIDRS".to_owned(), both));
        }
        let env = controller_env(&dind, data.path(), upstream_ip, dns_ip, &extra);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let Parts {
            dir,
            config,
            store,
            docker,
            admin,
        } = parts(&dind, &env).await;
        let plane = EgressPlane::from_config(&config, docker.clone(), store.clone(), DEFAULT_NODE)
            .unwrap()
            .unwrap();
        let started = Instant::now();
        if let Err(error) = plane.ensure().await {
            panic!("egress bootstrap: {error}\n{}", proxy_logs(&dind).await);
        }
        eprintln!("egress bootstrap: {:?}", started.elapsed());
        timing.phase("egress-bootstrap");
        let services = Services::builder(
            store.clone(),
            docker.clone(),
            Settings::from_config(&config),
        )
        .egress(plane.clone())
        .vault(Vault::new(&SecretKey::generate()))
        .build();
        let auth = Auth::new(Some(airlock::config::Secret::new(TOKEN)), admin);
        Plane {
            dind,
            state: AppState::new(services, auth),
            plane,
            config,
            store,
            docker,
            upstream: upstream_ip,
            _dns: dns,
            _upstream: upstream,
            _tls_upstream: tls_upstream,
            _internet: internet,
            _dir: dir,
            _data: data,
            admin,
        }
    }

    /// What the TLS upstream logged: one JSON line per request it answered.
    pub async fn tls_upstream_log(&self) -> String {
        match &self._tls_upstream {
            Some(upstream) => upstream.stdout().await.unwrap(),
            None => String::new(),
        }
    }

    /// Calls the API with the admin token.
    pub async fn call(&self, method: Method, uri: &str, body: Option<Value>) -> Reply {
        self.call_as(TOKEN, method, uri, body).await
    }

    /// Calls the API with `token`.
    pub async fn call_as(
        &self,
        token: &str,
        method: Method,
        uri: &str,
        body: Option<Value>,
    ) -> Reply {
        let (status, body) =
            crate::controller::api_call(&self.state, token, method, uri, body).await;
        Reply { status, body }
    }

    /// Creates a `sleep 300` sandbox as the admin with `policy` (omitted when `Null`); returns
    /// its id.
    pub async fn create(&self, policy: Value) -> String {
        let created = self.try_create(TOKEN, policy, &["sleep", "300"]).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
        assert_eq!(created.body["state"], "running");
        created.body["id"].as_str().unwrap().to_owned()
    }

    /// `POST /v1/sandboxes` as `token` running `cmd`, with `policy` unless it is `Null`.
    pub async fn try_create(&self, token: &str, policy: Value, cmd: &[&str]) -> Reply {
        let mut body = json!({"image": TESTBOX_IMAGE, "cmd": cmd});
        if !policy.is_null() {
            body["policy"] = policy;
        }
        self.call_as(token, Method::POST, "/v1/sandboxes", Some(body))
            .await
    }

    /// The proxy address and the `Proxy-Authorization` value from the sandbox's environment
    /// (its workload's, through an exec: the container's `Config.Env` holds nothing per-run).
    pub async fn credential(&self, id: &str) -> (SocketAddr, String) {
        let proxy = self.exec(id, &["sh", "-c", "echo \"$HTTP_PROXY\""]).await;
        let url = proxy
            .trim()
            .strip_prefix("http://")
            .unwrap_or_else(|| panic!("no HTTP_PROXY in sandbox {id}: {proxy:?}"))
            .to_owned();
        let (userinfo, addr) = url.split_once('@').unwrap();
        let basic = base64::engine::general_purpose::STANDARD.encode(userinfo);
        (addr.parse().unwrap(), format!("Basic {basic}"))
    }

    /// The sandbox's own address (the `.3` of its /29).
    pub async fn address(&self, id: &str) -> Ipv4Addr {
        let (proxy, _) = self.credential(id).await;
        let IpAddr::V4(proxy) = proxy.ip() else {
            panic!("an IPv6 proxy address")
        };
        Ipv4Addr::from(u32::from(proxy) + 1)
    }

    /// `GET url` through the proxy from inside sandbox `id`.
    pub async fn fetch(
        &self,
        id: &str,
        proxy: SocketAddr,
        url: &str,
        cred: Option<&str>,
    ) -> Proxied {
        let host = url.trim_start_matches("http://").split('/').next().unwrap();
        let auth = cred.map_or_else(String::new, |c| format!("Proxy-Authorization: {c}\r\n"));
        let request =
            format!("GET {url} HTTP/1.1\r\nHost: {host}\r\n{auth}Connection: close\r\n\r\n");
        self.send(id, proxy, &request).await
    }

    /// `CONNECT authority` through the proxy from inside sandbox `id`; only the proxy's answer
    /// to the `CONNECT` is read (a tunnel that opens gets nothing sent through it).
    pub async fn connect(
        &self,
        id: &str,
        proxy: SocketAddr,
        authority: &str,
        cred: &str,
    ) -> Proxied {
        let request = format!(
            "CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\nProxy-Authorization: {cred}\r\n\r\n"
        );
        self.send(id, proxy, &request).await
    }

    /// Sends raw `request` bytes to the proxy from inside `id` with busybox `nc` and reads
    /// the answer (`nc` half-closes at the end of its input; the proxy still answers).
    pub async fn send(&self, id: &str, proxy: SocketAddr, request: &str) -> Proxied {
        let script = "printf '%s' \"$1\" | nc -w 5 \"$2\" \"$3\"";
        let out = self
            .exec(
                id,
                &[
                    "sh",
                    "-c",
                    script,
                    "sh",
                    request,
                    &proxy.ip().to_string(),
                    &proxy.port().to_string(),
                ],
            )
            .await;
        let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        Proxied {
            status,
            head: if out.is_empty() {
                "<no answer>".to_owned()
            } else {
                head.to_owned()
            },
            body: body.to_owned(),
        }
    }

    /// Runs `cmd` in sandbox `id` (as the admin) and returns its stdout.
    pub async fn exec(&self, id: &str, cmd: &[&str]) -> String {
        let body = json!({"cmd": cmd, "timeout_s": 20});
        let reply = self
            .call(
                Method::POST,
                &format!("/v1/sandboxes/{id}/exec"),
                Some(body),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        reply.body["stdout"].as_str().unwrap_or_default().to_owned()
    }

    /// Polls the ledger until it holds at least `at_least` events for `id` (pulling on each
    /// round).
    pub async fn ledger(&self, id: &str, at_least: usize) -> Vec<Value> {
        let deadline = Instant::now() + LIMIT;
        loop {
            self.plane.pull_ledger().await.unwrap();
            let uri = format!("/v1/sandboxes/{id}/egress?limit=1000");
            let reply = self.call(Method::GET, &uri, None).await;
            assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
            let items = reply.body["items"].as_array().unwrap().clone();
            if items.len() >= at_least {
                return items;
            }
            assert!(Instant::now() < deadline, "ledger of {id}: {items:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Restarts the proxy container and polls until it serves again under a new boot id,
    /// which it returns. It does not re-push: until [`EgressPlane::ensure`] runs, the proxy
    /// holds no entry (every sandbox is denied).
    pub async fn restart_proxy(&self) -> String {
        let old_boot = self.plane.synced_boot_id().await.unwrap();
        self.dind
            .docker()
            .restart_container(EGRESS_CONTAINER, None)
            .await
            .unwrap();
        poll(|| async {
            let health = self.plane.admin().health().await.ok()?;
            (health.boot_id != old_boot).then_some(health.boot_id)
        })
        .await
    }

    /// The node network's gateway: the host, where the in-process controller listens.
    pub fn controller_ip(&self) -> Ipv4Addr {
        self.dind.outer_network().gateway()
    }
}

/// The JSON `error` code of a proxied answer.
pub fn error_code(p: &Proxied) -> String {
    serde_json::from_str::<Value>(&p.body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("<no JSON: {}>", p.head))
}

/// Polls `f` until it returns `Some`, for at most [`LIMIT`].
pub async fn poll<T, F, Fut>(mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + LIMIT;
    loop {
        if let Some(value) = f().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "condition not met within {LIMIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The proxy container's state, log and the node's firewall, for failure messages.
pub async fn proxy_logs(dind: &Dind) -> String {
    use futures_util::StreamExt;
    let state = dind
        .docker()
        .inspect_container(EGRESS_CONTAINER, None::<InspectContainerOptions>)
        .await
        .map(|c| format!("{:?}", c.state))
        .unwrap_or_else(|e| e.to_string());
    let options = bollard::query_parameters::LogsOptions {
        stdout: true,
        stderr: true,
        tail: "50".to_owned(),
        ..Default::default()
    };
    let mut logs = dind.docker().logs(EGRESS_CONTAINER, Some(options));
    let mut out = format!("proxy state: {state}\n");
    for cmd in [
        &["iptables", "-t", "nat", "-S"][..],
        &["iptables", "-S"][..],
        &["busybox", "netstat", "-ltn"][..],
        &["ip", "-4", "addr"][..],
    ] {
        if let Ok(o) = dind.exec_in_dind(cmd).await {
            out.push_str(&format!("$ {cmd:?}\n{}{}\n", o.stdout, o.stderr));
        }
    }
    while let Some(Ok(chunk)) = logs.next().await {
        out.push_str(&chunk.to_string());
    }
    out
}

/// A busybox HTTP server: `/` says hello, `/big` is 2 MB.
fn upstream_spec(ip: Ipv4Addr) -> OuterSpec {
    let script = "mkdir -p /www && echo hello-from-upstream > /www/index.html \
        && head -c 2000000 /dev/zero > /www/big && exec busybox httpd -f -p 80 -h /www";
    OuterSpec::new("upstream", DIND_IMAGE, &["-c", script])
        .entrypoint("/bin/sh")
        .ip(ip)
}

/// A TLS server answering every GET and POST with JSON naming the path and the credential
/// headers it received (`x-api-key`, `authorization`), with `/tls/{cert,key}.pem`; it also
/// prints that JSON, one line per request, to its log. For SNI `github.com` it serves
/// `/tls/github-{cert,key}.pem` and Git's smart HTTP (`git http-backend`) for the bare
/// repository `org/repo.git` (one commit), to a `Basic x-access-token:…` caller only (401
/// otherwise, as GitHub answers).
const TLS_ECHO: &str = r#"
import base64, http.server, json, os, ssl, subprocess
# A bare repository for the smart-HTTP backend, with one commit.
os.makedirs('/srv/git/org', exist_ok=True)
subprocess.run('git init -q --bare /srv/git/org/repo.git && git -C /srv/git/org/repo.git config http.receivepack true '
    '&& git init -q /tmp/seed && cd /tmp/seed && echo seeded > README && git add README '
    '&& git -c user.name=t -c user.email=t@t commit -qm seed && git push -q /srv/git/org/repo.git HEAD:refs/heads/main '
    '&& git -C /srv/git/org/repo.git symbolic-ref HEAD refs/heads/main', shell=True, check=True)
class H(http.server.BaseHTTPRequestHandler):
    def reply(self):
        n = int(self.headers.get('content-length') or 0)
        data = self.rfile.read(n)
        seen = {k: self.headers.get(k) for k in ('x-api-key', 'authorization')}
        seen['path'] = self.path
        seen['host'] = self.headers.get('host')
        print(json.dumps(seen), flush=True)
        if self.headers.get('host', '').startswith('github.com'):
            return self.git(data)
        body = json.dumps(seen).encode()
        self.send_response(200)
        self.send_header('content-type', 'application/json')
        self.send_header('content-length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def git(self, data):
        auth = self.headers.get('authorization') or ''
        user = ''
        if auth.startswith('Basic '):
            user = base64.b64decode(auth[6:]).decode(errors='replace').split(':', 1)[0]
        if user != 'x-access-token':
            self.send_response(401)
            self.send_header('www-authenticate', 'Basic realm="git"')
            self.send_header('content-length', '0')
            self.end_headers()
            return
        path, _, query = self.path.partition('?')
        env = dict(os.environ, GIT_PROJECT_ROOT='/srv/git', GIT_HTTP_EXPORT_ALL='1',
                   PATH_INFO=path, QUERY_STRING=query, REQUEST_METHOD=self.command,
                   CONTENT_TYPE=self.headers.get('content-type') or '',
                   CONTENT_LENGTH=str(len(data)), REMOTE_USER=user, REMOTE_ADDR='127.0.0.1',
                   HTTP_CONTENT_ENCODING=self.headers.get('content-encoding') or '',
                   GIT_PROTOCOL=self.headers.get('git-protocol') or '')
        out = subprocess.run(['git', 'http-backend'], input=data, env=env, capture_output=True).stdout
        head, _, body = out.partition(b'\r\n\r\n')
        status = 200
        headers = []
        for line in head.decode().split('\r\n'):
            name, _, value = line.partition(':')
            if name.lower() == 'status':
                status = int(value.strip().split()[0])
            elif name:
                headers.append((name, value.strip()))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header('content-length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    do_GET = do_POST = reply
server = http.server.ThreadingHTTPServer(('0.0.0.0', 443), H)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain('/tls/cert.pem', '/tls/key.pem')
github = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
github.load_cert_chain('/tls/github-cert.pem', '/tls/github-key.pem')
def pick(sock, name, _context):
    if name == 'github.com':
        sock.context = github
context.sni_callback = pick
server.socket = context.wrap_socket(server.socket, server_side=True)
print('listening', flush=True)
server.serve_forever()
"#;

fn tls_upstream_spec(ip: Ipv4Addr, dir: &Path) -> OuterSpec {
    OuterSpec::new("tls-upstream", AGENT_IMAGE, &["-c", TLS_ECHO])
        .entrypoint("python3")
        .user("0:0")
        .bind_ro(dir, "/tls")
        .ip(ip)
}

/// The controller's variables: the DinD over mTLS, the operator exception for exactly the
/// upstream, the fake DNS, and the self-test's view of the node.
fn controller_env(
    dind: &Dind,
    data: &Path,
    upstream: Ipv4Addr,
    dns: Ipv4Addr,
    extra: &[(String, String)],
) -> Vec<(String, String)> {
    let controller = SocketAddr::new(IpAddr::V4(dind.outer_network().gateway()), 8080);
    let mut env: Vec<(String, String)> = [
        ("AIRLOCK_DOCKER_HOST", format!("tcp://{}:2376", dind.ip())),
        (
            "AIRLOCK_DOCKER_CERT_PATH",
            dind.cert_dir().join("client").display().to_string(),
        ),
        ("AIRLOCK_STOP_GRACE", "1s".to_owned()),
        ("AIRLOCK_DATA_DIR", data.display().to_string()),
        ("AIRLOCK_EGRESS_ALLOW_CIDRS", format!("{upstream}/32")),
        ("AIRLOCK_EGRESS_DNS", format!("{dns}:53")),
        (
            "AIRLOCK_SELFTEST_UPSTREAM",
            SocketAddr::new(IpAddr::V4(upstream), 80).to_string(),
        ),
        ("AIRLOCK_SELFTEST_NODE_ADDRS", dind.ip().to_string()),
        ("AIRLOCK_SELFTEST_CONTROLLER", controller.to_string()),
        (
            "AIRLOCK_INIT_BINARY",
            crate::init_binary().display().to_string(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    env.extend(extra.iter().cloned());
    env
}

/// Runs `fake-dns` on the node network at `ip` with `names` and waits until it listens.
async fn start_dns(
    net: &SealedNet,
    binary: &Path,
    ip: Ipv4Addr,
    names: &[String],
) -> OuterContainer {
    let args: Vec<&str> = names.iter().map(String::as_str).collect();
    let spec = OuterSpec::new("fake-dns", DIND_IMAGE, &args)
        .entrypoint("/fake-dns")
        .bind_ro(binary, "/fake-dns")
        .ip(ip);
    let dns = net.run(spec).await.unwrap();
    let deadline = Instant::now() + LIMIT;
    loop {
        let out = dns.stdout().await.unwrap();
        if out.contains("LISTENING") {
            return dns;
        }
        assert!(
            Instant::now() < deadline,
            "fake-dns never listened: {out} {}",
            dns.stderr().await.unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
