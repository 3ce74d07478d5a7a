//! `airlock health`: a container health check for images without a shell or curl (the
//! controller image is `FROM scratch`). It sends `GET PATH` over plain HTTP to an address on
//! the container's own network namespace and succeeds on a `200`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use clap::Args;

/// Arguments of `airlock health`.
#[derive(Debug, Args)]
pub struct HealthArgs {
    /// The API's address.
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "IP:PORT")]
    pub addr: SocketAddr,
    /// The path to ask (`/healthz` for liveness, `/readyz` for readiness).
    #[arg(long, default_value = "/healthz")]
    pub path: String,
    /// How long the whole check may take, in seconds.
    #[arg(long, default_value_t = 3)]
    pub timeout_s: u64,
}

// === impl HealthArgs ===

impl HealthArgs {
    /// Runs the check; `Ok(false)` when the server answered something other than 200.
    pub fn run(&self, out: &mut impl Write) -> anyhow::Result<bool> {
        let limit = Duration::from_secs(self.timeout_s.max(1));
        let mut stream = TcpStream::connect_timeout(&self.addr, limit)?;
        stream.set_read_timeout(Some(limit))?;
        stream.set_write_timeout(Some(limit))?;
        let request = format!(
            "GET {} HTTP/1.0\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.path, self.addr
        );
        stream.write_all(request.as_bytes())?;
        let mut head = [0u8; 64];
        let n = stream.read(&mut head)?;
        let status_line = String::from_utf8_lossy(&head[..n]);
        let status_line = status_line.lines().next().unwrap_or_default();
        writeln!(out, "{} {}: {status_line}", self.addr, self.path)?;
        Ok(status_line.split_whitespace().nth(1) == Some("200"))
    }
}
