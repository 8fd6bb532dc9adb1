//! Emulated network links between local party processes: a TCP relay that delays and paces the
//! bytes of every connection, in both directions, by a link profile.
//!
//! The kernel's `netem` qdisc is the usual tool, but kernels without it (this project's build
//! machines among them: `tc` reports the qdisc unknown) cannot delay packets, so the relay does
//! it in user space: each direction has a reader thread that timestamps chunks and a writer
//! thread that releases a chunk once the link has serialized it (`bytes / rate`, one chunk after
//! another) and its one-way delay has passed. OS threads, not async timers, because LAN delays
//! are fractions of a millisecond.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// A link's one-way delay and bandwidth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkProfile {
    /// The profile's name.
    pub name: &'static str,
    /// One-way delay (half the round-trip time).
    pub one_way: Duration,
    /// Bandwidth in bits per second, each direction.
    pub bits_per_second: u64,
}

/// A data-centre LAN: 1 Gbit/s, 0.5 ms round trip.
pub const LAN: LinkProfile =
    LinkProfile { name: "lan", one_way: Duration::from_micros(250), bits_per_second: 1_000_000_000 };
/// A WAN between regions: 100 Mbit/s, 40 ms round trip.
pub const WAN: LinkProfile =
    LinkProfile { name: "wan", one_way: Duration::from_millis(20), bits_per_second: 100_000_000 };

impl std::str::FromStr for LinkProfile {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "lan" => Ok(LAN),
            "wan" => Ok(WAN),
            other => Err(format!("unknown network profile `{other}` (profiles: loopback, lan, wan)")),
        }
    }
}

/// A running relay; dropping it stops accepting (open connections end with their peers).
#[derive(Debug)]
pub struct Relay {
    address: SocketAddr,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl Relay {
    /// Relays connections made to a fresh loopback port to `target` over `profile`.
    pub fn start(profile: LinkProfile, target: SocketAddr) -> Result<Self> {
        let io = |e: std::io::Error| Error::Listen {
            address: format!("127.0.0.1:0 (relay to {target})"),
            reason: e.to_string(),
        };
        let listener = TcpListener::bind("127.0.0.1:0").map_err(io)?;
        let address = listener.local_addr().map_err(io)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let acceptor = std::thread::spawn(move || {
            for incoming in listener.incoming() {
                if stopped.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(client) = incoming else { continue };
                let Ok(server) = TcpStream::connect(target) else { continue };
                let _ = relay_connection(profile, client, server);
            }
        });
        Ok(Self { address, stop, acceptor: Some(acceptor) })
    }

    /// Where clients connect.
    pub fn address(&self) -> SocketAddr {
        self.address
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the acceptor so it sees the flag.
        let _ = TcpStream::connect(self.address);
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
    }
}

fn relay_connection(profile: LinkProfile, a: TcpStream, b: TcpStream) -> std::io::Result<()> {
    for s in [&a, &b] {
        s.set_nodelay(true)?;
    }
    direction(profile, a.try_clone()?, b.try_clone()?);
    direction(profile, b, a);
    Ok(())
}

/// Carries bytes from `from` to `to` with the profile's serialization time and delay.
fn direction(profile: LinkProfile, mut from: TcpStream, mut to: TcpStream) {
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => {
                    let _ = tx.send((Instant::now(), Vec::new()));
                    return;
                }
                Ok(n) => {
                    if tx.send((Instant::now(), buf[..n].to_vec())).is_err() {
                        return;
                    }
                }
            }
        }
    });
    std::thread::spawn(move || {
        let mut link_free = Instant::now();
        for (arrived, chunk) in rx {
            if chunk.is_empty() {
                let _ = to.shutdown(Shutdown::Write);
                return;
            }
            let transmit = Duration::from_nanos(chunk.len() as u64 * 8 * 1_000_000_000 / profile.bits_per_second);
            link_free = arrived.max(link_free) + transmit;
            let due = link_free + profile.one_way;
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            if to.write_all(&chunk).is_err() {
                return;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_delays_and_paces() {
        let server = TcpListener::bind("127.0.0.1:0").unwrap();
        let target = server.local_addr().unwrap();
        let echo = std::thread::spawn(move || {
            let (mut s, _) = server.accept().unwrap();
            let mut buf = vec![0u8; 1 << 20];
            let mut got = 0;
            while got < buf.len() {
                got += s.read(&mut buf[got..]).unwrap();
            }
            s.write_all(b"ok").unwrap();
        });
        let profile = LinkProfile { name: "test", one_way: Duration::from_millis(20), bits_per_second: 100_000_000 };
        let relay = Relay::start(profile, target).unwrap();
        let mut c = TcpStream::connect(relay.address()).unwrap();
        let start = Instant::now();
        c.write_all(&vec![7u8; 1 << 20]).unwrap();
        let mut reply = [0u8; 2];
        c.read_exact(&mut reply).unwrap();
        let elapsed = start.elapsed();
        echo.join().unwrap();
        // 1 MiB at 100 Mbit/s is 84 ms, plus 20 ms each way.
        assert_eq!(&reply, b"ok");
        assert!(elapsed >= Duration::from_millis(120), "{elapsed:?}");
        assert!(elapsed < Duration::from_millis(600), "{elapsed:?}");
    }
}
