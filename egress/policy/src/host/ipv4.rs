//! The WHATWG URL IPv4 host parser (<https://url.spec.whatwg.org/#concept-ipv4-parser>).
//!
//! Any host that "ends in a number" must parse as IPv4 here or be rejected. This covers every
//! spelling glibc `inet_aton` accepts too (`127.1`, `0x7f.1`, `2130706433`, `0177.0.0.1`), so no
//! downstream parser can read one of our names as an address.

use std::net::Ipv4Addr;

/// <https://url.spec.whatwg.org/#ends-in-a-number-checker>
pub(crate) fn ends_in_a_number(input: &str) -> bool {
    let mut parts = input.rsplit('.');
    let last = match parts.next() {
        Some("") => match parts.next() {
            Some(last) => last,
            None => return false,
        },
        Some(last) => last,
        None => return false,
    };
    if !last.is_empty() && last.bytes().all(|c| c.is_ascii_digit()) {
        return true;
    }
    parse_number(last).is_ok()
}

/// <https://url.spec.whatwg.org/#ipv4-number-parser>. `Ok(None)` is a valid number that
/// overflows `u32`.
fn parse_number(input: &str) -> Result<Option<u32>, ()> {
    if input.is_empty() {
        return Err(());
    }
    let (digits, radix) = if let Some(hex) = input
        .strip_prefix("0x")
        .or_else(|| input.strip_prefix("0X"))
    {
        (hex, 16)
    } else if input.len() >= 2 && input.starts_with('0') {
        (&input[1..], 8)
    } else {
        (input, 10)
    };
    if digits.is_empty() {
        return Ok(Some(0));
    }
    if !digits.chars().all(|c| c.is_digit(radix)) {
        return Err(());
    }
    // Only overflow can fail here: every character was checked above.
    Ok(u32::from_str_radix(digits, radix).ok())
}

/// <https://url.spec.whatwg.org/#concept-ipv4-parser>. `None` means "not a valid IPv4 address",
/// which for a host that ends in a number means the host is invalid.
pub(crate) fn parse(input: &str) -> Option<Ipv4Addr> {
    let input = input.strip_suffix('.').unwrap_or(input);
    let mut numbers = [0u32; 4];
    let mut count = 0usize;
    for part in input.split('.') {
        let slot = numbers.get_mut(count)?;
        *slot = parse_number(part).ok()??;
        count += 1;
    }
    let (last, rest) = numbers.get(..count)?.split_last()?;
    // The last number fills the remaining 5 - count bytes: it must be below 256^(5 - count).
    let shift = 8 * u32::try_from(rest.len()).ok()?;
    if u64::from(*last) >= 1u64 << (32 - shift) {
        return None;
    }
    if rest.iter().any(|n| *n > 255) {
        return None;
    }
    let mut addr = *last;
    for (i, n) in rest.iter().enumerate() {
        addr |= n << (8 * (3 - u32::try_from(i).ok()?));
    }
    Some(Ipv4Addr::from(addr))
}
