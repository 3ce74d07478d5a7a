//! The ledger's JSON, pinned byte for byte.

use super::*;

const EVENT: &str = r#"{"seq":7,"sandbox":"sbx-1","generation":3,"method":"CONNECT","host":"example.com","port":443,"addr":"93.184.215.14:443","decision":"would_deny","reason":"domain_not_allowed","rule":"*.example.com","bytes_up":120,"bytes_down":4096,"start_ms":1700000000123,"duration_ms":12,"client":"10.213.0.3:40000","ceiling":"role:member@3f2a9c1e","count":1}"#;

fn event() -> Event {
    Event {
        seq: 7,
        sandbox: Some("sbx-1".to_owned()),
        generation: 3,
        method: "CONNECT".to_owned(),
        host: "example.com".to_owned(),
        port: 443,
        addr: Some("93.184.215.14:443".parse().unwrap()),
        decision: Outcome::WouldDeny,
        reason: "domain_not_allowed".to_owned(),
        rule: Some("*.example.com".to_owned()),
        bytes_up: 120,
        bytes_down: 4096,
        start_ms: 1_700_000_000_123,
        duration_ms: 12,
        client: "10.213.0.3:40000".parse().unwrap(),
        ceiling: Some("role:member@3f2a9c1e".to_owned()),
        count: 1,
        tunnel: None,
        path: None,
        status: None,
        credential: None,
        mode: None,
    }
}

#[test]
fn an_event_round_trips_through_its_pinned_json() {
    assert_eq!(serde_json::to_string(&event()).unwrap(), EVENT);
    assert_eq!(serde_json::from_str::<Event>(EVENT).unwrap(), event());
}

#[test]
fn a_page_round_trips_through_its_pinned_json() {
    let page = EventsPage {
        events: vec![event()],
        next: 7,
        overflowed: 2,
        boot_id: "0a1b2c3d".to_owned(),
    };
    let json = format!(r#"{{"events":[{EVENT}],"next":7,"overflowed":2,"boot_id":"0a1b2c3d"}}"#);
    assert_eq!(serde_json::to_string(&page).unwrap(), json);
    assert_eq!(serde_json::from_str::<EventsPage>(&json).unwrap(), page);
    let without_overflow = r#"{"events":[],"next":0,"boot_id":"b"}"#;
    let read: EventsPage = serde_json::from_str(without_overflow).unwrap();
    assert_eq!(read.overflowed, 0);
}

#[test]
fn events_read_with_and_without_ceiling_and_count() {
    let old = r#"{"seq":1,"sandbox":null,"generation":0,"method":"GET","host":"a.test",
        "port":80,"addr":null,"decision":"deny","reason":"missing_credential","rule":null,
        "bytes_up":0,"bytes_down":0,"start_ms":1,"duration_ms":0,"client":"10.213.0.3:1"}"#;
    let event: Event = serde_json::from_str(old).unwrap();
    assert_eq!((event.ceiling, event.count), (None, 1));
    let new = old.replace(
        r#""seq":1,"#,
        r#""seq":1,"ceiling":"role:member@0011aabb","count":7,"#,
    );
    let event: Event = serde_json::from_str(&new).unwrap();
    assert_eq!(event.ceiling.as_deref(), Some("role:member@0011aabb"));
    assert_eq!(event.count, 7);
}

const REQUEST: &str = r#"{"seq":9,"sandbox":"sbx-1","generation":3,"method":"POST","host":"api.test","port":443,"addr":"10.0.0.9:443","decision":"allow","reason":"allowed","rule":"POST /v1/messages","bytes_up":2,"bytes_down":11,"start_ms":1700000000200,"duration_ms":4,"client":"10.213.0.3:40000","ceiling":null,"count":1,"tunnel":5,"path":"/v1/messages","status":200,"credential":"anthropic","mode":"terminate"}"#;

fn request() -> Event {
    Event {
        seq: 9,
        method: "POST".to_owned(),
        host: "api.test".to_owned(),
        addr: Some("10.0.0.9:443".parse().unwrap()),
        decision: Outcome::Allow,
        reason: "allowed".to_owned(),
        rule: Some("POST /v1/messages".to_owned()),
        bytes_up: 2,
        bytes_down: 11,
        start_ms: 1_700_000_000_200,
        duration_ms: 4,
        ceiling: None,
        tunnel: Some(5),
        path: Some("/v1/messages".to_owned()),
        status: Some(200),
        credential: Some("anthropic".to_owned()),
        mode: Some("terminate".to_owned()),
        ..event()
    }
}

#[test]
fn a_request_row_round_trips_through_its_pinned_json() {
    assert_eq!(serde_json::to_string(&request()).unwrap(), REQUEST);
    assert_eq!(serde_json::from_str::<Event>(REQUEST).unwrap(), request());
}

#[test]
fn a_tunnel_row_names_its_tunnel_and_mode_only() {
    let tunnel = Event {
        tunnel: Some(5),
        mode: Some("terminate".to_owned()),
        ..event()
    };
    let json = EVENT.replace(
        r#""count":1}"#,
        r#""count":1,"tunnel":5,"mode":"terminate"}"#,
    );
    assert_eq!(serde_json::to_string(&tunnel).unwrap(), json);
    assert_eq!(serde_json::from_str::<Event>(&json).unwrap(), tunnel);
}

#[test]
fn rows_without_inspection_fields_read_as_before() {
    // What a proxy built before request rows sends, and what a new one sends for a plain
    // request: no tunnel, path, status, credential or mode key at all.
    let event: Event = serde_json::from_str(EVENT).unwrap();
    assert_eq!(
        (
            event.tunnel,
            event.path,
            event.status,
            event.credential,
            event.mode
        ),
        (None, None, None, None, None)
    );
}

#[test]
fn an_unknown_decision_is_refused_on_read() {
    let bad = EVENT.replace("would_deny", "maybe");
    assert!(serde_json::from_str::<Event>(&bad).is_err());
}

#[test]
fn outcomes_are_one_string_each_way() {
    for outcome in [Outcome::Allow, Outcome::Deny, Outcome::WouldDeny] {
        let json = serde_json::to_string(&outcome).unwrap();
        assert_eq!(json, format!("\"{}\"", outcome.as_str()));
        assert_eq!(outcome.as_str().parse::<Outcome>(), Ok(outcome));
        assert_eq!(outcome.to_string(), outcome.as_str());
    }
    assert_eq!(
        "Allow".parse::<Outcome>(),
        Err(UnknownOutcome("Allow".to_owned()))
    );
}

#[test]
fn an_ack_is_one_seq_and_nothing_else() {
    assert_eq!(
        serde_json::to_string(&Ack { seq: 42 }).unwrap(),
        r#"{"seq":42}"#
    );
    assert_eq!(
        serde_json::from_str::<Ack>(r#"{"seq":42}"#).unwrap(),
        Ack { seq: 42 }
    );
    assert!(serde_json::from_str::<Ack>(r#"{"seq":42,"more":1}"#).is_err());
}
