//! Reads the packets the encrypt program passes up on `vpn0p`: inner
//! packets to a VPN destination without an established session (and to
//! non-VPN destinations). It counts them and, once the daemon set a sink
//! ([`PassUp`]), hands them over so that the daemon starts a session; the
//! daemon writes them back with [`Injector`] once the keys are in the maps.
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

use crate::dataplane::passup::{destination, unicast_global, PassUp};

const POLL_MS: i32 = 200;

/// A background thread reading passed-up packets on one interface.
pub struct NoSessionReader {
    stop: Arc<AtomicBool>,
    seen: Arc<AtomicU64>,
    up: Arc<PassUp>,
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

impl NoSessionReader {
    /// Starts reading on `ifindex` (vpn0p).
    pub fn start(ifindex: u32) -> io::Result<Self> {
        let socks = [
            packet_socket(ifindex, libc::ETH_P_IP as u16)?,
            packet_socket(ifindex, libc::ETH_P_IPV6 as u16)?,
        ];
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(AtomicU64::new(0));
        let up = Arc::new(PassUp::default());
        let (stop2, seen2, up2) = (stop.clone(), seen.clone(), up.clone());
        let thread = std::thread::Builder::new()
            .name("vpn0p-nosession".into())
            .spawn(move || run(&socks, &stop2, &seen2, &up2))?;
        Ok(Self {
            stop,
            seen,
            up,
            thread: Some(thread),
        })
    }

    /// The hand-over to the daemon.
    pub fn pass_up(&self) -> &PassUp {
        &self.up
    }

    /// Unicast packets read so far (multicast and link-local noise that
    /// `vpn0` sends by itself is skipped).
    pub fn seen(&self) -> u64 {
        self.seen.load(Ordering::Relaxed)
    }
}

fn run(socks: &[OwnedFd; 2], stop: &AtomicBool, seen: &AtomicU64, up: &PassUp) {
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
                tracing::trace!(
                    len = pkt.len(),
                    %dst,
                    "packet without an established session passed up on vpn0p"
                );
                up.offer(pkt);
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

/// Writes inner IP packets into `vpn0`'s transmit side (an AF_PACKET
/// datagram socket on `vpn0`): they cross the veth pair and meet the
/// encrypt program on `vpn0p`'s ingress exactly like routed packets.
pub struct Injector {
    fd: OwnedFd,
    ifindex: u32,
    mac: [u8; 6],
}

impl Injector {
    /// An injector on `vpn0` (`ifindex`, its MAC `mac`: frames are
    /// addressed as `vpn0`'s own NOARP neighbours are).
    pub fn new(ifindex: u32, mac: [u8; 6]) -> io::Result<Self> {
        // SAFETY: plain socket(2) call; the result is checked. Protocol 0:
        // the socket receives nothing.
        let fd = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                0,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Self { fd, ifindex, mac })
    }

    /// Sends one inner IP packet.
    pub fn send(&self, pkt: &[u8]) -> io::Result<()> {
        let proto = match pkt.first().map(|b| b >> 4) {
            Some(4) => libc::ETH_P_IP as u16,
            Some(6) => libc::ETH_P_IPV6 as u16,
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "not an IP packet",
                ))
            }
        };
        // SAFETY: zeroed sockaddr_ll is valid; fields set below.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = proto.to_be();
        sll.sll_ifindex = self.ifindex as i32;
        sll.sll_halen = 6;
        sll.sll_addr[..6].copy_from_slice(&self.mac);
        // SAFETY: sendto(2) with a valid buffer and a correctly sized
        // sockaddr_ll.
        let r = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                pkt.as_ptr().cast(),
                pkt.len(),
                0,
                &sll as *const libc::sockaddr_ll as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}
