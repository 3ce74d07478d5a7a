//! The one duration grammar of both binaries' configuration (`AIRLOCK_*` and
//! `AIRLOCK_EGRESS_*` variables, and their flags): one decimal number and one unit, `ms`, `s`,
//! `m`, `h` or `d`, nothing else (`250ms`, `30s`, `5m`, `1h`, `2d`; no sign, no fraction, no
//! space, lower-case units). Each caller decides whether zero makes sense for its setting:
//! [`parse_duration`] takes it, [`parse_positive_duration`] refuses it.

use std::time::Duration;

/// Why a text is not a duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Not one decimal number followed by one of the units.
    #[error("expected a number and a unit (ms, s, m, h or d), like 30s")]
    Malformed,
    /// The number does not fit the unit.
    #[error("the duration is too long")]
    TooLong,
    /// Zero where the setting needs a positive duration.
    #[error("the duration must not be zero")]
    Zero,
}

/// Parses `250ms`, `30s`, `5m`, `1h` or `2d`; zero is a duration.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or(DurationError::Malformed)?;
    let (number, unit) = text.split_at(split);
    if number.is_empty() {
        return Err(DurationError::Malformed);
    }
    let n: u64 = number
        .parse()
        .map_err(|_too_many_digits| DurationError::TooLong)?;
    let secs = |per: u64| {
        n.checked_mul(per)
            .map(Duration::from_secs)
            .ok_or(DurationError::TooLong)
    };
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => secs(60),
        "h" => secs(3600),
        "d" => secs(86_400),
        _ => Err(DurationError::Malformed),
    }
}

/// [`parse_duration`], refusing zero.
pub fn parse_positive_duration(text: &str) -> Result<Duration, DurationError> {
    match parse_duration(text)? {
        zero if zero.is_zero() => Err(DurationError::Zero),
        positive => Ok(positive),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grammar() {
        let secs = |s| Ok(Duration::from_secs(s));
        for (text, want) in [
            ("250ms", Ok(Duration::from_millis(250))),
            ("0s", Ok(Duration::ZERO)),
            ("30s", secs(30)),
            ("5m", secs(300)),
            ("1h", secs(3600)),
            ("2d", secs(172_800)),
            ("30", Err(DurationError::Malformed)),
            ("s", Err(DurationError::Malformed)),
            ("", Err(DurationError::Malformed)),
            ("1.5h", Err(DurationError::Malformed)),
            ("-1s", Err(DurationError::Malformed)),
            ("+1s", Err(DurationError::Malformed)),
            ("1 h", Err(DurationError::Malformed)),
            ("1H", Err(DurationError::Malformed)),
            ("1w", Err(DurationError::Malformed)),
            ("99999999999999999999s", Err(DurationError::TooLong)),
            ("999999999999999999d", Err(DurationError::TooLong)),
        ] {
            assert_eq!(parse_duration(text), want, "{text}");
        }
    }

    #[test]
    fn positive_refuses_zero_only() {
        assert_eq!(parse_positive_duration("0ms"), Err(DurationError::Zero));
        assert_eq!(parse_positive_duration("0s"), Err(DurationError::Zero));
        assert_eq!(parse_positive_duration("1ms"), Ok(Duration::from_millis(1)));
        assert_eq!(parse_positive_duration("x"), Err(DurationError::Malformed));
    }
}
