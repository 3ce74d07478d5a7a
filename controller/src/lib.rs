//! The Airlock controller library: the admin CLI, configuration, the sandbox domain (state
//! machine and validated spec), the Docker request builders and client, the store, the
//! sandbox service, the HTTP API and `airlock serve`. The reconciler lands here as it is built
//! (see ARCHITECTURE.md).

pub mod accounts;
pub mod api;
pub mod cli;
pub mod cli_admin;
pub mod config;
pub mod credential;
pub mod docker;
pub mod doctor;
pub mod egress;
pub mod events;
pub mod exec;
pub mod first_boot;
pub mod health;
pub mod images;
pub mod logs;
pub mod metrics;
pub mod quota;
pub mod reconcile;
pub mod sandbox;
pub mod selftest;
pub mod serve;
pub mod service;
pub mod store;
pub mod subnet;
pub mod timeouts;
pub mod user;
pub mod vault;
