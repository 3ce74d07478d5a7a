//! `TargetSniffer`: watches the raw bytes hyper reads from a client for request lines whose
//! target carries a fragment (`#`).
//!
//! Why: hyper hands the service an `http::Uri`, and `http::Uri` silently drops a fragment, so
//! `GET http://host/#x` would reach the policy parser as `http://host/` — a second parser
//! disagreeing with ours. RFC 9112 request-targets never contain `#`, so any line shaped like a
//! request line (`TOKEN SP target SP ...`) with `#` in its target marks the connection, and
//! `server` refuses the request with 400 `fragment` and closes. The scan is read-only: bytes
//! reach hyper unchanged. A body line that merely looks like such a request line can only cause
//! a refusal (fail closed), never an admission. Other bytes `http::Uri` rejects make hyper answer
//! 400 itself.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Where the scanner is within the current line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// In the method token (upper-case letters so far).
    Method,
    /// In the target (after the first space).
    Target,
    /// Past the target, or the line is not a request line: skip to the next `\n`.
    Skip,
}

/// A transparent reader that flags request lines with a fragment.
#[derive(Debug)]
pub(crate) struct TargetSniffer<T> {
    inner: T,
    phase: Phase,
    method_len: usize,
    fragment: Arc<AtomicBool>,
}

// === impl TargetSniffer ===

impl<T> TargetSniffer<T> {
    /// Wraps `inner`; the returned flag turns true once a request line with `#` was read.
    pub(crate) fn new(inner: T) -> (Self, Arc<AtomicBool>) {
        let fragment = Arc::new(AtomicBool::new(false));
        let sniffer = Self {
            inner,
            phase: Phase::Method,
            method_len: 0,
            fragment: fragment.clone(),
        };
        (sniffer, fragment)
    }

    /// The wrapped stream.
    pub(crate) fn into_inner(self) -> T {
        self.inner
    }

    fn scan(&mut self, mut bytes: &[u8]) {
        while let Some((&b, rest)) = bytes.split_first() {
            match (self.phase, b) {
                (_, b'\n') => {
                    self.phase = Phase::Method;
                    self.method_len = 0;
                }
                (Phase::Method, b' ') if self.method_len > 0 => self.phase = Phase::Target,
                (Phase::Method, b'A'..=b'Z') => self.method_len += 1,
                (Phase::Target, b'#') => {
                    self.fragment.store(true, Ordering::Release);
                    self.phase = Phase::Skip;
                }
                (Phase::Target, b' ' | b'\r') | (Phase::Method, _) => self.phase = Phase::Skip,
                (Phase::Target, _) => {}
                (Phase::Skip, _) => {
                    // Jump to the end of the line in one step.
                    match rest.iter().position(|&c| c == b'\n') {
                        Some(i) => bytes = &rest[i..],
                        None => return,
                    }
                    continue;
                }
            }
            bytes = rest;
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for TargetSniffer<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = result {
            if let Some(new) = buf.filled().get(before..) {
                this.scan(new);
            }
        }
        result
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for TargetSniffer<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flagged(chunks: &[&[u8]]) -> bool {
        let (mut s, flag) = TargetSniffer::new(());
        for c in chunks {
            s.scan(c);
        }
        flag.load(Ordering::Acquire)
    }

    #[test]
    fn finds_fragments_in_request_lines_only() {
        assert!(flagged(&[b"GET http://a/#x HTTP/1.1\r\n\r\n"]));
        assert!(flagged(&[b"GET http://a/", b"#x HTTP/1.1\r\n"]));
        assert!(flagged(&[
            b"GET / HTTP/1.1\r\n\r\nCONNECT a:1#x HTTP/1.1\r\n"
        ]));
        assert!(!flagged(&[
            b"GET http://a/ HTTP/1.1\r\nX-Note: #1\r\nReferer: http://b/#c\r\n\r\n"
        ]));
        assert!(!flagged(&[
            b"GET http://a/?q HTTP/1.1\r\n\r\nbody # with hash\n"
        ]));
        assert!(!flagged(&[b"get http://a/#x HTTP/1.1\r\n"]));
    }
}
