//! The network plane's routes: `PUT /v1/sandboxes/{id}/policy` (owner or admin,
//! `sandboxes:write`), `GET /v1/sandboxes/{id}/egress` (the ledger, paginated, filterable by
//! decision and host) and `GET /v1/sandboxes/{id}/egress/summary` (per-host totals, plus the
//! minimal `allow_domains` in report mode). Another owner's sandbox is 404.

use airlock_wire::Outcome;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::dto::SandboxDto;
use super::error::ApiError;
use super::sandboxes::sandbox_id;
use super::{json, AppState};
use crate::audit::Actor;
use crate::egress::TenantPolicy;
use crate::sandboxes::{ListEgress, SummariseEgress, UpdatePolicy};
use crate::store::{EgressEvent, EgressQuery};

/// Default and largest ledger page.
const DEFAULT_LIMIT: u32 = 100;
const MAX_LIMIT: u32 = 1000;

/// The sandbox with the policy it now runs under.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub(crate) struct PolicyDto {
    /// The sandbox.
    #[serde(flatten)]
    pub sandbox: SandboxDto,
    /// The effective policy (the egress proxy's policy object): the request's fields over the
    /// applicable default policy, with `allow_public` explicit.
    #[schema(value_type = Object)]
    pub policy: serde_json::Value,
    /// SHA-256 (hex) of the policy's canonical JSON.
    pub policy_hash: String,
    /// The policy generation; every update bumps it.
    pub policy_generation: i64,
}

/// `GET /v1/sandboxes/{id}/egress` parameters.
#[derive(Clone, Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct EgressParams {
    /// `allow`, `deny` or `would_deny`.
    pub decision: Option<String>,
    /// The host as requested.
    pub host: Option<String>,
    /// `next` of the previous page.
    pub cursor: Option<String>,
    /// Page size (default 100, at most 1000).
    pub limit: Option<u32>,
}

/// One ledger event.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub(crate) struct EgressEventDto {
    /// `CONNECT`, `GET`, ...
    pub method: String,
    /// The host as requested.
    pub host: String,
    /// The port.
    pub port: i64,
    /// The resolved address dialled or denied.
    pub addr: Option<String>,
    /// `allow`, `deny` or `would_deny`.
    pub decision: String,
    /// The reason code (e.g. `allowed`, `private_address`, `missing_credential`).
    pub reason: String,
    /// The policy rule that matched.
    pub rule: Option<String>,
    /// Bytes from the sandbox.
    pub bytes_up: i64,
    /// Bytes to the sandbox.
    pub bytes_down: i64,
    /// Start, milliseconds since the Unix epoch.
    pub start_ms: i64,
    /// Duration in milliseconds.
    pub duration_ms: i64,
    /// The policy generation it was decided under.
    pub generation: i64,
    /// The label of the ceiling the policy was checked against (`role:<role>@<hash>` or
    /// `user:<id>@<hash>`).
    pub ceiling: Option<String>,
    /// How many refusals the event stands for (above 1 only for a summary row the proxy
    /// wrote while the sandbox's ledger share was full).
    pub count: i64,
    /// The inspected tunnel this row is, or belongs to: `<proxy boot id>.<n>`, the same on a
    /// terminated tunnel's row and on the rows of the requests inside it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tunnel: Option<String>,
    /// A request row's canonical path (never a query string).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// A request row's response status (0 when none was sent). Present on request rows
    /// only; their bytes are the request's own bodies and are not counted again in the summary.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<i64>,
    /// The name of the secret whose credential the proxy added (never its value).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
    /// `terminate` on inspected tunnels and their requests.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
}

/// A page of the ledger.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub(crate) struct EgressPageDto {
    /// Events, oldest first.
    pub items: Vec<EgressEventDto>,
    /// Pass as `cursor` for the next page; `null` on the last one.
    pub next: Option<String>,
}

/// Per-host totals.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub(crate) struct HostSummaryDto {
    /// The host as requested.
    pub host: String,
    /// Events.
    pub total: i64,
    /// Allowed.
    pub allowed: i64,
    /// Denied.
    pub denied: i64,
    /// Allowed in report mode although a rule would deny.
    pub would_deny: i64,
    /// Bytes from the sandbox. A terminated tunnel's bytes are counted once, from its own
    /// row; the rows of the requests inside it are not summed again.
    pub bytes_up: i64,
    /// Bytes to the sandbox.
    pub bytes_down: i64,
}

/// The ledger summary.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub(crate) struct EgressSummaryDto {
    /// Busiest first.
    pub hosts: Vec<HostSummaryDto>,
    /// `enforce` or `report`.
    pub mode: &'static str,
    /// In report mode: the minimal `allow_domains` that would have admitted every name seen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suggested_allow_domains: Option<Vec<String>>,
}

/// `PUT /v1/sandboxes/{id}/policy`: validates the policy, completes it from the applicable
/// default policy, checks it against the caller's ceiling (403 `policy_exceeds_ceiling`
/// naming the field and value; 400 for an entry that can never take effect), bumps its
/// generation, pushes it to the proxy (closing tunnels of the old generation) and returns
/// the sandbox.
#[utoipa::path(put, path = "/v1/sandboxes/{id}/policy", tag = "sandboxes",
    params(("id" = String, Path, description = "Sandbox id")),
    request_body(content = Object, description = "The egress policy object; absent fields \
        come from the ceiling's default policy"),
    responses((status = 200, body = PolicyDto), (status = 400), (status = 403), (status = 404),
        (status = 409), (status = 503)))]
