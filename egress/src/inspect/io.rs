//! The client side of a terminated tunnel as one stream: first the bytes the client sent after
//! its CONNECT head (already read by the gate), then the socket. Every byte in either direction
//! is charged to the sandbox's budget and counters, as a plain tunnel charges them, and nothing
//! more moves once the budget is spent or the generation revoked.

use std::io;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::budget::Budget;
use crate::proxy::Proxy;
use crate::record::Counters;
use crate::tunnel::Activity;

/// What a [`MeteredIo`] charges its bytes to.
#[derive(Debug, Clone)]
pub(super) struct Charges {
    pub(super) proxy: Arc<Proxy>,
    pub(super) counters: Arc<Counters>,
    pub(super) budget: Arc<Budget>,
    pub(super) revoked: CancellationToken,
    pub(super) activity: Arc<Activity>,
}

/// The client socket with its prefix, metered.
#[derive(Debug)]
pub(super) struct MeteredIo {
    inner: TcpStream,
    prefix: Bytes,
    charges: Charges,
}

impl MeteredIo {
    pub(super) fn new(inner: TcpStream, prefix: Bytes, charges: Charges) -> Self {
        Self {
            inner,
            prefix,
            charges,
        }
    }

    /// The first byte the client sent, if it is already here (to tell TLS from plain text).
    pub(super) fn peek_prefix(&self) -> Option<u8> {
        self.prefix.first().copied()
    }

    /// Reads at most one byte into the prefix without consuming it.
    pub(super) async fn fill_prefix(&mut self) -> io::Result<Option<u8>> {
        if let Some(b) = self.peek_prefix() {
            return Ok(Some(b));
        }
        let mut one = [0u8; 1];
        let n = self.inner.peek(&mut one).await?;
        Ok((n == 1).then_some(one[0]))
    }
}

impl Charges {
    fn charge(&self, n: usize, up: bool) -> io::Result<()> {
        if self.revoked.is_cancelled() {
            return Err(io::Error::other("policy_changed"));
        }
        let n = n as u64;
        self.activity.touch();
        if let Err(e) = self.budget.add_bytes(n) {
            let _ = self.counters.cut.set(e);
            return Err(io::Error::other(e.code()));
        }
        let metrics = self.proxy.metrics();
        if up {
            self.counters.up.fetch_add(n, Ordering::Relaxed);
            metrics.add_bytes(n, 0);
        } else {
            self.counters.down.fetch_add(n, Ordering::Relaxed);
            metrics.add_bytes(0, n);
        }
        Ok(())
    }
}

impl AsyncRead for MeteredIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.prefix.is_empty() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix[..n]);
            this.prefix.advance(n);
            return Poll::Ready(this.charges.charge(n, true));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let n = buf.filled().len() - before;
                Poll::Ready(this.charges.charge(n, true))
            }
            other => other,
        }
    }
}

impl MeteredIo {
    /// One write to the socket through `write`, refused once the generation is revoked, and
    /// the bytes it took charged.
    fn metered_write(
        &mut self,
        write: impl FnOnce(Pin<&mut TcpStream>) -> Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        if self.charges.revoked.is_cancelled() {
            return Poll::Ready(Err(io::Error::other("policy_changed")));
        }
        match write(Pin::new(&mut self.inner)) {
            Poll::Ready(Ok(n)) => Poll::Ready(self.charges.charge(n, false).map(|()| n)),
            other => other,
        }
    }
}

impl AsyncWrite for MeteredIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .metered_write(|inner| inner.poll_write(cx, data))
    }

    /// TLS hands over many records at once; one `writev` sends them all.
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .metered_write(|inner| inner.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
