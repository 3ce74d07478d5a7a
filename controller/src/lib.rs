//! The Airlock controller library: the admin CLI today; the sandbox API, store and reconciler
//! land here as they are built (see ARCHITECTURE.md).

pub mod cli;
