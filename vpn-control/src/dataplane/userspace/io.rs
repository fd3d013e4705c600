//! Batched socket I/O (`recvmmsg`/`sendmmsg`) and small fd helpers.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::SocketAddr;
#[cfg(test)]
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;

/// Encodes a socket address for the kernel.
pub fn to_sockaddr(a: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut ss: libc::sockaddr_storage = unsafe { zeroed() };
    let len = match a {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is large and aligned enough for sockaddr_in.
            unsafe { std::ptr::write(&mut ss as *mut _ as *mut libc::sockaddr_in, sin) };
            size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: as above, for sockaddr_in6.
            unsafe { std::ptr::write(&mut ss as *mut _ as *mut libc::sockaddr_in6, sin6) };
            size_of::<libc::sockaddr_in6>()
        }
    };
    (ss, len as libc::socklen_t)
}

/// Decodes a socket address filled in by the kernel.
#[cfg(test)]
pub fn from_sockaddr(ss: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(ss.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says this is a sockaddr_in.
            let sin = unsafe { &*(ss as *const _ as *const libc::sockaddr_in) };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes()),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says this is a sockaddr_in6.
            let sin6 = unsafe { &*(ss as *const _ as *const libc::sockaddr_in6) };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// A set of equally sized packet buffers for batched receive or send.
pub struct Batch {
    slot: usize,
    data: Vec<u8>,
    pub lens: Vec<usize>,
    pub addrs: Vec<libc::sockaddr_storage>,
    addr_lens: Vec<libc::socklen_t>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
}

// SAFETY: the raw pointers inside `iovs`/`hdrs` only ever point into this
// struct's own buffers and are rebuilt before each use.
unsafe impl Send for Batch {}

impl Batch {
    pub fn new(count: usize, slot: usize) -> Self {
        Batch {
            slot,
            data: vec![0; count * slot],
            lens: vec![0; count],
            // SAFETY: all-zero is a valid sockaddr_storage.
            addrs: vec![unsafe { zeroed() }; count],
            addr_lens: vec![0; count],
            iovs: Vec::with_capacity(count),
            hdrs: Vec::with_capacity(count),
        }
    }

    pub fn capacity(&self) -> usize {
        self.lens.len()
    }

    pub fn buf(&self, i: usize) -> &[u8] {
        &self.data[i * self.slot..(i + 1) * self.slot]
    }

    pub fn buf_mut(&mut self, i: usize) -> &mut [u8] {
        &mut self.data[i * self.slot..(i + 1) * self.slot]
    }

    pub fn set_addr(&mut self, i: usize, a: &SocketAddr) {
        let (ss, len) = to_sockaddr(a);
        self.addrs[i] = ss;
        self.addr_lens[i] = len;
    }

    /// Receives up to `capacity()` datagrams: blocks for the first (up to the
    /// socket's receive timeout), then takes whatever else is queued.
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        let n = self.capacity();
        self.prepare_recv(n);
        // SAFETY: `hdrs` holds `n` headers pointing into our own buffers.
        let r = unsafe {
            libc::recvmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                n as libc::c_uint,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        let r = r as usize;
        for i in 0..r {
            self.lens[i] = self.hdrs[i].msg_len as usize;
        }
        Ok(r)
    }

    /// Sends the listed (slot, offset, length) messages to the addresses set
    /// with [`Batch::set_addr`] for those slots. Returns, per message, the
    /// error of the message that failed (the others are sent).
    pub fn send(
        &mut self,
        fd: RawFd,
        msgs: &[(usize, usize, usize)],
        mut on_err: impl FnMut(usize, io::Error),
    ) -> usize {
        let mut sent = 0;
        let mut start = 0;
        while start < msgs.len() {
            let part = &msgs[start..];
            self.prepare_send(part);
            // SAFETY: `hdrs` holds `part.len()` headers pointing into our buffers.
            let r = unsafe {
                libc::sendmmsg(fd, self.hdrs.as_mut_ptr(), part.len() as libc::c_uint, 0)
            };
            if r < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                if e.kind() == io::ErrorKind::WouldBlock {
                    wait_writable(fd);
                    continue;
                }
                // The first message failed: report it and go on with the rest.
                on_err(start, e);
                start += 1;
            } else {
                sent += r as usize;
                start += r as usize;
            }
        }
        sent
    }

    fn prepare_recv(&mut self, n: usize) {
        self.iovs.clear();
        self.hdrs.clear();
        for i in 0..n {
            let base = self.data[i * self.slot..].as_mut_ptr();
            self.iovs.push(libc::iovec {
                iov_base: base as *mut libc::c_void,
                iov_len: self.slot,
            });
        }
        for i in 0..n {
            // SAFETY: all-zero is a valid msghdr.
            let mut h: libc::mmsghdr = unsafe { zeroed() };
            h.msg_hdr.msg_name = &mut self.addrs[i] as *mut _ as *mut libc::c_void;
            h.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_hdr.msg_iov = &mut self.iovs[i];
            h.msg_hdr.msg_iovlen = 1;
            self.hdrs.push(h);
        }
    }

    fn prepare_send(&mut self, msgs: &[(usize, usize, usize)]) {
        self.iovs.clear();
        self.hdrs.clear();
        for &(slot, off, len) in msgs {
            let base = self.data[slot * self.slot + off..].as_mut_ptr();
            self.iovs.push(libc::iovec {
                iov_base: base as *mut libc::c_void,
                iov_len: len,
            });
        }
        for (k, &(slot, _, _)) in msgs.iter().enumerate() {
            // SAFETY: all-zero is a valid msghdr.
            let mut h: libc::mmsghdr = unsafe { zeroed() };
            h.msg_hdr.msg_name = &mut self.addrs[slot] as *mut _ as *mut libc::c_void;
            h.msg_hdr.msg_namelen = self.addr_lens[slot];
            h.msg_hdr.msg_iov = &mut self.iovs[k];
            h.msg_hdr.msg_iovlen = 1;
            self.hdrs.push(h);
        }
    }
}

