//! JSON request bodies whose type errors name the field: `{"limits":{"pids":"many"}}` is a
//! 400 `invalid_json` with `fields: [{"field":"limits.pids","reason":"invalid type: string
//! \"many\", expected u64"}]`, not a bare parse error. Unknown and missing fields are named the same
//! way; a body that is not JSON at all stays a 400 `invalid_json`. Every handler that takes a
//! JSON body reads it through [`body`], so every route answers the same way.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use serde::de::DeserializeOwned;

use super::error::{ApiError, FieldReason};

/// A request body as `T`: a body that could not be read is a 400 `invalid_body`, one that
/// does not parse a 400 `invalid_json` naming the field (see [`parse`]).
pub(crate) fn body<T: DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError> {
    let body =
        body.map_err(|rejection| ApiError::bad_request("invalid_body", rejection.body_text()))?;
    parse(&body)
}

/// Parses `body` as `T`, naming the offending field on failure.
pub(crate) fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            return ApiError::bad_request("invalid_json", inner.to_string());
        }
        let reason = without_position(&inner.to_string());
        match field_of(&path, &reason) {
            Some(field) => ApiError::InvalidJson(FieldReason { field, reason }),
            None => ApiError::bad_request("invalid_json", reason),
        }
    })?;
    deserializer
        .end()
        .map_err(|error| ApiError::bad_request("invalid_json", error.to_string()))?;
    Ok(value)
}

/// The field a deserialization error is about: the path serde reached, plus the field an
/// `unknown field`/`missing field` message names (the path then stops at its parent).
fn field_of(path: &str, reason: &str) -> Option<String> {
    let named = ["unknown field `", "missing field `"]
        .iter()
        .find_map(|prefix| reason.strip_prefix(prefix))
        .and_then(|rest| rest.split('`').next());
    let path = (path != ".").then_some(path);
    match (path, named) {
        // serde_path_to_error's path already ends at an unknown field, not at a missing one.
        (Some(path), Some(name)) if path == name || path.ends_with(&format!(".{name}")) => {
            Some(path.to_owned())
        }
        (Some(path), Some(name)) => Some(format!("{path}.{name}")),
        (Some(path), None) => Some(path.to_owned()),
        (None, Some(name)) => Some(name.to_owned()),
        (None, None) => None,
    }
}

/// serde_json's message without its ` at line L column C` suffix.
fn without_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_owned(),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        image: String,
        #[serde(default)]
        limits: Option<Inner>,
        #[serde(default)]
        cmd: Option<Vec<String>>,
        #[serde(default)]
        env: Option<BTreeMap<String, String>>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        pids: u64,
    }

    fn field(body: &str) -> (String, String) {
        match parse::<Outer>(body.as_bytes()).unwrap_err() {
            ApiError::InvalidJson(f) => (f.field, f.reason),
            other => (String::new(), other.to_string()),
        }
    }

    #[test]
    fn type_errors_name_the_field() {
        assert_eq!(
            field(r#"{"image":"x","limits":{"pids":"many"}}"#),
            (
                "limits.pids".to_owned(),
                "invalid type: string \"many\", expected u64".to_owned()
            )
        );
        assert_eq!(field(r#"{"image":5}"#).0, "image");
        assert_eq!(field(r#"{"image":"x","cmd":["a",1]}"#).0, "cmd[1]");
        assert_eq!(field(r#"{"image":"x","env":{"A":2}}"#).0, "env.A");
        assert_eq!(
            field(r#"{"image":"x","limits":{"pids":-1}}"#).0,
            "limits.pids"
        );
    }

    #[test]
    fn unknown_and_missing_fields_are_named() {
        assert_eq!(field(r#"{"image":"x","gpu":1}"#).0, "gpu");
        assert_eq!(
            field(r#"{"image":"x","limits":{"gpus":1}}"#).0,
            "limits.gpus"
        );
        assert_eq!(field(r#"{"cmd":["x"]}"#).0, "image");
        assert_eq!(field(r#"{"image":"x","limits":{}}"#).0, "limits.pids");
    }

    #[test]
    fn syntax_errors_stay_invalid_json() {
        for body in ["{", "not json", r#"{"image":"x"} trailing"#] {
            match parse::<Outer>(body.as_bytes()).unwrap_err() {
                ApiError::BadRequest { code, .. } => assert_eq!(code, "invalid_json", "{body}"),
                other => panic!("{body}: {other:?}"),
            }
        }
    }
}
