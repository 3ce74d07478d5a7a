//! Rendering transfers: a redrawn bar on a terminal, plain lines (at most one per 10 % or per
//! 5 s) otherwise, so CI logs stay readable.

use std::io::Write;
use std::time::Duration;

use super::load::Transfer;

/// Width of the bar, in characters.
const BAR: usize = 30;
/// Longest gap between plain lines.
const PLAIN_EVERY: Duration = Duration::from_secs(5);

/// Receives transfer updates.
pub trait Progress {
    /// Bytes moved; called a few times a second.
    fn update(&mut self, transfer: &Transfer);
    /// The transfer ended (`ok` false when it failed).
    fn finish(&mut self, transfer: &Transfer, ok: bool);
}

/// Writes progress to a terminal or a log.
#[derive(Debug)]
pub struct TextProgress<W> {
    out: W,
    tty: bool,
    last_decile: u64,
    last_line: Duration,
}

/// Discards progress (the start-up pre-load logs through tracing instead).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoProgress;

// === impl TextProgress ===

impl<W: Write> TextProgress<W> {
    /// `tty` selects the redrawn bar.
    pub fn new(out: W, tty: bool) -> Self {
        Self {
            out,
            tty,
            last_decile: 0,
            last_line: Duration::ZERO,
        }
    }
}

impl<W: Write> Progress for TextProgress<W> {
    fn update(&mut self, t: &Transfer) {
        // Progress output is best effort: a closed stdout must not fail the load.
        if self.tty {
            let filled = usize::try_from(permille(t) * BAR as u64 / 1000).unwrap_or(BAR);
            let bar = format!(
                "{}{}",
                "#".repeat(filled.min(BAR)),
                " ".repeat(BAR - filled.min(BAR))
            );
            drop(write!(
                self.out,
                "\r{} → {} [{bar}] {}",
                t.label,
                t.node,
                figures(t)
            ));
            drop(self.out.flush());
            return;
        }
        let decile = permille(t) / 100;
        if decile > self.last_decile || t.elapsed >= self.last_line + PLAIN_EVERY {
            self.last_decile = decile;
            self.last_line = t.elapsed;
            drop(writeln!(
                self.out,
                "{} → {}: {}",
                t.label,
                t.node,
                figures(t)
            ));
        }
    }

    fn finish(&mut self, t: &Transfer, ok: bool) {
        let verdict = if ok { "loaded" } else { "FAILED" };
        let lead = if self.tty { "\r\x1b[2K" } else { "" };
        drop(writeln!(
            self.out,
            "{lead}{} → {}: {verdict}, {}",
            t.label,
            t.node,
            figures(t)
        ));
        self.last_decile = 0;
        self.last_line = Duration::ZERO;
    }
}

// === impl NoProgress ===

impl Progress for NoProgress {
    fn update(&mut self, _transfer: &Transfer) {}
    fn finish(&mut self, _transfer: &Transfer, _ok: bool) {}
}

/// Share sent, in thousandths.
fn permille(t: &Transfer) -> u64 {
    if t.total == 0 {
        1000
    } else {
        (u128::from(t.sent.min(t.total)) * 1000 / u128::from(t.total))
            .try_into()
            .unwrap_or(1000)
    }
}

/// `45.2/130.0 MB, 52.1 MB/s`.
pub fn figures(t: &Transfer) -> String {
    let mb = |b: u64| b as f64 / 1e6;
    let secs = t.elapsed.as_secs_f64().max(1e-3);
    format!(
        "{:.1}/{:.1} MB, {:.1} MB/s, {:.1}s",
        mb(t.sent),
        mb(t.total),
        mb(t.sent) / secs,
        t.elapsed.as_secs_f64()
    )
}
