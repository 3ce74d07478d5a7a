//! Where a sandbox finds its inspection CA: the frame's `ca_pem` is written to [`CA_FILE`],
//! and [`BUNDLE_FILE`] is the image's system bundle ([`SYSTEM_BUNDLE`]) followed by the CA.
//! The trust variables ([`crate::frame::TRUST_BUNDLE_ENV`], [`crate::frame::TRUST_CA_ENV`])
//! name these two files. The one declaration of the paths: the controller mounts a small
//! tmpfs at [`TRUST_DIR`] in every sandbox and points the variables here.

/// The tmpfs every sandbox has, owned by the sandbox user (init runs as that user).
pub const TRUST_DIR: &str = "/run/airlock";
/// The sandbox's inspection CA.
pub const CA_FILE: &str = "/run/airlock/tls/ca.pem";
/// The image's system bundle plus the CA.
pub const BUNDLE_FILE: &str = "/run/airlock/tls/bundle.pem";
/// Where Debian-family images keep the system bundle.
pub const SYSTEM_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
/// The largest system bundle read; a larger one is left out (the bundle is then the CA alone).
pub const MAX_SYSTEM_BUNDLE: u64 = 4 << 20;
/// The bundle's name beside the CA file.
pub const BUNDLE_NAME: &str = "bundle.pem";

/// The bundle: `system` (possibly empty), a newline when it lacks one, then `ca_pem`.
pub fn bundle(system: &[u8], ca_pem: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(system.len() + ca_pem.len() + 1);
    out.extend_from_slice(system);
    if !out.is_empty() && !out.ends_with(b"\n") {
        out.push(b'\n');
    }
    out.extend_from_slice(ca_pem.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundle_is_the_system_store_then_the_ca() {
        assert_eq!(bundle(b"", "CA\n"), b"CA\n");
        assert_eq!(bundle(b"S", "CA\n"), b"S\nCA\n");
        assert_eq!(bundle(b"S\n", "CA\n"), b"S\nCA\n");
        assert!(BUNDLE_FILE.ends_with(BUNDLE_NAME));
        assert!(CA_FILE.starts_with(TRUST_DIR) && BUNDLE_FILE.starts_with(TRUST_DIR));
    }
}
