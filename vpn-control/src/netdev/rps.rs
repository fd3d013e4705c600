//! Receive packet steering (RPS) on the veth pair of the kernel path.
//!
//! Without RPS, a packet sent into a veth is queued on the backlog of the
//! CPU that happens to run the sender. When the sending thread migrates
//! (or softirq work is deferred to `ksoftirqd` on a busy machine), the
//! packets of one TCP flow sit in two CPUs' backlogs at once and leave
//! them out of order: `vpn_encrypt` on `<name>p` then sends them out of
//! order, and the receiver's SACK/DSACK logic turns that into spurious fast
//! retransmits and a halved congestion window. Measured on the two-host
//! lab: hundreds of retransmits per 5 s iperf3 run, every one of them
//! spurious (no drop counter moved anywhere, `TCPSACKReorder` and
//! `TCPDSACKRecv` did).
//!
//! RPS over all online CPUs hashes each flow to one fixed CPU, which keeps
//! it in order (and may let that CPU run the BPF program while the
//! sender's CPU goes on producing). Measured on a saturated 2-CPU machine:
//! retransmits per run fell from hundreds (up to ~3,000) to 0-4, TCP
//! throughput and RTT p50 stayed the same within noise (the path is bound
//! by the CPU cost of the BPF programs there, not by loss). The
//! settings live in sysfs (`/sys/class/net/<dev>/queues/rx-*/rps_cpus`),
//! which shows the devices of the network namespace that mounted it, not
//! necessarily the caller's: the device's `ifindex` file is checked first.

use std::path::Path;

/// The `rps_cpus` mask (kernel bitmap format: 32-bit hex groups separated
/// by commas, most significant first) for a CPU list such as `0-3,8`
/// (`/sys/devices/system/cpu/online`). `None` if the list is malformed or
/// names fewer than two CPUs (steering has nowhere to go).
pub fn mask_for_cpu_list(list: &str) -> Option<String> {
    let mut cpus: Vec<usize> = Vec::new();
    for part in list.trim().split(',').filter(|p| !p.is_empty()) {
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (a.parse().ok()?, b.parse().ok()?),
            None => {
                let c: usize = part.parse().ok()?;
                (c, c)
            }
        };
        // Bound the list so a corrupt file cannot make us allocate much.
        if lo > hi || hi >= 8192 {
            return None;
        }
        cpus.extend(lo..=hi);
    }
    cpus.sort_unstable();
    cpus.dedup();
    let max = *cpus.last()?;
    if cpus.len() < 2 {
        return None;
    }
    let mut groups = vec![0u32; max / 32 + 1];
    for c in cpus {
        groups[c / 32] |= 1 << (c % 32);
    }
    let mut out = String::new();
    for (i, g) in groups.iter().rev().enumerate() {
        if i == 0 {
            out.push_str(&format!("{g:x}"));
        } else {
            out.push_str(&format!(",{g:08x}"));
        }
    }
    Some(out)
}

/// Whether two masks in kernel bitmap format denote the same CPU set
/// (the kernel pads its output with zeros).
pub fn same_mask(a: &str, b: &str) -> bool {
    fn norm(s: &str) -> String {
        let digits: String = s.trim().chars().filter(|c| *c != ',').collect();
        digits.trim_start_matches('0').to_ascii_lowercase()
    }
    norm(a) == norm(b)
}

/// Outcome of [`spread`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Spread {
    /// Every RX queue of the device now steers over `mask`.
    Set,
    /// It already did.
    Unchanged,
    /// Not applicable: one CPU, no RPS in this kernel, or the sysfs mounted
    /// here belongs to another network namespace.
    Skipped(&'static str),
}

