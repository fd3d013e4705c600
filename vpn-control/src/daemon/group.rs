//! The daemon's overlay loop: turns every [`GroupView`] change into the
//! data plane's desired state and the interface's addresses, starts
//! sessions for the first packets to members (queued meanwhile, then
//! re-injected), and reports per-peer traffic to the overlay for rekeys.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Now, on tokio's clock (paused in tests).
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

use libp2p::PeerId;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use super::pending::{OnPacket, Pending};
use super::reconcile::{self, PeerIds, Skipped};
use super::server::Context;
use crate::config::values::prefix_contains;
use crate::config::InterfaceAddress;
use crate::dataplane::passup::destination;
use crate::dataplane::{DesiredState, Prefix};
use crate::netdev::{self, NetConfig, NetSpec};
use crate::overlay::{GroupOverlay, GroupView, OverlayError};

/// Capacity of the channel from the data plane to the daemon.
pub const PASS_UP_CAPACITY: usize = 1024;
/// Upper bound on one `connect_ip` (the overlay has its own, shorter one).
const CONNECT_DEADLINE: Duration = Duration::from_secs(15);
/// How often traffic is reported and stale queued packets dropped.
const TICK: Duration = Duration::from_secs(1);

type ConnectResult = (IpAddr, Result<PeerId, OverlayError>);

