//! Fake UDP DNS server on loopback answering from a per-test table, with a rebinding mode.
//!
//! [`FakeDns::start`] binds `127.0.0.1:0` and answers A and AAAA questions from a table of
//! `name → addresses`: an answer of the right family for a known name (possibly empty: NODATA),
//! `NXDOMAIN` for an unknown name. TTLs are 0 unless [`FakeDns::set_ttl`] says otherwise, so a
//! caching resolver asks again for every request. [`FakeDns::rebind`] makes a name answer one
//! set of addresses to the first query of each record type and another set afterwards: the
//! classic DNS-rebinding attack. Every question is logged for assertions.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};

use hickory_proto::op::{Message, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{RData, Record, RecordType};
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

/// A running fake DNS server; stops when dropped.
#[derive(Debug)]
pub struct FakeDns {
    addr: SocketAddr,
    state: Arc<State>,
    task: JoinHandle<()>,
}

/// One question the server received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsQuery {
    /// The name asked for, lower-case, without the trailing dot.
    pub name: String,
    /// `A`, `AAAA`, ...
    pub record_type: String,
}

#[derive(Debug, Clone)]
enum Entry {
    Fixed(Vec<IpAddr>),
    Rebind {
        first: Vec<IpAddr>,
        then: Vec<IpAddr>,
    },
}

#[derive(Debug, Default)]
struct State {
    table: Mutex<HashMap<String, Entry>>,
    log: Mutex<Vec<DnsQuery>>,
    ttl: Mutex<u32>,
}

// === impl FakeDns ===

impl FakeDns {
    /// Starts a server on `127.0.0.1:0` answering from `table`.
    pub async fn start<'a>(table: impl IntoIterator<Item = (&'a str, Vec<IpAddr>)>) -> FakeDns {
        let addr = SocketAddr::from(([127, 0, 0, 1], 0));
        #[allow(clippy::expect_used)] // Test harness: binding loopback port 0 cannot fail here.
        Self::start_on(addr, table)
            .await
            .expect("bind fake DNS on 127.0.0.1:0")
    }

    /// Starts a server on `bind` (e.g. `0.0.0.0:53` inside a container on a sealed network)
    /// answering from `table`.
    pub async fn start_on<'a>(
        bind: SocketAddr,
        table: impl IntoIterator<Item = (&'a str, Vec<IpAddr>)>,
    ) -> std::io::Result<FakeDns> {
        let socket = UdpSocket::bind(bind).await?;
        #[allow(clippy::expect_used)] // A bound socket has a local address.
        let addr = socket.local_addr().expect("fake DNS local addr");
        let state = Arc::new(State::default());
        for (name, addrs) in table {
            lock(&state.table).insert(key(name), Entry::Fixed(addrs));
        }
        let task = tokio::spawn(serve(socket, state.clone()));
        Ok(FakeDns { addr, state, task })
    }

    /// The server's address (give it to the proxy as `--dns`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sets (or replaces) the answers for `name`.
    pub fn set(&self, name: &str, addrs: Vec<IpAddr>) {
        lock(&self.state.table).insert(key(name), Entry::Fixed(addrs));
    }

    /// Rebinding mode for `name`: the first query of each record type gets `first`, every later
    /// one gets `then`.
    pub fn rebind(&self, name: &str, first: Vec<IpAddr>, then: Vec<IpAddr>) {
        lock(&self.state.table).insert(key(name), Entry::Rebind { first, then });
    }

    /// Sets the TTL of every later answer, in seconds.
    pub fn set_ttl(&self, ttl: u32) {
        *lock(&self.state.ttl) = ttl;
    }

    /// How many questions were received in total.
    pub fn queries(&self) -> usize {
        lock(&self.state.log).len()
    }

    /// How many questions were received for `name`.
    pub fn queries_for(&self, name: &str) -> usize {
        let name = key(name);
        lock(&self.state.log)
            .iter()
            .filter(|q| q.name == name)
            .count()
    }

    /// Every question received, in order.
    pub fn query_log(&self) -> Vec<DnsQuery> {
        lock(&self.state.log).clone()
    }
}

impl Drop for FakeDns {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(socket: UdpSocket, state: Arc<State>) {
    let mut buf = vec![0u8; 4096];
    loop {
        let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
            continue;
        };
        let Some(reply) = buf.get(..n).and_then(|query| answer(&state, query)) else {
            continue;
        };
        // A lost reply is what UDP does; the resolver retries.
        let _ = socket.send_to(&reply, peer).await;
    }
}

/// Builds the reply to one query, or `None` for garbage.
fn answer(state: &State, query: &[u8]) -> Option<Vec<u8>> {
    let request = Message::from_vec(query).ok()?;
    let mut reply = Message::new(request.metadata.id, MessageType::Response, OpCode::Query);
    reply.metadata = Metadata::response_from_request(&request.metadata);
    reply.metadata.recursion_available = true;
    reply.metadata.authoritative = true;
    let question = request.queries.first()?.clone();
    let name = key(&question.name().to_ascii());
    let rtype = question.query_type();
    let seen = {
        let mut log = lock(&state.log);
        let seen = log
            .iter()
            .filter(|q| q.name == name && q.record_type == rtype.to_string())
            .count();
        log.push(DnsQuery {
            name: name.clone(),
            record_type: rtype.to_string(),
        });
        seen
    };
    let ttl = *lock(&state.ttl);
    let entry = lock(&state.table).get(&name).cloned();
    reply.add_query(question.clone());
    match entry {
        None => reply.metadata.response_code = ResponseCode::NXDomain,
        Some(entry) => {
            let addrs = match entry {
                Entry::Fixed(addrs) => addrs,
                Entry::Rebind { first, .. } if seen == 0 => first,
                Entry::Rebind { then, .. } => then,
            };
            for ip in addrs {
                let rdata = match (ip, rtype) {
                    (IpAddr::V4(v4), RecordType::A) => RData::A(A(v4)),
                    (IpAddr::V6(v6), RecordType::AAAA) => RData::AAAA(AAAA(v6)),
                    _ => continue,
                };
                reply.add_answer(Record::from_rdata(question.name().clone(), ttl, rdata));
            }
        }
    }
    reply.to_vec().ok()
}

fn key(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
