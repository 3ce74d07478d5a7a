//! Accounts, in process over a real database (a SQLite file, and Postgres for the
//! store-touching tests): the route-walking isolation test ([`route_walk`]), login, tokens,
//! invites and throttling ([`flows`]), and bootstrapping the first admin ([`bootstrap`]).
//! No Docker: the app's Docker client points at a loopback port where nothing listens.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "accounts/bootstrap.rs"]
mod bootstrap;
mod common;
#[path = "accounts/flows.rs"]
mod flows;
#[path = "accounts/harness.rs"]
mod harness;
#[path = "accounts/route_walk.rs"]
mod route_walk;
#[path = "accounts/signout.rs"]
mod signout;
