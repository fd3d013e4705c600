//! What a namespace holds: links, addresses, routes, rules, qdiscs, BPF
//! attachments, nftables; and which BPF programs a daemon owns. Used to
//! prove that teardown (also after `kill -9`) leaves nothing behind.

use std::collections::BTreeSet;
use std::process::Command;

use crate::error::{run_checked, Result};
use crate::netns::NsRef;

/// A textual snapshot of a namespace's network configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetState {
    sections: Vec<(&'static str, String)>,
}

impl NetState {
    pub fn capture(ns: &NsRef) -> Result<Self> {
        let mut sections = Vec::new();
        let ip = |args: &[&str]| ns.ip(args);
        sections.push(("links", ip(&["-o", "link", "show"])?));
        sections.push(("addresses", ip(&["-o", "addr", "show"])?));
        sections.push(("ipv4 routes", ip(&["-4", "route", "show", "table", "all"])?));
        sections.push(("ipv6 routes", ip(&["-6", "route", "show", "table", "all"])?));
        sections.push(("ipv4 rules", ip(&["-4", "rule", "show"])?));
        sections.push(("ipv6 rules", ip(&["-6", "rule", "show"])?));
        sections.push((
            "qdiscs",
            run_checked(Command::new("tc").args(["-n", ns.name(), "qdisc", "show"]))?,
        ));
        // bpftool 7.1 does not list TCX links; XDP and netlink TC show here
        // (and XDP also in `ip link`). Programs are checked by id separately.
        sections.push(("bpf attachments", ns.run("bpftool", ["net", "show"])?));
        let nft = ns
            .output("nft", ["list", "ruleset"])
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
        sections.push(("nftables", nft.unwrap_or_default()));
        Ok(Self { sections })
    }

    /// Human-readable differences to `other` (empty when equal).
    pub fn diff(&self, other: &Self) -> String {
        let mut out = String::new();
        for ((name, a), (_, b)) in self.sections.iter().zip(&other.sections) {
            if a == b {
                continue;
            }
            let la: BTreeSet<&str> = a.lines().map(str::trim).collect();
            let lb: BTreeSet<&str> = b.lines().map(str::trim).collect();
            out.push_str(&format!("[{name}]\n"));
            for l in la.difference(&lb) {
                out.push_str(&format!("  - {l}\n"));
            }
            for l in lb.difference(&la) {
                out.push_str(&format!("  + {l}\n"));
            }
        }
        out
    }
}

fn bpftool_json(ns: Option<&NsRef>, args: &[&str]) -> Result<serde_json::Value> {
    let out = match ns {
        Some(ns) => ns.run("bpftool", std::iter::once("-j").chain(args.iter().copied()))?,
        None => run_checked(Command::new("bpftool").arg("-j").args(args))?,
    };
    if out.trim().is_empty() {
        return Ok(serde_json::Value::Null);
    }
    serde_json::from_str(&out).map_err(|e| crate::Error::Parse {
        what: format!("bpftool {}", args.join(" ")),
        detail: e.to_string(),
    })
}

/// One loaded BPF program.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct BpfProg {
    pub id: u32,
    pub name: String,
    pub prog_type: String,
    /// Processes holding a file descriptor to it (bpftool `pids`; empty
    /// with bpftool builds that lack it, such as Debian's 7.1).
    pub pids: Vec<i32>,
}

/// Every BPF program loaded on the machine (`bpftool prog show`).
pub fn loaded_programs() -> Result<Vec<BpfProg>> {
    let v = bpftool_json(None, &["prog", "show"])?;
    let mut progs = Vec::new();
    for p in v.as_array().into_iter().flatten() {
        let id = p.get("id").and_then(serde_json::Value::as_u64).unwrap_or(0);
        progs.push(BpfProg {
            id: u32::try_from(id).unwrap_or(0),
            name: p
                .get("name")
                .and_then(|n| n.as_str())
                .unwrap_or("")
                .to_owned(),
            prog_type: p
                .get("type")
                .and_then(|n| n.as_str())
                .unwrap_or("")
                .to_owned(),
            pids: p
                .get("pids")
                .and_then(|x| x.as_array())
                .into_iter()
                .flatten()
                .filter_map(|e| e.get("pid").and_then(serde_json::Value::as_i64))
                .filter_map(|x| i32::try_from(x).ok())
                .collect(),
        });
    }
    Ok(progs)
}

/// Program ids attached to devices of `ns` as bpftool sees them (XDP and
/// netlink TC; TCX links are not listed by bpftool 7.1).
pub fn attached_program_ids(ns: &NsRef) -> Result<BTreeSet<u32>> {
    let v = bpftool_json(Some(ns), &["net", "show"])?;
    let mut ids = BTreeSet::new();
    for entry in v.as_array().into_iter().flatten() {
        for kind in ["xdp", "tc"] {
            for a in entry
                .get(kind)
                .and_then(|x| x.as_array())
                .into_iter()
                .flatten()
            {
                if let Some(id) = a.get("id").and_then(serde_json::Value::as_u64) {
                    ids.insert(u32::try_from(id).unwrap_or(0));
                }
            }
        }
    }
    Ok(ids)
}

/// A BPF link (attachment) a process holds, from `/proc/<pid>/fdinfo`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct BpfLink {
    pub link_id: u32,
    /// `tcx`, `xdp`, `netkit`, ...
    pub link_type: String,
    pub prog_id: u32,
    /// Device the link attaches to (inside the process's namespace).
    pub ifindex: Option<u32>,
    pub attach_type: String,
}

