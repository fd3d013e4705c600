//! A lab: hosts on one LAN, each with a lab configuration and a
//! `vpn-control up` daemon that is stopped on drop.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use crate::config::{generate_lab_configs, Dataplane, NodeSpec};
use crate::env::{vpn_control_bin, TempDir};
use crate::error::{command_error, Error, Result};
use crate::lan::Lan;
use crate::netns::NsRef;
use crate::process::Background;
use crate::status::Status;
use crate::wait::wait_until_ok;

/// How long a daemon may take to come up (loading and verifying the eBPF
/// programs included).
pub const UP_TIMEOUT: Duration = Duration::from_secs(60);

/// One VPN node: its namespace, configuration and (when up) daemon.
#[derive(Debug)]
pub struct VpnNode {
    pub spec: NodeSpec,
    pub config: PathBuf,
    ns: NsRef,
    bin: PathBuf,
    log_dir: PathBuf,
    starts: u32,
    daemon: Option<Background>,
}

impl VpnNode {
    /// A node whose configuration is already written (not started).
    pub(crate) fn new(
        spec: NodeSpec,
        config: PathBuf,
        ns: NsRef,
        bin: PathBuf,
        log_dir: PathBuf,
    ) -> Self {
        Self {
            spec,
            config,
            ns,
            bin,
            log_dir,
            starts: 0,
            daemon: None,
        }
    }

    pub fn ns(&self) -> &NsRef {
        &self.ns
    }

    pub fn vpn_v4(&self) -> IpAddr {
        IpAddr::V4(self.spec.vpn_v4)
    }

    pub fn vpn_v6(&self) -> IpAddr {
        IpAddr::V6(self.spec.vpn_v6)
    }

    /// The `vpn-control` command (inside the node's namespace) with `args`.
    pub fn command<I, S>(&self, args: I) -> std::process::Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut c = self.ns.cmd(&self.bin);
        c.args(args);
        c
    }

    /// Starts `vpn-control up -c CONFIG` and waits until `status` answers.
    pub fn up(&mut self) -> Result<()> {
        self.spawn_up()?;
        self.wait_ready()
    }

    /// Starts the daemon without waiting for it.
    pub fn spawn_up(&mut self) -> Result<()> {
        if self.daemon.is_some() {
            return Err(Error::Setup(format!("{} is already up", self.spec.name)));
        }
        self.starts += 1;
        let log = self
            .log_dir
            .join(format!("{}-up{}.log", self.spec.name, self.starts));
        let mut cmd = self.command([Path::new("up"), Path::new("-c"), &self.config]);
        cmd.env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        );
        self.daemon = Some(Background::spawn(
            &format!("vpn-control up ({})", self.spec.name),
            cmd,
            &log,
        )?);
        Ok(())
    }

    /// Waits until `status --json` answers (or fails early if the daemon exits).
    pub fn wait_ready(&mut self) -> Result<()> {
        let name = self.spec.name.clone();
        wait_until_ok(
            &format!("{name}'s daemon to answer status"),
            UP_TIMEOUT,
            || {
                if let Some(d) = self.daemon.as_mut() {
                    if let Some(s) = d.try_status() {
                        return Err(format!("daemon exited early ({s}): {}", d.log()));
                    }
                }
                self.status().map(drop).map_err(|e| e.to_string())
            },
        )
        .map_err(|e| match &self.daemon {
            Some(d) => Error::Setup(format!("{e}\n--- daemon log ---\n{}", d.log())),
            None => e,
        })
    }

    /// `vpn-control status -c CONFIG --json`.
    pub fn status(&self) -> Result<Status> {
        let mut cmd = self.command([Path::new("status"), Path::new("-c"), &self.config]);
        cmd.arg("--json");
        let out = crate::error::run_output(&mut cmd)?;
        if !out.status.success() {
            return Err(command_error(&cmd, &out));
        }
        Status::parse(&String::from_utf8_lossy(&out.stdout))
    }

    /// `vpn-control down -c CONFIG` (also cleans up after a killed daemon).
    pub fn down(&self) -> Result<String> {
        let mut cmd = self.command([Path::new("down"), Path::new("-c"), &self.config]);
        let out = crate::error::run_output(&mut cmd)?;
        if !out.status.success() {
            return Err(command_error(&cmd, &out));
        }
        Ok(String::from_utf8_lossy(&out.stderr).into_owned()
            + &String::from_utf8_lossy(&out.stdout))
    }

    /// SIGTERM and wait: the daemon tears everything down itself.
    pub fn stop(&mut self) -> Result<ExitStatus> {
        let mut d = self
            .daemon
            .take()
            .ok_or_else(|| Error::Setup(format!("{} is not up", self.spec.name)))?;
        d.stop()
    }

    /// Waits for the daemon to exit on its own (after `down`, say).
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let d = self
            .daemon
            .as_mut()
            .ok_or_else(|| Error::Setup(format!("{} is not up", self.spec.name)))?;
        let st = d.wait(timeout)?;
        self.daemon = None;
        Ok(st)
    }

    /// `kill -9` of the daemon: it gets no chance to clean up.
    pub fn kill9(&mut self) -> Result<ExitStatus> {
        let mut d = self
            .daemon
            .take()
            .ok_or_else(|| Error::Setup(format!("{} is not up", self.spec.name)))?;
        d.kill9()
    }

    pub fn daemon_pid(&self) -> Option<i32> {
        self.daemon.as_ref().map(Background::pid)
    }

    /// The current daemon's log so far.
    pub fn log(&self) -> String {
        self.daemon
            .as_ref()
            .map(Background::log)
            .unwrap_or_default()
    }
}

