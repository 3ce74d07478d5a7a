//! Test harness shared by the in-process and e2e suites.
//!
//! Layout:
//! - `dind`: a DinD daemon on a sealed outer network, reached over mutual TLS.
//! - `sealed`: the sealed (`--internal`) outer network and throwaway containers on it.
//! - `nested`: networks and sandbox-like containers inside the nested daemon (bollard).
//! - `probe`: TCP reachability probes run with busybox `nc`, and their verdicts.
//! - `sweep`: run labels and the leftover sweep of dead runs.
//! - `host_docker`, `host_firewall` (private): the host daemon via the `docker` CLI, and the host
//!   INPUT rule that finishes sealing each sealed network.
//! - `dns`: a fake UDP DNS server answering from a per-test table, with a rebinding mode.
//! - `upstream`: echo and HTTP upstreams listening on port 0.
//! - `postgres`: a throwaway Postgres server (or `TEST_DATABASE_URL`) with a database per test.

pub mod dind;
pub mod dns;
mod host_docker;
mod host_firewall;
pub mod nested;
pub mod postgres;
pub mod probe;
pub mod sealed;
pub mod sweep;
pub mod upstream;
