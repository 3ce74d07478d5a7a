//! The Airlock controller library: the admin CLI, configuration, the sandbox domain (state
//! machine and validated spec), the pure Docker request builders and the store. The API and
//! the reconciler land here as they are built (see ARCHITECTURE.md).

pub mod cli;
pub mod config;
pub mod docker;
pub mod sandbox;
pub mod store;
pub mod subnet;
pub mod user;