pub(crate) async fn put_policy(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    id: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<PolicyDto>, ApiError> {
    let id = sandbox_id(id)?;
    let value: serde_json::Value = json::body(body)?;
    let policy = TenantPolicy::parse(value).map_err(|reason| ApiError::field("policy", reason))?;
    let command = UpdatePolicy { id, policy };
    let updated = state.services.sandboxes.run(&actor, command).await?;
    Ok(Json(PolicyDto {
        sandbox: SandboxDto::from(&updated.sandbox),
        policy: serde_json::from_str(updated.policy.json()).unwrap_or_default(),
        policy_hash: updated.entry.policy_hash,
        policy_generation: updated.entry.generation,
    }))
}

/// `GET /v1/sandboxes/{id}/egress`: the ledger, oldest first.
#[utoipa::path(get, path = "/v1/sandboxes/{id}/egress", tag = "sandboxes",
    params(("id" = String, Path, description = "Sandbox id"), EgressParams),
    responses((status = 200, body = EgressPageDto), (status = 400), (status = 404)))]
pub(crate) async fn events(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    id: Result<Path<String>, PathRejection>,
    params: Result<Query<EgressParams>, QueryRejection>,
) -> Result<Json<EgressPageDto>, ApiError> {
    let id = sandbox_id(id)?;
    let Query(params) = params
        .map_err(|rejection| ApiError::bad_request("invalid_query", rejection.body_text()))?;
    let query = egress_query(params)?;
    let limit = query.limit;
    let events = state
        .services
        .sandboxes
        .run(&actor, ListEgress { id, query })
        .await?;
    let next = (u32::try_from(events.len()).unwrap_or(u32::MAX) == limit)
        .then(|| events.last().map(cursor_of))
        .flatten();
    Ok(Json(EgressPageDto {
        items: events.into_iter().map(EgressEventDto::from).collect(),
        next,
    }))
}

/// `GET /v1/sandboxes/{id}/egress/summary`: per-host counts and bytes.
#[utoipa::path(get, path = "/v1/sandboxes/{id}/egress/summary", tag = "sandboxes",
    params(("id" = String, Path, description = "Sandbox id")),
    responses((status = 200, body = EgressSummaryDto), (status = 404)))]
pub(crate) async fn summary(
    State(state): State<AppState>,
    Extension(actor): Extension<Actor>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<EgressSummaryDto>, ApiError> {
    let id = sandbox_id(id)?;
    let command = SummariseEgress { id };
    let summary = state.services.sandboxes.run(&actor, command).await?;
    Ok(Json(EgressSummaryDto {
        hosts: summary
            .hosts
            .into_iter()
            .map(|h| HostSummaryDto {
                host: h.host,
                total: h.total,
                allowed: h.allowed,
                denied: h.denied,
                would_deny: h.would_deny,
                bytes_up: h.bytes_up,
                bytes_down: h.bytes_down,
            })
            .collect(),
        mode: if summary.report_mode {
            "report"
        } else {
            "enforce"
        },
        suggested_allow_domains: summary.suggested_allow_domains,
    }))
}

fn egress_query(params: EgressParams) -> Result<EgressQuery, ApiError> {
    let decision = params
        .decision
        .as_deref()
        .map(str::parse::<Outcome>)
        .transpose()
        .map_err(|_unknown| ApiError::field("decision", "allow, deny or would_deny"))?;
    let limit = params.limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(ApiError::field("limit", format!("1..={MAX_LIMIT}")));
    }
    let after = params
        .cursor
        .as_deref()
        .map(|c| parse_cursor(c).ok_or_else(|| ApiError::field("cursor", "a `next` value")))
        .transpose()?;
    Ok(EgressQuery {
        decision,
        host: params.host,
        after,
        limit,
    })
}

/// `start_ms.boot_id.seq`.
fn cursor_of(event: &EgressEvent) -> String {
    format!("{}.{}.{}", event.start_ms, event.boot_id, event.seq)
}

fn parse_cursor(cursor: &str) -> Option<(i64, String, i64)> {
    let mut parts = cursor.splitn(3, '.');
    let start = parts.next()?.parse().ok()?;
    let boot = parts.next()?;
    let seq = parts.next()?.parse().ok()?;
    (!boot.is_empty() && boot.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| (start, boot.to_owned(), seq))
}

impl From<EgressEvent> for EgressEventDto {
    fn from(e: EgressEvent) -> Self {
        Self {
            tunnel: e.tunnel.map(|n| format!("{}.{n}", e.boot_id)),
            path: e.path,
            status: e.status,
            credential: e.credential,
            mode: e.mode,
            method: e.method,
            host: e.host,
            port: e.port,
            addr: e.addr,
            decision: e.decision.as_str().to_owned(),
            reason: e.reason,
            rule: e.rule,
            bytes_up: e.bytes_up,
            bytes_down: e.bytes_down,
            start_ms: e.start_ms,
            duration_ms: e.duration_ms,
            generation: e.generation,
            ceiling: e.ceiling,
            count: e.count,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_garbage() {
        let cursor = "1700000000000.0a1b2c.42";
        assert_eq!(
            parse_cursor(cursor),
            Some((1_700_000_000_000, "0a1b2c".to_owned(), 42))
        );
        assert_eq!(parse_cursor("1.x y.2"), None);
        assert_eq!(parse_cursor("nope"), None);
    }
}