/// Waits until `fd` is readable or `timeout_ms` passes; true if readable.
pub fn wait_readable(fd: RawFd, timeout_ms: i32) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let r = unsafe { libc::poll(&mut p, 1, timeout_ms) };
    r > 0 && p.revents & libc::POLLIN != 0
}

fn wait_writable(fd: RawFd) {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut p, 1, 100) };
}

/// Reads one packet from a packet fd (TUN, or a datagram socket in tests).
#[inline]
pub fn read_packet(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for `buf.len()` bytes.
    let r = unsafe { libc::read(fd, buf.as_mut_ptr() as *mut libc::c_void, buf.len()) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

/// Writes one packet to a packet fd.
#[inline]
pub fn write_packet(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for `buf.len()` bytes.
    let r = unsafe { libc::write(fd, buf.as_ptr() as *const libc::c_void, buf.len()) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

/// Sets O_NONBLOCK on a file descriptor.
pub fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on a caller-owned fd.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockaddr_roundtrip() {
        for a in ["192.0.2.7:51830", "[fd00::1]:9", "[fe80::1%3]:80"] {
            let a: SocketAddr = a.parse().unwrap();
            let (ss, _) = to_sockaddr(&a);
            assert_eq!(from_sockaddr(&ss), Some(a));
        }
    }

    #[test]
    fn batch_over_loopback() {
        use std::os::fd::AsRawFd;
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let to = rx.local_addr().unwrap();
        let mut out = Batch::new(8, 64);
        let mut msgs = Vec::new();
        for i in 0..5 {
            out.buf_mut(i)[..3].copy_from_slice(&[i as u8, 1, 2]);
            out.set_addr(i, &to);
            msgs.push((i, 0, 3 + i));
        }
        assert_eq!(out.send(tx.as_raw_fd(), &msgs, |_, e| panic!("{e}")), 5);
        let mut inb = Batch::new(8, 64);
        let mut got = 0;
        while got < 5 {
            let n = inb.recv(rx.as_raw_fd()).unwrap();
            for i in 0..n {
                let first = usize::from(inb.buf_mut(i)[0]);
                assert_eq!(inb.lens[i], 3 + first);
                assert_eq!(from_sockaddr(&inb.addrs[i]), Some(tx.local_addr().unwrap()));
            }
            got += n;
        }
        assert_eq!(got, 5);
    }
}