/// Hosts on one LAN with a VPN node each. Dropping it stops the daemons
/// (SIGTERM), then deletes the namespaces and the scratch folder.
#[derive(Debug)]
pub struct Lab {
    nodes: Vec<VpnNode>,
    lan: Lan,
    dir: TempDir,
}

impl Lab {
    /// One host per entry of `dataplanes`, each with a lab configuration
    /// naming every other node as a peer. Nothing is started yet.
    pub fn new(tag: &str, dataplanes: &[Dataplane]) -> Result<Self> {
        let bin = vpn_control_bin()?;
        let dir = TempDir::new(tag)?;
        let lan = Lan::with_hosts(tag, dataplanes.len())?;
        let specs: Vec<NodeSpec> = dataplanes
            .iter()
            .enumerate()
            .map(|(i, &dp)| NodeSpec::lab(i, lan.host(i).addr, dp, dir.path()))
            .collect();
        let configs = generate_lab_configs(&specs)?;
        let mut nodes = Vec::new();
        for (i, (spec, text)) in specs.into_iter().zip(configs).enumerate() {
            let config = dir.path().join(format!("{}.toml", spec.name));
            std::fs::write(&config, text)?;
            nodes.push(VpnNode::new(
                spec,
                config,
                (*lan.host(i).ns).clone(),
                bin.clone(),
                dir.path().to_owned(),
            ));
        }
        Ok(Self { nodes, lan, dir })
    }

    /// Starts every daemon, then waits for each.
    pub fn up_all(&mut self) -> Result<()> {
        for n in &mut self.nodes {
            n.spawn_up()?;
        }
        for n in &mut self.nodes {
            n.wait_ready()?;
        }
        Ok(())
    }

    pub fn node(&self, i: usize) -> &VpnNode {
        &self.nodes[i]
    }

    pub fn node_mut(&mut self, i: usize) -> &mut VpnNode {
        &mut self.nodes[i]
    }

    pub fn nodes(&self) -> &[VpnNode] {
        &self.nodes
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn lan(&self) -> &Lan {
        &self.lan
    }

    /// The lab's scratch folder (configs, logs, captures).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}
