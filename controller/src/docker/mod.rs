//! Everything Docker: the pure request-body builders ([`spec`]) and the bollard client
//! ([`client`], the only module that calls bollard).

pub mod client;
pub mod spec;

pub use client::{ContainerStatus, DockerClient, DockerError, Removal};
