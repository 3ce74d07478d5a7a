//! `AIRLOCK_POOLS`: the node's warm pools, a JSON array of
//! `{image, user?, size, max_idle_s?, shape?: {cpus?, memory_mb?, pids?, disk_mb?}, scratch_mb?}`.
//!
//! The document is checked by [`crate::pool::doc`] against the operator's maximums
//! (`AIRLOCK_MAX_*`), `AIRLOCK_ALLOWED_UIDS`, `AIRLOCK_MAX_VOLUME_MB` and the allow list
//! (`AIRLOCK_IMAGES`); every problem is one issue naming its field (`pools[1].size`). The
//! pool service imports it into the store at start when it changed since the last import
//! (`store::pool_config`), so `airlock pools set` / `PUT /v1/pools` edits stay until then.

use super::images::ImagesConfig;
use super::run::RunConfig;
use super::volumes::VolumesConfig;
use super::Reader;
use crate::pool::doc::{self, CheckedDoc};
use crate::pool::PoolBounds;
use crate::sandbox::Maximums;

/// The warm pools of the node (default: none).
pub const ENV_POOLS: &str = "AIRLOCK_POOLS";

/// What the pools are checked against; any of it missing (its own variable was invalid)
/// skips the checks that need it.
pub(super) struct PoolContext<'a> {
    pub(super) maximums: Option<&'a Maximums>,
    pub(super) run: Option<&'a RunConfig>,
    pub(super) volumes: Option<&'a VolumesConfig>,
    pub(super) images: Option<&'a ImagesConfig>,
}

/// The bounds a pool document is checked against, from the variables they come from.
fn bounds(
    maximums: &Maximums,
    run: &RunConfig,
    volumes: &VolumesConfig,
    images: Option<&ImagesConfig>,
) -> PoolBounds {
    PoolBounds {
        limits: maximums.limits,
        allowed_uids: run.allowed_uids.clone(),
        max_volume_mb: volumes.max_volume_mb,
        allow: images.and_then(|images| images.allow.clone()),
    }
}

// === impl Config ===

impl super::Config {
    /// What a pool document is checked against on this controller.
    pub fn pool_bounds(&self) -> PoolBounds {
        bounds(&self.maximums, &self.run, &self.volumes, Some(&self.images))
    }
}

// === impl Reader ===

impl<F: Fn(&str) -> Option<String>> Reader<F> {
    /// Parses [`ENV_POOLS`] (`Some(None)` when unset); one issue per problem, each naming
    /// its field.
    pub(super) fn pools(&mut self, context: &PoolContext<'_>) -> Option<Option<CheckedDoc>> {
        let Some(text) = self.raw(ENV_POOLS) else {
            return Some(None);
        };
        let checked = match (context.maximums, context.run, context.volumes) {
            (Some(maximums), Some(run), Some(volumes)) => {
                doc::check(&text, &bounds(maximums, run, volumes, context.images))
            }
            // Another variable is invalid: only the JSON itself can be checked.
            _ => match doc::parse(&text) {
                Ok(_) => return None,
                Err(problem) => Err(vec![problem]),
            },
        };
        match checked {
            Ok(checked) => Some(Some(checked)),
            Err(problems) => {
                for problem in &problems {
                    self.issue(ENV_POOLS, &text, false, format!("pools{problem}"));
                }
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use super::super::{Config, ConfigIssue};
    use super::ENV_POOLS;
    use crate::sandbox::RunAs;

    fn load(vars: &[(&str, &str)]) -> Result<Config, Vec<ConfigIssue>> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::from_lookup(|var| map.get(var).cloned()).map_err(|e| e.issues)
    }

    /// The `expected` text of every `AIRLOCK_POOLS` issue.
    fn problems(vars: &[(&str, &str)]) -> Vec<String> {
        load(vars)
            .err()
            .unwrap_or_default()
            .into_iter()
            .filter(|issue| issue.var == ENV_POOLS)
            .map(|issue| issue.expected)
            .collect()
    }

    #[test]
    fn no_pools_by_default() {
        assert!(load(&[]).map(|c| c.pools.is_none()).unwrap_or(false));
    }

    #[test]
    fn a_pool_parses_with_defaults_and_its_shape() {
        let json = r#"[{"image": "airlock/testbox:dev", "size": 4},
            {"image": "python:3.12", "user": "1000:1000", "size": 2, "max_idle_s": 600,
             "shape": {"cpus": 0.5, "memory_mb": 256}, "scratch_mb": 512}]"#;
        let pools = load(&[(ENV_POOLS, json)])
            .ok()
            .and_then(|c| c.pools)
            .map(|p| p.specs)
            .unwrap_or_default();
        assert_eq!(pools.len(), 2);
        assert_eq!(pools[0].size, 4);
        assert_eq!(pools[0].user, None);
        assert_eq!(
            pools[1].user,
            Some(RunAs {
                uid: 1000,
                gid: 1000
            })
        );
        assert_eq!(pools[1].max_idle, Duration::from_secs(600));
        assert_eq!(pools[1].shape.cpus.millis(), 500);
        assert_eq!(pools[1].shape.memory_mb, 256);
        assert_eq!(pools[1].scratch_mb, Some(512));
    }

    #[test]
    fn every_problem_names_its_field_and_all_are_reported() {
        let json = r#"[{"image": "a:1", "size": 129, "max_idle_s": 5},
            {"image": "b:1", "size": 1, "user": "0", "shape": {"pids": 100000},
             "scratch_mb": 99999999}]"#;
        let found = problems(&[(ENV_POOLS, json), ("AIRLOCK_LISTEN", "nonsense")]);
        let fields: Vec<&str> = found
            .iter()
            .map(|p| p.split(':').next().unwrap_or_default())
            .collect();
        assert_eq!(
            fields,
            [
                "pools[0].size",
                "pools[0].max_idle_s",
                "pools[1].user",
                "pools[1].shape.pids",
                "pools[1].scratch_mb"
            ],
            "{found:?}"
        );
        // The other variable's issue is reported in the same run.
        let all = load(&[(ENV_POOLS, json), ("AIRLOCK_LISTEN", "nonsense")]).err();
        assert!(all
            .unwrap_or_default()
            .iter()
            .any(|i| i.var == "AIRLOCK_LISTEN"));
    }

