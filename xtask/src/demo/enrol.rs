//! The demo's certificates come from a group server: a `vpn-server` runs in
//! the first DHT node's namespace on the demo LAN (data folder in the lab's
//! scratch folder, removed with it); its admin CLI creates the
//! administrator, the group (range, bootstrap = the demo's DHT nodes) and
//! one blob per host; each host runs `vpn-control join BLOB --dir DIR` in its
//! own namespace, and later `vpn-control up -c DIR/groupvpn.toml` with the
//! configuration `join` wrote (plus the host-local keys of the demo: data
//! path, underlay, control socket, overlay listen address).

use std::io::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use vpn_tests::server::parse_ready_line;
use vpn_tests::{
    identity_peer_id, vpn_control_bin, wait_until_ok, Background, GroupCredentials, GroupSpec,
    MemberCredentials, MemberRequest, NodeSpec, OverlayLab,
};

use crate::util::describe;

/// The server's port on its LAN address.
const SERVER_PORT: u16 = 8443;
/// The administrator the demo creates.
const ADMIN: &str = "demo-admin";
/// How long the server may take to print its ready line.
const SERVER_READY: Duration = Duration::from_secs(60);

/// The lab's member files before enrolment: each host's folder with its
/// node identity (`vpn-control cert identity`; `join` keeps it), and where
/// `join` will write its certificate and the CA. Nothing is signed here.
pub(crate) fn planned_credentials(
    dir: &Path,
    group: &GroupSpec,
    members: &[MemberRequest],
) -> vpn_tests::Result<GroupCredentials> {
    let bin = vpn_control_bin()?;
    let mut out = Vec::with_capacity(members.len());
    for m in members {
        let mdir = dir.join(&m.name);
        std::fs::create_dir_all(&mdir)?;
        let identity = mdir.join("node.key");
        let peer_id = identity_peer_id(&bin, &identity)?;
        out.push(MemberCredentials {
            name: m.name.clone(),
            identity,
            certificate: mdir.join("node.crt"),
            peer_id,
            address: m.address.clone(),
        });
    }
    let first = dir.join(members.first().map_or("n0", |m| m.name.as_str()));
    Ok(GroupCredentials {
        group: group.group.clone(),
        ca_dir: dir.join("server"),
        ca_cert: first.join("ca.crt"),
        members: out,
    })
}

/// A running `vpn-server` on the demo LAN; stopped on drop.
pub(crate) struct GroupServer {
    proc: Background,
    bin: PathBuf,
    data_dir: PathBuf,
    url: String,
    tls_sha256: String,
    ns: String,
}

