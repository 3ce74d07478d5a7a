//! Blocks on fd 0 for one frame: the header first (so an oversize length is refused before any
//! body byte is read), then exactly the body. Nothing after the body is read.

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use super::signals::{Signals, CHILD, ENDING};
use super::Failure;
use crate::frame::{self, HEADER_LEN};

/// The frame's body, or why there is none.
pub(super) fn frame(signals: &Signals, idle: Option<Duration>) -> Result<Vec<u8>, Failure> {
    let deadline = idle.map(|idle| (Instant::now() + idle, idle.as_secs()));
    let mut header = [0u8; HEADER_LEN];
    fill(&mut header, 0, signals, deadline)?;
    let len = frame::body_len(&header).map_err(Failure::Frame)?;
    let mut body = vec![0u8; len];
    fill(&mut body, HEADER_LEN, signals, deadline)?;
    Ok(body)
}

/// Fills `buf` from fd 0; `before` bytes were read earlier (for the EOF message).
fn fill(
    buf: &mut [u8],
    before: usize,
    signals: &Signals,
    deadline: Option<(Instant, u64)>,
) -> Result<(), Failure> {
    let stdin = std::io::stdin();
    let fd = stdin.as_fd();
    let mut got = 0;
    while got < buf.len() {
        let timeout = match deadline {
            None => None,
            Some((at, seconds)) => match at.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => Some(left),
                _ => return Err(Failure::IdleTimeout { seconds }),
            },
        };
        let readable = signals.wait(Some(fd), timeout).map_err(Failure::Read)?;
        for signal in signals.take() {
            if ENDING.contains(&signal) {
                return Err(Failure::Signalled { signal });
            }
            if signal == CHILD {
                // No child of ours yet; an adopted orphan is reaped all the same.
                while let Ok(Some(_)) = rustix::process::wait(rustix::process::WaitOptions::NOHANG)
                {
                }
            }
        }
        if !readable {
            continue;
        }
        let Some(rest) = buf.get_mut(got..) else {
            break;
        };
        match rustix::io::read(fd, rest) {
            Ok(0) => return Err(Failure::Eof { got: before + got }),
            Ok(n) => got += n,
            Err(rustix::io::Errno::INTR | rustix::io::Errno::AGAIN) => {}
            Err(error) => return Err(Failure::Read(error.into())),
        }
    }
    Ok(())
}
