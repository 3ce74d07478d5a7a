//! L7 rules of an inspected endpoint: methods and path globs matched against the canonical path
//! ([`crate::canon`]). In a path pattern, `*` is exactly one segment and `**` is zero or more;
//! every other segment is literal and must itself be canonical. The query is never matched.
//! Absent rules allow every request; an empty list allows none.

use serde::{Deserialize, Serialize};

use crate::canon::canonical_path;

/// At most this many rules per endpoint, patterns per rule, and segments per pattern.
const MAX_RULES: usize = 64;
const MAX_PATTERNS: usize = 64;
const MAX_SEGMENTS: usize = 64;

/// One rule as written.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// Upper-case methods, or `["*"]` for any.
    pub methods: Vec<String>,
    /// Path patterns such as `/v1/messages`, `/repos/*/pulls/**`.
    pub paths: Vec<String>,
}

/// Why a rule was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RuleError {
    /// Too many rules, patterns or segments.
    #[error("too many rules, methods, path patterns or segments")]
    TooMany,
    /// A method that is not an upper-case token or `*`, or an empty list.
    #[error("method {method:?} is not an upper-case HTTP method or \"*\"")]
    BadMethod {
        /// The method as written.
        method: String,
    },
    /// A path pattern that is not absolute and canonical, or that puts `*` inside a segment.
    #[error("path pattern {pattern:?} is not a canonical absolute path of literals, * and **")]
    BadPath {
        /// The pattern as written.
        pattern: String,
    },
}

impl RuleError {
    /// A stable snake_case code.
    pub fn code(&self) -> &'static str {
        match self {
            RuleError::TooMany => "too_many_rules",
            RuleError::BadMethod { .. } => "bad_rule_method",
            RuleError::BadPath { .. } => "bad_rule_path",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Seg {
    Lit(String),
    One,
    Many,
}

#[derive(Clone, Debug)]
struct Rule {
    /// `None` is any method.
    methods: Option<Vec<String>>,
    paths: Vec<(String, Vec<Seg>)>,
}

/// Compiled rules; [`RuleSet::check`] names the matching rule.
#[derive(Clone, Debug, Default)]
pub struct RuleSet {
    /// `None`: no rules were written, so everything is allowed.
    rules: Option<Vec<Rule>>,
}

impl RuleSet {
    /// Compiles the rules of one endpoint.
    pub fn compile(specs: Option<&[RuleSpec]>) -> Result<RuleSet, RuleError> {
        let Some(specs) = specs else {
            return Ok(RuleSet { rules: None });
        };
        if specs.len() > MAX_RULES {
            return Err(RuleError::TooMany);
        }
        let rules = specs.iter().map(compile_rule).collect::<Result<_, _>>()?;
        Ok(RuleSet { rules: Some(rules) })
    }

    /// The first rule admitting `method` on the canonical `path`, as `"METHODS PATTERN"`, or
    /// `"*"` when the endpoint has no rules; `None` is a denial.
    pub fn check(&self, method: &str, path: &str) -> Option<String> {
        let Some(rules) = &self.rules else {
            return Some("*".to_owned());
        };
        let segments = split(path);
        for rule in rules {
            let method_ok = rule
                .methods
                .as_ref()
                .is_none_or(|m| m.iter().any(|x| x == method));
            if !method_ok {
                continue;
            }
            if let Some((pattern, _)) = rule.paths.iter().find(|(_, p)| matches(p, &segments)) {
                let methods = rule
                    .methods
                    .as_ref()
                    .map_or("*".to_owned(), |m| m.join(","));
                return Some(format!("{methods} {pattern}"));
            }
        }
        None
    }
}

fn compile_rule(spec: &RuleSpec) -> Result<Rule, RuleError> {
    if spec.methods.len() > MAX_PATTERNS || spec.paths.len() > MAX_PATTERNS {
        return Err(RuleError::TooMany);
    }
    let bad_method = |m: &str| RuleError::BadMethod {
        method: m.to_owned(),
    };
    let methods = if spec.methods == ["*"] {
        None
    } else {
        if spec.methods.is_empty() {
            return Err(bad_method(""));
        }
        for m in &spec.methods {
            let ok = !m.is_empty() && m.len() <= 32 && m.bytes().all(|b| b.is_ascii_uppercase());
            if !ok {
                return Err(bad_method(m));
            }
        }
        Some(spec.methods.clone())
    };
    if spec.paths.is_empty() {
        return Err(RuleError::BadPath {
            pattern: String::new(),
        });
    }
    let paths = spec
        .paths
        .iter()
        .map(|p| compile_path(p).map(|segs| (p.clone(), segs)))
        .collect::<Result<_, _>>()?;
    Ok(Rule { methods, paths })
}

fn compile_path(pattern: &str) -> Result<Vec<Seg>, RuleError> {
    let bad = || RuleError::BadPath {
        pattern: pattern.to_owned(),
    };
    let canonical = canonical_path(pattern).map_err(|_refused| bad())?;
    if canonical.path != pattern && canonical.path != format!("{pattern}/") {
        return Err(bad());
    }
    if canonical.query.is_some() {
        return Err(bad());
    }
    let segs: Vec<Seg> = split(pattern)
        .into_iter()
        .map(|s| match s {
            "*" => Ok(Seg::One),
            "**" => Ok(Seg::Many),
            s if s.contains('*') => Err(bad()),
            s => Ok(Seg::Lit(s.to_owned())),
        })
        .collect::<Result<_, _>>()?;
    if segs.len() > MAX_SEGMENTS {
        return Err(RuleError::TooMany);
    }
    Ok(segs)
}

/// The non-empty segments of a canonical path (a trailing `/` adds none).
fn split(path: &str) -> Vec<&str> {
    path.split('/').filter(|s| !s.is_empty()).collect()
}

/// Glob match by dynamic programming: O(pattern × path), whatever the number of `**`.
fn matches(pattern: &[Seg], path: &[&str]) -> bool {
    // reach[j]: the pattern prefix seen so far can consume exactly path[..j].
    let mut reach = vec![false; path.len() + 1];
    reach[0] = true;
    for seg in pattern {
        let mut next = vec![false; path.len() + 1];
        for j in 0..=path.len() {
            match seg {
                Seg::Many => next[j] = reach[j] || (j > 0 && next[j - 1]),
                Seg::One => next[j] = j > 0 && reach[j - 1],
                Seg::Lit(lit) => next[j] = j > 0 && reach[j - 1] && path[j - 1] == lit,
            }
        }
        reach = next;
    }
    reach[path.len()]
}
