//! The JSON body of every refusal on the proxy's admin API: `{"error":"<code>","message":".."}`.
//! The controller reports it as the proxy wrote it.

use serde::{Deserialize, Serialize};

/// An admin API refusal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The stable snake_case code, e.g. `stale_generation` or `bad_cidr`.
    pub error: String,
    /// What went wrong, for a person.
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_round_trips_through_its_pinned_json() {
        let body = ErrorBody {
            error: "stale_generation".to_owned(),
            message: "generation 1 is older than the registered generation 2".to_owned(),
        };
        let json = r#"{"error":"stale_generation","message":"generation 1 is older than the registered generation 2"}"#;
        assert_eq!(serde_json::to_string(&body).unwrap(), json);
        assert_eq!(serde_json::from_str::<ErrorBody>(json).unwrap(), body);
    }
}
