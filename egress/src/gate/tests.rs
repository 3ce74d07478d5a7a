//! The gate against hyper itself: the same heads must be accepted and refused, framing must
//! survive any split of the stream, and nothing after a refused head may reach hyper.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::framing::*;
use super::*;

const MAX: usize = 16 * 1024;

fn check(head: &str) -> Result<Framing, &'static str> {
    match check_head(head.as_bytes(), MAX) {
        HeadCheck::Complete { len, next } => {
            assert_eq!(len, head.len(), "{head:?}");
            Ok(next)
        }
        HeadCheck::Partial => Err("partial"),
        HeadCheck::Bad(rejected) => Err(rejected.error.code()),
    }
}

#[test]
fn heads_are_judged_as_hyper_judges_them() {
    let ok = |h: &str, f: Framing| assert_eq!(check(h), Ok(f), "{h:?}");
    let bad = |h: &str, code: &str| assert_eq!(check(h), Err(code), "{h:?}");
    ok("GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n", Framing::Head);
    ok("\r\nGET http://a/ HTTP/1.0\r\n\r\n", Framing::Head);
    ok("CONNECT a:443 HTTP/1.1\r\n\r\n", Framing::Connect);
    ok(
        "POST http://a/ HTTP/1.1\r\nContent-Length: 5\r\n\r\n",
        Framing::Body(5),
    );
    ok(
        "POST http://a/ HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
        Framing::Head,
    );
    ok(
        "POST http://a/ HTTP/1.1\r\ncontent-length: 7\r\nContent-Length: 7\r\n\r\n",
        Framing::Body(7),
    );
    ok(
        "POST http://a/ HTTP/1.1\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n",
        Framing::Chunked(Chunk::Start),
    );
    // A Transfer-Encoding discards the Content-Length before it and ignores the one after.
    ok(
        "POST http://a/ HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\nContent-Length: x\r\n\r\n",
        Framing::Chunked(Chunk::Start),
    );
    assert_eq!(
        check("GET http://a/ HTTP/1.1\r\nHost: a\r\n"),
        Err("partial")
    );
    bad(
        "GET http://a/ HTTP/1.1\r\nX: 1\r\n  folded\r\n\r\n",
        "bad_header",
    );
    bad(
        "GET http://a/ HTTP/1.1\r\nBad Name: 1\r\n\r\n",
        "bad_header",
    );
    // Methods are case-sensitive: any other spelling of CONNECT is refused, never forwarded.
    bad("connect a:443 HTTP/1.1\r\n\r\n", "bad_method");
    bad("Connect a:443 HTTP/1.1\r\n\r\n", "bad_method");
    bad("GET http://a/ HTTP/1.1\r\nX: a\x01b\r\n\r\n", "bad_header");
    bad(
        "POST http://a/ HTTP/1.1\r\nContent-Length: 1x\r\n\r\n",
        "bad_header",
    );
    bad(
        "POST http://a/ HTTP/1.1\r\nContent-Length: +1\r\n\r\n",
        "bad_header",
    );
    bad(
        "POST http://a/ HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        "bad_header",
    );
    bad(
        "POST http://a/ HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
        "bad_header",
    );
    bad(
        "POST http://a/ HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
        "bad_header",
    );
    bad("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "bad_version");
    bad("G(T http://a/ HTTP/1.1\r\n\r\n", "bad_method");
    bad("GET http://a/#x HTTP/1.1\r\n\r\n", "fragment");
    bad("CONNECT a:1#x HTTP/1.1\r\n\r\n", "fragment");
    bad("GET http://a\\b/ HTTP/1.1\r\n\r\n", "backslash");
    bad("GET http://a/\x7f HTTP/1.1\r\n\r\n", "control_char");
    let many: String = (0..=MAX_HEADERS).map(|i| format!("X-{i}: 1\r\n")).collect();
    bad(
        &format!("GET http://a/ HTTP/1.1\r\n{many}\r\n"),
        "header_too_large",
    );
    let long = "a".repeat(MAX);
    bad(
        &format!("GET http://a/ HTTP/1.1\r\nX: {long}"),
        "header_too_large",
    );
}

/// A scripted client: hands out the given pieces one read at a time, then end of stream.
#[derive(Debug, Default)]
struct Script {
    pieces: VecDeque<Vec<u8>>,
    written: Vec<u8>,
}

impl AsyncRead for Script {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if let Some(mut piece) = this.pieces.pop_front() {
            let n = piece.len().min(buf.remaining());
            buf.put_slice(&piece[..n]);
            if n < piece.len() {
                this.pieces.push_front(piece.split_off(n));
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Script {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.get_mut().written.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

fn limits() -> GateLimits {
    GateLimits {
        max_head: MAX,
        head_timeout: Duration::from_secs(30),
        write_idle: Duration::from_secs(30),
    }
}

/// A connection from 10.213.0.3 under `caps`.
fn client(caps: &Arc<SourceCaps>) -> Arc<ClientConn> {
    let peer: std::net::SocketAddr = "10.213.0.3:40000".parse().unwrap();
    let open = caps.admit(peer.ip()).unwrap();
    Arc::new(ClientConn::new(peer, Some(open)))
}

fn new_gate<T>(io: T, limits: GateLimits, render: Render) -> RequestGate<T> {
    let caps = Arc::new(SourceCaps::new(64, 64));
    RequestGate::new(io, limits, render, client(&caps), caps)
}

/// A gate over `pieces` whose refusals are recorded as their error codes.
fn gate(pieces: Vec<Vec<u8>>) -> (RequestGate<Script>, Arc<Mutex<Vec<String>>>) {
    let refused = Arc::new(Mutex::new(Vec::new()));
    let seen = refused.clone();
    let render: Render = Box::new(move |r: Rejected| {
        seen.lock().unwrap().push(r.error.code().to_owned());
        format!("REFUSED {}", r.error.code()).into_bytes()
    });
    let script = Script {
        pieces: pieces.into(),
        written: Vec::new(),
    };
    (new_gate(script, limits(), render), refused)
}

/// Requests whose framing the gate must follow: sized, chunked (extensions, trailers, upper
/// case hex) and bodies that look like request lines.
fn valid_requests() -> Vec<Vec<u8>> {
    vec![
        b"GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(),
        b"POST http://a/ HTTP/1.1\r\nContent-Length: 35\r\n\r\nGET http://x/#y HTTP/1.1\r\n\r\nBAD BAD"
            .to_vec(),
        b"POST http://a/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\nA \r\n0123456789\r\n0\r\nX-Trailer: GET http://a/#b\r\n\r\n"
            .to_vec(),
        b"PUT http://a/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec(),
        b"DELETE http://a/x HTTP/1.1\r\nContent-Length: 0\r\n\r\n".to_vec(),
    ]
}

fn split(stream: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
    cuts.sort_unstable();
    cuts.dedup();
    let mut pieces = Vec::new();
    let mut start = 0;
    for cut in cuts.into_iter().chain([stream.len()]) {
        if cut > start {
            pieces.push(stream[start..cut].to_vec());
            start = cut;
        }
    }
    pieces
}

/// Everything the gate hands to its reader, with a small read buffer like a busy hyper's.
async fn drain(gate: &mut RequestGate<Script>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 37];
    loop {
        let n = gate.read(&mut buf).await.unwrap();
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&buf[..n]);
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// However the stream is cut, every valid request passes unchanged, and a bad head (and
    /// everything after it) never does.
    #[test]
    fn framing_survives_any_split(
        order in proptest::collection::vec(0usize..5, 1..8),
        cuts in proptest::collection::vec(0usize..4096, 0..12),
        bad in proptest::option::of(0usize..3),
    ) {
        let requests = valid_requests();
        let mut good: Vec<u8> = order.iter().flat_map(|&i| requests[i].clone()).collect();
        let tail: &[u8] = match bad {
            Some(0) => b"GET http://a/ HTTP/1.1\r\nProxy-Authorization: Basic YWJj\r\n ZGVm\r\n\r\n",
            Some(1) => b"GET http://a/#frag HTTP/1.1\r\n\r\n",
            Some(_) => b"POST http://a/ HTTP/1.1\r\nContent-Length: 1, 1\r\n\r\nx",
            None => b"",
        };
        let mut stream = good.clone();
        stream.extend_from_slice(tail);
        let (mut gate, refused) = gate(split(&stream, &cuts));
        let out = runtime().block_on(drain(&mut gate));
        if bad.is_none() {
            good.truncate(stream.len());
        }
        prop_assert_eq!(String::from_utf8_lossy(&out), String::from_utf8_lossy(&good));
        runtime().block_on(gate.shutdown()).unwrap();
        let refused = refused.lock().unwrap().clone();
        let written = String::from_utf8_lossy(&gate.inner.written).into_owned();
        match bad {
            None => {
                prop_assert!(refused.is_empty(), "{:?}", refused);
                prop_assert_eq!(written, "");
            }
            Some(_) => {
                prop_assert_eq!(refused.len(), 1);
                prop_assert_eq!(written, format!("REFUSED {}", refused[0]));
            }
        }
    }
}

#[tokio::test]
async fn a_head_cut_off_by_the_client_is_refused() {
    let (mut gate, refused) = gate(vec![b"GET http://a/ HTTP/1.1\r\nHo".to_vec()]);
    assert!(drain(&mut gate).await.is_empty());
    gate.shutdown().await.unwrap();
    assert_eq!(*refused.lock().unwrap(), ["incomplete_request"]);
}

/// In-memory streams and the gate's own timer only, so time is paused: the 100 ms head
/// timeout passes at once, whatever the machine's load.
#[tokio::test(start_paused = true)]
async fn a_slow_head_is_refused_and_an_idle_connection_closes_quietly() {
    // A client that sends half a head and then nothing: the read never completes on its own.
    let (client, server) = tokio::io::duplex(1024);
    let refused = Arc::new(Mutex::new(Vec::new()));
    let seen = refused.clone();
    let render: Render = Box::new(move |r: Rejected| {
        seen.lock().unwrap().push(r.error.code().to_owned());
        b"REFUSED".to_vec()
    });
    let quick = GateLimits {
        head_timeout: Duration::from_millis(100),
        ..limits()
    };
    let mut gate = new_gate(server, quick, render);
    let mut client = client;
    client
        .write_all(b"GET http://a/ HTTP/1.1\r\nHo")
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    assert_eq!(gate.read(&mut buf).await.unwrap(), 0);
    // Dropped unanswered, the refusal is still recorded.
    drop(gate);
    assert_eq!(*refused.lock().unwrap(), ["header_timeout"]);

    let (_client, server) = tokio::io::duplex(1024);
    let render: Render = Box::new(|_| panic!("an idle connection is not refused"));
    let mut idle = new_gate(server, quick, render);
    assert_eq!(idle.read(&mut buf).await.unwrap(), 0);
}

#[tokio::test]
async fn a_tunnel_takes_the_bytes_after_connect() {
    let (mut gate, _) = gate(vec![
        b"CONNECT a:443 HTTP/1.1\r\n\r\n\x16\x03\x01 not http at all".to_vec(),
    ]);
    let mut buf = [0u8; 256];
    let n = gate.read(&mut buf).await.unwrap();
    assert_eq!(&buf[..n], b"CONNECT a:443 HTTP/1.1\r\n\r\n");
    let (_, held) = gate.into_parts();
    assert_eq!(&held[..], b"\x16\x03\x01 not http at all");
}

/// What a real hyper server makes of `head`: `Some(true)` when it calls the service,
/// `Some(false)` when it answers a parse error itself, `None` when it says nothing.
async fn hyper_verdict(head: Vec<u8>) -> Option<bool> {
    let (mut client, server) = tokio::io::duplex(64 * 1024);
    let called = Arc::new(Mutex::new(false));
    let flag = called.clone();
    let service = service_fn(move |_req| {
        *flag.lock().unwrap() = true;
        async { Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::new()))) }
    });
    let conn = tokio::spawn(async move {
        let mut builder = http1::Builder::new();
        builder.half_close(true).max_buf_size(MAX.max(64 * 1024));
        let _ = builder
            .serve_connection(TokioIo::new(server), service)
            .await;
    });
    client.write_all(&head).await.unwrap();
    client.shutdown().await.unwrap();
    let mut answer = Vec::new();
    let _ = client.read_to_end(&mut answer).await;
    let _ = conn.await;
    let called = *called.lock().unwrap();
    if called {
        Some(true)
    } else if answer.starts_with(b"HTTP/1.1 4") || answer.starts_with(b"HTTP/1.1 5") {
        Some(false)
    } else {
        None
    }
}

/// Request heads built from valid parts with one byte changed, inserted or removed.
fn mutated_head() -> impl Strategy<Value = Vec<u8>> {
    let bases = [
        "GET http://a.test/x?y HTTP/1.1\r\nHost: a.test\r\nAccept: */*\r\n\r\n",
        "POST http://a.test/ HTTP/1.1\r\nContent-Length: 3\r\n\r\n",
        "CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\n\r\n",
        "PUT http://[::1]:8080/p HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
    ];
    let special = prop_oneof![
        Just(b'\0'),
        Just(b'\t'),
        Just(b' '),
        Just(b'\r'),
        Just(b'\n'),
        Just(b'#'),
        Just(b'\\'),
        Just(b'%'),
        Just(b'@'),
        Just(b':'),
        Just(0x7f),
        Just(0xff),
        any::<u8>(),
    ];
    (0..bases.len(), any::<usize>(), 0u8..3, special).prop_map(move |(base, at, how, byte)| {
        let mut head = bases[base].as_bytes().to_vec();
        let at = at % head.len();
        match how {
            0 => head[at] = byte,
            1 => head.insert(at, byte),
            _ => {
                head.remove(at);
            }
        }
        head
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Where hyper would answer with its own bare error, the gate refuses first; where the
    /// gate lets a head through, hyper accepts it. (The gate refuses more only for fragments,
    /// which hyper drops silently.)
    #[test]
    fn the_gate_never_lets_through_what_hyper_refuses(head in mutated_head()) {
        let gate_verdict = match check_head(&head, MAX) {
            HeadCheck::Complete { .. } => Some(true),
            HeadCheck::Bad(_) => Some(false),
            HeadCheck::Partial => None,
        };
        let hyper = runtime().block_on(hyper_verdict(head.clone()));
        let shown = String::from_utf8_lossy(&head).into_owned();
        if hyper == Some(false) {
            prop_assert_eq!(gate_verdict, Some(false), "hyper refused {:?}", shown);
        }
        if gate_verdict == Some(true) {
            prop_assert_eq!(hyper, Some(true), "the gate passed {:?}", shown);
        }
        if hyper == Some(true) && gate_verdict != Some(true) {
            let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
            prop_assert!(line.contains(&b'#'), "only fragments are refused beyond hyper: {:?}", shown);
        }
    }
}

/// A keep-alive connection that starts a head while its source already holds its cap of
/// partial heads is refused `head_limit`; complete heads never count.
#[tokio::test]
async fn a_partial_head_over_the_source_cap_is_refused() {
    let caps = Arc::new(SourceCaps::new(64, 1));
    let conn = client(&caps);
    // Another connection from the same source holds the one partial-head slot.
    let other = caps.head("10.213.0.3".parse().unwrap()).unwrap();
    let refused = Arc::new(Mutex::new(Vec::new()));
    let seen = refused.clone();
    let render: Render = Box::new(move |r: Rejected| {
        seen.lock().unwrap().push(r.error.code().to_owned());
        b"REFUSED".to_vec()
    });
    let script = Script {
        pieces: vec![
            b"GET http://a/ HTTP/1.1\r\n\r\n".to_vec(),
            b"GET http://a/ HT".to_vec(),
        ]
        .into(),
        written: Vec::new(),
    };
    let mut gate = RequestGate::new(script, limits(), render, conn, caps.clone());
    let mut buf = [0u8; 256];
    let n = gate.read(&mut buf).await.unwrap();
    assert_eq!(
        &buf[..n],
        b"GET http://a/ HTTP/1.1\r\n\r\n",
        "a whole head passes"
    );
    assert_eq!(
        gate.read(&mut buf).await.unwrap(),
        0,
        "the partial one is refused"
    );
    drop(gate);
    assert_eq!(*refused.lock().unwrap(), ["head_limit"]);
    drop(other);
}
