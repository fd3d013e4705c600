//! Helpers of the in-process overlay node tests (memory transport).

#![allow(dead_code)]

use std::net::IpAddr;
use std::time::{Duration, Instant, SystemTime};

use libp2p::identity::Keypair;
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, StreamProtocol};
use vpn_control::overlay::node::{self, NodeConfig, OverlayNode};
use vpn_control::overlay::{ids, OverlayConfig, PublicNode, Timers, TransportKind};
use vpn_pki::{AddressAssignment, CaParams, CertProfile, GroupCa, NodeIdentity, Role};

pub const DAY: Duration = Duration::from_secs(86_400);
pub const GROUP: &str = "lab";

pub fn ca() -> GroupCa {
    GroupCa::init(
        &CaParams {
            group: GROUP.into(),
            ranges: vec!["10.77.0.0/24".parse().unwrap()],
            validity: 365 * DAY,
        },
        SystemTime::now(),
    )
    .unwrap()
}

pub fn cert(ca: &GroupCa, id: &NodeIdentity, name: &str, address: AddressAssignment) -> Vec<u8> {
    ca.issue(
        &id.public_key(),
        &CertProfile {
            name: name.into(),
            address,
            roles: vec![Role::Member],
            validity: 30 * DAY,
        },
        SystemTime::now(),
    )
    .unwrap()
    .der()
    .to_vec()
}

/// CRL number 1 of `ca`, revoking the member certificate `cert` (DER) now.
pub fn crl_revoking(ca: &GroupCa, cert: &[u8]) -> vpn_pki::Crl {
    let serial = vpn_pki::MemberCert::from_der(cert)
        .unwrap()
        .info()
        .serial
        .clone();
    let now = std::time::SystemTime::now();
    ca.sign_crl(
        &[vpn_pki::RevokedEntry {
            serial,
            revoked_at: now,
            reason: vpn_pki::RevocationReason::KeyCompromise,
        }],
        1,
        now,
        DAY,
    )
    .unwrap()
}

pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

pub fn mem(n: u64) -> Multiaddr {
    Multiaddr::empty().with(Protocol::Memory(n))
}

/// A per-test base for memory ports (the memory transport is process-wide;
/// other test binaries run in other processes).
pub fn port_base(test: u64) -> u64 {
    (u64::from(std::process::id()) << 24) + (test << 16) + (1 << 15)
}

/// Tasks aborted on drop.
#[derive(Default)]
pub struct Tasks(pub Vec<tokio::task::JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

/// One public-DHT-only bootstrap node; returns its address.
pub fn bootstrap(tasks: &mut Tasks, base: u64) -> Multiaddr {
    let node = PublicNode::new(
        Keypair::generate_ed25519(),
        TransportKind::Memory,
        mem(base),
        StreamProtocol::new(ids::DEFAULT_PUBLIC_KAD_PROTOCOL),
    )
    .unwrap();
    let addr = mem(base).with(Protocol::P2p(node.peer_id()));
    tasks.0.push(tokio::spawn(node.run()));
    addr
}

pub fn overlay_timers() -> Timers {
    Timers {
        discovery: Duration::from_millis(300),
        discovery_max: Duration::from_secs(2),
        record_ttl: Duration::from_secs(600),
        cache_ttl: Duration::from_secs(60),
        recheck: Duration::from_secs(5),
        refusal_backoff: Duration::from_secs(60),
    }
}

/// Short allocation timers (lease 6 s, renewed after 2 s).
pub fn short_allocation() -> vpn_core::addr::Config {
    vpn_core::addr::Config {
        lease: Duration::from_secs(6),
        renew_after: Duration::from_secs(2),
        check_interval: Duration::from_secs(1),
        settle: Duration::from_millis(300),
        request_timeout: Duration::from_secs(2),
        retry_backoff: Duration::from_millis(500),
        full_retry: Duration::from_secs(2),
        ..vpn_core::addr::Config::default()
    }
}

/// A member node's configuration: memory transport on `port`, data port
/// `data_port` announced at `data_ip`.
pub fn node_config(
    ca: &GroupCa,
    id: &NodeIdentity,
    cert: Vec<u8>,
    port: u64,
    boot: &Multiaddr,
    data_port: u16,
    data_ip: IpAddr,
) -> NodeConfig {
    let mut o = OverlayConfig::new(
        GROUP.into(),
        ca.certificate().clone(),
        cert,
        ids::keypair_of(id),
    );
    o.transport = TransportKind::Memory;
    o.listen = vec![mem(port)];
    o.bootstrap = vec![boot.clone()];
    o.timers = overlay_timers();
    let mut c = NodeConfig::new(o, data_port);
    c.data_ips = vec![data_ip];
    c.address_refresh = Duration::from_millis(500);
    c
}

pub fn start(tasks: &mut Tasks, cfg: NodeConfig) -> OverlayNode {
    let (n, run) = node::start(cfg).unwrap();
    tasks.0.push(tokio::spawn(run));
    n
}

pub async fn wait_until<F, Fut>(deadline: Instant, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    loop {
        if f().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
