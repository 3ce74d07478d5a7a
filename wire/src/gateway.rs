//! The origin-form gateway's contract: where a sandbox reaches it and how a placeholder is
//! spelled. The controller writes both into the sandbox's environment (`*_BASE_URL`, the
//! provider's key variable); the proxy parses them back.
//!
//! A gateway request is `http://airlock.internal:3128/gw/<name>/<path>` from the sandbox's own
//! address, carrying `airlock-placeholder-<provider>-<token>` in the provider's credential
//! header; the proxy admits it when SHA-256(token) is the pushed
//! [`PutInspection::gateway_hash`](crate::PutInspection::gateway_hash).

/// The port the proxy listens on in every sandbox network (its proxy URL and its gateway).
pub const PROXY_PORT: u16 = 3128;
/// The name the sandbox reaches the proxy's gateway by (an `ExtraHosts` entry, in `NO_PROXY`).
pub const GATEWAY_HOST: &str = "airlock.internal";
/// The path every gateway request starts with, before the gateway's name.
pub const GATEWAY_PATH: &str = "/gw/";
/// How every placeholder value starts.
pub const PLACEHOLDER_PREFIX: &str = "airlock-placeholder-";

/// The placeholder value of `provider`'s variables in a sandbox whose gateway token is `token`.
pub fn placeholder_value(provider: &str, token: &str) -> String {
    format!("{PLACEHOLDER_PREFIX}{provider}-{token}")
}

/// The token of a header value that carries a placeholder anywhere in it (after `Bearer `,
/// say): what follows the provider (a catalogue name, without `-`), up to the end or a space.
pub fn placeholder_token(value: &str) -> Option<&str> {
    let at = value.find(PLACEHOLDER_PREFIX)?;
    let rest = &value[at + PLACEHOLDER_PREFIX.len()..];
    let placeholder = rest.split(' ').next().unwrap_or_default();
    let (_provider, token) = placeholder.split_once('-')?;
    (!token.is_empty()).then_some(token)
}

/// The base URL of gateway `name` on a proxy listening on `port`, with `suffix` appended
/// (OpenAI's clients expect `/v1` in theirs).
pub fn gateway_url(port: u16, name: &str, suffix: &str) -> String {
    format!("http://{GATEWAY_HOST}:{port}{GATEWAY_PATH}{name}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_round_trip() {
        let value = placeholder_value("openai", "0123abcd");
        assert_eq!(value, "airlock-placeholder-openai-0123abcd");
        assert_eq!(placeholder_token(&value), Some("0123abcd"));
        assert_eq!(
            placeholder_token(&format!("Bearer {value}")),
            Some("0123abcd")
        );
        assert_eq!(placeholder_token("Bearer sk-real-key"), None);
        assert_eq!(placeholder_token("airlock-placeholder-openai-"), None);
        assert_eq!(placeholder_token("airlock-placeholder-x"), None);
        assert_eq!(
            placeholder_token("airlock-placeholder-openai-tok-a"),
            Some("tok-a")
        );
        assert_eq!(
            gateway_url(3128, "openai", "/v1"),
            "http://airlock.internal:3128/gw/openai/v1"
        );
    }
}
