//! Everything Docker: the pure request-body builders ([`spec`]) and the bollard client
//! ([`client`], the only module that calls bollard).

pub mod client;
// The egress proxy's objects (the network plane, issue 6).
pub mod egress;
pub mod events;
pub mod exec;
pub mod images;
pub mod listing;
pub mod probe;
pub mod spec;

pub use client::{ContainerStatus, DockerClient, DockerError, Removal};
pub use exec::{
    AttachedExec, ExecCommand, ExecSession, LogFollow, OutputChunk, OutputChunks, OutputStream,
};
