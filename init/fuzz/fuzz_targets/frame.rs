//! Fuzzes the frame decoder with arbitrary bytes, bare and behind a valid header. Besides
//! "never panics", an accepted frame meets every rule: non-empty argv without NUL, valid and
//! unreserved env names, only reserved `airlock_env` names, an absolute workdir, seed files
//! within the caps and the roots, and it re-encodes to itself.
#![no_main]

use airlock_init::frame::{self, Frame, Rules, MAX_FILES, MAX_FILES_BYTES};
use libfuzzer_sys::fuzz_target;

fn check(frame: &Frame, rules: &Rules) {
    assert!(frame.argv.first().is_some_and(|a| !a.is_empty()));
    assert!(frame.argv.iter().all(|a| !a.contains('\0')));
    for (name, value) in &frame.env {
        assert!(frame::is_env_name(name) && !value.contains('\0'));
        assert!(!rules.is_reserved(name));
    }
    for (name, value) in &frame.airlock_env {
        assert!(frame::is_env_name(name) && !value.contains('\0'));
        assert!(rules.is_reserved(name));
    }
    // What init accepts, the controller's encoder writes back unchanged.
    let again = frame.encode().map(|bytes| frame::decode(&bytes, rules));
    assert!(matches!(again, Ok(Ok(ref f)) if f == frame));
    assert!(frame.workdir.starts_with('/'));
    assert!(frame.files.len() <= MAX_FILES);
    assert!(frame.files.iter().map(|f| f.content.len()).sum::<usize>() <= MAX_FILES_BYTES);
    for file in &frame.files {
        assert!(rules
            .writable_roots
            .iter()
            .any(|r| frame::is_strictly_under(&file.path, r)));
        assert!(file.mode <= 0o777);
    }
}

fuzz_target!(|data: &[u8]| {
    let rules = Rules::airlock(vec!["/tmp".into(), "/home/agent".into()]);
    if let Ok(frame) = frame::decode(data, &rules) {
        check(&frame, &rules);
    }
    if let Some(wrapped) = frame::encode(data) {
        if let Ok(frame) = frame::decode(&wrapped, &rules) {
            check(&frame, &rules);
        }
    }
});
