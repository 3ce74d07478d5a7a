//! How init reports a failure before the workload runs, as the controller reads it back: one
//! stderr line starting with [`REPORT_PREFIX`] (then `{"error":"<code>","message":"..."}`),
//! and an exit status from the sysexits range below. Declared here, outside the `runner`
//! feature, so the controller reads the same constants init writes.

/// How init's one stderr line about a failure starts.
pub const REPORT_PREFIX: &str = "airlock-init: ";
/// Bad frame, or one that asks for what cannot be done (`EX_USAGE`).
pub const EXIT_BAD_FRAME: u8 = 64;
/// No frame: idle timeout, or EOF before a whole frame (`EX_TEMPFAIL`).
pub const EXIT_NO_FRAME: u8 = 75;
/// Init's own environment is invalid (`EX_CONFIG`).
pub const EXIT_CONFIG: u8 = 78;
/// Init itself failed (`EX_SOFTWARE`).
pub const EXIT_INTERNAL: u8 = 70;
