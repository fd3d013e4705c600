//! boringtun (crates.io `boringtun-cli`) between two hosts of a LAN,
//! configured with Debian's `wg` over its UAPI socket: the established
//! userspace VPN the issue compares against.

use std::io::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use vpn_tests::{Background, Lan, NsRef, TempDir, LAB_PORT};

/// Environment variable naming the `boringtun-cli` binary (set by
/// `cargo xtask bench`, which installs it).
pub const BIN_ENV: &str = "BORINGTUN_BIN";

/// Where `cargo xtask bench` installs boringtun-cli when the variable is unset.
pub fn default_bin() -> PathBuf {
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
    home.join(".cache/groupvpn/boringtun/bin/boringtun-cli")
}

fn bin() -> Result<PathBuf> {
    let p = std::env::var_os(BIN_ENV).map_or_else(default_bin, PathBuf::from);
    if !p.is_file() {
        bail!(
            "boringtun-cli not found at {} (set {BIN_ENV}, or run `cargo xtask bench`, which installs it)",
            p.display()
        );
    }
    Ok(p)
}

/// WireGuard's overhead over an IPv4 underlay: IPv4 20 + UDP 8 + data
/// header 16 + Poly1305 tag 16 = 60 bytes, the same as GroupVPN's.
pub const WG_OVERHEAD_V4: u32 = 60;

/// Two hosts running boringtun, `10.77.0.1` and `10.77.0.2` on the
/// tunnel. Dropping it stops boringtun (SIGTERM: it removes its UAPI
/// socket) and then deletes the namespaces.
#[derive(Debug)]
pub struct BoringtunPair {
    // Field order is drop order: daemons before the LAN.
    daemons: Vec<Background>,
    ifnames: Vec<String>,
    lan: Lan,
    dir: TempDir,
}

impl BoringtunPair {
    /// Builds the LAN, starts boringtun on both hosts and configures them
    /// as each other's peer with tunnel MTU `underlay MTU - 60`.
    pub fn new(tag: &str) -> Result<Self> {
        let bin = bin()?;
        let dir = TempDir::new(tag)?;
        let lan = Lan::with_hosts(tag, 2)?;
        let mut pair = Self {
            daemons: Vec::new(),
            ifnames: Vec::new(),
            lan,
            dir,
        };
        let dir = pair.dir.path().to_owned();
        // The UAPI socket is /var/run/wireguard/<ifname>.sock on the shared
        // file system: interface names must be unique machine-wide.
        for i in 0..2 {
            let name = format!("gvbt{}{}", std::process::id(), i);
            let host = pair.lan.host(i);
            let mut cmd = host.ns.cmd(&bin);
            // --foreground: stay attached (and log to stdout);
            // --disable-drop-privileges: we run as root, with no sudo user.
            cmd.args(["--foreground", "--disable-drop-privileges", &name]);
            let log = dir.join(format!("boringtun-{i}.log"));
            pair.daemons.push(Background::spawn(
                &format!("boringtun ({name})"),
                cmd,
                &log,
            )?);
            pair.ifnames.push(name);
        }
        for i in 0..2 {
            let sock = PathBuf::from(format!("/var/run/wireguard/{}.sock", pair.ifnames[i]));
            let d = &mut pair.daemons[i];
            vpn_tests::wait_until_ok("boringtun's UAPI socket", Duration::from_secs(20), || {
                if let Some(s) = d.try_status() {
                    return Err(format!("boringtun exited ({s}): {}", d.log()));
                }
                if sock.exists() {
                    Ok(())
                } else {
                    Err("no socket yet".to_owned())
                }
            })?;
        }
        let keys: Vec<(PathBuf, String)> =
            (0..2).map(|i| keypair(&dir, i)).collect::<Result<_>>()?;
        let mtu = underlay_mtu(&pair.lan.host(0).ns, pair.lan.host(0).ifname)? - WG_OVERHEAD_V4;
        for i in 0..2 {
            let j = 1 - i;
            let ns: &NsRef = &pair.lan.host(i).ns;
            let name = &pair.ifnames[i];
            let endpoint = format!("{}:{LAB_PORT}", pair.lan.host(j).addr);
            let allowed = format!("{}/32", Self::addr(j));
            ns.run(
                "wg",
                [
                    "set",
                    name,
                    "private-key",
                    &keys[i].0.display().to_string(),
                    "listen-port",
                    &LAB_PORT.to_string(),
                    "peer",
                    &keys[j].1,
                    "endpoint",
                    &endpoint,
                    "allowed-ips",
                    &allowed,
                ],
            )
            .context("wg set")?;
            ns.ip(["addr", "add", &format!("{}/24", Self::addr(i)), "dev", name])?;
            ns.ip(["link", "set", name, "mtu", &mtu.to_string(), "up"])?;
        }
        Ok(pair)
    }

    /// Tunnel address of host `i`.
    pub fn addr(i: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 77, 0, u8::try_from(i + 1).expect("two hosts"))
    }

    pub fn ns(&self, i: usize) -> &NsRef {
        &self.lan.host(i).ns
    }

    pub fn ifname(&self, i: usize) -> &str {
        &self.ifnames[i]
    }

    /// An error if a boringtun process has exited.
    pub fn check_running(&mut self) -> Result<()> {
        for d in &mut self.daemons {
            if let Some(s) = d.try_status() {
                bail!("boringtun exited ({s}): {}", d.log());
            }
        }
        Ok(())
    }
}

impl Drop for BoringtunPair {
    fn drop(&mut self) {
        for d in &mut self.daemons {
            if d.is_running() {
                if let Err(e) = d.stop() {
                    eprintln!("warning: stopping boringtun: {e}");
                }
            }
        }
        // boringtun removes its socket when it exits on a signal; not when
        // it had to be killed.
        for name in &self.ifnames {
            let _ = std::fs::remove_file(format!("/var/run/wireguard/{name}.sock"));
        }
    }
}

/// A private key file (mode 0600) and the matching public key.
fn keypair(dir: &Path, i: usize) -> Result<(PathBuf, String)> {
    let private = run_stdout("wg", &["genkey"], None)?;
    let public = run_stdout("wg", &["pubkey"], Some(&private))?;
    let path = dir.join(format!("wg{i}.key"));
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)?;
        f.write_all(private.as_bytes())?;
    }
    Ok((path, public.trim().to_owned()))
}

fn run_stdout(program: &str, args: &[&str], stdin: Option<&str>) -> Result<String> {
    let mut child = std::process::Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {program} (Debian package wireguard-tools)"))?;
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .context("stdin")?
            .write_all(input.as_bytes())?;
    }
    drop(child.stdin.take());
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "{program} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// MTU of `ifname` inside `ns`.
pub fn underlay_mtu(ns: &NsRef, ifname: &str) -> Result<u32> {
    let out = ns.ip(["-j", "link", "show", "dev", ifname])?;
    let v: serde_json::Value = serde_json::from_str(&out).context("ip -j link show")?;
    v.get(0)
        .and_then(|l| l.get("mtu"))
        .and_then(serde_json::Value::as_u64)
        .and_then(|m| u32::try_from(m).ok())
        .with_context(|| format!("no MTU for {ifname} in `ip -j link show`: {out}"))
}
