//! An overlay lab: a group CA and member certificates made with the CLI,
//! public-DHT-only `vpn-control dht-node`s and members running
//! `vpn-control up` with `[overlay]` configurations (no lab keys), each in
//! its own namespace on one LAN bridge. Dropping it stops the members and
//! DHT nodes, then deletes the namespaces and the scratch folder.

mod config;
mod credentials;
mod dht;

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use config::{render_overlay_config, OverlayConfigSpec};
pub use credentials::{
    credentials_from_cli, identity_peer_id, GroupCredentials, GroupSpec, MemberAddress,
    MemberCredentials, MemberRequest,
};
pub use dht::DhtNode;

use crate::config::{Dataplane, NodeSpec};
use crate::env::{vpn_control_bin, TempDir};
use crate::error::{Error, Result};
use crate::lab::VpnNode;
use crate::lan::Lan;
use crate::status::Status;
use crate::wait::wait_until_ok;

/// libp2p port of every node (members and DHT nodes) on its own address.
pub const OVERLAY_PORT: u16 = 4001;

/// What an overlay lab looks like.
#[derive(Clone, Debug)]
pub struct OverlayOptions {
    /// Group members (`vpn-control up`).
    pub members: usize,
    /// Public-DHT-only bootstrap nodes (`vpn-control dht-node`).
    pub dht_nodes: usize,
    pub dataplane: Dataplane,
    /// Also give members an IPv6 address (`fd77::/64`).
    pub ipv6: bool,
    /// Certificates with `--allocate` instead of fixed addresses.
    pub allocate: bool,
    /// Session timers (`rekey_after`, `reject_after`); defaults if `None`.
    pub rekey: Option<(String, String)>,
    /// The group's name.
    pub group: String,
}

impl OverlayOptions {
    /// `members` kernel-path members with fixed IPv4 and IPv6 addresses and
    /// two DHT nodes.
    pub fn new(members: usize) -> Self {
        Self {
            members,
            dht_nodes: 2,
            dataplane: Dataplane::Kernel,
            ipv6: true,
            allocate: false,
            rekey: None,
            group: "lab".into(),
        }
    }
}

/// Hosts `0..dht_nodes` of the LAN run DHT nodes, the rest members.
#[derive(Debug)]
pub struct OverlayLab {
    dht: Vec<DhtNode>,
    nodes: Vec<VpnNode>,
    credentials: GroupCredentials,
    options: OverlayOptions,
    lan: Lan,
    dir: TempDir,
}

impl OverlayLab {
    /// Credentials from the offline CLI ([`credentials_from_cli`]).
    pub fn new(tag: &str, options: OverlayOptions) -> Result<Self> {
        let bin = vpn_control_bin()?;
        Self::with_credentials(tag, options, |dir, group, reqs| {
            credentials_from_cli(&bin, dir, group, reqs)
        })
    }

    /// Builds the LAN, gets the group's credentials from `make_credentials`
    /// (scratch folder, group, one request per member), starts the DHT
    /// nodes and writes every member's configuration. Members are not
    /// started.
    pub fn with_credentials(
        tag: &str,
        options: OverlayOptions,
        make_credentials: impl FnOnce(&Path, &GroupSpec, &[MemberRequest]) -> Result<GroupCredentials>,
    ) -> Result<Self> {
        if options.members == 0 || options.dht_nodes == 0 {
            return Err(Error::Setup(
                "an overlay lab needs at least one member and one DHT node".into(),
            ));
        }
        let bin = vpn_control_bin()?;
        let dir = TempDir::new(tag)?;
        let lan = Lan::with_hosts(tag, options.dht_nodes + options.members)?;

        let specs: Vec<NodeSpec> = (0..options.members)
            .map(|i| {
                NodeSpec::lab(
                    i,
                    lan.host(options.dht_nodes + i).addr,
                    options.dataplane,
                    dir.path(),
                )
            })
            .collect();
        let requests: Vec<MemberRequest> = specs
            .iter()
            .map(|s| MemberRequest {
                name: s.name.clone(),
                address: if options.allocate {
                    MemberAddress::Allocate
                } else {
                    MemberAddress::Fixed {
                        v4: s.vpn_v4,
                        v6: options.ipv6.then_some(s.vpn_v6),
                    }
                },
            })
            .collect();
        let group = GroupSpec::lab(&options.group, options.ipv6);
        let credentials = make_credentials(dir.path(), &group, &requests)?;
        if credentials.members.len() != options.members {
            return Err(Error::Setup(format!(
                "credentials for {} members, {} wanted",
                credentials.members.len(),
                options.members
            )));
        }

        // DHT nodes: each bootstraps from the ones started before it.
        let mut dht: Vec<DhtNode> = Vec::new();
        for i in 0..options.dht_nodes {
            let host = lan.host(i);
            let identity = dir.path().join(format!("dht{i}.key"));
            let listen = format!("/ip4/{}/tcp/{OVERLAY_PORT}", host.addr);
            let bootstrap: Vec<String> = dht.iter().map(|d| d.multiaddr.clone()).collect();
            dht.push(DhtNode::start(
                &bin,
                &host.ns,
                &identity,
                &listen,
                &bootstrap,
                &dir.path().join(format!("dht{i}.log")),
            )?);
        }
        let bootstrap: Vec<String> = dht.iter().map(|d| d.multiaddr.clone()).collect();

        let mut nodes = Vec::with_capacity(options.members);
        for (i, (spec, creds)) in specs.into_iter().zip(&credentials.members).enumerate() {
            let mdir = dir.path().join(&spec.name);
            std::fs::create_dir_all(&mdir)?;
            let o = OverlayConfigSpec {
                identity: relative_to(&creds.identity, &mdir),
                certificate: relative_to(&creds.certificate, &mdir),
                ca: relative_to(&credentials.ca_cert, &mdir),
                listen: vec![format!("/ip4/{}/tcp/{OVERLAY_PORT}", spec.underlay)],
                bootstrap: bootstrap.clone(),
                rekey: options.rekey.clone(),
            };
            let config = mdir.join("vpn.toml");
            std::fs::write(&config, render_overlay_config(&spec, &o))?;
            nodes.push(VpnNode::new(
                spec,
                config,
                (*lan.host(options.dht_nodes + i).ns).clone(),
                bin.clone(),
                dir.path().to_owned(),
            ));
        }
        Ok(Self {
            dht,
            nodes,
            credentials,
            options,
            lan,
            dir,
        })
    }

