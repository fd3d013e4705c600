//! Reads the packets the encrypt program passes up on `vpn0p`: inner
//! packets to a VPN destination without an established session (and to
//! non-VPN destinations). Today it counts and logs them at debug level; the
//! overlay issue starts a handshake from them.
//!
//! The sockets are bound to ETH_P_IP and ETH_P_IPV6, not ETH_P_ALL: taps for
//! ETH_P_ALL run *before* TC ingress and would copy every packet, while
//! protocol handlers run after it and only see what the program passed.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

const POLL_MS: i32 = 200;

/// A background thread reading passed-up packets on one interface.
pub struct NoSessionReader {
    stop: Arc<AtomicBool>,
    seen: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

fn packet_socket(ifindex: u32, proto: u16) -> io::Result<OwnedFd> {
    let proto_be = proto.to_be();
    // SAFETY: plain socket(2) call; the result is checked.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            proto_be as libc::c_int,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: zeroed sockaddr_ll is valid; fields set below.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = proto_be;
    sll.sll_ifindex = ifindex as i32;
    // SAFETY: bind(2) with a correctly sized sockaddr_ll.
    let r = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            &sll as *const libc::sockaddr_ll as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

/// The destination of an inner IP packet, for the log line.
fn destination(p: &[u8]) -> Option<std::net::IpAddr> {
    match p.first()? >> 4 {
        4 if p.len() >= 20 => Some(std::net::IpAddr::from(
            <[u8; 4]>::try_from(&p[16..20]).ok()?,
        )),
        6 if p.len() >= 40 => Some(std::net::IpAddr::from(
            <[u8; 16]>::try_from(&p[24..40]).ok()?,
        )),
        _ => None,
    }
}

/// Whether a destination could be a peer's address: multicast, broadcast
/// and link-local traffic (MLD, router solicitations that `vpn0` sends on
/// its own) is never routed to a peer.
fn unicast_global(dst: std::net::IpAddr) -> bool {
    match dst {
        std::net::IpAddr::V4(a) => !(a.is_multicast() || a.is_broadcast() || a.is_link_local()),
        std::net::IpAddr::V6(a) => !(a.is_multicast() || a.is_unicast_link_local()),
    }
}

impl NoSessionReader {
    /// Starts reading on `ifindex` (vpn0p).
    pub fn start(ifindex: u32) -> io::Result<Self> {
        let socks = [
            packet_socket(ifindex, libc::ETH_P_IP as u16)?,
            packet_socket(ifindex, libc::ETH_P_IPV6 as u16)?,
        ];
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(AtomicU64::new(0));
        let (stop2, seen2) = (stop.clone(), seen.clone());
        let thread = std::thread::Builder::new()
            .name("vpn0p-nosession".into())
            .spawn(move || run(&socks, &stop2, &seen2))?;
        Ok(Self {
            stop,
            seen,
            thread: Some(thread),
        })
    }

    /// Unicast packets read so far (multicast and link-local noise that
    /// `vpn0` sends by itself is skipped).
    pub fn seen(&self) -> u64 {
        self.seen.load(Ordering::Relaxed)
    }
}

fn run(socks: &[OwnedFd; 2], stop: &AtomicBool, seen: &AtomicU64) {
    let mut buf = vec![0u8; 65536];
    let mut pfds: Vec<libc::pollfd> = socks
        .iter()
        .map(|s| libc::pollfd {
            fd: s.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    while !stop.load(Ordering::Relaxed) {
        // SAFETY: `pfds` is a valid array of pollfd for its length.
        let n = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, POLL_MS) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                tracing::warn!("vpn0p reader: poll: {e}");
                std::thread::sleep(Duration::from_millis(POLL_MS as u64));
            }
            continue;
        }
        for p in &pfds {
            if p.revents & libc::POLLIN == 0 {
                continue;
            }
            loop {
                // SAFETY: recv(2) into a buffer of the given length.
                let r = unsafe { libc::recv(p.fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
                if r <= 0 {
                    break;
                }
                let pkt = &buf[..r as usize];
                let Some(dst) = destination(pkt).filter(|d| unicast_global(*d)) else {
                    continue;
                };
                seen.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(
                    len = pkt.len(),
                    %dst,
                    "packet without an established session passed up on vpn0p"
                );
            }
        }
    }
}

impl Drop for NoSessionReader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
