//! Offload switches through the `SIOCETHTOOL` ioctl's feature interface
//! (`ETHTOOL_GSTRINGS`/`ETHTOOL_SFEATURES`/`ETHTOOL_GFEATURES`), which
//! reaches every feature bit by name, including ones the legacy per-switch
//! commands miss (kernel 6.18's `tx-tcp-accecn-segmentation`, say).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const SIOCETHTOOL: libc::c_ulong = 0x8946;
const ETHTOOL_GSTRINGS: u32 = 0x1b;
const ETHTOOL_GSSET_INFO: u32 = 0x37;
const ETHTOOL_GFEATURES: u32 = 0x3a;
const ETHTOOL_SFEATURES: u32 = 0x3b;
const ETH_SS_FEATURES: u32 = 4;
const ETH_GSTRING_LEN: usize = 32;

/// Whether a feature must be off on the VPN interface: any segmentation
/// offload (packets must reach the wire end one IP packet each), GRO, and
/// scatter-gather and TX checksum offload (the encrypting program must see
/// complete checksums, not partial ones).
pub fn must_be_off(feature: &str) -> bool {
    feature.contains("segmentation")
        || feature.starts_with("rx-gro")
        || feature.starts_with("tx-scatter-gather")
        || feature.starts_with("tx-checksum")
}

fn ioctl(sock: &OwnedFd, name: &str, data: *mut u8) -> io::Result<()> {
    // SAFETY: all-zero is a valid ifreq.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    if name.is_empty() || name.len() >= ifr.ifr_name.len() {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    for (d, s) in ifr.ifr_name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    ifr.ifr_ifru.ifru_data = data as *mut libc::c_char;
    // SAFETY: a valid socket and an ifreq whose data pointer refers to a
    // live, correctly sized ethtool command buffer for the call's duration.
    let r = unsafe { libc::ioctl(sock.as_raw_fd(), SIOCETHTOOL as _, &mut ifr) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// A u32-aligned command buffer.
struct Buf(Vec<u32>);

impl Buf {
    fn new(words: usize) -> Self {
        Buf(vec![0; words])
    }
    fn ptr(&mut self) -> *mut u8 {
        self.0.as_mut_ptr() as *mut u8
    }
    fn bytes(&self) -> &[u8] {
        // SAFETY: viewing initialized u32s as bytes.
        unsafe { std::slice::from_raw_parts(self.0.as_ptr() as *const u8, self.0.len() * 4) }
    }
}

fn socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket creation.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just created and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The names of the device's feature bits, in bit order.
fn feature_names(sock: &OwnedFd, name: &str) -> io::Result<Vec<String>> {
    // struct ethtool_sset_info { u32 cmd, reserved; u64 sset_mask; u32 data[1]; }
    let mut info = Buf::new(5);
    info.0[0] = ETHTOOL_GSSET_INFO;
    info.0[2] = 1 << ETH_SS_FEATURES;
    ioctl(sock, name, info.ptr())?;
    let count = info.0[4] as usize;
    // struct ethtool_gstrings { u32 cmd, string_set, len; u8 data[]; }
    let mut s = Buf::new(3 + count * ETH_GSTRING_LEN / 4);
    s.0[0] = ETHTOOL_GSTRINGS;
    s.0[1] = ETH_SS_FEATURES;
    s.0[2] = count as u32;
    ioctl(sock, name, s.ptr())?;
    let data = &s.bytes()[12..];
    Ok((0..count)
        .map(|i| {
            let raw = &data[i * ETH_GSTRING_LEN..(i + 1) * ETH_GSTRING_LEN];
            let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
            String::from_utf8_lossy(&raw[..end]).into_owned()
        })
        .collect())
}

/// Active feature bits (`ETHTOOL_GFEATURES`), as one bool per feature.
fn active_features(sock: &OwnedFd, name: &str, count: usize) -> io::Result<Vec<bool>> {
    let blocks = count.div_ceil(32);
    // struct ethtool_gfeatures { u32 cmd, size; { available, requested, active, never_changed }[size] }
    let mut g = Buf::new(2 + 4 * blocks);
    g.0[0] = ETHTOOL_GFEATURES;
    g.0[1] = blocks as u32;
    ioctl(sock, name, g.ptr())?;
    Ok((0..count)
        .map(|i| g.0[2 + 4 * (i / 32) + 2] & (1 << (i % 32)) != 0)
        .collect())
}

/// Turns every feature selected by [`must_be_off`] off on `name` and reads
/// them back; an error names the features that are still on.
pub fn disable_offloads(name: &str) -> io::Result<()> {
    let sock = socket()?;
    let names = feature_names(&sock, name).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("reading the feature names of {name}: {e}"),
        )
    })?;
    let blocks = names.len().div_ceil(32);
    // struct ethtool_sfeatures { u32 cmd, size; { valid, requested }[size] }
    let mut s = Buf::new(2 + 2 * blocks);
    s.0[0] = ETHTOOL_SFEATURES;
    s.0[1] = blocks as u32;
    for (i, n) in names.iter().enumerate() {
        if must_be_off(n) {
            s.0[2 + 2 * (i / 32)] |= 1 << (i % 32); // valid; requested stays 0
        }
    }
    // A positive return only says some requests were not honoured; the
    // read-back below decides.
    ioctl(&sock, name, s.ptr())
        .map_err(|e| io::Error::new(e.kind(), format!("turning offloads off on {name}: {e}")))?;
    let active = active_features(&sock, name, names.len())?;
    let still_on: Vec<&str> = names
        .iter()
        .zip(active)
        .filter(|(n, on)| *on && must_be_off(n))
        .map(|(n, _)| n.as_str())
        .collect();
    if still_on.is_empty() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "offloads still on on {name}: {}",
            still_on.join(", ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::must_be_off;

    #[test]
    fn selection() {
        for f in [
            "tx-tcp-segmentation",
            "tx-tcp-accecn-segmentation",
            "tx-generic-segmentation",
            "tx-udp-segmentation",
            "rx-gro",
            "rx-gro-list",
            "tx-scatter-gather",
            "tx-checksum-ip-generic",
        ] {
            assert!(must_be_off(f), "{f}");
        }
        for f in [
            "rx-checksum",
            "tx-vlan-hw-insert",
            "highdma",
            "rx-vlan-filter",
            "loopback",
        ] {
            assert!(!must_be_off(f), "{f}");
        }
    }
}
