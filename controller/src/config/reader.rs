//! The [`Reader`] every `AIRLOCK_*` variable is parsed through: it reads one variable (empty
//! counts as unset), applies its default, and records an issue instead of failing, so every
//! mistake in the environment is reported at once.

use super::{ConfigIssue, Secret};

/// Collects values and issues while every variable is parsed.
pub(super) struct Reader<F> {
    pub(super) lookup: F,
    pub(super) issues: Vec<ConfigIssue>,
}

// === impl Reader ===

impl<F: Fn(&str) -> Option<String>> Reader<F> {
    pub(super) fn raw(&self, var: &str) -> Option<String> {
        (self.lookup)(var).filter(|v| !v.is_empty())
    }

    pub(super) fn issue(
        &mut self,
        var: &'static str,
        value: &str,
        secret: bool,
        expected: impl Into<String>,
    ) {
        let value = if secret {
            "***".to_owned()
        } else {
            value.to_owned()
        };
        self.issues.push(ConfigIssue {
            var,
            value,
            expected: expected.into(),
        });
    }

    pub(super) fn parse<T: std::str::FromStr>(
        &mut self,
        var: &'static str,
        default: &str,
        expected: &'static str,
    ) -> Option<T> {
        self.parse_with(var, default, |v| v.parse().map_err(|_invalid| expected))
    }

    pub(super) fn parse_with<T>(
        &mut self,
        var: &'static str,
        default: &str,
        parse: impl Fn(&str) -> Result<T, &'static str>,
    ) -> Option<T> {
        let value = self.raw(var).unwrap_or_else(|| default.to_owned());
        self.check(var, &value, parse(value.trim()), false)
    }

    pub(super) fn optional<T>(
        &mut self,
        var: &'static str,
        parse: impl Fn(&str) -> Result<T, &'static str>,
    ) -> Option<Option<T>> {
        match self.raw(var) {
            None => Some(None),
            Some(value) => self
                .check(var, &value, parse(value.trim()), false)
                .map(Some),
        }
    }

    pub(super) fn check<T>(
        &mut self,
        var: &'static str,
        value: &str,
        parsed: Result<T, &'static str>,
        secret: bool,
    ) -> Option<T> {
        parsed
            .map_err(|expected| self.issue(var, value, secret, expected))
            .ok()
    }

    pub(super) fn secret(&mut self, var: &'static str) -> Option<Option<Secret>> {
        match self.raw(var) {
            None => Some(None),
            Some(value) if value.len() >= 16 && !value.chars().any(char::is_whitespace) => {
                Some(Some(Secret::new(value)))
            }
            Some(value) => {
                self.issue(
                    var,
                    &value,
                    true,
                    "at least 16 characters without whitespace",
                );
                None
            }
        }
    }
}
