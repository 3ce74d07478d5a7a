//! The `airlock-egress` proxy: an HTTP forward and CONNECT proxy that resolves names itself,
//! judges every answer with `airlock-egress-policy`, and dials only the address it checked.
//!
//! Layout, in the order a request meets it:
//! - `server`: the dispatcher. [`serve`] runs the proxy; each request goes
//!   `accept` → `gate` → `admit` (`request` → `identify` → `judge` → `budget`) → `forward` |
//!   `tunnel` (each through `dial`) → `record`. No step imports the dispatcher.
//! - `accept` (connection caps, hyper), `gate` (every client byte checked before hyper; its
//!   pure framing in `gate::framing`), `admit` (the checks before any dial, in order),
//!   `request` (the request line as a typed target), `identify` (source address and credential
//!   → sandbox), `judge` (precheck, resolve, evaluate: shared with `check`), [`budget`]
//!   (per-sandbox connection and byte budgets), [`dial`] (the only code that opens upstream
//!   sockets), `forward` (absolute-form requests, with `pool` and `body`), `tunnel` (CONNECT),
//!   [`inspect`] (a CONNECT to a terminating endpoint: TLS with the sandbox's CA, L7 rules,
//!   the credential added), `record` (one canonical ledger event per request or tunnel).
//! - `proxy`: the context the steps share ([`Services`], the running proxy, the client
//!   connection). `error`: `EgressError`, whose kind decides the status. `sources`: per-source
//!   caps.
//! - [`registry`], [`ledger`], [`metrics`], [`infra`], [`resolve`], [`admin`]: identity, the
//!   event spool, Prometheus metrics, the deployment's own addresses, name resolution and the
//!   controller's mTLS admin API.
//! - [`config`] (typed `Config`, `AIRLOCK_EGRESS_*`), [`cli`] (flags → the same variables),
//!   [`check`] (the dry run), `startup` ([`run`]), [`log_writer`].

pub mod admin;
pub mod budget;
pub mod check;
pub mod cli;
pub mod config;
pub mod dial;
pub mod infra;
pub mod inspect;
pub mod ledger;
pub mod log_writer;
pub mod metrics;
pub mod registry;
pub mod resolve;

mod accept;
mod admit;
mod body;
mod error;
mod forward;
mod gate;
mod gateway;
mod identify;
mod judge;
mod pool;
mod proxy;
mod record;
mod request;
mod server;
mod sources;
mod startup;
mod tunnel;

pub use proxy::Services;
pub use server::serve;
pub use startup::{run, StartupError};
