//! The files API on a real DinD over mTLS: a small repository uploaded into a volume (through
//! the never-started helper), listed, stat'ed and downloaded back (tar and raw); a sandbox
//! mounting it reads it, sees setuid stripped and nothing written outside the target; every
//! tar attack (`../x`, `/etc/x`, symlink-then-file, a symlink already in the target, a
//! hardlink, a device node, 200k entries) gets a typed error; writes into a volume a sandbox
//! holds read-write are refused; on a sandbox, a volume mount takes uploads, the root and the
//! tmpfs do not; while a files write runs, a read-write sandbox mount is refused and a
//! read-only one is not; another tenant gets 404; a refused upload leaves nothing in the target (it
//! is staged whole first); every refused write is audited with its target, path and code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use axum::http::{Method, StatusCode};
use e2e::agents::{AgentApi, ADMIN_TOKEN};
use e2e::{dind_with_testbox, Timing};
use serde_json::{json, Value};
use test_support::dind::{DindOptions, TESTBOX_IMAGE};

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_size(size);
    header.set_uid(0);
    header.set_gid(0);
    header
}

fn file(b: &mut tar::Builder<Vec<u8>>, name: &str, mode: u32, content: &[u8]) {
    let mut h = header(tar::EntryType::Regular, mode, content.len() as u64);
    b.append_data(&mut h, name, content).unwrap();
}

fn link(b: &mut tar::Builder<Vec<u8>>, kind: tar::EntryType, name: &str, target: &str) {
    let mut h = header(kind, 0o777, 0);
    b.append_link(&mut h, name, target).unwrap();
}

fn archive(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    build(&mut b);
    b.into_inner().unwrap()
}

/// A raw header block whose name the `tar` crate would refuse to write.
fn raw_entry(name: &[u8], kind: u8) -> Vec<u8> {
    let mut h = tar::Header::new_old();
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    h.set_size(1);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::new(kind));
    h.set_cksum();
    let mut out = h.as_bytes().to_vec();
    out.push(b'x');
    out.resize(1024, 0);
    out.resize(2048, 0);
    out
}

fn repo() -> Vec<u8> {
    archive(|b| {
        let mut dir = header(tar::EntryType::Directory, 0o755, 0);
        b.append_data(&mut dir, "src/", &[][..]).unwrap();
        file(b, "README.md", 0o644, b"hello repo\n");
        file(b, "src/main.rs", 0o644, b"fn main() {}\n");
        file(b, "bin/tool", 0o4755, b"#!/bin/sh\necho tool\n");
        link(b, tar::EntryType::Symlink, "readme", "README.md");
    })
}

async fn put(c: &AgentApi, token: &str, uri: &str, body: Vec<u8>) -> (StatusCode, Value) {
    let (status, _, bytes) = c.raw(token, Method::PUT, uri, &[], body).await;
    let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, value)
}

/// The upload is refused with `status` and `code`.
async fn refused(c: &AgentApi, token: &str, uri: &str, body: Vec<u8>, want: (u16, &str)) {
    let (status, body) = put(c, token, uri, body).await;
    assert_eq!(
        (status.as_u16(), body["error"].as_str().unwrap_or("")),
        want,
        "{uri}: {body}"
    );
}

