//! The node's pool document: at the store on both backends (imports by hash per node; an
//! admin's edit stays until the variable changes), over the API in process (admins only;
//! every problem named by its field and nothing stored; the allow list; the canonical form;
//! audited, refusals too), and through the offline `airlock pools set|show` CLI.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use airlock::accounts::user::Role;
use airlock::config::DatabaseConfig;
use airlock::store::{PoolConfigSource, Store};
use axum::http::{Method, StatusCode};
use serde_json::{json, Value};

mod common;
use common::backends::{both_backends, Fixture};
use common::{account, airlock, app_with, call, user, AppOptions, TestApp};

const TOKEN: &str = "test-admin-token-0123456789";

both_backends!(
    pool_documents_import_by_hash_per_node,
    |f: Fixture| async move {
        let store = &f.store;
        assert_eq!(store.pool_config("node-a").await.unwrap(), None);
        let (a, b, c) = (
            r#"[{"image":"a:1","size":1}]"#,
            "[]",
            r#"[{"image":"c:1","size":2}]"#,
        );
        assert!(store.import_pool_env("node-a", a, "hash-a").await.unwrap());
        assert!(
            !store.import_pool_env("node-a", a, "hash-a").await.unwrap(),
            "the same document is imported once"
        );
        let stored = store.pool_config("node-a").await.unwrap().unwrap();
        assert_eq!(stored.document, a);
        assert_eq!(stored.source, PoolConfigSource::Env);
        assert_eq!(stored.env_sha256.as_deref(), Some("hash-a"));
        // Another node's document is its own.
        assert_eq!(store.pool_config("node-b").await.unwrap(), None);

        // An admin's edit stays while the variable is unchanged.
        let admin = user(store, "admin").await;
        let before = store
            .replace_pool_config("node-a", b, Some(admin.id))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(before.document, a);
        assert!(!store.import_pool_env("node-a", a, "hash-a").await.unwrap());
        let stored = store.pool_config("node-a").await.unwrap().unwrap();
        assert_eq!(
            (stored.document.as_str(), stored.source),
            (b, PoolConfigSource::Api)
        );
        assert_eq!(stored.updated_by, Some(admin.id));
        assert_eq!(stored.env_sha256.as_deref(), Some("hash-a"));

        // A changed variable replaces it; the offline CLI's edit names nobody.
        assert!(store.import_pool_env("node-a", c, "hash-c").await.unwrap());
        assert_eq!(
            store.pool_config("node-a").await.unwrap().unwrap().document,
            c
        );
        store.replace_pool_config("node-a", a, None).await.unwrap();
        let stored = store.pool_config("node-a").await.unwrap().unwrap();
        assert_eq!(
            (stored.source, stored.updated_by),
            (PoolConfigSource::Api, None)
        );
    }
);

async fn harness(vars: &'static [(&'static str, &'static str)]) -> TestApp {
    app_with(AppOptions {
        token: Some(TOKEN),
        vars,
        ..AppOptions::default()
    })
    .await
}

