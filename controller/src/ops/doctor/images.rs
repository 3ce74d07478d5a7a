//! The `images` line: what `airlock images load` recorded is still on the node, with the
//! same image ids (a retag or a removal since shows here, not at the next create).

use super::{Check, Verdict};
use crate::docker::DockerClient;
use crate::store::Store;

/// Every image recorded as loaded is still on the node with the id the import recorded.
pub(super) async fn check(docker: &DockerClient, store: &Store) -> Check {
    let name = "images";
    let records = match store.list_images().await {
        Ok(records) => records,
        Err(error) => return Check::new(name, Verdict::Fail, error.to_string(), "see store"),
    };
    if records.is_empty() {
        let fix = "airlock images load BUNDLE (see docs/operator.md, air-gapped runbook)";
        return Check::new(
            name,
            Verdict::Warn,
            "no image was loaded with airlock images load",
            fix,
        );
    }
    let mut missing = Vec::new();
    for record in &records {
        let reference = if record.reference.is_empty() {
            &record.image_id
        } else {
            &record.reference
        };
        match docker.image_id(reference).await {
            Ok(Some(id)) if id == record.image_id => {}
            Ok(found) => missing.push(format!(
                "{reference} (recorded {}, node has {})",
                record.image_id,
                found.as_deref().unwrap_or("nothing")
            )),
            Err(error) => {
                return Check::new(name, Verdict::Fail, error.to_string(), "see dind-mtls")
            }
        }
    }
    if missing.is_empty() {
        return Check::pass(
            name,
            format!(
                "{} loaded image(s) present with their recorded ids",
                records.len()
            ),
        );
    }
    let fix = "load the bundle again: airlock images load FILE";
    Check::new(
        name,
        Verdict::Fail,
        format!("changed or missing: {}", missing.join("; ")),
        fix,
    )
}
