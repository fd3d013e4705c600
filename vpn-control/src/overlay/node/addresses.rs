//! This node's virtual addresses: fixed from its certificate, or allocated
//! from the group range, both through `vpn_core::addr::Allocator` (the
//! sans-IO DHT-based DHCP) over the private DHT ([`Client::get_claims`],
//! [`Client::put_claim`]).
//!
//! A fixed address is in the view from the start (the certificate grants
//! it); its claim (with the *fixed* flag, which beats allocated claims)
//! makes it resolvable. An allocated address is in the view from the moment
//! the allocator confirmed its claim until it is lost or released. On
//! shutdown every claim is withdrawn with a tombstone, and the task waits
//! for the puts (bounded by the caller).

use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{info, warn};
use vpn_core::addr::{Action, Allocator, Assignment, DhtFailure, Range, RequestId, SignedRecord};
use vpn_core::session::SystemEntropy;
use vpn_pki::{AddressAssignment, MemberCert};

use super::NodeConfig;
use crate::overlay::{Client, OverlayError};

/// Addresses with their prefix lengths.
pub(super) type Addresses = Vec<(IpAddr, u8)>;

/// The allocator for this node's certificate, and its fixed addresses.
pub(super) struct Plan {
    allocator: Allocator,
    fixed: Addresses,
    join_grace: Duration,
}

impl Plan {
    /// Checks the certificate's addresses against the group's ranges and
    /// builds the allocator.
    pub(super) fn new(cfg: &NodeConfig, owner: &[u8]) -> Result<Self, OverlayError> {
        let cert = MemberCert::from_der(&cfg.overlay.cert)?;
        let info = cert.info();
        let mut ranges = Vec::new();
        let mut fixed = Vec::new();
        let bad = |e: vpn_core::addr::AddrError| OverlayError::Allocation(e.to_string());
        for r in cfg.overlay.ca.ranges() {
            let range = Range::new(r.addr(), r.prefix()).map_err(bad)?;
            match &info.address {
                AddressAssignment::Fixed(addrs) => {
                    if let Some(a) = addrs.iter().find(|a| r.contains(**a)) {
                        ranges.push((range, Assignment::Fixed(*a)));
                        fixed.push((*a, r.prefix()));
                    }
                }
                AddressAssignment::Allocate => ranges.push((range, Assignment::Allocate)),
            }
        }
        if let AddressAssignment::Fixed(addrs) = &info.address {
            if let Some(a) = addrs.iter().find(|a| !fixed.iter().any(|(f, _)| f == *a)) {
                return Err(OverlayError::Allocation(format!(
                    "certificate address {a} is outside the group ranges"
                )));
            }
        }
        let allocator = Allocator::new(
            &cfg.overlay.group,
            owner,
            ranges,
            cfg.allocation.clone(),
            Box::new(SystemEntropy::new()),
        )
        .map_err(bad)?;
        Ok(Self {
            allocator,
            fixed,
            join_grace: cfg.join_grace,
        })
    }
}

/// Handle to the address task.
#[derive(Debug)]
pub(super) struct AddressHandle {
    release: mpsc::Sender<oneshot::Sender<()>>,
}

impl AddressHandle {
    /// Releases every claim and waits (at most `timeout`) for the releases
    /// to be stored.
    pub(super) async fn release(&self, timeout: Duration) {
        let (tx, rx) = oneshot::channel();
        if self.release.send(tx).await.is_ok() {
            let _ = tokio::time::timeout(timeout, rx).await;
        }
    }
}

/// Starts the address task: the handle, this node's addresses (updated as
/// they are acquired and lost), and the task to run.
pub(super) fn start(
    plan: Plan,
    client: Client,
) -> (
    AddressHandle,
    watch::Receiver<Addresses>,
    impl std::future::Future<Output = ()> + Send,
) {
    let (release_tx, release_rx) = mpsc::channel(1);
    let (tx, rx) = watch::channel(plan.fixed.clone());
    let task = run(plan, client, release_rx, tx);
    (
        AddressHandle {
            release: release_tx,
        },
        rx,
        task,
    )
}

enum Answer {
    Get(RequestId, Result<Vec<SignedRecord>, DhtFailure>),
    Put(RequestId, Result<(), DhtFailure>),
}

fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

