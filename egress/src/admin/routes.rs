//! Admin API routing and handlers: parse each request into a typed call, run it against the
//! registry or ledger, and answer JSON. Bodies are read with a size cap and a deadline.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use airlock_egress_policy::Policy;
use airlock_wire::{
    Ack, ErrorBody, EventsPage, Health, HealthStatus, ListedSandbox, PutOutcome, PutSandbox,
    PutSandboxReply, SandboxDetail, SandboxList,
};
use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde::Serialize;

use super::infra::{get_infrastructure, put_infrastructure, refresh_interfaces};
use super::members::{delete_member, list_members, put_member};
use super::{AdminState, BODY_TIMEOUT, MAX_BODY_BYTES};
use crate::inspect::{Inspection, SecretValue};
use crate::registry::{
    validate_sandbox_id, RegistryError, SandboxEntry, SandboxSummary, UpsertOutcome,
};

/// Default page size for `GET /v1/events`.
const DEFAULT_EVENTS_LIMIT: usize = 500;

pub(super) type Reply = Response<Full<Bytes>>;

/// A JSON error answer: `{"error": code, "message": ..}`.
#[derive(Debug)]
pub(super) struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

/// The one entry point hyper calls.
pub(super) async fn handle(state: AdminState, req: Request<Incoming>) -> Result<Reply, Infallible> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let reply = route(&state, req).await.unwrap_or_else(|e| e.into_reply());
    tracing::debug!(
        http.method = %method,
        http.path = %path,
        http.status = reply.status().as_u16(),
        "Admin request"
    );
    Ok(reply)
}

async fn route(state: &AdminState, req: Request<Incoming>) -> Result<Reply, ApiError> {
    let path = req.uri().path().to_owned();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (req.method(), segments.as_slice()) {
        (&Method::GET, ["healthz"]) => Ok(healthz(state)),
        (&Method::GET, ["metrics"]) => Ok(metrics(state)),
        (&Method::GET, ["v1", "sandboxes"]) => Ok(list_sandboxes(state)),
        (&Method::GET, ["v1", "sandboxes", id]) => get_sandbox(state, id),
        (&Method::PUT, ["v1", "sandboxes", id]) => {
            let id = (*id).to_owned();
            put_sandbox(state, &id, req).await
        }
        (&Method::DELETE, ["v1", "sandboxes", id]) => delete_sandbox(state, id),
        (&Method::GET, ["v1", "members"]) => Ok(list_members(state)),
        (&Method::PUT, ["v1", "members", id]) => {
            let id = (*id).to_owned();
            put_member(state, &id, req).await
        }
        (&Method::DELETE, ["v1", "members", id]) => Ok(delete_member(state, id)),
        (&Method::GET, ["v1", "events"]) => events(state, req.uri().query()),
        (&Method::POST, ["v1", "events", "ack"]) => ack(state, req).await,
        (&Method::GET, ["v1", "infrastructure"]) => Ok(get_infrastructure(state)),
        (&Method::PUT, ["v1", "infrastructure"]) => put_infrastructure(state, req).await,
        (_, ["healthz" | "metrics"])
        | (_, ["v1", "sandboxes" | "members" | "events" | "infrastructure"])
        | (_, ["v1", "sandboxes" | "members", _] | ["v1", "events", "ack"]) => Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("{} is not allowed on {path}", req.method()),
        )),
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no route for {path}"),
        )),
    }
}

fn healthz(state: &AdminState) -> Reply {
    let health = Health {
        boot_id: state.registry.boot_id().to_owned(),
        controlled: state.registry.is_controlled(),
        dns: Some(state.dns),
        events_overflowed: state.ledger.overflowed(),
        infrastructure: count(state.infra.current().len()),
        sandboxes: count(state.registry.len()),
        status: HealthStatus::Ok,
    };
    json(StatusCode::OK, &health)
}

