//! Semantic checks that the deserializer cannot express.

use std::collections::HashMap;

use super::{Config, ConfigError};

/// Linux's IFNAMSIZ minus the terminating NUL.
const IFNAME_MAX: usize = 15;
/// Smallest MTU accepted for the VPN interface (IPv4's minimum reassembly size).
pub const MIN_MTU_V4: u32 = 576;
/// Smallest MTU when the interface carries IPv6.
pub const MIN_MTU_V6: u32 = 1280;

pub(super) fn validate(cfg: &Config) -> Result<(), ConfigError> {
    let i = &cfg.interface;
    check_ifname("interface.name", &i.name, 1)?;
    if let Some(u) = &i.underlay {
        check_ifname("interface.underlay", u, 0)?;
        if *u == i.name || *u == i.peer_name() {
            return Err(ConfigError::new(
                "interface.underlay",
                format!("{u:?} is the VPN interface itself"),
            ));
        }
    }
    if i.addresses.is_empty() && cfg.overlay.is_none() {
        return Err(ConfigError::new(
            "interface.addresses",
            "at least one address is required (or an [overlay] section, which assigns them)",
        ));
    }
    for (n, a) in i.addresses.iter().enumerate() {
        if i.addresses[..n].iter().any(|b| b.addr == a.addr) {
            return Err(ConfigError::new(
                format!("interface.addresses[{n}]"),
                format!("duplicate address {}", a.addr),
            ));
        }
    }
    if i.listen_port == 0 {
        return Err(ConfigError::new(
            "interface.listen_port",
            "must be in 1..=65535",
        ));
    }
    if let Some(mtu) = i.mtu {
        let v6 = i.addresses.iter().any(|a| a.addr.is_ipv6());
        let min = if v6 { MIN_MTU_V6 } else { MIN_MTU_V4 };
        let max = vpn_common::wire::MAX_INNER_LEN as u32;
        if !(min..=max).contains(&mtu) {
            let why = if v6 {
                " (the interface carries IPv6)"
            } else {
                ""
            };
            return Err(ConfigError::new(
                "interface.mtu",
                format!("{mtu} is not in {min}..={max}{why}"),
            ));
        }
    }
    if i.control_socket.as_os_str().is_empty() {
        return Err(ConfigError::new("interface.control_socket", "empty path"));
    }

    let mut names: HashMap<&str, usize> = HashMap::new();
    let mut indices: HashMap<u32, usize> = HashMap::new();
    for (n, p) in cfg.peers.iter().enumerate() {
        let key = |k: &str| format!("peer[{n}].{k}");
        if p.name.trim().is_empty() {
            return Err(ConfigError::new(key("name"), "empty name"));
        }
        if let Some(first) = names.insert(&p.name, n) {
            return Err(ConfigError::new(
                key("name"),
                format!("duplicate peer name {:?} (also peer[{first}])", p.name),
            ));
        }
        if p.local_index == 0 {
            return Err(ConfigError::new(key("local_index"), "must be non-zero"));
        }
        if let Some(first) = indices.insert(p.local_index, n) {
            return Err(ConfigError::new(
                key("local_index"),
                format!(
                    "duplicate local_index {} (also peer[{first}].local_index)",
                    p.local_index
                ),
            ));
        }
        if p.remote_index == 0 {
            return Err(ConfigError::new(key("remote_index"), "must be non-zero"));
        }
        if p.endpoint.port() == 0 {
            return Err(ConfigError::new(key("endpoint"), "port 0"));
        }
        if p.endpoint.ip().is_unspecified() || p.endpoint.ip().is_multicast() {
            return Err(ConfigError::new(
                key("endpoint"),
                format!("{} is not a unicast address", p.endpoint.ip()),
            ));
        }
        if p.send_key == p.recv_key {
            return Err(ConfigError::new(
                key("recv_key"),
                "must differ from send_key (one key per direction)",
            ));
        }
        if p.allowed_ips.is_empty() {
            return Err(ConfigError::new(
                key("allowed_ips"),
                "at least one prefix is required",
            ));
        }
        for (k, a) in p.allowed_ips.iter().enumerate() {
            // A peer owning our own address would capture our traffic.
            let host_len = if a.addr.is_ipv4() { 32 } else { 128 };
            if a.len == host_len && i.addresses.iter().any(|l| l.addr == a.addr) {
                return Err(ConfigError::new(
                    format!("peer[{n}].allowed_ips[{k}]"),
                    format!("{}/{} is this node's own address", a.addr, a.len),
                ));
            }
            // The same prefix on two peers is ambiguous for cryptokey routing.
            for (m, q) in cfg.peers[..n].iter().enumerate() {
                if q.allowed_ips.contains(a) {
                    return Err(ConfigError::new(
                        format!("peer[{n}].allowed_ips[{k}]"),
                        format!(
                            "{}/{} is already owned by peer[{m}] ({:?})",
                            a.addr, a.len, q.name
                        ),
                    ));
                }
            }
            if p.allowed_ips[..k].contains(a) {
                return Err(ConfigError::new(
                    format!("peer[{n}].allowed_ips[{k}]"),
                    format!("duplicate prefix {}/{}", a.addr, a.len),
                ));
            }
        }
    }
    Ok(())
}

fn check_ifname(key: &str, name: &str, reserve: usize) -> Result<(), ConfigError> {
    let max = IFNAME_MAX - reserve;
    if name.is_empty() || name.len() > max {
        let extra = if reserve > 0 {
            " (one character is kept for the veth peer's \"p\" suffix)"
        } else {
            ""
        };
        return Err(ConfigError::new(
            key,
            format!("{name:?} must be 1..={max} bytes long{extra}"),
        ));
    }
    if name == "."
        || name == ".."
        || name
            .bytes()
            .any(|b| b == b'/' || b == b':' || b <= b' ' || b >= 0x7f)
    {
        return Err(ConfigError::new(
            key,
            format!("{name:?} is not a valid interface name"),
        ));
    }
    Ok(())
}
