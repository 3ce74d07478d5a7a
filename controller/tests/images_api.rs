//! In-process tests of the allowed images: `app(state).oneshot(request)` over
//! in-memory SQLite, with a Docker client pointed at a loopback port where nothing listens.
//! The allow list decides before Docker is asked, so refusals need no daemon; an admitted
//! image goes on to Docker and meets the unreachable node (a generic 500).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use airlock::api::app;
use airlock::images::load::Node;
use airlock::images::prepull;
use airlock::store::ImageRecord;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

mod common;
use common::{app_with, AppOptions, TestApp};

const TOKEN: &str = "test-admin-token-0123456789";

type Harness = TestApp;

fn digest(c: char) -> String {
    format!("sha256:{}", c.to_string().repeat(64))
}

async fn harness(vars: &[(&str, &str)]) -> Harness {
    app_with(AppOptions {
        token: Some(TOKEN),
        vars,
        ..AppOptions::default()
    })
    .await
}

impl Harness {
    /// Runs the start-up pre-pull against the unreachable node: every entry ends `failed`.
    async fn prepull(&self) {
        let node = Node {
            name: "local".to_owned(),
            client: self.docker.clone(),
        };
        let catalog = self.state.services.images.catalog().clone();
        prepull::run(catalog, self.store.clone(), node).await;
    }

    async fn call(&self, method: Method, uri: &str, body: Option<Value>) -> (StatusCode, Value) {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header("authorization", format!("Bearer {TOKEN}"))
            .header("content-type", "application/json")
            .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
            .unwrap();
        let response = app(self.state.clone()).oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    async fn create(&self, image: &str) -> (StatusCode, Value) {
        let body = json!({"image": image, "cmd": ["true"]});
        self.call(Method::POST, "/v1/sandboxes", Some(body)).await
    }
}

#[tokio::test]
async fn images_outside_the_list_are_refused_with_a_typed_reason() {
    let list = format!("airlock/testbox:dev@{}", digest('a'));
    let h = harness(&[("AIRLOCK_IMAGES", &list)]).await;
    for image in ["busybox:latest", "airlock/testbox:other", &digest('b')] {
        let (status, body) = h.create(image).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{image}: {body}");
        assert_eq!(body["error"], "image_not_allowed", "{image}: {body}");
        assert!(body["message"].as_str().unwrap().contains(image));
    }
    // Nothing was half-created.
    let (status, body) = h.call(Method::GET, "/v1/sandboxes", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["items"].as_array().map(Vec::len), Some(0), "{body}");
}

#[tokio::test]
async fn unpinned_tags_are_refused_until_an_import_records_their_digest() {
    let vars = [
        ("AIRLOCK_IMAGES", "airlock/testbox:dev"),
        ("AIRLOCK_IMAGE_WAIT", "50ms"),
    ];
    let h = harness(&vars).await;
    // Before the pre-pull settled the entry, the create waits for it, then gives up.
    let (status, body) = h.create("airlock/testbox:dev").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"], "image_loading");
    h.prepull().await;
    let (status, body) = h.call(Method::GET, "/v1/images", None).await;
    assert_eq!(body["images"][0]["status"], "failed", "{body}");
    let (status2, body) = h.create("airlock/testbox:dev").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(status2, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"], "image_unpinned");
    // `airlock images load` records the tag's image id: that pins it, and the create goes
    // on to the node (unreachable here: a generic 500, not a refusal).
    let record = ImageRecord {
        node: "local".to_owned(),
        reference: "airlock/testbox:dev".to_owned(),
        image_id: digest('c'),
        source: "/bundles/testbox.tar".to_owned(),
        archive_sha256: "d".repeat(64),
        size_bytes: 1,
        loaded_at: time::OffsetDateTime::now_utc(),
    };
    h.store.record_image(&record).await.unwrap();
    let (status, body) = h.create("airlock/testbox:dev").await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    let (status, body) = h.call(Method::GET, "/v1/images", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["recorded"][0]["image_id"], digest('c'), "{body}");
}

#[tokio::test]
async fn pinning_can_be_turned_off_and_no_list_means_any_image() {
    let vars = [
        ("AIRLOCK_IMAGES", "airlock/testbox:dev"),
        ("AIRLOCK_REQUIRE_PINNED", "false"),
    ];
    let h = harness(&vars).await;
    let (status, body) = h.create("airlock/testbox:dev").await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    let open = harness(&[]).await;
    let (status, body) = open.create("anything/at-all:1").await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
}

#[tokio::test]
async fn get_images_shows_the_list_and_its_status() {
    let list = format!("airlock/testbox:dev@{}, busybox", digest('a'));
    let vars = [
        ("AIRLOCK_IMAGES", list.as_str()),
        ("AIRLOCK_BUNDLE_DIR", "/srv/bundles"),
    ];
    let h = harness(&vars).await;
    let (status, body) = h.call(Method::GET, "/v1/images", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["restricted"], true);
    assert_eq!(body["require_pinned"], true);
    assert_eq!(body["bundle_dir_configured"], true);
    assert_eq!(body["registry_configured"], false);
    let images = body["images"].as_array().unwrap();
    assert_eq!(images.len(), 2);
    assert_eq!(
        images[0]["image"],
        format!("airlock/testbox:dev@{}", digest('a'))
    );
    assert_eq!(images[0]["digest"], digest('a'));
    assert_eq!(images[0]["status"], "pending");
    assert_eq!(images[1]["image"], "busybox:latest");
    assert_eq!(images[1]["digest"], Value::Null);
    // It needs a bearer like every /v1 route.
    let request = Request::builder()
        .uri("/v1/images")
        .body(Body::empty())
        .unwrap();
    let response = app(h.state.clone()).oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let doc = airlock::api::openapi::document(&h.state);
    assert!(doc.paths.paths.contains_key("/v1/images"));
}
