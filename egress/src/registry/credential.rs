//! The proxy credential: `Proxy-Authorization: Basic base64("<sandbox_id>:<token>")`, checked
//! against the lowercase hex SHA-256 of the token that the controller pushes. Parsing never
//! panics, and the comparison of a presented credential with the stored one is constant-time.

use base64::Engine as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The stored half of a credential: the sandbox id and SHA-256(token).
pub(super) struct StoredCredential<'a> {
    pub(super) sandbox_id: &'a str,
    pub(super) hash: &'a [u8; 32],
}

/// Why a presented credential was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mismatch {
    /// Not `Basic`, not base64, or no `:`.
    Malformed,
    /// Well-formed, but not this sandbox's id and token.
    Wrong,
}

/// The lowercase hex SHA-256 of `token`: what the controller stores as `credential_hash`.
pub fn credential_hash(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

/// Builds a `Proxy-Authorization` header value for `sandbox_id` and `token`.
pub fn basic_credential(sandbox_id: &str, token: &str) -> String {
    let raw = format!("{sandbox_id}:{token}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

/// Checks a raw header value against the stored credential. The token is hashed first, then the
/// id and the hash are compared without short-circuiting, so timing reveals neither.
pub(super) fn verify(header: &[u8], stored: &StoredCredential<'_>) -> Result<(), Mismatch> {
    let (user, token) = parse_basic(header).ok_or(Mismatch::Malformed)?;
    let digest: [u8; 32] = Sha256::digest(&token).into();
    let id_ok = user.as_slice().ct_eq(stored.sandbox_id.as_bytes());
    let hash_ok = digest.as_slice().ct_eq(stored.hash.as_slice());
    if bool::from(id_ok & hash_ok) {
        Ok(())
    } else {
        Err(Mismatch::Wrong)
    }
}

/// Decodes 64 hex digits (either case) into a SHA-256 value.
pub(crate) fn parse_hash(hex: &str) -> Option<[u8; 32]> {
    let bytes = hex.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        let (hi, lo) = (hex_val(*pair.first()?)?, hex_val(*pair.get(1)?)?);
        *byte = (hi << 4) | lo;
    }
    Some(out)
}

/// Lowercase hex of `bytes`.
pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Splits `Basic base64(user:token)` into its raw parts. The scheme is case-insensitive and
/// surrounding whitespace is ignored; the token may itself contain `:`.
fn parse_basic(header: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let header = header.trim_ascii();
    let (scheme, rest) = header.split_at_checked(6)?;
    if !scheme.eq_ignore_ascii_case(b"basic ") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim_ascii())
        .ok()?;
    let colon = decoded.iter().position(|&b| b == b':')?;
    let token = decoded.get(colon + 1..)?.to_vec();
    let mut user = decoded;
    user.truncate(colon);
    Some((user, token))
}
