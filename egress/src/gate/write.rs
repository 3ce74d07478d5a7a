//! The gate's write side: responses pass through to the client, but a write that makes no
//! progress for the idle timeout fails (the client stopped reading and is cut off), and at
//! shutdown a refused head's JSON answer goes out after everything hyper already wrote, followed
//! by a short linger that reads and discards the client's input so the answer is not reset away.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http::Response;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::{RequestGate, LINGER, LINGER_BYTES};

impl<T> RequestGate<T> {
    /// Passes a write's outcome through; a write that stays `Pending` for the idle timeout fails
    /// with `TimedOut` instead, and marks the connection as stalled for the ledger.
    fn watch_write<R>(
        &mut self,
        cx: &mut Context<'_>,
        poll: Poll<std::io::Result<R>>,
    ) -> Poll<std::io::Result<R>> {
        if poll.is_ready() {
            self.write_armed = false;
            return poll;
        }
        let at = tokio::time::Instant::now() + self.limits.write_idle;
        let deadline = match &mut self.write_deadline {
            Some(deadline) if self.write_armed => deadline,
            Some(deadline) => {
                deadline.as_mut().reset(at);
                deadline
            }
            None => self
                .write_deadline
                .insert(Box::pin(tokio::time::sleep_until(at))),
        };
        self.write_armed = true;
        if deadline.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        self.heads.conn.mark_stalled();
        tracing::debug!("Client stopped reading; cutting it off");
        Poll::Ready(Err(std::io::ErrorKind::TimedOut.into()))
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RequestGate<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.watch_write(cx, poll)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_flush(cx);
        this.watch_write(cx, poll)
    }

    /// hyper shuts the connection down once it has written everything it owes; a refusal goes
    /// out first.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.reply.is_none() {
            this.reply = this.pending.take_reply().map(|bytes| (bytes, 0));
        }
        let Some((bytes, sent)) = &mut this.reply else {
            return Pin::new(&mut this.inner).poll_shutdown(cx);
        };
        while let Some(rest) = bytes.get(*sent..).filter(|rest| !rest.is_empty()) {
            let n = ready!(Pin::new(&mut this.inner).poll_write(cx, rest))?;
            if n == 0 {
                return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
            *sent += n;
        }
        ready!(Pin::new(&mut this.inner).poll_shutdown(cx))?;
        ready!(this.poll_linger(cx));
        Poll::Ready(Ok(()))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.watch_write(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

impl<T: AsyncRead + Unpin> RequestGate<T> {
    /// After the refusal is out: read and discard the client's remaining input for a moment,
    /// so that closing with unread input does not reset the connection under the refusal.
    fn poll_linger(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let (deadline, left) = self
            .linger
            .get_or_insert_with(|| (Box::pin(tokio::time::sleep(LINGER)), LINGER_BYTES));
        let mut scratch = [0u8; 4096];
        while *left > 0 && deadline.as_mut().poll(cx).is_pending() {
            let mut sink = ReadBuf::new(&mut scratch);
            match Pin::new(&mut self.inner).poll_read(cx, &mut sink) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(())) if !sink.filled().is_empty() => {
                    *left = left.saturating_sub(sink.filled().len());
                }
                Poll::Ready(_) => break,
            }
        }
        Poll::Ready(())
    }
}

/// A refusal as HTTP/1.1 bytes, closing the connection.
pub(crate) fn serialize(response: &Response<Bytes>) -> Vec<u8> {
    let status = response.status();
    let mut out = format!(
        "HTTP/1.1 {} {}\r\nconnection: close\r\ncontent-length: {}\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        response.body().len()
    )
    .into_bytes();
    for (name, value) in response.headers() {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(response.body());
    out
}