    /// Starts every member, then waits until each answers `status`.
    pub fn up_all(&mut self) -> Result<()> {
        for n in &mut self.nodes {
            n.spawn_up()?;
        }
        for n in &mut self.nodes {
            n.wait_ready()?;
        }
        Ok(())
    }

    /// Waits until member `i`'s `status` reports at least `others` verified
    /// members, and returns that status.
    pub fn wait_members(&self, i: usize, others: u64, timeout: Duration) -> Result<Status> {
        let node = &self.nodes[i];
        wait_until_ok(
            &format!("{} to verify {others} other members", node.spec.name),
            timeout,
            || -> std::result::Result<Status, String> {
                let st = node.status().map_err(|e| e.to_string())?;
                match &st.overlay {
                    Some(o) if o.members >= others => Ok(st),
                    Some(o) => Err(format!("{} verified", o.members)),
                    None => Err("status has no overlay part".into()),
                }
            },
        )
    }

    /// Waits until every running member has verified every other member.
    pub fn wait_all_joined(&self, timeout: Duration) -> Result<()> {
        let others = u64::try_from(self.nodes.len() - 1).expect("small lab");
        for i in 0..self.nodes.len() {
            if self.nodes[i].daemon_pid().is_some() {
                self.wait_members(i, others, timeout)?;
            }
        }
        Ok(())
    }

    /// Member `i`'s virtual IPv4 address: from its certificate, or (when
    /// allocated) from its `status`.
    pub fn vpn_v4(&self, i: usize) -> Result<IpAddr> {
        if !self.options.allocate {
            return Ok(self.nodes[i].vpn_v4());
        }
        let st = self.nodes[i].status()?;
        st.overlay
            .and_then(|o| o.v4())
            .map(|a: Ipv4Addr| IpAddr::V4(a))
            .ok_or_else(|| Error::Setup(format!("{} has no address yet", self.nodes[i].spec.name)))
    }

    /// Member `i`'s fixed virtual IPv6 address, if the lab gives one.
    pub fn vpn_v6(&self, i: usize) -> Option<IpAddr> {
        (self.options.ipv6 && !self.options.allocate).then(|| IpAddr::V6(self.nodes[i].spec.vpn_v6))
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

    pub fn dht(&self, i: usize) -> &DhtNode {
        &self.dht[i]
    }

    pub fn dht_mut(&mut self, i: usize) -> &mut DhtNode {
        &mut self.dht[i]
    }

    pub fn dht_nodes(&self) -> &[DhtNode] {
        &self.dht
    }

    pub fn credentials(&self) -> &GroupCredentials {
        &self.credentials
    }

    pub fn options(&self) -> &OverlayOptions {
        &self.options
    }

    pub fn lan(&self) -> &Lan {
        &self.lan
    }

    /// The scratch folder (CA, member folders, logs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// `path` relative to `dir` when it lies under `dir`'s parent (the lab's
/// layout: `ca/`, `n0/`, ... side by side), else unchanged.
fn relative_to(path: &Path, dir: &Path) -> PathBuf {
    if let Ok(p) = path.strip_prefix(dir) {
        return p.to_owned();
    }
    match dir
        .parent()
        .and_then(|parent| path.strip_prefix(parent).ok())
    {
        Some(p) => Path::new("..").join(p),
        None => path.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_follow_the_lab_layout() {
        let d = Path::new("/tmp/lab/n0");
        assert_eq!(
            relative_to(Path::new("/tmp/lab/n0/node.key"), d),
            Path::new("node.key")
        );
        assert_eq!(
            relative_to(Path::new("/tmp/lab/ca/ca.crt"), d),
            Path::new("../ca/ca.crt")
        );
        assert_eq!(relative_to(Path::new("/etc/x"), d), Path::new("/etc/x"));
    }
}