/// What the loop works on.
pub struct GroupRuntime {
    overlay: Arc<dyn GroupOverlay>,
    view: watch::Receiver<GroupView>,
    packets: mpsc::Receiver<Vec<u8>>,
    /// The group's ranges: passed-up packets to other addresses are not
    /// for members.
    ranges: Vec<Prefix>,
    lab: DesiredState,
    /// Prefixes that need a route besides the connected ones: the lab
    /// peers' and the group ranges.
    route_targets: Vec<Prefix>,
    configured: Vec<InterfaceAddress>,
    ids: PeerIds,
    pending: Pending,
    connects: JoinSet<ConnectResult>,
    skipped: Vec<Skipped>,
    ctx: Arc<Context>,
    spec: NetSpec,
    traffic: HashMap<u32, (u64, u64)>,
    /// The last reconciliation failed somewhere: retried on the next tick.
    dirty: bool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl GroupRuntime {
    /// `spec`: the interface as started; `configured`: the configured
    /// addresses. The interface keeps the configured addresses, else the
    /// ones it started with (a certificate's fixed addresses: they stay even
    /// while the overlay's claim for them is being made), else follows the
    /// view's (allocated). `lab`: the lab peers' state (already applied);
    /// `packets`: the receiving end of the data plane's sink.
    pub fn new(
        overlay: Arc<dyn GroupOverlay>,
        packets: mpsc::Receiver<Vec<u8>>,
        ranges: Vec<Prefix>,
        lab: DesiredState,
        configured: Vec<InterfaceAddress>,
        spec: NetSpec,
        ctx: Arc<Context>,
    ) -> Self {
        let mut route_targets: Vec<Prefix> = lab
            .peers
            .values()
            .flat_map(|p| p.allowed.iter().copied())
            .collect();
        route_targets.extend(ranges.iter().copied());
        let first_id = lab.peers.keys().max().map_or(1, |m| m + 1);
        let configured = if configured.is_empty() {
            spec.addresses.clone()
        } else {
            configured
        };
        Self {
            view: overlay.view(),
            overlay,
            packets,
            ranges,
            lab,
            route_targets,
            configured,
            ids: PeerIds::new(first_id),
            pending: Pending::default(),
            connects: JoinSet::new(),
            skipped: Vec::new(),
            ctx,
            spec,
            traffic: HashMap::new(),
            dirty: false,
        }
    }

    /// The routes the interface needs for `addresses`.
    pub fn routes_for(&self, addresses: &[InterfaceAddress]) -> Vec<Prefix> {
        netdev::routes_needed(addresses, &self.route_targets)
    }

    /// Runs until the overlay stops (returns why); cancel it to stop.
    pub async fn run<N: NetConfig>(mut self, n: &N) -> String {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        self.reconcile(n).await;
        loop {
            tokio::select! {
                r = self.view.changed() => {
                    if r.is_err() {
                        return "the overlay stopped".into();
                    }
                    self.reconcile(n).await;
                }
                Some(pkt) = self.packets.recv() => {
                    self.on_packet(pkt);
                    while let Ok(pkt) = self.packets.try_recv() {
                        self.on_packet(pkt);
                    }
                }
                Some(res) = self.connects.join_next(), if !self.connects.is_empty() => {
                    match res {
                        Ok((dst, r)) => self.on_connect(n, dst, r).await,
                        Err(e) => tracing::warn!("a session request task failed: {e}"),
                    }
                }
                _ = tick.tick() => {
                    if self.dirty {
                        self.reconcile(n).await;
                    }
                    self.tick();
                }
            }
            self.publish();
        }
    }

    async fn reconcile<N: NetConfig>(&mut self, n: &N) {
        self.dirty = false;
        let view = self.view.borrow_and_update().clone();
        let addresses = reconcile::interface_addresses(&self.configured, &view);
        let own: Vec<IpAddr> = addresses.iter().map(|a| a.addr).collect();
        let (desired, skipped) =
            reconcile::desired(&self.lab, &view, &self.ranges, &own, &mut self.ids);
        for s in skipped.iter().filter(|s| !self.skipped.contains(s)) {
            tracing::warn!(peer = %s.peer, "address {} left out: {}", s.addr, s.reason);
        }
        self.skipped = skipped;
        let changed = *lock(&self.ctx.desired) != desired;
        let applied = if changed {
            let res = lock(&self.ctx.dataplane).apply(&desired);
            match res {
                Ok(()) => {
                    *lock(&self.ctx.desired) = desired.clone();
                    true
                }
                Err(e) => {
                    tracing::error!("updating the data plane (retried in a second): {e}");
                    self.dirty = true;
                    false
                }
            }
        } else {
            true
        };
        if applied {
            self.overlay.applied(&view);
        }
        if addresses != self.spec.addresses {
            let mut spec = self.spec.clone();
            spec.routes = self.routes_for(&addresses);
            spec.addresses = addresses;
            match netdev::ensure(n, &spec).await {
                Ok(_) => {
                    tracing::info!(
                        "{}: addresses now {}",
                        spec.name,
                        fmt_addrs(&spec.addresses)
                    );
                    self.spec = spec;
                }
                Err(e) => {
                    tracing::error!(
                        "setting the addresses {} on {} (retried in a second): {e}",
                        fmt_addrs(&spec.addresses),
                        spec.name
                    );
                    self.dirty = true;
                }
            }
        }
        let current = lock(&self.ctx.desired).clone();
        let ready = self
            .pending
            .take_ready(|dst| reconcile::can_send(&current, dst));
        if !ready.is_empty() {
            self.inject(&ready);
        }
    }

    fn inject(&self, packets: &[Vec<u8>]) {
        let res = lock(&self.ctx.dataplane).inject(packets);
        match res {
            Ok(n) => tracing::debug!("sent {n} packet(s) that waited for a session"),
            Err(e) => tracing::warn!("sending packets that waited for a session: {e}"),
        }
    }

    fn on_packet(&mut self, pkt: Vec<u8>) {
        let Some(dst) = destination(&pkt) else {
            return;
        };
        if !self.ranges.iter().any(|r| prefix_contains(r, dst))
            || self.spec.addresses.iter().any(|a| a.addr == dst)
        {
            return;
        }
        if reconcile::can_send(&lock(&self.ctx.desired), dst) {
            // Raced with a reconcile: the session is there now.
            self.inject(&[pkt]);
            return;
        }
        if self.pending.on_packet(now(), dst, pkt) == OnPacket::Connect {
            tracing::debug!(%dst, "first packet without a session: connecting");
            let fut = self.overlay.connect_ip(dst);
            self.connects.spawn(async move {
                let r = match tokio::time::timeout(CONNECT_DEADLINE, fut).await {
                    Ok(r) => r,
                    Err(_) => Err(OverlayError::Timeout(format!(
                        "connecting to {dst} took over {CONNECT_DEADLINE:?}"
                    ))),
                };
                (dst, r)
            });
        }
    }

    async fn on_connect<N: NetConfig>(
        &mut self,
        n: &N,
        dst: IpAddr,
        r: Result<PeerId, OverlayError>,
    ) {
        match r {
            Ok(peer) => {
                tracing::debug!(%dst, %peer, "session up");
                self.pending.on_connected(dst);
                // The view may already hold the keys without a change
                // notification processed yet.
                self.reconcile(n).await;
            }
            Err(e) => {
                let f = self.pending.on_failed(now(), dst);
                if f.first {
                    tracing::warn!(
                        "no session to {dst}: {e} ({} queued packet(s) dropped; retried on \
                         the next packet after {:?}, later failures logged at debug level)",
                        f.dropped,
                        f.backoff
                    );
                } else {
                    tracing::debug!("no session to {dst}: {e} (retry after {:?})", f.backoff);
                }
            }
        }
    }

    fn tick(&mut self) {
        if !self.pending.is_empty() {
            let n = self.pending.expire(now());
            if n > 0 {
                tracing::debug!("dropped {n} packet(s) that waited too long for a session");
            }
        }
        let stats = match lock(&self.ctx.dataplane).stats() {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!("reading the data plane's counters: {e}");
                return;
            }
        };
        let mut report = Vec::new();
        for (id, c) in &stats.peers {
            let Some(peer) = self.ids.peer_of(*id) else {
                continue;
            };
            let now = (c.tx_packets, c.rx_packets);
            let before = self.traffic.insert(*id, now).unwrap_or((0, 0));
            let sent = now.0.saturating_sub(before.0);
            let received = now.1.saturating_sub(before.1);
            if sent > 0 || received > 0 {
                report.push((peer, sent, received));
            }
        }
        if !report.is_empty() {
            self.overlay.report_traffic(report);
        }
    }

    /// Keeps the overlay part of `status` current.
    fn publish(&self) {
        let Some(o) = &self.ctx.overlay else {
            return;
        };
        let view = self.view.borrow();
        let mut st = lock(&o.status);
        st.addresses = self.spec.addresses.iter().map(|a| a.to_string()).collect();
        st.members = view.peers.len() as u64;
        st.sessions = view.peers.values().filter(|p| p.keys.tx.is_some()).count() as u64;
        let p = self.pending.stats();
        st.pending.queued = p.queued;
        st.pending.delivered = p.delivered;
        st.pending.dropped = p.dropped;
        st.pending.connects = p.connects;
        st.pending.connect_failures = p.connect_failures;
    }
}

fn fmt_addrs(a: &[InterfaceAddress]) -> String {
    if a.is_empty() {
        return "(none)".into();
    }
    a.iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
