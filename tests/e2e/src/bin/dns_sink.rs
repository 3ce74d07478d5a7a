//! `dns-sink`: a UDP DNS server for the sealed outer network that logs every query and answers
//! NXDOMAIN.
//!
//! The e2e DNS test runs it in a container on the sealed network and points the DinD's
//! `resolv.conf` at it. Each datagram becomes one stdout line,
//! `QUERY from=<addr> id=<id> name=<qname>`, read back with `docker logs`. It answers so that
//! resolvers return at once instead of waiting for a timeout. It speaks only to whoever queried
//! it, and only on the sealed network it runs on.

use std::io::Write;
use std::net::UdpSocket;

/// Where to listen (inside the sink's own container).
const LISTEN: &str = "0.0.0.0:53";
/// Size of the DNS header.
const HEADER: usize = 12;

fn main() -> std::io::Result<()> {
    let socket = UdpSocket::bind(LISTEN)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "LISTENING {LISTEN}")?;
    out.flush()?;
    let mut buf = [0u8; 1500];
    loop {
        let (len, from) = socket.recv_from(&mut buf)?;
        let query = &buf[..len];
        let id = query
            .get(..2)
            .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]));
        writeln!(out, "QUERY from={from} id={id} name={}", qname(query))?;
        out.flush()?;
        if let Some(reply) = nxdomain(query) {
            socket.send_to(&reply, from)?;
        }
    }
}

/// The first question's name, dot-joined, or `?` when the packet is malformed.
fn qname(packet: &[u8]) -> String {
    let mut labels = Vec::new();
    let mut pos = HEADER;
    while let Some(&len) = packet.get(pos) {
        if len == 0 {
            return labels.join(".");
        }
        let label = packet.get(pos + 1..pos + 1 + usize::from(len));
        match label {
            // Compression pointers never appear in a question name; treat them as malformed.
            Some(label) if len < 64 => labels.push(String::from_utf8_lossy(label).into_owned()),
            _ => break,
        }
        pos += 1 + usize::from(len);
    }
    "?".to_owned()
}

/// The query's header and first question echoed back as a response with RCODE 3 (NXDOMAIN)
/// and no records, or `None` when the packet is too short to answer.
fn nxdomain(query: &[u8]) -> Option<Vec<u8>> {
    let name_end = HEADER + query.get(HEADER..)?.iter().position(|&b| b == 0)?;
    // The question is the name, its terminating zero, QTYPE and QCLASS.
    let mut reply = query.get(..name_end + 5)?.to_vec();
    reply[2] |= 0x80; // QR: this is a response.
    reply[3] = (reply[3] & 0x70) | 0x80 | 0x03; // RA set, RCODE NXDOMAIN.
    reply[4..12].copy_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]); // One question, no records.
    Some(reply)
}