impl GroupServer {
    /// Starts `vpn-server` in the namespace of the lab's first DHT node,
    /// listening on that host's LAN address, and waits for its ready line.
    pub(crate) fn start(lab: &OverlayLab, bin: &Path) -> Result<Self> {
        let host = lab.lan().host(0);
        let data_dir = lab.dir().join("server");
        let listen = format!("{}:{SERVER_PORT}", host.addr);
        let public_url = format!("https://{listen}");
        let mut cmd = host.ns.cmd(bin);
        cmd.args([
            "--listen",
            &listen,
            "--public-url",
            &public_url,
            "--data-dir",
        ])
        .arg(&data_dir)
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
        );
        let mut proc = Background::spawn("vpn-server", cmd, &lab.dir().join("vpn-server.log"))?;
        let ready = wait_until_ok("vpn-server's ready line", SERVER_READY, || {
            if let Some(r) = parse_ready_line(&proc.log()) {
                return Ok(r);
            }
            match proc.try_status() {
                Some(s) => Err(format!("vpn-server exited ({s}):\n{}", proc.log())),
                None => Err("not yet".to_owned()),
            }
        })?;
        Ok(Self {
            proc,
            bin: bin.to_owned(),
            data_dir,
            url: public_url,
            tls_sha256: ready.tls_sha256,
            ns: host.ns.name().to_owned(),
        })
    }

    /// `vpn-server admin ARGS` on the server's data folder (it opens the
    /// database directly, next to the running server), `stdin` as input.
    fn admin(&self, args: &[&str], stdin: &str) -> Result<String> {
        let mut cmd = Command::new(&self.bin);
        cmd.args(["admin", "--public-url", &self.url, "--data-dir"])
            .arg(&self.data_dir)
            .args(args);
        let out = run_with_stdin(&mut cmd, stdin)?;
        if !out.status.success() {
            bail!(
                "`vpn-server admin {}` failed ({}): {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Creates the administrator and the group, enrols every member of the
    /// lab with a blob of its own, and points each member at the
    /// configuration `join` wrote. Returns a description for the report.
    pub(crate) fn enrol_all(&mut self, lab: &mut OverlayLab, range: &str) -> Result<Enrolment> {
        if !self.proc.is_running() {
            bail!("vpn-server stopped:\n{}", self.proc.log());
        }
        let password = random_password()?;
        self.admin(&["create-user", ADMIN], &format!("{password}\n"))?;
        let group = lab.options().group.clone();
        let mut args = vec![
            "create-group",
            group.as_str(),
            "--range",
            range,
            "--admin",
            ADMIN,
        ];
        let bootstrap: Vec<String> = lab
            .dht_nodes()
            .iter()
            .map(|d| d.multiaddr.clone())
            .collect();
        for b in &bootstrap {
            args.extend(["--bootstrap", b.as_str()]);
        }
        self.admin(&args, "")?;
        let mut hosts = Vec::new();
        for i in 0..lab.len() {
            let name = lab.node(i).spec.name.clone();
            let blob = self.admin(&["add-node", &group, &name], "")?;
            let blob = blob.trim();
            if !blob.starts_with("groupvpn1:") {
                bail!("`vpn-server admin add-node` printed no blob: {blob:?}");
            }
            let dir = lab.dir().join(&name);
            let node = lab.node(i);
            // The blob (it holds a secret) on stdin, not on the command line.
            let mut join = node.command([Path::new("join"), Path::new("-"), Path::new("--dir")]);
            join.arg(&dir);
            let out = run_with_stdin(&mut join, blob)
                .with_context(|| format!("running `vpn-control join` for {name}"))?;
            if !out.status.success() {
                bail!(
                    "`vpn-control join` in {name}'s namespace failed ({}): {}{}",
                    out.status,
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            let config = dir.join("groupvpn.toml");
            let written = std::fs::read_to_string(&config)
                .with_context(|| format!("`vpn-control join` wrote no {}", config.display()))?;
            let v4 = fixed_v4(&written)
                .with_context(|| format!("no IPv4 address in {}", config.display()))?;
            let local = localize(&written, &node.spec)
                .with_context(|| format!("adapting {}", config.display()))?;
            std::fs::write(&config, local)?;
            let node = lab.node_mut(i);
            node.spec.vpn_v4 = v4;
            node.config = config;
            hosts.push(format!("{name} {v4}"));
        }
        Ok(Enrolment {
            summary: format!(
                "Certificates from the group server: `vpn-server` (https://{}, TLS sha256 {}…, \
                 SQLite, in namespace {}) made by its admin CLI the group {group} ({range}, \
                 bootstrap = the {} DHT nodes) and one blob per host; each host ran \
                 `vpn-control join BLOB` in its namespace and `vpn-control up` with the \
                 groupvpn.toml it wrote. Addresses issued by the server: {}.",
                self.url.trim_start_matches("https://"),
                &self.tls_sha256[..16],
                self.ns,
                bootstrap.len(),
                hosts.join(", ")
            ),
        })
    }
}

/// What enrolment did, for the report.
pub(crate) struct Enrolment {
    pub(crate) summary: String,
}

/// Runs `cmd` with `input` on its stdin; its output.
fn run_with_stdin(cmd: &mut Command, input: &str) -> Result<Output> {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .with_context(|| format!("running `{}`", describe(cmd)))?;
    if let Some(mut i) = child.stdin.take() {
        i.write_all(input.as_bytes())?;
    }
    Ok(child.wait_with_output()?)
}

fn random_password() -> Result<String> {
    use std::io::Read as _;
    let mut b = [0u8; 18];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// The IPv4 address of `addresses = ["10.77.0.1/24", ...]` in the
/// `[interface]` table that `join` wrote (the certificate's fixed address).
fn fixed_v4(config: &str) -> Option<Ipv4Addr> {
    let line = config
        .lines()
        .find(|l| l.trim_start().starts_with("addresses"))?;
    let list = line.split_once('=')?.1;
    list.split('"')
        .filter_map(|s| s.split('/').next()?.parse::<Ipv4Addr>().ok())
        .next()
}

/// `join`'s configuration with the demo host's local settings: the data
/// path, the underlay link, a control socket of its own (the namespaces
/// share the file system), and the overlay listening on the host's LAN
/// address. Every other line is kept as `join` wrote it.
fn localize(config: &str, spec: &NodeSpec) -> Result<String> {
    let q = |s: &str| format!("{s:?}");
    let set = |table: &str, key: &str, value: String| (table.to_owned(), key.to_owned(), value);
    let wanted = [
        set("interface", "dataplane", q(spec.dataplane.as_str())),
        set("interface", "underlay", q(&spec.underlay_if)),
        set(
            "interface",
            "control_socket",
            q(&spec.control_socket.display().to_string()),
        ),
        set(
            "overlay",
            "listen",
            format!(
                "[{}]",
                q(&format!(
                    "/ip4/{}/tcp/{}",
                    spec.underlay,
                    vpn_tests::OVERLAY_PORT
                ))
            ),
        ),
    ];
    set_keys(config, &wanted)
}

/// Sets `key = value` in `[table]` for each `(table, key, value)`: replaces
/// the key's line if the table has it, else adds it at the end of the
/// table. Every table must exist.
fn set_keys(text: &str, keys: &[(String, String, String)]) -> Result<String> {
    let mut out: Vec<String> = Vec::new();
    let mut done = vec![false; keys.len()];
    let mut table = String::new();
    let flush = |table: &str, out: &mut Vec<String>, done: &mut [bool]| {
        // Missing keys go after the table's last non-blank line.
        let at = out
            .iter()
            .rposition(|l| !l.trim().is_empty())
            .map_or(0, |p| p + 1);
        for (i, (t, k, v)) in keys.iter().enumerate() {
            if t == table && !done[i] {
                out.insert(at, format!("{k} = {v}"));
                done[i] = true;
            }
        }
    };
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            flush(&table, &mut out, &mut done);
            table = trimmed.trim_matches(|c| c == '[' || c == ']').to_owned();
            out.push(line.to_owned());
            continue;
        }
        let key = trimmed.split('=').next().unwrap_or("").trim();
        match keys
            .iter()
            .position(|(t, k, _)| *t == table && k == key && !trimmed.starts_with('#'))
        {
            Some(i) => {
                out.push(format!("{key} = {}", keys[i].2));
                done[i] = true;
            }
            None => out.push(line.to_owned()),
        }
    }
    flush(&table, &mut out, &mut done);
    if let Some(i) = done.iter().position(|d| !d) {
        bail!("no [{}] table for {}", keys[i].0, keys[i].1);
    }
    let mut s = out.join("\n");
    s.push('\n');
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    const JOINED: &str = "# written by join\n\n[interface]\nname = \"vpn0\"\n\
        # The certificate's fixed address.\naddresses = [\"10.77.0.2/24\"]\n\
        dataplane = \"auto\"\nlisten_port = 51830\n\n[overlay]\nidentity = \"node.key\"\n\
        listen = [\"/ip4/0.0.0.0/tcp/4001\"]\nbootstrap = [\"/ip4/192.168.77.1/tcp/4001/p2p/X\"]\n";

    fn kv(t: &str, k: &str, v: &str) -> (String, String, String) {
        (t.into(), k.into(), v.into())
    }

    #[test]
    fn replaces_and_adds_keys_in_their_tables() {
        let out = set_keys(
            JOINED,
            &[
                kv("interface", "dataplane", "\"kernel\""),
                kv("interface", "underlay", "\"eth0\""),
                kv("overlay", "listen", "[\"/ip4/192.168.77.13/tcp/4001\"]"),
            ],
        )
        .unwrap();
        assert!(
            out.contains(
                "dataplane = \"kernel\"\nlisten_port = 51830\nunderlay = \"eth0\"\n\n[overlay]"
            ),
            "{out}"
        );
        assert!(out.contains("listen = [\"/ip4/192.168.77.13/tcp/4001\"]\nbootstrap"));
        assert!(!out.contains("auto") && !out.contains("0.0.0.0"), "{out}");
        assert!(out.contains("# The certificate's fixed address.\naddresses"));
        assert!(out.ends_with("p2p/X\"]\n"), "{out}");
        assert!(set_keys(JOINED, &[kv("peer", "x", "1")]).is_err());
    }

    #[test]
    fn reads_the_fixed_address() {
        assert_eq!(fixed_v4(JOINED), Some(Ipv4Addr::new(10, 77, 0, 2)));
        assert_eq!(fixed_v4("[interface]\nname = \"vpn0\"\n"), None);
    }
}
