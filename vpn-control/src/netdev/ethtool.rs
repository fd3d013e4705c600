//! Offload switches through the legacy `SIOCETHTOOL` ioctls.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const SIOCETHTOOL: libc::c_ulong = 0x8946;

/// (name, get command, set command) of each switch we turn off, in an
/// order that respects the kernel's feature dependencies.
const FEATURES: [(&str, u32, u32); 5] = [
    ("tcp-segmentation-offload", 0x1e, 0x1f),
    ("generic-segmentation-offload", 0x23, 0x24),
    ("generic-receive-offload", 0x2b, 0x2c),
    ("scatter-gather", 0x18, 0x19),
    ("tx-checksumming", 0x16, 0x17),
];

#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

fn ioctl(sock: &OwnedFd, name: &str, v: &mut EthtoolValue) -> io::Result<()> {
    // SAFETY: all-zero is a valid ifreq.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    if name.len() >= ifr.ifr_name.len() {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    for (d, s) in ifr.ifr_name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    ifr.ifr_ifru.ifru_data = v as *mut EthtoolValue as *mut libc::c_char;
    // SAFETY: a valid socket, an ifreq whose data pointer refers to a live
    // ethtool_value for the duration of the call.
    let r = unsafe { libc::ioctl(sock.as_raw_fd(), SIOCETHTOOL as _, &mut ifr) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Turns TSO, GSO, GRO, scatter-gather and TX checksum offload off on
/// `name`, then reads each back; an error names the switch that is still on.
pub fn disable_offloads(name: &str) -> io::Result<()> {
    // SAFETY: plain socket creation.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just created and is owned by nobody else.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    for (feature, _, set) in FEATURES {
        let mut v = EthtoolValue { cmd: set, data: 0 };
        if let Err(e) = ioctl(&sock, name, &mut v) {
            // Not supported means it cannot be on: the read-back decides.
            if e.raw_os_error() != Some(libc::EOPNOTSUPP) {
                return Err(io::Error::new(
                    e.kind(),
                    format!("turning {feature} off on {name}: {e}"),
                ));
            }
        }
    }
    for (feature, get, _) in FEATURES {
        let mut v = EthtoolValue { cmd: get, data: 1 };
        match ioctl(&sock, name, &mut v) {
            Ok(()) if v.data == 0 => {}
            Ok(()) => {
                return Err(io::Error::other(format!("{feature} is still on on {name}")));
            }
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {}
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("reading {feature} of {name}: {e}"),
                ));
            }
        }
    }
    Ok(())
}
