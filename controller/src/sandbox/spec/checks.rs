//! The field checks of [`super::SandboxRequest::validate`]: each one records every problem it
//! finds, named by the request's field path, so a caller learns every mistake at once.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use super::*;

pub(super) fn err(field: impl Into<String>, problem: Problem) -> FieldError {
    FieldError {
        field: field.into(),
        problem,
    }
}

pub(super) fn collect<T>(result: Result<T, FieldError>, errors: &mut Vec<FieldError>) -> Option<T> {
    result.map_err(|error| errors.push(error)).ok()
}

pub(super) fn check_cmd(cmd: &[String], errors: &mut Vec<FieldError>) {
    if cmd.len() > MAX_CMD_ARGS {
        errors.push(err("cmd", Problem::TooMany { max: MAX_CMD_ARGS }));
    }
    if cmd.iter().map(String::len).sum::<usize>() > MAX_CMD_BYTES {
        errors.push(err("cmd", Problem::TooLong { max: MAX_CMD_BYTES }));
    }
    for (i, arg) in cmd.iter().enumerate() {
        if arg.contains('\0') {
            errors.push(err(format!("cmd[{i}]"), Problem::ContainsNul));
        }
    }
}

pub(super) fn check_env(env: Vec<(String, String)>, errors: &mut Vec<FieldError>) -> Vec<EnvVar> {
    if env.len() > MAX_ENV_VARS {
        errors.push(err("env", Problem::TooMany { max: MAX_ENV_VARS }));
    }
    let bytes: usize = env.iter().map(|(n, v)| n.len() + v.len()).sum();
    if bytes > MAX_ENV_BYTES {
        errors.push(err("env", Problem::TooLong { max: MAX_ENV_BYTES }));
    }
    let mut seen = HashSet::new();
    let mut vars = Vec::with_capacity(env.len());
    for (i, (name, value)) in env.into_iter().enumerate() {
        let problem = if !is_env_name(&name) {
            Some(Problem::Malformed {
                expected: "a name of letters, digits and `_`, not starting with a digit",
            })
        } else if is_reserved_env(&name) {
            Some(Problem::Reserved)
        } else if !seen.insert(name.clone()) {
            Some(Problem::Duplicate)
        } else {
            None
        };
        if let Some(problem) = problem {
            errors.push(err(format!("env[{i}].name"), problem));
        }
        if value.contains('\0') {
            errors.push(err(format!("env[{i}].value"), Problem::ContainsNul));
        }
        vars.push(EnvVar { name, value });
    }
    vars
}

/// Whether `name` is an environment variable name: letters, digits and `_`, not starting with
/// a digit.
pub fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

// === impl LimitsRequest ===

impl LimitsRequest {
    /// Each limit checked against `max` (a missing one takes the default, capped), with the
    /// same rules as a create; problems are named `limits.<limit>`.
    pub fn check(&self, max: &Limits) -> Result<Limits, Vec<FieldError>> {
        let mut errors = Vec::new();
        let limits = check_limits(self, max, &mut errors);
        if errors.is_empty() {
            Ok(limits)
        } else {
            Err(errors)
        }
    }
}

pub(super) fn check_limits(
    req: &LimitsRequest,
    max: &Limits,
    errors: &mut Vec<FieldError>,
) -> Limits {
    let defaults = Limits::DEFAULT.capped(max);
    let cpus = match req.cpus.map(Cpus::from_f64) {
        None => defaults.cpus,
        Some(None) => {
            errors.push(err(
                "limits.cpus",
                Problem::Malformed {
                    expected: "a positive number of CPUs",
                },
            ));
            defaults.cpus
        }
        Some(Some(cpus)) => bounded("limits.cpus", cpus, Cpus::MIN, max.cpus, errors),
    };
    let memory_mb = req.memory_mb.map_or(defaults.memory_mb, |mb| {
        bounded("limits.memory_mb", mb, MIN_MEMORY_MB, max.memory_mb, errors)
    });
    let pids = req.pids.map_or(defaults.pids, |pids| {
        bounded("limits.pids", pids, MIN_PIDS, max.pids, errors)
    });
    let disk_mb = match (req.disk_mb, max.disk_mb) {
        (None, _) => None,
        (Some(_), None) => {
            errors.push(err(
                "limits.disk_mb",
                Problem::AboveMaximum {
                    max: "none (disk limits are disabled)".into(),
                },
            ));
            None
        }
        (Some(mb), Some(cap)) => Some(bounded("limits.disk_mb", mb, 1, cap, errors)),
    };
    Limits {
        cpus,
        memory_mb,
        pids,
        disk_mb,
    }
}

pub(super) fn bounded<T: PartialOrd + fmt::Display + Copy>(
    field: &str,
    value: T,
    min: T,
    max: T,
    errors: &mut Vec<FieldError>,
) -> T {
    if value < min {
        errors.push(err(
            field,
            Problem::BelowMinimum {
                min: min.to_string(),
            },
        ));
    } else if value > max {
        errors.push(err(
            field,
            Problem::AboveMaximum {
                max: max.to_string(),
            },
        ));
    }
    value
}

pub(super) fn check_duration(
    field: &str,
    value: Duration,
    max: Duration,
    errors: &mut Vec<FieldError>,
) {
    if value < Duration::from_secs(1) {
        errors.push(err(field, Problem::BelowMinimum { min: "1s".into() }));
    } else if value > max {
        let max = format!("{}s", max.as_secs());
        errors.push(err(field, Problem::AboveMaximum { max }));
    }
}

pub(super) fn check_labels(labels: &BTreeMap<String, String>, errors: &mut Vec<FieldError>) {
    if labels.len() > MAX_LABELS {
        errors.push(err("labels", Problem::TooMany { max: MAX_LABELS }));
    }
    for (key, value) in labels {
        let field = format!("labels.{key}");
        let problem = if key.is_empty() {
            Some(Problem::Required)
        } else if key.len() > MAX_LABEL_KEY {
            Some(Problem::TooLong { max: MAX_LABEL_KEY })
        } else if !key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'))
        {
            Some(Problem::Malformed {
                expected: "letters, digits, `.`, `_`, `-` and `/`",
            })
        } else if key.to_ascii_lowercase().starts_with(RESERVED_LABEL_PREFIX) {
            Some(Problem::Reserved)
        } else if value.len() > MAX_LABEL_VALUE {
            Some(Problem::TooLong {
                max: MAX_LABEL_VALUE,
            })
        } else if value.contains('\0') {
            Some(Problem::ContainsNul)
        } else {
            None
        };
        if let Some(problem) = problem {
            errors.push(err(field, problem));
        }
    }
}

/// The check of one container path field (`workdir`, a mount target).
pub(super) fn check_path(
    field: &'static str,
) -> impl Fn(&str) -> Result<ContainerPath, FieldError> {
    move |text| {
        ContainerPath::parse(text).map_err(|problem| {
            let problem = match problem {
                PathProblem::TooLong => Problem::TooLong { max: MAX_PATH },
                PathProblem::Nul => Problem::ContainsNul,
                PathProblem::Malformed => Problem::Malformed {
                    expected: EXPECTED_PATH,
                },
            };
            err(field, problem)
        })
    }
}