fn key_addr(key: &[u8]) -> Option<IpAddr> {
    std::str::from_utf8(key)
        .ok()?
        .strip_prefix("/groupvpn/addr/")?
        .parse()
        .ok()
}

struct Driver {
    alloc: Allocator,
    client: Client,
    fixed: Addresses,
    out: watch::Sender<Addresses>,
    pending: FuturesUnordered<BoxFuture<'static, Answer>>,
}

impl Driver {
    /// Carries out the allocator's actions.
    fn drain(&mut self) {
        while let Some(a) = self.alloc.poll_action() {
            match a {
                Action::Get { id, key } => {
                    let c = self.client.clone();
                    self.pending.push(Box::pin(async move {
                        let res = match key_addr(&key) {
                            Some(addr) => c
                                .get_claims(addr)
                                .await
                                .map(|v| v.iter().map(|c| c.core_record()).collect())
                                .map_err(|e| DhtFailure(e.to_string())),
                            None => Err(DhtFailure("bad key".into())),
                        };
                        Answer::Get(id, res)
                    }));
                }
                Action::Put {
                    id,
                    key,
                    value,
                    expires,
                } => {
                    let c = self.client.clone();
                    self.pending.push(Box::pin(async move {
                        let res = match key_addr(&key) {
                            Some(addr) => c
                                .put_claim(addr, value, UNIX_EPOCH + expires)
                                .await
                                .map_err(|e| DhtFailure(e.to_string())),
                            None => Err(DhtFailure("bad key".into())),
                        };
                        Answer::Put(id, res)
                    }));
                }
                Action::AddressAcquired { addr, prefix } => {
                    info!(%addr, prefix, "overlay: virtual address acquired");
                }
                Action::AddressLost { addr, reason } => {
                    warn!(%addr, ?reason, "overlay: virtual address lost");
                }
                Action::Error(e) => warn!("overlay: address allocation: {e}"),
            }
        }
        let mut now = self.fixed.clone();
        for a in self.alloc.addresses() {
            if !now.contains(&a) {
                now.push(a);
            }
        }
        self.out.send_if_modified(|cur| {
            if *cur == now {
                return false;
            }
            *cur = now;
            true
        });
    }

    fn answer(&mut self, a: Answer) {
        match a {
            Answer::Get(id, res) => self.alloc.handle_get(id, unix_now(), res),
            Answer::Put(id, res) => self.alloc.handle_put(id, unix_now(), res),
        }
    }
}

async fn run(
    plan: Plan,
    client: Client,
    mut release: mpsc::Receiver<oneshot::Sender<()>>,
    out: watch::Sender<Addresses>,
) {
    let grace = plan.join_grace;
    let mut d = Driver {
        alloc: plan.allocator,
        client,
        fixed: plan.fixed,
        out,
        pending: FuturesUnordered::new(),
    };
    // Claim once the group is in sight (a first verified member), so a
    // starting node reads the claims that exist instead of racing from an
    // empty view; a lone node starts after the grace period.
    let joined = async {
        let t0 = tokio::time::Instant::now();
        while t0.elapsed() < grace {
            match d.client.members().await {
                Ok(m) if !m.is_empty() => return,
                Ok(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                Err(_) => return,
            }
        }
    };
    tokio::select! {
        _ = joined => {}
        r = release.recv() => {
            d.out.send_replace(Vec::new());
            if let Some(done) = r {
                let _ = done.send(());
            }
            return;
        }
    }
    d.alloc.start(unix_now());
    loop {
        d.drain();
        let wait = d
            .alloc
            .poll_timeout()
            .map_or(Duration::from_secs(3600), |t| t.saturating_sub(unix_now()));
        tokio::select! {
            _ = tokio::time::sleep(wait) => d.alloc.handle_timeout(unix_now()),
            Some(a) = d.pending.next(), if !d.pending.is_empty() => d.answer(a),
            r = release.recv() => {
                // Withdraw every claim; wait for the tombstones' puts (the
                // caller bounds the wait).
                d.alloc.release(unix_now());
                d.drain();
                d.out.send_replace(Vec::new());
                while let Some(a) = d.pending.next().await {
                    if let Answer::Put(id, res) = a {
                        d.alloc.handle_put(id, unix_now(), res);
                    }
                }
                if let Some(done) = r {
                    let _ = done.send(());
                }
                return;
            }
        }
    }
}
