//! A node's pool document: the JSON array `AIRLOCK_POOLS` holds and `PUT /v1/pools` /
//! `airlock pools set` send, `[{image, user?, size, max_idle_s?, shape?: {cpus?, memory_mb?,
//! pids?, disk_mb?}, scratch_mb?}]`.
//!
//! [`parse`] reads it (unknown fields refused, a JSON mistake named by its path); [`check`]
//! also checks every pool against the operator's [`PoolBounds`], the allow list and
//! [`check_total`], reporting every problem by its field (`[1].size`), and gives the
//! canonical form the store keeps, so two spellings of one document compare equal.

use serde::{Deserialize, Serialize};

use super::{check_total, PoolBounds, PoolRequest, PoolSpec};
use crate::images::allow::ImageRefusal;
use crate::sandbox::{FieldError, LimitsRequest, Problem};

/// What a document holds, for error messages.
const EXPECTED: &str = "a JSON array of {image, user, size, max_idle_s, shape, scratch_mb}";

/// One pool as written.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PoolDoc {
    /// The image reference.
    pub image: String,
    /// `uid[:gid]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Ready members to keep.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Seconds a member may wait unclaimed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_idle_s: Option<u64>,
    /// The members' limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shape: Option<ShapeDoc>,
    /// A scratch volume's size, in MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scratch_mb: Option<u64>,
}

/// A pool's limits as written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ShapeDoc {
    /// CPUs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
    /// Memory in MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<u64>,
    /// Most processes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids: Option<u64>,
    /// Disk in MiB (refused: a member's disk is fixed at create).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_mb: Option<u64>,
}

/// Reads a document; a mistake is one error naming its path (`[0].sise`, or `` for the
/// whole document).
pub fn parse(text: &str) -> Result<Vec<PoolDoc>, FieldError> {
    let mut json = serde_json::Deserializer::from_str(text);
    let docs = serde_path_to_error::deserialize(&mut json).map_err(|error| {
        let path = error.path().to_string();
        FieldError {
            field: if path == "." { String::new() } else { path },
            problem: Problem::Json(format!("{} ({EXPECTED})", error.inner())),
        }
    })?;
    json.end().map_err(|error| FieldError {
        field: String::new(),
        problem: Problem::Json(format!("{error} ({EXPECTED})")),
    })?;
    Ok(docs)
}

/// Checks every pool of `docs` and all of them together; returns the pools or every problem
/// found, each naming its field relative to the array (`[1].shape.pids`).
///
/// With an allow list an image must match an entry; whether a tag is pinned is known only
/// from the digests `airlock images load` recorded, so the pool service checks that when it
/// resolves the image.
fn validate(docs: Vec<PoolDoc>, bounds: &PoolBounds) -> Result<Vec<PoolSpec>, Vec<FieldError>> {
    let mut problems = Vec::new();
    let mut specs = Vec::new();
    for (i, doc) in docs.into_iter().enumerate() {
        let at = |e: FieldError| FieldError {
            field: format!("[{i}].{}", e.field),
            problem: e.problem,
        };
        let image = doc.image.clone();
        match request(doc).validate(bounds) {
            Ok(spec) => specs.push(spec),
            Err(errors) => problems.extend(errors.into_iter().map(at)),
        }
        if let Some(Err(refusal @ ImageRefusal::NotAllowed { .. })) = bounds
            .allow
            .as_ref()
            .map(|list| list.admit(&image, |_| None))
        {
            problems.push(FieldError {
                field: format!("[{i}].image"),
                problem: Problem::Refused(refusal.to_string()),
            });
        }
    }
    if problems.is_empty() {
        problems = check_total(&specs);
    }
    if problems.is_empty() {
        Ok(specs)
    } else {
        Err(problems)
    }
}

/// The form a document is stored in: compact JSON of the parsed pools, absent fields left
/// out.
fn canonical(docs: &[PoolDoc]) -> String {
    // Plain strings, integers and floats: serialising cannot fail.
    serde_json::to_string(docs).unwrap_or_else(|_| "[]".to_owned())
}

fn request(doc: PoolDoc) -> PoolRequest {
    let shape = doc.shape.unwrap_or_default();
    PoolRequest {
        image: doc.image,
        user: doc.user,
        size: doc.size,
        max_idle_s: doc.max_idle_s,
        shape: LimitsRequest {
            cpus: shape.cpus,
            memory_mb: shape.memory_mb,
            pids: shape.pids,
            disk_mb: shape.disk_mb,
        },
        scratch_mb: doc.scratch_mb,
    }
}

/// A checked document: its canonical text (compact JSON, absent fields left out) and its pools.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckedDoc {
    /// The canonical text (what the store keeps).
    pub document: String,
    /// The pools, in document order.
    pub specs: Vec<PoolSpec>,
}

/// [`parse`], then every pool and all of them together checked against `bounds`: the
/// document's canonical form and pools, or every problem.
pub fn check(text: &str, bounds: &PoolBounds) -> Result<CheckedDoc, Vec<FieldError>> {
    let docs = parse(text).map_err(|e| vec![e])?;
    let document = canonical(&docs);
    let specs = validate(docs, bounds)?;
    Ok(CheckedDoc { document, specs })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::user::UidRanges;
    use crate::sandbox::Limits;

    fn bounds() -> PoolBounds {
        PoolBounds {
            limits: Limits::DEFAULT,
            allowed_uids: UidRanges::parse("1000-60000,65534").unwrap_or_else(|e| panic!("{e}")),
            max_volume_mb: 1024,
            allow: None,
        }
    }

    #[test]
    fn two_spellings_of_one_document_store_alike() {
        let a = r#"[{"size": 2, "image": "a:1", "shape": {"pids": 64}, "user": null}]"#;
        let b = "[{\"image\":\"a:1\",\"size\":2,\"shape\":{\"pids\":64}}]";
        let (a, b) = (check(a, &bounds()), check(b, &bounds()));
        assert_eq!(a, b);
        let doc = a.map(|c| c.document).unwrap_or_default();
        assert_eq!(doc, r#"[{"image":"a:1","size":2,"shape":{"pids":64}}]"#);
    }

    #[test]
    fn trailing_text_and_json_mistakes_are_named() {
        let problem = |text: &str| match check(text, &bounds()) {
            Err(problems) => problems.iter().map(ToString::to_string).collect::<Vec<_>>(),
            Ok(checked) => panic!("{text} passed: {checked:?}"),
        };
        assert!(problem("[] []")[0].starts_with(": trailing characters"));
        assert!(problem(r#"[{"image": 1}]"#)[0].starts_with("[0].image: invalid type"));
        assert_eq!(problem(r#"[{"image": "a:1"}]"#), ["[0].size: is required"]);
    }
}
