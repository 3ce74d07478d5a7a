//! Image bundles: verify `docker save` / OCI archives, load them into every node with
//! progress, record what was imported, and write bundles for air-gapped transfer.
//!
//! - [`archive`] verifies an archive in one pass, with no daemon involved;
//! - [`load`] sends only verified bytes: the upload stream re-hashes the file and fails
//!   instead of finishing when it changed since verification;
//! - [`bundle`] saves images from a daemon into one tar with a `SHA256SUMS` member;
//! - [`allow`] decides which images a create may name (`AIRLOCK_IMAGES`, pinned by digest);
//! - [`catalog`] holds the allowed images' live status, and [`prepull`] loads the missing
//!   ones at start from the bundle folder (or a registry);
//! - [`progress`] renders transfers (a bar on a TTY, plain lines otherwise);
//! - [`service`] is the images service: the admission of a create and `GET /v1/images`.
//!
//! Invariant: nothing reaches a daemon before [`archive::verify`] accepted the archive and any
//! `SHA256SUMS` next to it.

pub mod allow;
pub mod archive;
pub mod bundle;
pub mod catalog;
pub mod command;
pub mod load;
pub mod prepull;
pub mod progress;
pub mod service;

pub use archive::{verify, ArchiveError, ArchiveFormat, ArchiveImage, VerifiedArchive};
pub use load::{LoadError, Node, Transfer};
pub use service::{ImageError, Images, ImagesView, ListImages};
