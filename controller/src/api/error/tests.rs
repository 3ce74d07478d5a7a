//! Error bodies, pinned byte for byte.

use super::*;
use crate::egress::ceilings::PolicyRefusal;
use crate::egress::PolicyError;
use crate::images::allow::ImageRefusal;
use crate::images::ImageError;
use crate::sandboxes::SandboxError;

async fn render(error: ApiError) -> (StatusCode, String) {
    let response = error.into_response();
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), 1 << 16)
        .await
        .unwrap();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn error_bodies() {
    let validation = ApiError::Validation(vec![
        FieldReason {
            field: "limits.cpus".to_owned(),
            reason: "must be at most 2 (operator maximum)".to_owned(),
        },
        FieldReason {
            field: "env.HTTP_PROXY".to_owned(),
            reason: "is reserved for the controller".to_owned(),
        },
    ]);
    let (status, body) = render(validation).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    expect_test::expect![[r#"{"error":"invalid_request","message":"limits.cpus: must be at most 2 (operator maximum); env.HTTP_PROXY: is reserved for the controller","fields":[{"field":"limits.cpus","reason":"must be at most 2 (operator maximum)"},{"field":"env.HTTP_PROXY","reason":"is reserved for the controller"}]}"#]].assert_eq(&body);

    let (status, body) = render(ApiError::Internal("secret detail".to_owned())).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    expect_test::expect![[r#"{"error":"internal","message":"internal error"}"#]].assert_eq(&body);

    let (status, body) = render(ApiError::Unauthorized).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    expect_test::expect![[
        r#"{"error":"unauthorized","message":"missing or invalid bearer token"}"#
    ]]
    .assert_eq(&body);

    let loading = ApiError::from(ImageError::Loading {
        image: "a/b:1".to_owned(),
        waited: std::time::Duration::from_secs(60),
    });
    let (status, body) = render(loading).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    expect_test::expect![[r#"{"error":"image_loading","message":"image `a/b:1` is still being loaded onto the node (waited 60s); retry later, progress at GET /v1/images"}"#]].assert_eq(&body);
    let refused = ImageRefusal::DigestMismatch {
        image: "a/b:1".to_owned(),
        expected: "sha256:aa".to_owned(),
        actual: "sha256:bb".to_owned(),
    };
    let (status, body) = render(ApiError::from(ImageError::from(refused))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    expect_test::expect![[r#"{"error":"image_digest_mismatch","message":"image `a/b:1` on the node is sha256:bb, but the allowed digest is sha256:aa"}"#]].assert_eq(&body);

    let exceeded = CeilingExceeded {
        field: "policy.allow_cidrs[0]".to_owned(),
        value: serde_json::json!("10.0.0.0/8"),
        ceiling: "role:member@3f2a9c1e".to_owned(),
        reason: "a non-global CIDR must lie inside one of the ceiling's allow_cidrs".to_owned(),
    };
    let refused = PolicyError::Refused(PolicyRefusal::Exceeds(exceeded));
    let (status, body) = render(ApiError::from(refused)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    expect_test::expect![[r#"{"error":"policy_exceeds_ceiling","message":"policy.allow_cidrs[0] = 10.0.0.0/8 exceeds the ceiling role:member@3f2a9c1e: a non-global CIDR must lie inside one of the ceiling's allow_cidrs","field":"policy.allow_cidrs[0]","value":"10.0.0.0/8","ceiling":"role:member@3f2a9c1e"}"#]].assert_eq(&body);
    let never = PolicyRefusal::NeverEffective(vec![(
        "policy.allow_cidrs[0]".to_owned(),
        "169.254.169.254/32 is metadata address space, which no policy can admit".to_owned(),
    )]);
    let (status, body) = render(ApiError::from(PolicyError::Refused(never))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    expect_test::expect![[r#"{"error":"invalid_request","message":"policy.allow_cidrs[0]: 169.254.169.254/32 is metadata address space, which no policy can admit","fields":[{"field":"policy.allow_cidrs[0]","reason":"169.254.169.254/32 is metadata address space, which no policy can admit"}]}"#]].assert_eq(&body);

    let held = crate::sandbox::FieldError {
        field: "secret_env.API_KEY".to_owned(),
        problem: crate::sandbox::Problem::NotExposable {
            secret: "anthropic".to_owned(),
        },
    };
    let (status, body) = render(ApiError::from(SandboxError::Invalid(vec![held]))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    expect_test::expect![[r#"{"error":"secret_not_exposable","message":"secret_env.API_KEY: names secret `anthropic`, which is egress_only: bind it with `credentials`, or store it again with \"expose\": \"env\"","fields":[{"field":"secret_env.API_KEY","reason":"names secret `anthropic`, which is egress_only: bind it with `credentials`, or store it again with \"expose\": \"env\""}]}"#]].assert_eq(&body);

    let unavailable = ApiError::from(SandboxError::SubnetsExhausted);
    let (status, body) = render(unavailable).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    expect_test::expect![[r#"{"error":"capacity","message":"no sandbox network capacity left"}"#]]
        .assert_eq(&body);

    // A broken invariant of the controller's own is a 500 whose detail is only logged.
    let internal = ApiError::from(SandboxError::Internal("the run file does not encode"));
    let (status, body) = render(internal).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(body.contains(r#""error":"internal""#), "{body}");
    assert!(!body.contains("run file"), "{body}");
}

#[tokio::test]
async fn a_failed_required_selftest_is_a_422_with_the_sandbox_and_the_result() {
    use crate::sandbox::selftest::Selftest;
    use crate::sandbox::{Maximums, SandboxRequest, SandboxState};
    use crate::store::Sandbox;

    let spec = SandboxRequest {
        image: "airlock/testbox:dev".to_owned(),
        ..SandboxRequest::default()
    }
    .validate(&Maximums {
        limits: crate::sandbox::Limits {
            cpus: crate::sandbox::Cpus::from_millis(1000),
            memory_mb: 512,
            pids: 64,
            disk_mb: None,
        },
        timeout: std::time::Duration::from_secs(600),
        default_timeout: std::time::Duration::from_secs(60),
    })
    .unwrap();
    let at = time::macros::datetime!(2025-01-02 03:04:05 UTC);
    let sandbox = Sandbox {
        id: "0190a4a0-0000-7000-8000-000000000000".parse().unwrap(),
        owner: crate::accounts::user::UserId::new(),
        spec,
        desired: crate::sandbox::DesiredState::Running,
        state: SandboxState::Failed,
        end_reason: Some(crate::sandbox::EndReason::Error {
            message: Some("the isolation self-test did not pass".to_owned()),
        }),
        generation: 1,
        node: None,
        network_name: None,
        subnet: None,
        container_id: None,
        idempotency_key: None,
        created_at: at,
        updated_at: at,
        ended_at: Some(at),
    };
    let selftest = Selftest::error(1, "no probe image".to_owned(), at);
    let (status, body) = render(ApiError::selftest_failed(&sandbox, &selftest)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    expect_test::expect![[r#"{"error":"selftest_failed","message":"the isolation self-test error (0 check(s) failed); the sandbox was removed","sandbox":{"id":"0190a4a0-0000-7000-8000-000000000000","state":"failed","desired_state":"running","end_reason":{"kind":"error","message":"the isolation self-test did not pass"},"exit_code":null,"image":"airlock/testbox:dev","cmd":[],"env":[],"limits":{"cpus":1.0,"memory_mb":512,"pids":64,"disk_mb":null},"timeout_s":60,"idle_timeout_s":null,"labels":{},"read_only_rootfs":true,"user":"65534:65534","workdir":null,"home":null,"mounts":[],"address":null,"created_at":"2025-01-02T03:04:05Z","updated_at":"2025-01-02T03:04:05Z","ended_at":"2025-01-02T03:04:05Z"},"selftest":{"status":"error","generation":1,"ran_at":"2025-01-02T03:04:05Z","message":"no probe image","report":null}}"#]].assert_eq(&body);
}

#[test]
fn files_refusals_answer_the_code_and_status_their_audit_rows_name() {
    use crate::files::FilesError;
    let every = || {
        vec![
            FilesError::NotFound("volume"),
            FilesError::NotFound("sandbox"),
            FilesError::NotRunning("stopped".to_owned()),
            FilesError::BadPath("bad".to_owned()),
            FilesError::Invalid {
                field: "depth",
                message: "too deep".to_owned(),
            },
            FilesError::PathNotFound("/x".to_owned()),
            FilesError::PathNotWritable("/x".to_owned()),
            FilesError::PathOnTmpfs("/tmp".to_owned()),
            FilesError::NotADirectory("/x".to_owned()),
            FilesError::VolumeBusy(crate::sandbox::SandboxId::new()),
            FilesError::BadArchive("x".to_owned()),
            FilesError::TooLarge("x".to_owned()),
            FilesError::LengthRequired,
            FilesError::TooManyUploads(crate::files::SlotLimit::User),
            FilesError::TooManyUploads(crate::files::SlotLimit::Node),
        ]
    };
    for error in every() {
        let (status, code) = (error.status(), error.code());
        let shown = error.to_string();
        let (answered, answered_code) = ApiError::from(error).status_code();
        assert_eq!(
            (answered.as_u16(), answered_code),
            (status, code),
            "{shown}"
        );
    }
}