fn count(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

fn metrics(state: &AdminState) -> Reply {
    let mut text = state.metrics.render(&state.ledger);
    // The registry is not the metrics' business; the admin API adds its one gauge here.
    text.push_str(&format!(
        "# HELP airlock_egress_sandboxes Sandboxes registered by the controller.\n\
         # TYPE airlock_egress_sandboxes gauge\nairlock_egress_sandboxes {}\n\
         # HELP airlock_egress_members Unbound pool members registered by the controller.\n\
         # TYPE airlock_egress_members gauge\nairlock_egress_members {}\n",
        state.registry.len(),
        state.registry.member_count()
    ));
    let mut reply = Response::new(Full::new(Bytes::from(text)));
    reply.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    reply
}

fn list_sandboxes(state: &AdminState) -> Reply {
    let sandboxes = state
        .registry
        .list()
        .into_iter()
        .map(
            |SandboxSummary {
                 sandbox_id,
                 generation,
                 source_addrs,
             }| ListedSandbox {
                generation,
                sandbox_id,
                source_addrs,
            },
        )
        .collect();
    let list = SandboxList {
        boot_id: state.registry.boot_id().to_owned(),
        sandboxes,
    };
    json(StatusCode::OK, &list)
}

fn get_sandbox(state: &AdminState, id: &str) -> Result<Reply, ApiError> {
    let entry = state.registry.get(id).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no sandbox {id}"),
        )
    })?;
    let budget = state.registry.budget(id);
    let detail = SandboxDetail {
        sandbox_id: entry.sandbox_id,
        generation: entry.generation,
        source_addrs: entry.source_addrs,
        policy: entry.policy_spec,
        ceiling: entry.ceiling,
        bytes_used: budget.as_ref().map_or(0, |b| b.bytes_used()),
        open_connections: budget.as_ref().map_or(0, |b| b.open_connections()),
    };
    Ok(json(StatusCode::OK, &detail))
}

async fn put_sandbox(
    state: &AdminState,
    id: &str,
    req: Request<Incoming>,
) -> Result<Reply, ApiError> {
    validate_sandbox_id(id).map_err(registry_error)?;
    let mut body: PutSandbox = read_json(req).await?;
    let member = body.member.take();
    let entry = entry(id, body, &state.upstream_ca)?;
    let generation = entry.generation;
    refresh_interfaces(state).await;
    let outcome = state
        .registry
        .upsert_claim(entry, member.as_deref())
        .map_err(registry_error)?;
    let (status, outcome) = match outcome {
        UpsertOutcome::Created => (StatusCode::CREATED, PutOutcome::Created),
        UpsertOutcome::Replaced { .. } => (StatusCode::OK, PutOutcome::Replaced),
        UpsertOutcome::Unchanged => (StatusCode::OK, PutOutcome::Unchanged),
    };
    tracing::info!(
        sandbox.id = %id,
        policy.generation = generation,
        admin.outcome = outcome.as_str(),
        member.id = member.as_deref(),
        "Sandbox entry pushed"
    );
    let reply = PutSandboxReply {
        sandbox_id: id.to_owned(),
        generation,
        outcome,
        boot_id: state.registry.boot_id().to_owned(),
    };
    Ok(json(status, &reply))
}

/// The registry entry a push for sandbox `id` asks for, its policy compiled.
fn entry(
    id: &str,
    body: PutSandbox,
    upstream_ca: &[rustls_pki_types::CertificateDer<'static>],
) -> Result<SandboxEntry, ApiError> {
    if body.sandbox_id.as_deref().is_some_and(|b| b != id) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "id_mismatch",
            "sandbox_id in the body differs from the path".to_owned(),
        ));
    }
    let spec = body.policy.unwrap_or_default();
    let policy = Policy::compile(&spec)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_policy", e.to_string()))?;
    let inspection = match spec.endpoints.as_deref() {
        Some(endpoints) => Some(Arc::new(
            pushed_inspection(endpoints, &policy, body.inspection, upstream_ca)
                .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.code(), e.to_string()))?,
        )),
        None => None,
    };
    Ok(SandboxEntry {
        sandbox_id: id.to_owned(),
        source_addrs: body.source_addrs,
        credential_hash: body.credential_hash,
        policy: Arc::new(policy),
        policy_spec: spec,
        generation: body.generation,
        ceiling: body.ceiling,
        inspection,
    })
}