/// The BPF programs (ids) and links a process holds file descriptors to.
/// Read from `/proc/<pid>/fdinfo`, which works with any bpftool version
/// (Debian's bpftool 7.1 neither reports owning pids nor decodes TCX links).
pub fn process_bpf(pid: i32) -> Result<(BTreeSet<u32>, Vec<BpfLink>)> {
    let mut progs = BTreeSet::new();
    let mut links = Vec::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/fd"))? {
        let e = e?;
        let Ok(target) = std::fs::read_link(e.path()) else {
            continue;
        };
        let target = target.to_string_lossy().into_owned();
        let is_prog = target == "anon_inode:bpf-prog";
        let is_link = target == "anon_inode:bpf_link" || target == "anon_inode:bpf-link";
        if !is_prog && !is_link {
            continue;
        }
        let info = std::fs::read_to_string(format!(
            "/proc/{pid}/fdinfo/{}",
            e.file_name().to_string_lossy()
        ))
        .unwrap_or_default();
        let field = |k: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(k)?.strip_prefix(':'))
                .map(|v| v.trim().to_owned())
        };
        let num = |k: &str| field(k).and_then(|v| v.parse::<u32>().ok());
        if is_prog {
            progs.extend(num("prog_id"));
        } else if let (Some(link_id), Some(prog_id)) = (num("link_id"), num("prog_id")) {
            progs.insert(prog_id);
            links.push(BpfLink {
                link_id,
                link_type: field("link_type").unwrap_or_default(),
                prog_id,
                ifindex: num("ifindex"),
                attach_type: field("attach_type").unwrap_or_default(),
            });
        }
    }
    Ok((progs, links))
}

/// Interface index of `ifname` inside `ns`.
pub fn ifindex(ns: &NsRef, ifname: &str) -> Result<u32> {
    let out = ns.ip(["-o", "link", "show", "dev", ifname])?;
    out.split(':')
        .next()
        .and_then(|n| n.trim().parse().ok())
        .ok_or_else(|| crate::Error::Parse {
            what: format!("ip link show dev {ifname}"),
            detail: out.clone(),
        })
}

/// Programs a process holds (by fd, directly or through a link) plus those
/// bpftool shows attached in its namespace.
pub fn daemon_programs(ns: &NsRef, pid: i32) -> Result<Vec<BpfProg>> {
    let (mut ids, _) = process_bpf(pid)?;
    ids.extend(attached_program_ids(ns)?);
    Ok(loaded_programs()?
        .into_iter()
        .filter(|p| ids.contains(&p.id))
        .collect())
}

/// Which of `ids` are still loaded.
pub fn still_loaded(ids: &BTreeSet<u32>) -> Result<Vec<BpfProg>> {
    Ok(loaded_programs()?
        .into_iter()
        .filter(|p| ids.contains(&p.id))
        .collect())
}

/// Which of the link ids still exist (`bpftool link show`).
pub fn still_linked(ids: &BTreeSet<u32>) -> Result<Vec<u32>> {
    let v = bpftool_json(None, &["link", "show"])?;
    Ok(v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l.get("id").and_then(serde_json::Value::as_u64))
        .filter_map(|id| u32::try_from(id).ok())
        .filter(|id| ids.contains(id))
        .collect())
}

/// Ids of the BPF maps a process holds file descriptors to.
pub fn process_maps(pid: i32) -> Result<BTreeSet<u32>> {
    let mut ids = BTreeSet::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/fd"))? {
        let e = e?;
        let Ok(target) = std::fs::read_link(e.path()) else {
            continue;
        };
        if target.to_string_lossy() != "anon_inode:bpf-map" {
            continue;
        }
        let info = std::fs::read_to_string(format!(
            "/proc/{pid}/fdinfo/{}",
            e.file_name().to_string_lossy()
        ))
        .unwrap_or_default();
        ids.extend(
            info.lines()
                .find_map(|l| l.strip_prefix("map_id:"))
                .and_then(|v| v.trim().parse::<u32>().ok()),
        );
    }
    Ok(ids)
}

/// The id of the map called `name` among those process `pid` holds.
pub fn process_map_by_name(pid: i32, name: &str) -> Result<Option<u32>> {
    for id in process_maps(pid)? {
        let v = bpftool_json(None, &["map", "show", "id", &id.to_string()])?;
        if v.get("name").and_then(|n| n.as_str()) == Some(name) {
            return Ok(Some(id));
        }
    }
    Ok(None)
}

fn hex_bytes(v: Option<&serde_json::Value>) -> Vec<u8> {
    v.and_then(|x| x.as_array())
        .into_iter()
        .flatten()
        .filter_map(|b| b.as_str())
        .filter_map(|b| u8::from_str_radix(b.trim_start_matches("0x"), 16).ok())
        .collect()
}

/// Raw `(key, value)` bytes of every entry of map `id` (`bpftool map dump`).
pub fn map_entries(id: u32) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let v = bpftool_json(None, &["map", "dump", "id", &id.to_string()])?;
    Ok(v.as_array()
        .into_iter()
        .flatten()
        .map(|e| (hex_bytes(e.get("key")), hex_bytes(e.get("value"))))
        .collect())
}

/// The kernel path's current sending sessions of daemon `pid`: data-plane
/// peer id -> the peer's receiver index (`TX_SESSIONS`, value layout
/// `vpn_common::maps::TxSession`: 32-byte key, then the index, LE). A
/// rekey shows as a new index.
pub fn tx_session_indices(pid: i32) -> Result<std::collections::BTreeMap<u32, u32>> {
    let id = process_map_by_name(pid, "TX_SESSIONS")?
        .ok_or_else(|| crate::Error::Setup(format!("process {pid} holds no TX_SESSIONS map")))?;
    let le32 = |b: &[u8], at: usize| -> Option<u32> {
        Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
    };
    Ok(map_entries(id)?
        .into_iter()
        .filter_map(|(k, v)| Some((le32(&k, 0)?, le32(&v, 32)?)))
        .collect())
}
