//! Everything Docker, and the only place bollard appears: the pure request bodies ([`spec`]:
//! a sandbox's network and container, the egress proxy's, the self-test probe's) and the
//! client ([`client`], whose private `bollard()` accessor makes it the only code that calls
//! the daemon).

pub mod client;
pub mod spec;

pub use client::disk::DiskLimit;
pub use client::exec::{
    AttachedExec, ExecCommand, ExecSession, LogFollow, OutputChunk, OutputChunks, OutputStream,
};
pub use client::images::ImageRun;
pub use client::{ContainerStatus, DockerClient, DockerError, Removal};
