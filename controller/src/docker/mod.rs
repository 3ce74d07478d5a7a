//! Everything Docker: today the pure request-body builders ([`spec`]); the bollard client
//! (`client`, the only module that calls bollard) comes next.

pub mod spec;