/// Sets `rps_cpus` of every RX queue of device `name` (whose ifindex must
/// be `index`) under `sys` (normally `/sys`) to all online CPUs.
pub fn spread(sys: &Path, name: &str, index: u32) -> std::io::Result<Spread> {
    let online = match std::fs::read_to_string(sys.join("devices/system/cpu/online")) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Spread::Skipped("no CPU list in sysfs"))
        }
        Err(e) => return Err(e),
    };
    let Some(mask) = mask_for_cpu_list(&online) else {
        return Ok(Spread::Skipped("fewer than two CPUs online"));
    };
    let dev = sys.join("class/net").join(name);
    match std::fs::read_to_string(dev.join("ifindex")) {
        Ok(s) if s.trim().parse::<u32>().ok() == Some(index) => {}
        Ok(_) => return Ok(Spread::Skipped("sysfs shows another network namespace")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Spread::Skipped("device not in this sysfs"))
        }
        Err(e) => return Err(e),
    }
    let mut changed = false;
    let mut queues = 0;
    for entry in std::fs::read_dir(dev.join("queues"))? {
        let entry = entry?;
        if !entry.file_name().to_string_lossy().starts_with("rx-") {
            continue;
        }
        let file = entry.path().join("rps_cpus");
        let cur = match std::fs::read_to_string(&file) {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Spread::Skipped("kernel without RPS"))
            }
            Err(e) => return Err(e),
        };
        queues += 1;
        if !same_mask(&cur, &mask) {
            std::fs::write(&file, &mask)?;
            changed = true;
        }
    }
    Ok(match (queues, changed) {
        (0, _) => Spread::Skipped("no RX queues"),
        (_, true) => Spread::Set,
        (_, false) => Spread::Unchanged,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_from_cpu_lists() {
        assert_eq!(mask_for_cpu_list("0-1\n").as_deref(), Some("3"));
        assert_eq!(mask_for_cpu_list("0-3,8").as_deref(), Some("10f"));
        assert_eq!(mask_for_cpu_list("0-39").as_deref(), Some("ff,ffffffff"));
        assert_eq!(mask_for_cpu_list("0,32").as_deref(), Some("1,00000001"));
        assert_eq!(mask_for_cpu_list("0"), None);
        assert_eq!(mask_for_cpu_list(""), None);
        assert_eq!(mask_for_cpu_list("3-1"), None);
        assert_eq!(mask_for_cpu_list("x"), None);
    }

    #[test]
    fn mask_comparison_ignores_padding() {
        assert!(same_mask("00000003\n", "3"));
        assert!(same_mask("000000ff,ffffffff", "ff,ffffffff"));
        assert!(!same_mask("0", "3"));
        assert!(!same_mask("00000001", "3"));
    }

    fn fake_sys(ifindex: &str, queues: &[&str]) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "vpn-rps-test-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(dir.join("devices/system/cpu")).unwrap();
        std::fs::write(dir.join("devices/system/cpu/online"), "0-1\n").unwrap();
        let dev = dir.join("class/net/vpn0p");
        std::fs::create_dir_all(&dev).unwrap();
        std::fs::write(dev.join("ifindex"), ifindex).unwrap();
        for q in queues {
            std::fs::create_dir_all(dev.join("queues").join(q)).unwrap();
            if q.starts_with("rx-") {
                std::fs::write(dev.join("queues").join(q).join("rps_cpus"), "0\n").unwrap();
            }
        }
        dir
    }

    #[test]
    fn spread_sets_every_rx_queue_once() {
        let sys = fake_sys("7\n", &["rx-0", "rx-1", "tx-0"]);
        assert_eq!(spread(&sys, "vpn0p", 7).unwrap(), Spread::Set);
        for q in ["rx-0", "rx-1"] {
            let f = sys.join("class/net/vpn0p/queues").join(q).join("rps_cpus");
            assert_eq!(std::fs::read_to_string(f).unwrap(), "3");
        }
        assert!(!sys.join("class/net/vpn0p/queues/tx-0/rps_cpus").exists());
        assert_eq!(spread(&sys, "vpn0p", 7).unwrap(), Spread::Unchanged);
        std::fs::remove_dir_all(&sys).unwrap();
    }

    #[test]
    fn spread_refuses_another_namespaces_device() {
        let sys = fake_sys("7\n", &["rx-0"]);
        assert!(matches!(
            spread(&sys, "vpn0p", 8).unwrap(),
            Spread::Skipped(_)
        ));
        let f = sys.join("class/net/vpn0p/queues/rx-0/rps_cpus");
        assert_eq!(std::fs::read_to_string(f).unwrap(), "0\n");
        assert!(matches!(
            spread(&sys, "nosuch", 7).unwrap(),
            Spread::Skipped(_)
        ));
        std::fs::remove_dir_all(&sys).unwrap();
    }
}
