//! One test per rule of the frame: each refusal and its stable code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{json, Value};

use super::*;

fn rules() -> Rules {
    Rules::airlock(vec!["/tmp".into(), "/home/agent/".into()])
}

fn good() -> Value {
    json!({
        "v": 1,
        "sandbox_id": "sbx_0123-abc",
        "argv": ["sh", "-c", "echo hi"],
        "env": {"FOO": "bar", "_x9": ""},
        "workdir": "/tmp",
    })
}

fn with(mut base: Value, key: &str, value: Value) -> Value {
    base[key] = value;
    base
}

fn frame_of(body: &Value) -> Vec<u8> {
    encode(&serde_json::to_vec(body).unwrap()).unwrap()
}

fn code(body: Value) -> &'static str {
    decode(&frame_of(&body), &rules()).unwrap_err().code()
}

#[test]
fn a_good_frame_decodes() {
    let frame = decode(&frame_of(&good()), &rules()).unwrap();
    assert_eq!(frame.argv, ["sh", "-c", "echo hi"]);
    assert_eq!(frame.env.get("FOO").map(String::as_str), Some("bar"));
    assert_eq!(frame.workdir, "/tmp");
    assert_eq!(frame.ca_pem, None);
    assert!(frame.files.is_empty());
}

#[test]
fn header_rules() {
    let mut bytes = frame_of(&good());
    bytes[0] = b'X';
    assert_eq!(decode(&bytes, &rules()).unwrap_err(), FrameError::BadMagic);
    assert_eq!(decode(b"XLK", &rules()).unwrap_err(), FrameError::BadMagic);
    assert_eq!(decode(b"ALK", &rules()).unwrap_err(), FrameError::Truncated);
    assert_eq!(decode(b"", &rules()).unwrap_err(), FrameError::Truncated);
    let good = frame_of(&good());
    assert_eq!(
        decode(&good[..good.len() - 1], &rules()).unwrap_err(),
        FrameError::Truncated
    );
    let mut long = good.clone();
    long.push(b' ');
    assert_eq!(decode(&long, &rules()).unwrap_err(), FrameError::Trailing);
}

#[test]
fn the_length_is_capped_at_one_mib_before_any_body_is_read() {
    let header = |len: u32| {
        let mut h = [0u8; HEADER_LEN];
        h[..4].copy_from_slice(&MAGIC);
        h[4..].copy_from_slice(&len.to_be_bytes());
        h
    };
    assert_eq!(body_len(&header(1 << 20)), Ok(MAX_BODY));
    let over = body_len(&header((1 << 20) + 1)).unwrap_err();
    assert_eq!(over.code(), "frame_too_large");
    assert_eq!(
        body_len(&header(u32::MAX)).unwrap_err().code(),
        "frame_too_large"
    );
    let big = vec![b' '; MAX_BODY + 1];
    assert_eq!(
        parse_body(&big, &rules()).unwrap_err().code(),
        "frame_too_large"
    );
}

#[test]
fn json_shape_rules() {
    assert_eq!(code(with(good(), "extra", json!(1))), "unknown_field");
    let mut missing = good();
    missing.as_object_mut().unwrap().remove("workdir");
    assert_eq!(code(missing), "missing_field");
    assert_eq!(code(with(good(), "argv", json!("sh"))), "bad_json");
    let body = br#"{"v":1,"v":1,"sandbox_id":"a","argv":["a"],"env":{},"workdir":"/"}"#;
    let err = decode(&encode(body).unwrap(), &rules()).unwrap_err();
    assert_eq!(err.code(), "duplicate_field");
    let body = br#"{"v":1,"sandbox_id":"a","argv":["a"],"env":{"A":"1","A":"2"},"workdir":"/"}"#;
    let err = decode(&encode(body).unwrap(), &rules()).unwrap_err();
    assert_eq!(err.code(), "duplicate_field");
    assert!(err.to_string().contains("\"A\""), "{err}");
    let unknown_in_file = json!([{"path": "/tmp/a", "content": "", "owner": 0}]);
    assert_eq!(
        code(with(good(), "files", unknown_in_file)),
        "unknown_field"
    );
    assert_eq!(
        parse_body(b"not json", &rules()).unwrap_err().code(),
        "bad_json"
    );
}

#[test]
fn version_and_sandbox_id() {
    assert_eq!(code(with(good(), "v", json!(2))), "unsupported_version");
    for id in ["", "a b", "a/b", "ü", &"a".repeat(MAX_SANDBOX_ID + 1)] {
        assert_eq!(
            code(with(good(), "sandbox_id", json!(id))),
            "bad_sandbox_id",
            "{id}"
        );
    }
    let ok = with(good(), "sandbox_id", json!("a".repeat(MAX_SANDBOX_ID)));
    assert!(decode(&frame_of(&ok), &rules()).is_ok());
}

#[test]
fn argv_rules() {
    assert_eq!(code(with(good(), "argv", json!([]))), "argv_empty");
    assert_eq!(code(with(good(), "argv", json!(["", "x"]))), "argv_empty");
    let err = decode(
        &frame_of(&with(good(), "argv", json!(["sh", "a\u{0}b"]))),
        &rules(),
    );
    assert_eq!(err.unwrap_err(), FrameError::ArgvNul { index: 1 });
}

