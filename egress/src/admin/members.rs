//! `PUT`/`DELETE /v1/members/{id}` and `GET /v1/members`: unbound pool members, whose source
//! addresses are refused `sandbox_not_claimed` until a sandbox push names the member
//! (`PUT /v1/sandboxes/{id}` with `member`) and takes their place ([`airlock_wire::member`]).

use airlock_wire::{ListedMember, MemberList, PutMember, PutMemberReply, PutOutcome};
use http::{Request, StatusCode};
use hyper::body::Incoming;

use super::infra::refresh_interfaces;
use super::routes::{empty, json, read_json, registry_error, ApiError, Reply};
use super::AdminState;
use crate::registry::{validate_member_id, MemberSummary, UpsertOutcome};

pub(super) async fn put_member(
    state: &AdminState,
    id: &str,
    req: Request<Incoming>,
) -> Result<Reply, ApiError> {
    validate_member_id(id).map_err(registry_error)?;
    let body: PutMember = read_json(req).await?;
    // The controller attaches the proxy to the member's network just before: that network is
    // infrastructure before anything on it is answered.
    refresh_interfaces(state).await;
    let outcome = state
        .registry
        .upsert_member(id, body.source_addrs, body.generation)
        .map_err(registry_error)?;
    let (status, outcome) = match outcome {
        UpsertOutcome::Created => (StatusCode::CREATED, PutOutcome::Created),
        UpsertOutcome::Replaced { .. } => (StatusCode::OK, PutOutcome::Replaced),
        UpsertOutcome::Unchanged => (StatusCode::OK, PutOutcome::Unchanged),
    };
    tracing::info!(
        member.id = %id,
        member.generation = body.generation,
        admin.outcome = outcome.as_str(),
        "Pool member registered"
    );
    let reply = PutMemberReply {
        member_id: id.to_owned(),
        generation: body.generation,
        outcome,
        boot_id: state.registry.boot_id().to_owned(),
    };
    Ok(json(status, &reply))
}

pub(super) fn delete_member(state: &AdminState, id: &str) -> Reply {
    if state.registry.remove_member(id) {
        tracing::info!(member.id = %id, "Pool member removed");
    }
    empty(StatusCode::NO_CONTENT)
}

pub(super) fn list_members(state: &AdminState) -> Reply {
    let members = state
        .registry
        .members()
        .into_iter()
        .map(
            |MemberSummary {
                 member_id,
                 generation,
                 source_addrs,
             }| ListedMember {
                member_id,
                generation,
                source_addrs,
            },
        )
        .collect();
    let list = MemberList {
        boot_id: state.registry.boot_id().to_owned(),
        members,
    };
    json(StatusCode::OK, &list)
}
