//! Everything Docker: the pure request-body builders ([`spec`]) and the bollard client
//! ([`client`], the only module that calls bollard).

pub mod client;
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
