//! Signal delivery without `unsafe`: signal-hook sets one atomic flag per signal and writes a
//! byte to a self-pipe, so the main loop sleeps in `poll` and learns which signals came.

use std::io::Read;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rustix::event::{poll, PollFd, PollFlags, Timespec};
use signal_hook::consts::{
    SIGCHLD, SIGCONT, SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2, SIGWINCH,
};

/// Signals passed on to the workload's process group.
pub(crate) const FORWARDED: [i32; 8] = [
    SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH, SIGCONT,
];
/// Signals that end init while it waits for a frame.
pub(crate) const ENDING: [i32; 4] = [SIGTERM, SIGINT, SIGHUP, SIGQUIT];
/// A child changed state.
pub(crate) const CHILD: i32 = SIGCHLD;

/// The handlers, their flags and the read end of the wake-up pipe.
#[derive(Debug)]
pub(crate) struct Signals {
    flags: Vec<(i32, Arc<AtomicBool>)>,
    wake: UnixStream,
}

impl Signals {
    /// Installs a handler for every forwarded signal and SIGCHLD.
    pub(crate) fn install() -> std::io::Result<Self> {
        let (wake, write) = UnixStream::pair()?;
        wake.set_nonblocking(true)?;
        write.set_nonblocking(true)?;
        let mut flags = Vec::new();
        for signal in FORWARDED.into_iter().chain([CHILD]) {
            let flag = Arc::new(AtomicBool::new(false));
            // The flag first: by the time the byte wakes the loop, the flag is set.
            signal_hook::flag::register(signal, Arc::clone(&flag))?;
            signal_hook::low_level::pipe::register(signal, write.try_clone()?)?;
            flags.push((signal, flag));
        }
        Ok(Self { flags, wake })
    }

    /// Sleeps until a signal arrives, `data` (when given) is readable, or `timeout` passes.
    /// Returns whether `data` is readable.
    pub(crate) fn wait(
        &self,
        data: Option<rustix::fd::BorrowedFd<'_>>,
        timeout: Option<Duration>,
    ) -> std::io::Result<bool> {
        let timeout = timeout.map(|t| Timespec {
            tv_sec: i64::try_from(t.as_secs()).unwrap_or(i64::MAX),
            tv_nsec: t.subsec_nanos().into(),
        });
        let mut fds = vec![PollFd::new(&self.wake, PollFlags::IN)];
        if let Some(fd) = data {
            fds.push(PollFd::from_borrowed_fd(fd, PollFlags::IN));
        }
        match poll(&mut fds, timeout.as_ref()) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(error) => return Err(error.into()),
        }
        let ready = fds.get(1).is_some_and(|fd| !fd.revents().is_empty());
        drop(fds);
        let mut sink = [0u8; 64];
        while matches!((&self.wake).read(&mut sink), Ok(n) if n > 0) {}
        Ok(ready)
    }

    /// The signals that arrived since the last call, each once.
    pub(crate) fn take(&self) -> Vec<i32> {
        self.flags
            .iter()
            .filter(|(_, flag)| flag.swap(false, Ordering::SeqCst))
            .map(|(signal, _)| *signal)
            .collect()
    }
}