#[test]
fn env_names_and_nul() {
    for name in ["", "1A", "A-B", "A B", "A=B", "Ä", "A.B"] {
        assert_eq!(
            code(with(good(), "env", json!({ name: "v" }))),
            "env_name",
            "{name:?}"
        );
    }
    for name in ["A", "_", "a_1", "_9Z"] {
        let ok = with(good(), "env", json!({ name: "v" }));
        assert!(decode(&frame_of(&ok), &rules()).is_ok(), "{name}");
    }
    assert_eq!(
        code(with(good(), "env", json!({"A": "x\u{0}y"}))),
        "env_nul"
    );
    assert_eq!(code(with(good(), "env", json!({"A\u{0}": "x"}))), "env_nul");
}

#[test]
fn airlock_variables_cannot_be_overridden() {
    let names = RESERVED_NAMES
        .iter()
        .copied()
        .chain(["AIRLOCK_", "AIRLOCK_ANYTHING"]);
    for name in names {
        assert_eq!(
            code(with(good(), "env", json!({ name: "x" }))),
            "env_reserved",
            "{name}"
        );
    }
    // Exact names only: a lookalike is the tenant's.
    let ok = with(
        good(),
        "env",
        json!({"HTTP_PROXY_X": "1", "airlock_x": "1"}),
    );
    assert!(decode(&frame_of(&ok), &rules()).is_ok());
    // The list is a parameter.
    let custom = Rules {
        reserved_names: vec!["ONLY".into()],
        ..Rules::default()
    };
    let body = with(good(), "env", json!({"HTTP_PROXY": "x", "ONLY": "y"}));
    assert_eq!(
        decode(&frame_of(&body), &custom).unwrap_err().code(),
        "env_reserved"
    );
}

#[test]
fn workdir_must_be_absolute() {
    for dir in ["", "tmp", "./tmp", "/tm\u{0}p"] {
        assert_eq!(
            code(with(good(), "workdir", json!(dir))),
            "workdir_not_absolute"
        );
    }
}

#[test]
fn ca_pem_must_look_like_a_certificate() {
    assert_eq!(code(with(good(), "ca_pem", json!("hello"))), "ca_pem");
    let nul = "-----BEGIN CERTIFICATE-----\n\u{0}";
    assert_eq!(code(with(good(), "ca_pem", json!(nul))), "ca_pem");
    let pem = "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n";
    let frame = decode(&frame_of(&with(good(), "ca_pem", json!(pem))), &rules()).unwrap();
    assert_eq!(frame.ca_pem.as_deref(), Some(pem));
}

fn file(path: &str, content: &str) -> Value {
    json!({"path": path, "content": content})
}

#[test]
fn seed_files_within_limits_decode() {
    let files =
        json!([file("/tmp/a", "x"), {"path": "/home/agent/.cfg/b", "content": "", "mode": 0o600}]);
    let frame = decode(&frame_of(&with(good(), "files", files)), &rules()).unwrap();
    assert_eq!(frame.files[0].mode, DEFAULT_MODE);
    assert_eq!(frame.files[1].mode, 0o600);
    let max: Vec<Value> = (0..MAX_FILES)
        .map(|i| file(&format!("/tmp/{i}"), ""))
        .collect();
    assert!(decode(&frame_of(&with(good(), "files", json!(max))), &rules()).is_ok());
}

#[test]
fn seed_file_count_and_size_are_capped() {
    let many: Vec<Value> = (0..=MAX_FILES)
        .map(|i| file(&format!("/tmp/{i}"), ""))
        .collect();
    assert_eq!(code(with(good(), "files", json!(many))), "files_too_many");
    let half = "x".repeat(MAX_FILES_BYTES / 2);
    let big = json!([
        file("/tmp/a", &half),
        file("/tmp/b", &half),
        file("/tmp/c", "x")
    ]);
    let body = serde_json::to_vec(&with(good(), "files", big)).unwrap();
    // Over the frame cap as a frame, so the body rule is checked directly.
    let err = validate(&serde_json::from_slice(&body).unwrap(), &rules()).unwrap_err();
    assert_eq!(
        err,
        FrameError::FilesTooLarge {
            bytes: MAX_FILES_BYTES + 1
        }
    );
}

