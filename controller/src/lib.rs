//! The Airlock controller library: the admin CLI, configuration, the sandbox domain (state
//! machine and validated spec), the Docker request builders and client, the store, the
//! sandbox service, the HTTP API and `airlock serve`. The reconciler lands here as it is built
//! (see ARCHITECTURE.md).

pub mod accounts;
pub mod api;
pub mod audit;
pub mod cli;
pub mod config;
pub mod docker;
pub mod egress;
pub mod images;
pub mod metrics;
pub mod ops;
pub mod reconcile;
pub mod sandbox;
pub mod sandboxes;
pub mod secrets;
pub mod serve;
pub mod services;
pub mod store;
