//! The sandbox entry's JSON, pinned byte for byte.

use airlock_egress_policy::Mode;

use super::*;

fn put(ceiling: Option<&str>) -> PutSandbox {
    PutSandbox {
        sandbox_id: None,
        source_addrs: vec!["10.213.0.3".parse().unwrap()],
        credential_hash: "ab".to_owned(),
        policy: None,
        generation: 2,
        ceiling: ceiling.map(str::to_owned),
        inspection: None,
        member: None,
    }
}

#[test]
fn a_push_round_trips_through_its_pinned_json() {
    let json = r#"{"source_addrs":["10.213.0.3"],"credential_hash":"ab","policy":null,"generation":2,"ceiling":"user:x@12345678"}"#;
    let body = put(Some("user:x@12345678"));
    assert_eq!(serde_json::to_string(&body).unwrap(), json);
    assert_eq!(serde_json::from_str::<PutSandbox>(json).unwrap(), body);
}

#[test]
fn a_push_with_a_policy_carries_the_policy_object() {
    let mut body = put(None);
    body.policy = Some(PolicySpec {
        mode: Some(Mode::Report),
        allow_ports: Some(vec![443]),
        ..PolicySpec::default()
    });
    let json = r#"{"source_addrs":["10.213.0.3"],"credential_hash":"ab","policy":{"mode":"report","allow_domains":null,"deny_domains":null,"allow_ports":[443],"allow_cidrs":null,"max_bytes":null,"max_connections":null},"generation":2}"#;
    assert_eq!(serde_json::to_string(&body).unwrap(), json);
    assert_eq!(serde_json::from_str::<PutSandbox>(json).unwrap(), body);
}

#[test]
fn entries_carry_their_ceiling_only_when_known() {
    let mut body = put(Some("user:x@12345678"));
    let json = serde_json::to_value(&body).unwrap();
    assert_eq!(json["ceiling"], "user:x@12345678");
    body.ceiling = None;
    let json = serde_json::to_value(&body).unwrap();
    assert!(json.get("ceiling").is_none(), "{json}");
}

#[test]
fn the_proxy_reads_what_a_body_may_leave_out_and_refuses_what_it_does_not_know() {
    let minimal = r#"{"source_addrs":["10.213.0.3"],"credential_hash":"ab","generation":2}"#;
    assert_eq!(
        serde_json::from_str::<PutSandbox>(minimal).unwrap(),
        put(None)
    );
    let named = r#"{"sandbox_id":"s1","source_addrs":[],"credential_hash":"ab","generation":2}"#;
    let read: PutSandbox = serde_json::from_str(named).unwrap();
    assert_eq!(read.sandbox_id.as_deref(), Some("s1"));
    let unknown = minimal.replace("\"generation\"", "\"token\":\"x\",\"generation\"");
    assert!(serde_json::from_str::<PutSandbox>(&unknown).is_err());
}

#[test]
fn the_credential_hash_stays_out_of_debug_output() {
    let shown = format!("{:?}", put(None));
    assert!(!shown.contains("\"ab\""), "{shown}");
}

#[test]
fn the_reply_round_trips_through_its_pinned_json() {
    let reply = PutSandboxReply {
        sandbox_id: "s1".to_owned(),
        generation: 2,
        outcome: PutOutcome::Replaced,
        boot_id: "b00t".to_owned(),
    };
    let json = r#"{"sandbox_id":"s1","generation":2,"outcome":"replaced","boot_id":"b00t"}"#;
    assert_eq!(serde_json::to_string(&reply).unwrap(), json);
    assert_eq!(
        serde_json::from_str::<PutSandboxReply>(json).unwrap(),
        reply
    );
    for outcome in [
        PutOutcome::Created,
        PutOutcome::Replaced,
        PutOutcome::Unchanged,
    ] {
        let json = serde_json::to_string(&outcome).unwrap();
        assert_eq!(json, format!("\"{}\"", outcome.as_str()));
    }
}

#[test]
fn the_list_round_trips_through_its_pinned_json() {
    let list = SandboxList {
        boot_id: "b00t".to_owned(),
        sandboxes: vec![ListedSandbox {
            generation: 4,
            sandbox_id: "s1".to_owned(),
            source_addrs: vec!["10.213.0.3".parse().unwrap()],
        }],
    };
    let json = r#"{"boot_id":"b00t","sandboxes":[{"generation":4,"sandbox_id":"s1","source_addrs":["10.213.0.3"]}]}"#;
    assert_eq!(serde_json::to_string(&list).unwrap(), json);
    assert_eq!(serde_json::from_str::<SandboxList>(json).unwrap(), list);
    let old: SandboxList =
        serde_json::from_str(r#"{"sandboxes":[{"sandbox_id":"s1","generation":4}]}"#).unwrap();
    assert_eq!(old.sandboxes[0].sandbox_id, "s1");
}

#[test]
fn the_detail_round_trips_through_its_pinned_json() {
    let detail = SandboxDetail {
        sandbox_id: "s1".to_owned(),
        generation: 4,
        source_addrs: vec!["10.213.0.3".parse().unwrap()],
        policy: PolicySpec::default(),
        ceiling: None,
        bytes_used: 10,
        open_connections: 1,
    };
    let json = r#"{"sandbox_id":"s1","generation":4,"source_addrs":["10.213.0.3"],"policy":{"mode":null,"allow_domains":null,"deny_domains":null,"allow_ports":null,"allow_cidrs":null,"max_bytes":null,"max_connections":null},"ceiling":null,"bytes_used":10,"open_connections":1}"#;
    assert_eq!(serde_json::to_string(&detail).unwrap(), json);
    assert_eq!(serde_json::from_str::<SandboxDetail>(json).unwrap(), detail);
}

#[test]
fn a_claim_names_its_member_and_a_plain_push_does_not() {
    let mut body = put(None);
    body.member = Some("m1".to_owned());
    let json = r#"{"source_addrs":["10.213.0.3"],"credential_hash":"ab","policy":null,"generation":2,"member":"m1"}"#;
    assert_eq!(serde_json::to_string(&body).unwrap(), json);
    assert_eq!(serde_json::from_str::<PutSandbox>(json).unwrap(), body);
    body.member = None;
    let json = serde_json::to_value(&body).unwrap();
    assert!(json.get("member").is_none(), "{json}");
}