    #[test]
    fn json_mistakes_name_the_field() {
        let cases = [
            (r#"{"image": "a"}"#, "pools: invalid type"),
            (r#"[{"size": 1}]"#, "pools[0]: missing field `image`"),
            (
                r#"[{"image": "a", "sise": 1}]"#,
                "pools[0].sise: unknown field `sise`",
            ),
            (
                r#"[{"image": "a", "size": "4"}]"#,
                "pools[0].size: invalid type",
            ),
            (
                r#"[{"image": "a", "shape": {"gpus": 1}}]"#,
                "pools[0].shape.gpus: unknown field",
            ),
        ];
        for (json, start) in cases {
            let found = problems(&[(ENV_POOLS, json)]);
            assert_eq!(found.len(), 1, "{json}: {found:?}");
            assert!(found[0].starts_with(start), "{json}: {found:?}");
        }
    }

    #[test]
    fn sizes_are_bounded_in_sum_and_keys_are_unique() {
        let pool = |i: usize| format!(r#"{{"image": "img{i}:1", "size": 64}}"#);
        let five: Vec<String> = (0..5).map(pool).collect();
        let found = problems(&[(ENV_POOLS, &format!("[{}]", five.join(",")))]);
        assert_eq!(found.len(), 1);
        assert!(
            found[0].starts_with("pools: is refused: the pools keep 320"),
            "{found:?}"
        );
        let twice = r#"[{"image": "a:1", "size": 1}, {"image": "a:1", "size": 2}]"#;
        assert_eq!(
            problems(&[(ENV_POOLS, twice)]),
            ["pools[1].image: appears more than once"]
        );
    }

    #[test]
    fn the_image_must_be_allowed_when_a_list_is_configured() {
        let json = r#"[{"image": "evil:1", "size": 1}, {"image": "good:1", "size": 1}]"#;
        let found = problems(&[(ENV_POOLS, json), ("AIRLOCK_IMAGES", "good:1")]);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].starts_with("pools[0].image: is refused"),
            "{found:?}"
        );
        // An unpinned tag is left to the pool service, which knows the recorded digests.
        assert!(load(&[
            (ENV_POOLS, r#"[{"image": "good:1", "size": 1}]"#),
            ("AIRLOCK_IMAGES", "good:1")
        ])
        .is_ok());
    }
}
