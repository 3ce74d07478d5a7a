//! Presets: named starting points for agent sandboxes (`GET /v1/presets`,
//! `POST /v1/sandboxes {"preset": …}`). A preset fills in what the caller left out: the
//! image (the operator's agent image), the command, and a suggested egress allow-list as the
//! policy. Everything the caller gives wins, and the result is checked exactly like any
//! other create (the egress ceilings apply unchanged). The env placeholders only document
//! what the command expects; their values come from the caller (`env`; a key is best bound
//! with `credentials`, where an entry without a `provider` takes the preset's, so the key
//! stays at the egress proxy).
//!
//! Pure: a static table.

/// One environment variable a preset's command expects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EnvPlaceholder {
    /// The variable.
    pub name: &'static str,
    /// What it holds.
    pub description: &'static str,
    /// Whether it is a credential (bind it with `credentials`).
    pub secret: bool,
}

/// A preset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Preset {
    /// Its name.
    pub name: &'static str,
    /// What it runs.
    pub description: &'static str,
    /// The default command.
    pub cmd: &'static [&'static str],
    /// What the command expects in its environment.
    pub env: &'static [EnvPlaceholder],
    /// The suggested egress allow-list (the policy's `allow_domains`).
    pub allow_domains: &'static [&'static str],
    /// The provider a `credentials` entry without one binds (`GET /v1/providers`).
    pub provider: Option<&'static str>,
}

/// Every preset, by name.
pub const PRESETS: [Preset; 3] = [
    Preset {
        name: "claude-code",
        description: "Claude Code, non-interactive: `claude -p \"$PROMPT\"` in the workdir",
        cmd: &["sh", "-c", "exec claude -p \"$PROMPT\""],
        env: &[
            EnvPlaceholder {
                name: "ANTHROPIC_API_KEY",
                description: "the Anthropic API key",
                secret: true,
            },
            EnvPlaceholder {
                name: "PROMPT",
                description: "the task",
                secret: false,
            },
        ],
        allow_domains: &["api.anthropic.com", "github.com", "registry.npmjs.org"],
        provider: Some("anthropic"),
    },
    Preset {
        name: "codex",
        description: "OpenAI Codex CLI, non-interactive: `codex exec \"$PROMPT\"` in the workdir",
        cmd: &["sh", "-c", "exec codex exec \"$PROMPT\""],
        env: &[
            EnvPlaceholder {
                name: "OPENAI_API_KEY",
                description: "the OpenAI API key",
                secret: true,
            },
            EnvPlaceholder {
                name: "PROMPT",
                description: "the task",
                secret: false,
            },
        ],
        allow_domains: &["api.openai.com", "github.com", "registry.npmjs.org"],
        provider: Some("openai"),
    },
    Preset {
        name: "shell",
        description: "An idle shell sandbox to drive with exec",
        cmd: &["sleep", "infinity"],
        env: &[],
        allow_domains: &[
            "github.com",
            "registry.npmjs.org",
            "pypi.org",
            "files.pythonhosted.org",
        ],
        provider: None,
    },
];

/// The preset called `name`.
pub fn find(name: &str) -> Option<&'static Preset> {
    PRESETS.iter().find(|preset| preset.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::spec::is_env_name;

    #[test]
    fn presets_are_found_by_name_and_well_formed() {
        for name in ["claude-code", "codex", "shell"] {
            let preset = find(name).unwrap_or_else(|| panic!("{name}"));
            assert!(!preset.cmd.is_empty());
            assert!(preset.env.iter().all(|e| is_env_name(e.name)));
            assert!(!preset.allow_domains.is_empty());
        }
        assert!(find("Shell").is_none());
    }
}
