//! The state machine and the stored spellings, as tables.

use super::*;

use SandboxState::{Creating, Exited, Failed, Lost, Running, Stopping};

fn events() -> Vec<SandboxEvent> {
    let mut events = vec![SandboxEvent::Started, SandboxEvent::StopRequested];
    events.extend(reasons().into_iter().map(SandboxEvent::Ended));
    events
}

fn reasons() -> Vec<EndReason> {
    vec![
        EndReason::Exited { code: 0 },
        EndReason::Exited { code: 137 },
        EndReason::Stopped,
        EndReason::Timeout,
        EndReason::Idle,
        EndReason::Oom,
        EndReason::Killed,
        EndReason::Lost,
        EndReason::Error { message: None },
        EndReason::Error {
            message: Some("image vanished".into()),
        },
    ]
}

/// The whole table, written out: every (state, event) pair and its expected outcome.
fn expected(from: SandboxState, event: &SandboxEvent) -> Option<SandboxState> {
    let end = |reason: &EndReason| match reason {
        EndReason::Lost => Lost,
        EndReason::Error { .. } => Failed,
        _ => Exited,
    };
    match (from, event) {
        (Creating, SandboxEvent::Started) => Some(Running),
        (Running | Stopping, SandboxEvent::Started) => None,
        (Creating | Running | Stopping, SandboxEvent::StopRequested) => Some(Stopping),
        (Creating | Running | Stopping, SandboxEvent::Ended(reason)) => Some(end(reason)),
        (Exited | Failed | Lost, _) => None,
    }
}

#[test]
fn transition_table_is_exhaustive() {
    let mut checked = 0;
    for from in SandboxState::ALL {
        for event in events() {
            let got = from.transition(&event);
            match expected(from, &event) {
                Some(to) => assert_eq!(got, Ok(to), "{from} + {event:?}"),
                None => assert_eq!(
                    got,
                    Err(TransitionError {
                        from,
                        event: event.name()
                    }),
                    "{from} + {event:?}"
                ),
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 6 * 12);
}

#[test]
fn predicates_per_state() {
    // (state, can_start, can_stop, can_delete, is_terminal)
    let table = [
        (Creating, true, true, false, false),
        (Running, false, true, false, false),
        (Stopping, false, false, false, false),
        (Exited, false, false, true, true),
        (Failed, false, false, true, true),
        (Lost, false, false, true, true),
    ];
    for (state, start, stop, delete, terminal) in table {
        assert_eq!(state.can_start(), start, "{state} can_start");
        assert_eq!(state.can_stop(), stop, "{state} can_stop");
        assert_eq!(state.can_delete(), delete, "{state} can_delete");
        assert_eq!(state.is_terminal(), terminal, "{state} is_terminal");
    }
}

#[test]
fn predicates_agree_with_transition() {
    for state in SandboxState::ALL {
        assert_eq!(
            state.can_start(),
            state.transition(&SandboxEvent::Started).is_ok()
        );
        // `can_stop` excludes `stopping`, where a stop is accepted but changes nothing.
        assert_eq!(
            state.can_stop(),
            state.transition(&SandboxEvent::StopRequested) == Ok(Stopping) && state != Stopping
        );
    }
}

#[test]
fn stored_names_round_trip() {
    for state in SandboxState::ALL {
        assert_eq!(state.as_str().parse::<SandboxState>(), Ok(state));
    }
    for desired in DesiredState::ALL {
        assert_eq!(desired.as_str().parse::<DesiredState>(), Ok(desired));
    }
    for kind in EndKind::ALL {
        assert_eq!(kind.as_str().parse::<EndKind>(), Ok(kind));
    }
    assert_eq!(
        "Running".parse::<SandboxState>(),
        Err(ParseEnumError {
            what: "sandbox state",
            value: "Running".into()
        })
    );
    assert!("".parse::<EndKind>().is_err());
    assert!("gone".parse::<DesiredState>().is_err());
}

#[test]
fn end_reasons_round_trip_through_their_columns() {
    for reason in reasons() {
        let back = EndReason::from_parts(
            reason.kind(),
            reason.exit_code(),
            reason.message().map(str::to_owned),
        );
        assert_eq!(back, Ok(reason));
    }
}

#[test]
fn end_reason_columns_that_do_not_fit_are_refused() {
    let table = [
        (EndKind::Exited, None),
        (EndKind::Stopped, Some(0)),
        (EndKind::Oom, Some(137)),
        (EndKind::Lost, Some(255)),
        (EndKind::Error, Some(1)),
    ];
    for (kind, exit_code) in table {
        assert_eq!(
            EndReason::from_parts(kind, exit_code, None),
            Err(EndReasonError { kind, exit_code })
        );
    }
}

#[test]
fn end_reason_display() {
    let table = [
        (EndReason::Exited { code: 3 }, "exited(3)"),
        (EndReason::Oom, "oom"),
        (EndReason::Error { message: None }, "error"),
        (
            EndReason::Error {
                message: Some("boom".into()),
            },
            "error: boom",
        ),
    ];
    for (reason, text) in table {
        assert_eq!(reason.to_string(), text);
    }
}

#[test]
fn ids_are_time_ordered_and_parse_back() {
    let a = SandboxId::new();
    let b = SandboxId::new();
    assert!(a < b, "UUIDv7 ids from one process increase");
    assert_eq!(a.to_string().parse::<SandboxId>().unwrap(), a);
    assert!("not-a-uuid".parse::<SandboxId>().is_err());
}
