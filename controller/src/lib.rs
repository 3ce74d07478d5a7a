//! The Airlock controller library. The tree shows the domains (see ARCHITECTURE.md):
//!
//! - pure types: [`sandbox`] (ids, the state machine, the validated spec, /29s, timeouts,
//!   self-test results), [`volume`] (names, requests, the volume quota), plus the type
//!   modules of the domains ([`accounts::user`], [`accounts::quota`], [`egress::policy`],
//!   [`egress::ceilings`], [`images::allow`]);
//! - [`config`]: every `AIRLOCK_*` variable; [`store`]: the only SQL; [`docker`]: the only
//!   bollard;
//! - the domain services and their commands: [`sandboxes`], [`volumes`], [`accounts`],
//!   [`secrets`], [`images`], [`egress`] (the network plane and the policy authority) and
//!   [`audit`] (who acts, the `Command` trait, the trail);
//! - [`services`] wires them; [`reconcile`] keeps the store and the node agreeing; [`metrics`]
//!   counts;
//! - the doors: [`api`] (HTTP) and [`ops`] (the operator's commands); [`serve`] and [`cli`]
//!   start them.
//!
//! No module imports one above it; `tests/structure.rs` checks the layering.

pub mod accounts;
pub mod api;
pub mod audit;
pub mod cli;
pub mod config;
pub mod docker;
pub mod egress;
pub mod files;
pub mod folder;
pub mod folders;
pub mod images;
pub mod metrics;
pub mod ops;
pub mod pool;
pub mod pool_config;
pub mod reconcile;
pub mod sandbox;
pub mod sandboxes;
pub mod secrets;
pub mod serve;
pub mod services;
pub mod store;
pub mod volume;
pub mod volumes;
