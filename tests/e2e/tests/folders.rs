//! Host folders, checked from inside real sandboxes on a DinD over mTLS. The DinD sees the
//! folders root (a host tempdir) at the same path as the in-process controller, like compose's
//! `AIRLOCK_FOLDERS_HOST_ROOT` bind. An `ro` folder: `touch` fails with EROFS, mountinfo shows
//! `ro`, a remount fails, and asking for read-write is `folder_read_only`; an `rw` folder is
//! writable; a tmpfs mounted under a folder on the node stays invisible (non-recursive bind);
//! the registration attacks (outward symlink, `..`, sibling prefix, non-directory, overlap,
//! duplicate realpath, the root itself, relative, missing) each get their code; a folder
//! swapped for a symlink after registration is `folder_path_changed`; a user without a grant
//! gets 404 and lists nothing; a mounted folder cannot be deleted, nor taken from the owner of
//! a live sandbox mounting it (`folder_in_use`, either tenant); `doctor` passes its
//! `folders` check, and fails it for a root the two see as different directories.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;

use airlock::config::Config;
use airlock::ops::doctor::{self, Verdict};
use axum::http::{Method, StatusCode};
use e2e::agents::{AgentApi, ADMIN_TOKEN};
use e2e::{dind_with_testbox, Timing};
use serde_json::{json, Value};
use test_support::dind::{DindOptions, DIND_TLS_PORT, TESTBOX_IMAGE};

