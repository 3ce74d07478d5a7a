//! What the Airlock controller and its egress proxy exchange over the proxy's admin API, written
//! once for both sides: the controller serialises what the proxy deserialises and the other way
//! round, so the two can never drift apart.
//!
//! Layout:
//! - [`sandbox`]: a sandbox's entry (`PUT /v1/sandboxes/{id}`) and what the proxy answers about
//!   its entries.
//! - [`member`]: an unbound pool member's registration (`PUT /v1/members/{id}`), refused
//!   `sandbox_not_claimed` until a sandbox entry binds it.
//! - [`ledger`]: the ledger event as spooled and paged (`GET /v1/events`), its [`Outcome`], and
//!   the acknowledgement (`POST /v1/events/ack`).
//! - [`infra`]: the infrastructure push (`PUT /v1/infrastructure`) and its report.
//! - [`health`]: `GET /healthz`.
//! - [`error`]: the JSON body of every admin refusal.
//! - [`duration`]: the one duration grammar of both binaries' configuration (`30s`, `5m`).
//!
//! Invariants:
//! - No I/O and no runtime: values in, values out. The only dependencies are serde, `ipnet` and
//!   the policy crate (whose `PolicySpec` is the policy object on the wire).
//! - Every type's JSON is pinned by a round-trip test against literal JSON, byte for byte, so a
//!   field renamed or reordered fails a test before it changes what goes on the wire.
//! - Readers are lenient where a proxy of an earlier build may still be running (fields it did
//!   not send have defaults); writers always send every field.

pub mod duration;
pub mod error;
pub mod gateway;
pub mod health;
pub mod infra;
pub mod ledger;
pub mod member;
pub mod sandbox;

pub use duration::{parse_duration, parse_positive_duration, DurationError};
pub use error::ErrorBody;
pub use gateway::{
    gateway_url, placeholder_token, placeholder_value, GATEWAY_HOST, GATEWAY_PATH,
    PLACEHOLDER_PREFIX, PROXY_PORT,
};
pub use health::{DnsStatus, Health, HealthStatus};
pub use infra::{InfrastructureReport, PutInfrastructure};
pub use ledger::{Ack, Event, EventsPage, Outcome, UnknownOutcome, MAX_PATH};
pub use member::{ListedMember, MemberList, PutMember, PutMemberReply};
pub use sandbox::{
    ListedSandbox, PutInspection, PutOutcome, PutSandbox, PutSandboxReply, SandboxDetail,
    SandboxList,
};