/// Compiles pushed endpoints with the pushed CA and credential values, if any.
fn pushed_inspection(
    endpoints: &[airlock_egress_policy::EndpointSpec],
    policy: &Policy,
    pushed: Option<airlock_wire::PutInspection>,
    upstream_ca: &[rustls_pki_types::CertificateDer<'static>],
) -> Result<Inspection, crate::inspect::InspectionError> {
    let gateway_hash = match pushed.as_ref().and_then(|p| p.gateway_hash.as_deref()) {
        Some(hex) => Some(
            crate::registry::parse_hash(hex)
                .ok_or(crate::inspect::InspectionError::BadGatewayHash)?,
        ),
        None => None,
    };
    let (ca, credentials) = match &pushed {
        Some(p) => (
            Some((p.ca_cert_pem.as_str(), p.ca_key_pem.as_str())),
            p.credentials
                .iter()
                .map(|(name, value)| (name.clone(), SecretValue::new(value.as_bytes().to_vec())))
                .collect(),
        ),
        None => (None, HashMap::new()),
    };
    Inspection::new(endpoints, policy, ca, credentials, upstream_ca.to_vec())
        .map(|inspection| inspection.with_gateway_hash(gateway_hash))
}

fn delete_sandbox(state: &AdminState, id: &str) -> Result<Reply, ApiError> {
    if state.registry.remove(id) {
        tracing::info!(sandbox.id = %id, "Sandbox entry removed");
    }
    Ok(empty(StatusCode::NO_CONTENT))
}

fn events(state: &AdminState, query: Option<&str>) -> Result<Reply, ApiError> {
    let mut after = 0u64;
    let mut limit = DEFAULT_EVENTS_LIMIT;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let bad = |error: std::num::ParseIntError| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_query",
                format!("{key} must be a non-negative integer: {error}"),
            )
        };
        match key {
            "after" => after = value.parse().map_err(bad)?,
            "limit" => limit = value.parse().map_err(bad)?,
            _ => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "bad_query",
                    format!("unknown parameter {key}"),
                ))
            }
        }
    }
    let page = state.ledger.events_after(after, limit);
    let reply = EventsPage {
        events: page.events,
        next: page.next,
        overflowed: page.overflowed,
        boot_id: state.registry.boot_id().to_owned(),
    };
    Ok(json(StatusCode::OK, &reply))
}

async fn ack(state: &AdminState, req: Request<Incoming>) -> Result<Reply, ApiError> {
    let body: Ack = read_json(req).await?;
    state.ledger.ack(body.seq);
    Ok(empty(StatusCode::NO_CONTENT))
}

/// Reads a JSON body of at most [`MAX_BODY_BYTES`] within [`BODY_TIMEOUT`].
pub(super) async fn read_json<T: serde::de::DeserializeOwned>(
    req: Request<Incoming>,
) -> Result<T, ApiError> {
    let limited = Limited::new(req.into_body(), MAX_BODY_BYTES);
    let collected = tokio::time::timeout(BODY_TIMEOUT, limited.collect())
        .await
        .map_err(|_elapsed| {
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                "the request body did not arrive in time".to_owned(),
            )
        })?;
    let bytes = match collected {
        Ok(collected) => collected.to_bytes(),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("the request body exceeds {MAX_BODY_BYTES} bytes"),
            ))
        }
        Err(error) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_body",
                format!("cannot read the request body: {error}"),
            ))
        }
    };
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_json", e.to_string()))
}

pub(super) fn json<T: Serialize>(status: StatusCode, value: &T) -> Reply {
    // Serialising these plain structs cannot fail; fall back to an empty object regardless.
    let body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    let mut reply = Response::new(Full::new(Bytes::from(body)));
    *reply.status_mut() = status;
    reply.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    reply
}

/// A refused registry change: its own status (409 conflict, 400 bad input) and code.
pub(super) fn registry_error(error: RegistryError) -> ApiError {
    let status = StatusCode::from_u16(error.status()).unwrap_or(StatusCode::CONFLICT);
    ApiError::new(status, error.code(), error.to_string())
}

pub(super) fn empty(status: StatusCode) -> Reply {
    let mut reply = Response::new(Full::new(Bytes::new()));
    *reply.status_mut() = status;
    reply
}

// === impl ApiError ===

impl ApiError {
    pub(super) fn new(status: StatusCode, code: &'static str, message: String) -> Self {
        Self {
            status,
            code,
            message,
        }
    }

    fn into_reply(self) -> Reply {
        let body = ErrorBody {
            error: self.code.to_owned(),
            message: self.message,
        };
        json(self.status, &body)
    }
}
