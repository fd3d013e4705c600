//! The node task: follows members, their data and addresses, the session
//! keys and this node's addresses, and publishes the [`GroupView`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use futures::stream::FuturesUnordered;
use futures::StreamExt;
use libp2p::PeerId;
use tokio::sync::{mpsc, watch};
use tracing::debug;
use vpn_pki::{AddressAssignment, MemberCert};

use super::addresses::{AddressHandle, Addresses};
use super::{endpoints, NodeCommand};
use crate::overlay::membership::DataInfo;
use crate::overlay::session_driver::{KeySets, PeerKeys, SessionDriver};
use crate::overlay::{Client, GroupView, OverlayError, OverlayEvent, PeerView};

/// What the node knows about one verified member.
#[derive(Debug, Default)]
struct Member {
    name: String,
    /// Addresses fixed in its certificate.
    fixed: Vec<IpAddr>,
    /// Its certificate allocates from the range.
    allocates: bool,
    /// What it announced last.
    data: DataInfo,
    /// Remote IPs of our connections to it at the last exchange.
    observed: Vec<IpAddr>,
    /// Addresses resolved to it in the private DHT, until their claim ends.
    resolved: BTreeMap<IpAddr, SystemTime>,
}

impl Member {
    fn addresses(&self, now: SystemTime) -> Vec<IpAddr> {
        let mut out = self.fixed.clone();
        for (a, until) in &self.resolved {
            if *until > now && !out.contains(a) {
                out.push(*a);
            }
        }
        out
    }
}

type Verification = std::pin::Pin<
    Box<
        dyn std::future::Future<
                Output = (
                    PeerId,
                    IpAddr,
                    Result<crate::overlay::Resolved, OverlayError>,
                ),
            > + Send,
    >,
>;

pub(super) struct NodeState {
    client: Client,
    sessions: SessionDriver,
    keys: KeySets,
    own: watch::Receiver<Addresses>,
    view: watch::Sender<GroupView>,
    refresh: Duration,
    members: HashMap<PeerId, Member>,
    verifying: HashSet<(PeerId, IpAddr)>,
    verifications: FuturesUnordered<Verification>,
}

impl NodeState {
    pub(super) fn new(
        client: Client,
        sessions: SessionDriver,
        keys: KeySets,
        own: watch::Receiver<Addresses>,
        view: watch::Sender<GroupView>,
        refresh: Duration,
    ) -> Self {
        Self {
            client,
            sessions,
            keys,
            own,
            view,
            refresh,
            members: HashMap::new(),
            verifying: HashSet::new(),
            verifications: FuturesUnordered::new(),
        }
    }

    pub(super) async fn run(
        mut self,
        mut events: mpsc::Receiver<OverlayEvent>,
        to_sessions: mpsc::Sender<OverlayEvent>,
        mut commands: mpsc::Receiver<NodeCommand>,
        addresses: AddressHandle,
        release_timeout: Duration,
    ) {
        let mut refresh = tokio::time::interval(self.refresh);
        refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut own_open = true;
        let mut keys_open = true;
        self.publish();
        let mut announced: Option<Vec<IpAddr>> = None;
        let mut kept: Vec<PeerId> = Vec::new();
        loop {
            tokio::select! {
                ev = events.recv() => match ev {
                    None => break,
                    Some(ev) => {
                        self.on_event(&ev);
                        if to_sessions.send(ev).await.is_err() {
                            break;
                        }
                    }
                },
                r = self.keys.changed(), if keys_open => {
                    keys_open = r.is_ok();
                }
                r = self.own.changed(), if own_open => {
                    own_open = r.is_ok();
                }
                cmd = commands.recv() => match cmd {
                    Some(NodeCommand::Connect { peer, addr, expires, reply }) => {
                        let ok = self.members.contains_key(&peer);
                        if ok {
                            self.remember(peer, addr, expires);
                            if self.sessions.connect(peer).await.is_err() {
                                break;
                            }
                        }
                        let _ = reply.send(ok);
                    }
                    Some(NodeCommand::Shutdown(done)) => {
                        addresses.release(release_timeout).await;
                        self.client.shutdown().await;
                        self.clear_view();
                        let _ = done.send(());
                        break;
                    }
                    None => {
                        addresses.release(release_timeout).await;
                        self.client.shutdown().await;
                        break;
                    }
                },
                Some((peer, addr, res)) = self.verifications.next(), if !self.verifications.is_empty() => {
                    self.verified(peer, addr, res);
                }
                _ = refresh.tick() => self.refresh_addresses(),
            }
            let own: Vec<IpAddr> = self.own.borrow().iter().map(|(a, _)| *a).collect();
            if announced.as_ref() != Some(&own) {
                if self.client.announce(own.clone()).await.is_err() {
                    break;
                }
                announced = Some(own);
            }
            self.publish();
            // Members with session keys keep their overlay connection open
            // (rekeys and teardown travel on it).
            let with_keys: Vec<PeerId> = self.keys.borrow().keys().copied().collect();
            if with_keys != kept {
                if self.client.keep_alive(with_keys.clone()).await.is_err() {
                    break;
                }
                kept = with_keys;
            }
        }
        self.clear_view();
    }

