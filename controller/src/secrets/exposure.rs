//! How far a secret may travel: into a sandbox's environment (`env`), or only as far as the
//! egress proxy, which adds it to requests to a bound endpoint (`egress_only`).
//!
//! Pure (no I/O), so the store reads and writes it. Every write names an exposure: a new
//! secret given none is [`Exposure::NEW_DEFAULT`] (`egress_only`), a replaced one given none
//! keeps what it had. Rows stored before exposures existed read as `env`, so their
//! `secret_env` uses keep working.

use crate::sandbox::string_enum;

string_enum! {
    /// Where a secret's value may go.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub enum Exposure as "exposure" {
        /// Into a container's environment through `secret_env`, and to the egress proxy.
        Env = "env",
        /// Only to the egress proxy, for a credential binding; `secret_env` refuses it.
        EgressOnly = "egress_only",
    }
}

impl Exposure {
    /// The exposure of a new secret whose write names none.
    pub const NEW_DEFAULT: Exposure = Exposure::EgressOnly;

    /// Whether `secret_env` may put the value into a container's environment.
    pub fn allows_env(self) -> bool {
        self == Exposure::Env
    }
}

#[cfg(test)]
mod tests {
    use super::Exposure;

    #[test]
    fn spellings_are_the_stored_ones() {
        assert_eq!(Exposure::ALL, [Exposure::Env, Exposure::EgressOnly]);
        assert_eq!("env".parse(), Ok(Exposure::Env));
        assert_eq!("egress_only".parse(), Ok(Exposure::EgressOnly));
        let error = "egress-only".parse::<Exposure>().unwrap_err();
        assert_eq!(error.to_string(), "unknown exposure `egress-only`");
    }

    #[test]
    fn only_env_reaches_an_environment_and_new_secrets_stay_at_the_proxy() {
        assert!(Exposure::Env.allows_env());
        assert!(!Exposure::EgressOnly.allows_env());
        assert_eq!(Exposure::NEW_DEFAULT, Exposure::EgressOnly);
    }
}
