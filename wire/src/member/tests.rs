//! The member registration's JSON, pinned byte for byte.

use super::*;

#[test]
fn a_member_push_round_trips_through_its_pinned_json() {
    let body = PutMember {
        source_addrs: vec!["10.213.0.3".parse().unwrap()],
        generation: 1,
    };
    let json = r#"{"source_addrs":["10.213.0.3"],"generation":1}"#;
    assert_eq!(serde_json::to_string(&body).unwrap(), json);
    assert_eq!(serde_json::from_str::<PutMember>(json).unwrap(), body);
    let unknown = r#"{"source_addrs":["10.213.0.3"],"generation":1,"credential_hash":"ab"}"#;
    assert!(serde_json::from_str::<PutMember>(unknown).is_err());
    assert!(serde_json::from_str::<PutMember>(r#"{"source_addrs":[]}"#).is_err());
}

#[test]
fn the_member_reply_round_trips_through_its_pinned_json() {
    let reply = PutMemberReply {
        member_id: "m1".to_owned(),
        generation: 1,
        outcome: PutOutcome::Created,
        boot_id: "b00t".to_owned(),
    };
    let json = r#"{"member_id":"m1","generation":1,"outcome":"created","boot_id":"b00t"}"#;
    assert_eq!(serde_json::to_string(&reply).unwrap(), json);
    assert_eq!(serde_json::from_str::<PutMemberReply>(json).unwrap(), reply);
}

#[test]
fn the_member_list_round_trips_through_its_pinned_json() {
    let list = MemberList {
        boot_id: "b00t".to_owned(),
        members: vec![ListedMember {
            member_id: "m1".to_owned(),
            generation: 3,
            source_addrs: vec!["10.213.0.11".parse().unwrap()],
        }],
    };
    let json = r#"{"boot_id":"b00t","members":[{"member_id":"m1","generation":3,"source_addrs":["10.213.0.11"]}]}"#;
    assert_eq!(serde_json::to_string(&list).unwrap(), json);
    assert_eq!(serde_json::from_str::<MemberList>(json).unwrap(), list);
}