/// The fields a 400 names.
fn fields(body: &Value) -> Vec<&str> {
    body["fields"]
        .as_array()
        .unwrap_or_else(|| panic!("no fields: {body}"))
        .iter()
        .map(|f| f["field"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn admins_set_the_pools_and_every_problem_is_named() {
    let h = harness(&[]).await;
    let (status, body) = call(&h, TOKEN, Method::GET, "/v1/pools/config", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (body["source"].clone(), body["document"].clone()),
        (json!("none"), json!([]))
    );

    // A member may neither read nor set them.
    let (_, member) = account(&h.store, "member", Role::Member).await;
    let doc = json!([{"image": "airlock/testbox:dev", "size": 2}]);
    let (status, _) = call(&h, &member, Method::PUT, "/v1/pools", Some(doc.clone())).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = call(&h, &member, Method::GET, "/v1/pools/config", None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Every problem at once, each by its field; nothing stored.
    let bad = json!([
        {"image": "airlock/testbox:dev", "size": 999, "user": "0"},
        {"image": "x:1", "size": 1, "shape": {"memory_mb": 999_999, "disk_mb": 10}},
    ]);
    let (status, body) = call(&h, TOKEN, Method::PUT, "/v1/pools", Some(bad)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(
        fields(&body),
        [
            "[0].user",
            "[0].size",
            "[1].shape.memory_mb",
            "[1].shape.disk_mb"
        ],
        "{body}"
    );
    let typo = json!([{"image": "x:1", "size": 1, "sise": 2}]);
    let (status, body) = call(&h, TOKEN, Method::PUT, "/v1/pools", Some(typo)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(fields(&body), ["[0].sise"], "{body}");
    let twice = json!([{"image": "x:1", "size": 1}, {"image": "x:1", "size": 2}]);
    let (status, body) = call(&h, TOKEN, Method::PUT, "/v1/pools", Some(twice)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(fields(&body), ["[1].image"], "{body}");
    assert_eq!(h.store.pool_config("local").await.unwrap(), None);

    // A good one is stored in canonical form and read back.
    let good = json!([{"size": 2, "image": "airlock/testbox:dev", "shape": {"memory_mb": 128}}]);
    let (status, body) = call(&h, TOKEN, Method::PUT, "/v1/pools", Some(good)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let canonical =
        json!([{"image": "airlock/testbox:dev", "size": 2, "shape": {"memory_mb": 128}}]);
    assert_eq!(body["document"], canonical);
    assert_eq!(
        (body["source"].as_str(), body["members"].as_u64()),
        (Some("api"), Some(2))
    );
    assert_eq!(body["updated_by"], json!(h.admin.to_string()));
    let (_, read) = call(&h, TOKEN, Method::GET, "/v1/pools/config", None).await;
    assert_eq!(read, body);
    let stored = h.store.pool_config("local").await.unwrap().unwrap();
    assert_eq!(
        stored.document, r#"[{"image":"airlock/testbox:dev","size":2,"shape":{"memory_mb":128}}]"#,
        "fields in declaration order"
    );

    // `[]` empties it.
    let (status, body) = call(&h, TOKEN, Method::PUT, "/v1/pools", Some(json!([]))).await;
    assert_eq!(
        (status, body["members"].as_u64()),
        (StatusCode::OK, Some(0))
    );

    // Audited, the refusals too (newest first).
    let (_, audit) = call(&h, TOKEN, Method::GET, "/v1/audit?limit=100", None).await;
    let rows: Vec<(u64, String)> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == "PUT /v1/pools")
        .map(|r| {
            let detail = r["detail"].as_str().unwrap_or_default().to_owned();
            (r["status"].as_u64().unwrap(), detail)
        })
        .collect();
    let statuses: Vec<u64> = rows.iter().map(|r| r.0).collect();
    assert_eq!(statuses, [200, 200, 400, 400, 400, 403], "{rows:?}");
    assert_eq!(rows[0].1, "pools=0 members=0 (was pools=1 members=2)");
    assert_eq!(rows[1].1, "pools=1 members=2 (was pools=0 members=0)");
    assert!(
        rows[4]
            .1
            .starts_with("refused: 4 problems, the first [0].user"),
        "{rows:?}"
    );
}

#[tokio::test]
async fn the_allow_list_bounds_a_pools_image() {
    let h = harness(&[("AIRLOCK_IMAGES", "airlock/testbox:dev")]).await;
    let doc = json!([{"image": "airlock/other:dev", "size": 1}]);
    let (status, body) = call(&h, TOKEN, Method::PUT, "/v1/pools", Some(doc)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(fields(&body), ["[0].image"], "{body}");
    let doc = json!([{"image": "airlock/testbox:dev", "size": 1}]);
    let (status, body) = call(&h, TOKEN, Method::PUT, "/v1/pools", Some(doc)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[test]
fn the_cli_sets_and_shows_the_pools_offline() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let run = |args: &[&str], stdin: &str| {
        let out = airlock(args, &[("AIRLOCK_DATA_DIR", data)], stdin);
        let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
        (out.status.code(), text(out.stdout), text(out.stderr))
    };

    let (code, _, err) = run(&["pools", "set", "-"], r#"[{"image": "a:1", "size": 200}]"#);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("invalid:\n  [0].size: "), "{err}");

    let file = dir.path().join("pools.json");
    std::fs::write(
        &file,
        r#"[{"image": "airlock/testbox:dev", "size": 3, "max_idle_s": 60}]"#,
    )
    .unwrap();
    let (code, out, err) = run(&["pools", "set", file.to_str().unwrap()], "");
    assert_eq!(code, Some(0), "{err}");
    assert!(out.starts_with("node local: source api\n"), "{out}");
    assert!(
        out.contains("[0] airlock/testbox:dev: 3 members, idle 60 s"),
        "{out}"
    );

    let (code, out, err) = run(&["pools", "show"], "");
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.ends_with("[{\"image\":\"airlock/testbox:dev\",\"size\":3,\"max_idle_s\":60}]\n"),
        "{out}"
    );

    // Written as the CLI: an `api` row that names no account.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let config = DatabaseConfig::Sqlite {
            path: dir.path().join("airlock.db"),
        };
        let store = Store::connect(&config).await.unwrap();
        let stored = store.pool_config("local").await.unwrap().unwrap();
        assert_eq!(stored.source, PoolConfigSource::Api);
        assert_eq!(stored.updated_by, None);
        store.close().await;
    });
}