    /// Stopped: nothing in the view any more.
    fn clear_view(&self) {
        self.view.send_if_modified(|v| {
            let changed = !v.addresses.is_empty() || !v.peers.is_empty();
            v.addresses.clear();
            v.peers.clear();
            changed
        });
    }

    fn on_event(&mut self, ev: &OverlayEvent) {
        match ev {
            OverlayEvent::MemberJoined { peer, cert } => {
                let m = self.members.entry(*peer).or_default();
                if let Ok(c) = MemberCert::from_der(cert) {
                    let info = c.info();
                    m.name = info.name.clone();
                    match &info.address {
                        AddressAssignment::Fixed(a) => {
                            m.fixed = a.clone();
                            m.allocates = false;
                        }
                        AddressAssignment::Allocate => {
                            m.fixed.clear();
                            m.allocates = true;
                        }
                    }
                }
            }
            OverlayEvent::MemberExpelled(peer, _) => {
                self.members.remove(peer);
            }
            OverlayEvent::MemberData {
                peer,
                data,
                observed,
            } => {
                let Some(m) = self.members.get_mut(peer) else {
                    return;
                };
                m.data = data.clone();
                if !observed.is_empty() {
                    m.observed = observed.clone();
                }
                let unverified: Vec<IpAddr> = data
                    .addresses
                    .iter()
                    .filter(|a| !m.fixed.contains(a))
                    .copied()
                    .collect();
                // Addresses it no longer announces are forgotten.
                m.resolved.retain(|a, _| data.addresses.contains(a));
                for a in unverified {
                    self.verify(*peer, a);
                }
            }
            _ => {}
        }
    }

    /// Resolves `addr` in the private DHT to check that `peer` holds it.
    fn verify(&mut self, peer: PeerId, addr: IpAddr) {
        if !self.verifying.insert((peer, addr)) {
            return;
        }
        let c = self.client.clone();
        self.verifications
            .push(Box::pin(async move { (peer, addr, c.resolve(addr).await) }));
    }

    fn verified(
        &mut self,
        peer: PeerId,
        addr: IpAddr,
        res: Result<crate::overlay::Resolved, OverlayError>,
    ) {
        self.verifying.remove(&(peer, addr));
        let Some(m) = self.members.get_mut(&peer) else {
            return;
        };
        match res {
            Ok(r) if r.peer == peer => {
                m.resolved.insert(addr, r.expires);
            }
            Ok(r) => {
                debug!(%peer, %addr, owner = %r.peer, "node: announced address belongs to another member");
                m.resolved.remove(&addr);
            }
            Err(e) => {
                debug!(%peer, %addr, "node: announced address does not resolve: {e}");
            }
        }
    }

    /// `connect_ip` resolved `addr` to `peer`.
    fn remember(&mut self, peer: PeerId, addr: IpAddr, expires: SystemTime) {
        if let Some(m) = self.members.get_mut(&peer) {
            if !m.fixed.contains(&addr) {
                m.resolved.insert(addr, expires);
            }
        }
    }

    /// Drops addresses whose claim ended; re-resolves announced addresses
    /// that are unverified or end within two refresh periods.
    fn refresh_addresses(&mut self) {
        let now = SystemTime::now();
        let soon = now + 2 * self.refresh;
        let mut todo = Vec::new();
        for (peer, m) in &mut self.members {
            m.resolved.retain(|_, until| *until > now);
            for a in &m.data.addresses {
                if m.fixed.contains(a) {
                    continue;
                }
                if m.resolved.get(a).is_none_or(|until| *until <= soon) {
                    todo.push((*peer, *a));
                }
            }
            // Resolved through connect_ip but not announced: keep fresh too.
            for (a, until) in &m.resolved {
                if *until <= soon && !m.data.addresses.contains(a) {
                    todo.push((*peer, *a));
                }
            }
        }
        for (p, a) in todo {
            self.verify(p, a);
        }
    }

    fn publish(&mut self) {
        let now = SystemTime::now();
        let keys: BTreeMap<PeerId, PeerKeys> = self.keys.borrow().clone();
        let addresses = self.own.borrow().clone();
        let peers: BTreeMap<PeerId, PeerView> = keys
            .into_iter()
            .filter_map(|(peer, keys)| {
                let m = self.members.get(&peer)?;
                Some((
                    peer,
                    PeerView {
                        name: m.name.clone(),
                        addresses: m.addresses(now),
                        endpoints: endpoints(&m.data, &m.observed),
                        keys,
                    },
                ))
            })
            .collect();
        self.view.send_if_modified(|v| {
            if v.addresses == addresses && v.peers == peers {
                return false;
            }
            v.addresses = addresses;
            v.peers = peers;
            true
        });
    }
}