/// Removes a directory outside the tempdir when the test ends, pass or fail.
struct RemoveOnDrop(String);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn mkdir(path: &Path, mode: u32) {
    std::fs::create_dir_all(path).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

async fn register(
    c: &AgentApi,
    name: &str,
    path: &str,
    mode: &str,
    grants: &[&str],
) -> (StatusCode, Value) {
    let body = json!({"name": name, "path": path, "mode": mode, "grants": grants});
    c.call(ADMIN_TOKEN, Method::POST, "/v1/folders", Some(body))
        .await
}

async fn sandbox(c: &AgentApi, token: &str, mounts: Value) -> (StatusCode, Value) {
    let body = json!({"image": TESTBOX_IMAGE, "cmd": ["sleep", "300"], "mounts": mounts});
    c.call(token, Method::POST, "/v1/sandboxes", Some(body))
        .await
}

async fn running(c: &AgentApi, token: &str, mounts: Value) -> String {
    let (status, made) = sandbox(c, token, mounts).await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    made["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn folders_mount_read_only_and_read_write_and_refuse_every_attack() {
    let mut timing = Timing::start("folders");
    let dir = tempfile::Builder::new()
        .prefix("fo-folders-")
        .tempdir()
        .unwrap();
    let root = std::fs::canonicalize(dir.path()).unwrap();
    let at = |p: &str| root.join(p).display().to_string();
    mkdir(&root, 0o755);
    mkdir(&root.join("ro"), 0o755);
    std::fs::write(root.join("ro/hello.txt"), b"hello\n").unwrap();
    mkdir(&root.join("ro/inner"), 0o755);
    mkdir(&root.join("rw/sub"), 0o777);
    std::fs::set_permissions(root.join("rw"), std::fs::Permissions::from_mode(0o777)).unwrap();
    mkdir(&root.join("swap"), 0o755);
    std::fs::write(root.join("file"), b"x").unwrap();
    symlink("/etc", root.join("out")).unwrap();
    symlink(root.join("ro"), root.join("alias")).unwrap();
    // A sibling whose name has the root's as a prefix.
    let sibling = format!("{}2", root.display());
    let _sibling = RemoveOnDrop(sibling.clone());
    mkdir(Path::new(&sibling), 0o755);
    let root_text = root.display().to_string();
    let opts = DindOptions {
        binds: vec![format!("{root_text}:{root_text}:rw")],
        ..DindOptions::new("folders")
    };
    let dind = dind_with_testbox(opts, &mut timing).await.unwrap();
    let env = [("AIRLOCK_FOLDERS_ROOT", root_text.as_str())];
    let c = AgentApi::start(dind, &env, &mut timing).await;
    let (a_id, a) = c.member("tenant-a").await;
    let (b_id, b) = c.member("tenant-b").await;
    let a_id = a_id.to_string();
    let b_id = b_id.to_string();

    // Registration: two good folders, then every attack with its code.
    let (status, data) = register(&c, "data", &at("ro"), "ro", &[&a_id]).await;
    assert_eq!(status, StatusCode::CREATED, "{data}");
    assert_eq!(data["realpath"], at("ro"), "{data}");
    let (status, work) = register(&c, "work", &at("rw"), "rw", &[&a_id]).await;
    assert_eq!(status, StatusCode::CREATED, "{work}");
    let (status, swap) = register(&c, "swap", &at("swap"), "rw", &[&a_id]).await;
    assert_eq!(status, StatusCode::CREATED, "{swap}");
    let dotdot = format!("{root_text}/rw/../ro");
    let attacks = [
        (
            at("out"),
            StatusCode::BAD_REQUEST,
            "folder_path_outside_root",
        ),
        (dotdot, StatusCode::BAD_REQUEST, "folder_path_invalid"),
        (
            sibling.clone(),
            StatusCode::BAD_REQUEST,
            "folder_path_outside_root",
        ),
        (
            at("file"),
            StatusCode::BAD_REQUEST,
            "folder_path_not_directory",
        ),
        (at("ro/inner"), StatusCode::CONFLICT, "folder_path_overlaps"),
        (at("alias"), StatusCode::CONFLICT, "folder_path_duplicate"),
        (
            root_text.clone(),
            StatusCode::BAD_REQUEST,
            "folder_path_is_root",
        ),
        (
            "relative/ro".to_owned(),
            StatusCode::BAD_REQUEST,
            "folder_path_not_absolute",
        ),
        (
            at("missing"),
            StatusCode::BAD_REQUEST,
            "folder_path_not_found",
        ),
        (
            "/etc".to_owned(),
            StatusCode::BAD_REQUEST,
            "folder_path_outside_root",
        ),
    ];
    for (i, (path, want_status, want_code)) in attacks.iter().enumerate() {
        let (status, body) = register(&c, &format!("attack{i}"), path, "ro", &[]).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (*want_status, Some(*want_code)),
            "{path}: {body}"
        );
    }
    let (status, body) = register(&c, "data", &at("swap"), "ro", &[]).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    // A member may not register.
    let body = json!({"name": "mine", "path": at("ro"), "mode": "rw"});
    let (status, _) = c.call(&a, Method::POST, "/v1/folders", Some(body)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    timing.phase("registration");

    // Listings: A sees its grants without host paths; B sees nothing; the admin's picker.
    let (status, listed) = c.call(&a, Method::GET, "/v1/folders", None).await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<_> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["data", "swap", "work"], "{listed}");
    assert!(listed[0].get("path").is_none(), "{listed}");
    let (_, listed) = c.call(&b, Method::GET, "/v1/folders", None).await;
    assert_eq!(listed, json!([]));
    let (status, picker) = c
        .call(ADMIN_TOKEN, Method::GET, "/v1/folders/available", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{picker}");
    let names: Vec<_> = picker["folders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alias", "ro", "rw", "swap"], "{picker}");

    // A submount under `rw` on the node, with a marker in it.
    let sub = at("rw/sub");
    let out = c
        .dind
        .exec_in_dind(&[
            "sh",
            "-c",
            &format!("mount -t tmpfs tmpfs {sub} && touch {sub}/on-the-tmpfs"),
        ])
        .await
        .unwrap();
    assert_eq!(out.code, 0, "{out:?}");

    // Read-only: EROFS, `ro` in mountinfo, no remount.
    let (status, body) = sandbox(
        &c,
        &a,
        json!([{"folder": "data", "target": "/data", "read_only": false}]),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("folder_read_only")),
        "{body}"
    );
    let reader = running(&c, &a, json!([{"folder": "data", "target": "/data"}])).await;
    let (_, shown) = c
        .call(&a, Method::GET, &format!("/v1/sandboxes/{reader}"), None)
        .await;
    let want =
        json!([{"folder": "data", "folder_id": data["id"], "target": "/data", "read_only": true}]);
    assert_eq!(shown["folders"], want, "{shown}");
    let (code, out) = c
        .sh(&a, &reader, "pwd; cat /data/hello.txt; touch /data/x")
        .await;
    assert_ne!(code, 0, "{out}");
    assert!(out.starts_with("/data\nhello\n"), "{out}");
    assert!(out.contains("Read-only file system"), "{out}");
    let (code, out) = c
        .sh(&a, &reader, "grep ' /data ' /proc/self/mountinfo")
        .await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.split_whitespace()
            .nth(5)
            .unwrap()
            .split(',')
            .any(|o| o == "ro"),
        "{out}"
    );
    let (code, out) = c.sh(&a, &reader, "mount -o remount,rw /data").await;
    assert_ne!(code, 0, "{out}");

    // Read-write, and the node's submount stays invisible.
    let writer = running(&c, &a, json!([{"folder": "work", "target": "/work"}])).await;
    let (code, out) = c
        .sh(
            &a,
            &writer,
            "echo from-sandbox > /work/made && ls -A /work/sub",
        )
        .await;
    assert_eq!((code, out.as_str()), (0, ""), "{out}");
    assert_eq!(
        std::fs::read_to_string(root.join("rw/made")).unwrap(),
        "from-sandbox\n"
    );

    // No grant: 404, like no folder at all.
    let (status, body) = sandbox(&c, &b, json!([{"folder": "data", "target": "/data"}])).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("folder_not_found")),
        "{body}"
    );
    let (status, body) = sandbox(&c, &a, json!([{"folder": "nope", "target": "/data"}])).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    // Mounted: no delete.
    let data_id = data["id"].as_str().unwrap();
    let uri = format!("/v1/folders/{data_id}");
    let (status, body) = c.call(ADMIN_TOKEN, Method::DELETE, &uri, None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::CONFLICT, Some("folder_in_use")),
        "{body}"
    );

    // Mounted: no grant change that takes the folder from a live mount's owner (A's reader,
    // then another tenant's sandbox); the mount keeps working; adding a user is fine.
    let grants_uri = format!("/v1/folders/{data_id}/grants");
    let set_grants = |grants: Vec<&str>| {
        let body = json!({ "grants": grants });
        c.call(ADMIN_TOKEN, Method::PUT, &grants_uri, Some(body))
    };
    let (status, body) = set_grants(vec![b_id.as_str()]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::CONFLICT, Some("folder_in_use")),
        "{body}"
    );
    assert!(
        body["message"].as_str().unwrap().contains(&reader),
        "{body}"
    );
    let (code, out) = c.sh(&a, &reader, "cat /data/hello.txt").await;
    assert_eq!((code, out.as_str()), (0, "hello\n"));
    let (status, body) = set_grants(vec![a_id.as_str(), b_id.as_str()]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let b_reader = running(&c, &b, json!([{"folder": "data", "target": "/data"}])).await;
    let (status, body) = set_grants(vec![a_id.as_str()]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::CONFLICT, Some("folder_in_use")),
        "{body}"
    );
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains(&b_reader) && !message.contains(&reader),
        "{body}"
    );
    let (code, out) = c.sh(&b, &b_reader, "cat /data/hello.txt").await;
    assert_eq!((code, out.as_str()), (0, "hello\n"));
    let (status, body) = c
        .call(
            &b,
            Method::POST,
            &format!("/v1/sandboxes/{b_reader}/stop"),
            None,
        )
        .await;
    assert!(status.is_success(), "{body}");
    let wait = format!("/v1/sandboxes/{b_reader}/wait?timeout_s=60");
    let (status, body) = c.call(&b, Method::GET, &wait, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = set_grants(vec![a_id.as_str()]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["grants"], json!([a_id]), "{body}");

    // Swapped for a symlink after registration.
    std::fs::rename(root.join("swap"), root.join("swap-old")).unwrap();
    symlink(root.join("swap-old"), root.join("swap")).unwrap();
    let (status, body) = sandbox(&c, &a, json!([{"folder": "swap", "target": "/s"}])).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::CONFLICT, Some("folder_path_changed")),
        "{body}"
    );
    timing.phase("mounts");

    // Stop both and delete the folder.
    for id in [&reader, &writer] {
        let (status, body) = c
            .call(&a, Method::POST, &format!("/v1/sandboxes/{id}/stop"), None)
            .await;
        assert!(status.is_success(), "{body}");
        let uri = format!("/v1/sandboxes/{id}/wait?timeout_s=60");
        let (status, body) = c.call(&a, Method::GET, &uri, None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    c.delete(ADMIN_TOKEN, &uri).await;
    let _ = c.dind.exec_in_dind(&["umount", &sub]).await;
    timing.phase("cleanup");

    // Every folder action is audited, refused registrations with their code.
    let (status, page) = c
        .call(ADMIN_TOKEN, Method::GET, "/v1/audit?limit=500", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let rows: Vec<(String, u64, String)> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"].as_str().unwrap().contains("/v1/folders"))
        .map(|r| {
            let action = r["action"].as_str().unwrap().to_owned();
            let detail = r["detail"].as_str().unwrap_or_default().to_owned();
            (action, r["status"].as_u64().unwrap(), detail)
        })
        .collect();
    let count = |action: &str, status: u64| {
        rows.iter()
            .filter(|(a, s, _)| a == action && *s == status)
            .count()
    };
    assert_eq!(count("POST /v1/folders", 201), 3, "{rows:?}");
    assert_eq!(count("DELETE /v1/folders/{id}", 409), 1, "{rows:?}");
    assert_eq!(count("DELETE /v1/folders/{id}", 204), 1, "{rows:?}");
    assert_eq!(count("PUT /v1/folders/{id}/grants", 409), 2, "{rows:?}");
    assert_eq!(count("PUT /v1/folders/{id}/grants", 200), 2, "{rows:?}");
    for (_, _, code) in &attacks {
        assert!(
            rows.iter().any(|(_, _, d)| d.ends_with(*code)),
            "{code}: {rows:?}"
        );
    }

    // `doctor`: the controller and the DinD see the same root; `/tmp` exists in both, but
    // they are different directories.
    let data = tempfile::tempdir().unwrap();
    let doctor = |folders_root: String| {
        let data = data.path().display().to_string();
        let host = format!("tcp://{}:{DIND_TLS_PORT}", c.dind.ip());
        let certs = c.dind.cert_dir().join("client").display().to_string();
        let vars = [
            ("AIRLOCK_DATA_DIR", data),
            ("AIRLOCK_EGRESS", "false".to_owned()),
            ("AIRLOCK_DOCKER_HOST", host),
            ("AIRLOCK_DOCKER_CERT_PATH", certs),
            ("AIRLOCK_FOLDERS_ROOT", folders_root),
        ];
        let config =
            Config::from_lookup(|var| vars.iter().find(|(k, _)| *k == var).map(|(_, v)| v.clone()))
                .unwrap();
        async move { doctor::run(&config, TESTBOX_IMAGE).await }
    };
    let report = doctor(root_text.clone()).await;
    let line = report.get("folders").unwrap();
    assert_eq!(line.verdict, Verdict::Pass, "{report}");
    let report = doctor("/tmp".to_owned()).await;
    let line = report.get("folders").unwrap();
    assert_eq!(line.verdict, Verdict::Fail, "{report}");
    assert!(line.detail.contains("inode"), "{report}");
    timing.phase("doctor");
}
