//! Test harness shared by the in-process and e2e suites.
//!
//! Layout:
//! - `dind`: a DinD daemon on a sealed outer network, reached over mutual TLS.
//! - `dns`: a fake UDP DNS server answering from a per-test table, with a rebinding mode.
//! - `upstream`: echo and HTTP upstreams listening on port 0.