#[test]
fn seed_paths_must_be_normal_and_under_a_writable_root() {
    for path in [
        "tmp/a",
        "/tmp/../etc/passwd",
        "/tmp/./a",
        "/tmp//a",
        "/tmp/a/",
        "/",
        "",
    ] {
        assert_eq!(
            code(with(good(), "files", json!([file(path, "")]))),
            "file_path",
            "{path}"
        );
    }
    for path in [
        "/etc/passwd",
        "/tmp",
        "/tmpx/a",
        "/home/agent",
        "/home/agentx/a",
    ] {
        assert_eq!(
            code(with(good(), "files", json!([file(path, "")]))),
            "file_not_writable",
            "{path}"
        );
    }
    let none = Rules::airlock(Vec::new());
    let body = with(good(), "files", json!([file("/tmp/a", "")]));
    assert_eq!(
        decode(&frame_of(&body), &none).unwrap_err().code(),
        "file_not_writable"
    );
    let twice = json!([file("/tmp/a", ""), file("/tmp/a", "")]);
    assert_eq!(code(with(good(), "files", twice)), "file_duplicate");
    let setuid = json!([{"path": "/tmp/a", "content": "", "mode": 0o4755}]);
    assert_eq!(code(with(good(), "files", setuid)), "file_mode");
}

#[test]
fn path_helpers() {
    assert!(is_normal_absolute("/"));
    assert!(is_normal_absolute("/a/b"));
    assert!(!is_normal_absolute("/a/"));
    assert!(is_strictly_under("/a/b", "/a"));
    assert!(is_strictly_under("/a/b", "/a/"));
    assert!(is_strictly_under("/a", "/"));
    assert!(!is_strictly_under("/", "/"));
    assert!(!is_strictly_under("/ab", "/a"));
    assert!(!is_strictly_under("/a/b", "a"));
    assert!(!is_strictly_under("/a/b", "/a/../x"));
}

#[test]
fn every_code_is_distinct() {
    let errors = [
        FrameError::BadMagic,
        FrameError::TooLarge { len: 0 },
        FrameError::Truncated,
        FrameError::Trailing,
        FrameError::Json {
            message: String::new(),
        },
        FrameError::UnknownField {
            message: String::new(),
        },
        FrameError::MissingField {
            message: String::new(),
        },
        FrameError::Duplicate {
            message: String::new(),
        },
        FrameError::Version { v: 0 },
        FrameError::SandboxId,
        FrameError::ArgvEmpty,
        FrameError::ArgvNul { index: 0 },
        FrameError::EnvNul {
            name: String::new(),
        },
        FrameError::EnvName {
            name: String::new(),
        },
        FrameError::EnvReserved {
            name: String::new(),
        },
        FrameError::Workdir,
        FrameError::FilesTooMany { count: 0 },
        FrameError::FilesTooLarge { bytes: 0 },
        FrameError::FilePath {
            path: String::new(),
        },
        FrameError::FileNotWritable {
            path: String::new(),
        },
        FrameError::FileDuplicate {
            path: String::new(),
        },
        FrameError::FileMode {
            path: String::new(),
            mode: 0,
        },
        FrameError::CaPem,
    ];
    let codes: std::collections::BTreeSet<_> = errors.iter().map(FrameError::code).collect();
    assert_eq!(codes.len(), errors.len());
}

#[test]
fn airlock_env_takes_only_reserved_names() {
    let ok = with(
        good(),
        "airlock_env",
        json!({"HTTPS_PROXY": "http://s:t@10.0.0.1:3128", "AIRLOCK_SANDBOX_ID": "sbx"}),
    );
    let frame = decode(&frame_of(&ok), &rules()).unwrap();
    assert_eq!(frame.airlock_env.len(), 2);
    for name in ["FOO", "PATH", "1A", "A-B"] {
        assert_eq!(
            code(with(good(), "airlock_env", json!({ name: "v" }))),
            "airlock_env_name",
            "{name}"
        );
    }
    assert_eq!(
        code(with(good(), "airlock_env", json!({"NO_PROXY": "a\u{0}"}))),
        "env_nul"
    );
    let body = br#"{"v":1,"sandbox_id":"a","argv":["a"],"env":{},"airlock_env":{"NO_PROXY":"1","NO_PROXY":"2"},"workdir":"/"}"#;
    let err = decode(&encode(body).unwrap(), &rules()).unwrap_err();
    assert_eq!(err.code(), "duplicate_field");
}

#[test]
fn a_built_frame_encodes_to_what_decodes() {
    let frame = Frame {
        v: VERSION,
        sandbox_id: "sbx_1".into(),
        argv: vec!["sh".into(), "-c".into(), "true".into()],
        env: BTreeMap::from([("FOO".into(), "bar".into())]),
        airlock_env: BTreeMap::from([("HTTP_PROXY".into(), "http://p:3128".into())]),
        workdir: "/tmp".into(),
        ca_pem: None,
        files: Vec::new(),
    };
    let bytes = frame.encode().unwrap();
    assert_eq!(bytes[..4], MAGIC);
    assert_eq!(decode(&bytes, &rules()).unwrap(), frame);
    // Empty optional fields are left out, so a bare frame is what older inits read too.
    let bare = Frame {
        airlock_env: BTreeMap::new(),
        ..frame
    };
    let body: Value = serde_json::from_slice(&bare.encode().unwrap()[HEADER_LEN..]).unwrap();
    assert!(body.get("airlock_env").is_none() && body.get("files").is_none());
    let huge = Frame {
        argv: vec!["x".repeat(MAX_BODY)],
        ..bare
    };
    assert_eq!(huge.encode().unwrap_err().code(), "frame_too_large");
}