#[tokio::test]
async fn files_upload_download_attacks_and_tenancy() {
    let mut timing = Timing::start("files");
    let dind = dind_with_testbox(DindOptions::new("files"), &mut timing)
        .await
        .unwrap();
    let c = AgentApi::start(dind, &[], &mut timing).await;
    let (_, a) = c.member("files-a").await;
    let (_, b) = c.member("files-b").await;
    let repo_id = c.volume(&a, "repo", 64).await;
    let files = format!("/v1/volumes/{repo_id}/files");

    // Upload the repository into the volume.
    let (status, wrote) = put(&c, &a, &format!("{files}?path=/"), repo()).await;
    assert_eq!(status, StatusCode::OK, "{wrote}");
    // src, README.md, src/main.rs, bin (added as the parent of bin/tool), bin/tool, readme.
    assert_eq!(wrote["entries"], 6, "{wrote}");
    timing.phase("uploaded");

    // List, stat, download (tar and raw).
    let uri = format!("{files}/list?path=/&depth=2");
    let (status, listing) = c.call(&a, Method::GET, &uri, None).await;
    assert_eq!(status, StatusCode::OK, "{listing}");
    let names: Vec<&str> = listing["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    for name in ["README.md", "src", "src/main.rs", "bin/tool", "readme"] {
        assert!(names.contains(&name), "{name} in {listing}");
    }
    let uri = format!("{files}/stat?path=/README.md");
    let (status, stat) = c.call(&a, Method::GET, &uri, None).await;
    assert_eq!(status, StatusCode::OK, "{stat}");
    assert_eq!(
        (stat["type"].as_str(), stat["size"].as_u64()),
        (Some("file"), Some(11))
    );
    let uri = format!("{files}/stat?path=/nope");
    let (status, stat) = c.call(&a, Method::GET, &uri, None).await;
    assert_eq!(
        (status, stat["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("path_not_found"))
    );
    let accept = [("accept", "application/octet-stream")];
    let uri = format!("{files}?path=/README.md");
    let (status, _, bytes) = c.raw(&a, Method::GET, &uri, &accept, Vec::new()).await;
    assert_eq!(
        (status, bytes.as_slice()),
        (StatusCode::OK, &b"hello repo\n"[..])
    );
    let uri = format!("{files}?path=/src");
    let (status, _, bytes) = c.raw(&a, Method::GET, &uri, &[], Vec::new()).await;
    assert_eq!(status, StatusCode::OK);
    let mut back = tar::Archive::new(bytes.as_slice());
    let mut found = false;
    for entry in back.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.path().unwrap().ends_with("main.rs") {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut entry, &mut text).unwrap();
            assert_eq!(text, "fn main() {}\n");
            found = true;
        }
    }
    assert!(found, "src/main.rs came back");
    timing.phase("downloaded");

    // Every attack is a typed error.
    let target = format!("{files}?path=/");
    refused(
        &c,
        &a,
        &target,
        raw_entry(b"../x", b'0'),
        (400, "bad_archive"),
    )
    .await;
    refused(
        &c,
        &a,
        &target,
        raw_entry(b"/etc/x", b'0'),
        (400, "bad_archive"),
    )
    .await;
    refused(
        &c,
        &a,
        &target,
        raw_entry(b"dev", b'3'),
        (400, "bad_archive"),
    )
    .await;
    let hardlink = archive(|b| link(b, tar::EntryType::Link, "hl", "/etc/passwd"));
    refused(&c, &a, &target, hardlink, (400, "bad_archive")).await;
    let through = archive(|b| {
        link(b, tar::EntryType::Symlink, "esc", "/etc");
        file(b, "esc/passwd", 0o644, b"owned\n");
    });
    refused(&c, &a, &target, through, (400, "bad_archive")).await;
    // A symlink left by an earlier upload is never followed as a directory.
    let planted = archive(|b| link(b, tar::EntryType::Symlink, "planted", "/etc"));
    let (status, body) = put(&c, &a, &target, planted).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let later = archive(|b| file(b, "planted/x", 0o644, b"owned\n"));
    refused(&c, &a, &target, later, (400, "bad_archive")).await;
    let uri = format!("{files}?path=/planted");
    refused(
        &c,
        &a,
        &uri,
        archive(|b| file(b, "y", 0o644, b"y")),
        (409, "path_not_writable"),
    )
    .await;
    let mut many = Vec::with_capacity(200_001 * 512);
    for at in 0..200_000 {
        let mut h = header(tar::EntryType::Regular, 0o644, 0);
        h.set_path(format!("m/{at}")).unwrap();
        h.set_cksum();
        many.extend_from_slice(h.as_bytes());
    }
    many.resize(many.len() + 1024, 0);
    // Into another volume: the upload is staged whole first, so nothing of the 100k entries
    // before the cap reaches it.
    let scratch = c.volume(&a, "scratch", 256).await;
    let uri = format!("/v1/volumes/{scratch}/files?path=/");
    refused(&c, &a, &uri, many, (413, "too_large")).await;
    let uri = format!("/v1/volumes/{scratch}/files/list?path=/");
    let (status, listing) = c.call(&a, Method::GET, &uri, None).await;
    assert_eq!(status, StatusCode::OK, "{listing}");
    assert_eq!(listing["entries"], json!([]), "{listing}");
    timing.phase("attacks");

    // Another tenant sees nothing.
    let uri = format!("{files}/list?path=/");
    let (status, _) = c.call(&b, Method::GET, &uri, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    refused(&c, &b, &target, repo(), (404, "not_found")).await;

    // A sandbox mounting the volume reads the repository; setuid is gone and nothing was
    // written outside the target.
    let body = json!({"image": TESTBOX_IMAGE, "cmd": ["sleep", "300"],
        "mounts": [{"volume": "repo", "target": "/workspace"}]});
    let (status, made) = c.call(&a, Method::POST, "/v1/sandboxes", Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let id = made["id"].as_str().unwrap().to_owned();
    let script = "cat /workspace/README.md; stat -c '%a %u' /workspace/bin/tool; \
                  ls /workspace; test -e /x || echo no-x; test -e /etc/x || echo no-etc-x; \
                  grep -c owned /etc/passwd; test -e /workspace/m && echo m-left";
    let (code, out) = c.sh(&a, &id, script).await;
    assert_eq!(
        out, "hello repo\n755 1000\nREADME.md\nbin\nplanted\nreadme\nsrc\nno-x\nno-etc-x\n0\n",
        "exit {code}"
    );
    timing.phase("read-in-sandbox");

    // While the sandbox holds the volume read-write, the volume route refuses writes.
    refused(&c, &a, &target, repo(), (409, "volume_in_use")).await;

    // On the sandbox: a volume mount takes uploads, the root and the tmpfs do not.
    let sfiles = format!("/v1/sandboxes/{id}/files");
    let uri = format!("{sfiles}/content?path=/workspace/new.txt");
    let (status, body) = put(&c, &a, &uri, b"fresh\n".to_vec()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, out) = c
        .sh(
            &a,
            &id,
            "cat /workspace/new.txt; stat -c %u /workspace/new.txt",
        )
        .await;
    assert_eq!(out, "fresh\n65534\n");
    let uri = format!("{sfiles}?path=/workspace/new.txt");
    let (status, _, bytes) = c.raw(&a, Method::GET, &uri, &accept, Vec::new()).await;
    assert_eq!(
        (status, bytes.as_slice()),
        (StatusCode::OK, &b"fresh\n"[..])
    );
    let one = || archive(|b| file(b, "f", 0o644, b"f"));
    refused(
        &c,
        &a,
        &format!("{sfiles}?path=/etc"),
        one(),
        (409, "path_not_writable"),
    )
    .await;
    refused(
        &c,
        &a,
        &format!("{sfiles}?path=/tmp"),
        one(),
        (409, "path_on_tmpfs"),
    )
    .await;
    refused(
        &c,
        &a,
        &format!("{sfiles}?path=/workspace/README.md"),
        one(),
        (409, "not_a_directory"),
    )
    .await;
    // The trust tmpfs is Airlock's: neither written nor read through the archive API.
    refused(
        &c,
        &a,
        &format!("{sfiles}?path=/run/airlock/tls"),
        one(),
        (409, "path_on_tmpfs"),
    )
    .await;
    let uri = format!("{sfiles}/list?path=/run/airlock");
    let (status, body) = c.call(&a, Method::GET, &uri, None).await;
    assert_eq!(
        (status.as_u16(), body["error"].as_str().unwrap_or("")),
        (409, "path_on_tmpfs"),
        "{body}"
    );
    let uri = format!("{sfiles}/list?path=/workspace");
    let (status, _) = c.call(&b, Method::GET, &uri, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    c.delete(&a, &format!("/v1/sandboxes/{id}")).await;
    timing.phase("sandbox-routes");

    // A files write holds the volume while it runs: a read-write sandbox is refused meanwhile,
    // a read-only one is not, and the write lands.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(1);
    let chunks = futures_util::stream::poll_fn(move |cx| {
        rx.poll_recv(cx)
            .map(|chunk| chunk.map(Ok::<_, std::io::Error>))
    });
    let upload = tokio::spawn(c.streamed(
        &a,
        Method::PUT,
        &target,
        axum::body::Body::from_stream(chunks),
    ));
    let slow = archive(|b| file(b, "slow.txt", 0o644, b"slow\n"));
    let mut parts = slow.chunks(512);
    tx.send(parts.next().unwrap().to_vec()).await.unwrap();
    // With room for one chunk, this send returns only once the first was read: the write is
    // past its checks, lease held, and staging.
    tx.send(parts.next().unwrap().to_vec()).await.unwrap();
    let mount = |read_only: bool| {
        json!({"image": TESTBOX_IMAGE, "cmd": ["sleep", "300"],
            "mounts": [{"volume": "repo", "target": "/workspace", "read_only": read_only}]})
    };
    let (status, body) = c
        .call(&a, Method::POST, "/v1/sandboxes", Some(mount(false)))
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::CONFLICT, Some("volume_in_use")),
        "{body}"
    );
    let message = body["message"].as_str().unwrap_or("");
    assert!(message.contains("files write"), "{body}");
    let (status, made) = c
        .call(&a, Method::POST, "/v1/sandboxes", Some(mount(true)))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    c.delete(
        &a,
        &format!("/v1/sandboxes/{}", made["id"].as_str().unwrap()),
    )
    .await;
    for part in parts {
        tx.send(part.to_vec()).await.unwrap();
    }
    drop(tx);
    let (status, wrote) = upload.await.unwrap();
    assert_eq!(
        status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&wrote)
    );
    let uri = format!("{files}/stat?path=/slow.txt");
    let (status, stat) = c.call(&a, Method::GET, &uri, None).await;
    assert_eq!(status, StatusCode::OK, "{stat}");
    timing.phase("write-lease");

    // Refused writes are audited like accepted ones: the target, the path, the code.
    let (status, page) = c
        .call(ADMIN_TOKEN, Method::GET, "/v1/audit?limit=500", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let rows: Vec<(String, u64, String, String)> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"].as_str().unwrap().starts_with("PUT /v1/"))
        .map(|r| {
            let text = |k: &str| r[k].as_str().unwrap_or_default().to_owned();
            (
                text("action"),
                r["status"].as_u64().unwrap(),
                text("object"),
                text("detail"),
            )
        })
        .collect();
    let has = |action: &str, status: u64, object: &str, detail: &str| {
        rows.iter()
            .any(|(a, s, o, d)| a == action && *s == status && o == object && d.starts_with(detail))
    };
    let volume_put = "PUT /v1/volumes/{id}/files";
    assert!(
        has(volume_put, 400, &repo_id, "path=/ refused=bad_archive: "),
        "{rows:#?}"
    );
    assert!(
        has(volume_put, 413, &scratch, "path=/ refused=too_large: "),
        "{rows:#?}"
    );
    assert!(
        has(volume_put, 409, &repo_id, "path=/ refused=volume_in_use: "),
        "{rows:#?}"
    );
    assert!(
        has(volume_put, 404, &repo_id, "path=/ refused=not_found"),
        "{rows:#?}"
    );
    let sandbox_put = "PUT /v1/sandboxes/{id}/files";
    assert!(
        has(sandbox_put, 409, &id, "path=/tmp refused=path_on_tmpfs: "),
        "{rows:#?}"
    );
    assert!(
        has(volume_put, 200, &repo_id, "path=/ entries=6 bytes="),
        "{rows:#?}"
    );
    timing.phase("audit");
}
