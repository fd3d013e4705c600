//! The overlay's handle: cheap to clone, sends commands to the event loop
//! over a bounded channel and awaits one-shot replies.

use std::net::IpAddr;

use libp2p::{Multiaddr, PeerId};
use tokio::sync::{mpsc, oneshot};
use vpn_pki::Crl;

use super::claims::VerifiedClaim;
use super::resolve::Resolved;
use super::{OverlayError, OverlayStats};

/// A command for the event loop.
#[derive(Debug)]
pub(crate) enum Command {
    ListenAddrs(oneshot::Sender<Vec<Multiaddr>>),
    Resolve(IpAddr, oneshot::Sender<Result<Resolved, OverlayError>>),
    Members(oneshot::Sender<Vec<PeerId>>),
    PrivateRoutingTable(oneshot::Sender<Vec<PeerId>>),
    Stats(oneshot::Sender<OverlayStats>),
    SendSession(
        PeerId,
        Vec<u8>,
        oneshot::Sender<Result<Vec<u8>, OverlayError>>,
    ),
    SetCrl(Crl, oneshot::Sender<Result<(), OverlayError>>),
    Reach(PeerId, oneshot::Sender<bool>),
    KeepAlive(Vec<PeerId>),
    Announce(Vec<IpAddr>),
    GetClaims(
        IpAddr,
        oneshot::Sender<Result<Vec<VerifiedClaim>, OverlayError>>,
    ),
    PutClaim {
        addr: IpAddr,
        value: Vec<u8>,
        expires: std::time::SystemTime,
        reply: oneshot::Sender<Result<(), OverlayError>>,
    },
    Shutdown,
}

/// Handle to a running overlay.
#[derive(Clone, Debug)]
pub struct Client {
    pub(crate) tx: mpsc::Sender<Command>,
    pub(crate) peer_id: PeerId,
}

impl Client {
    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, OverlayError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(make(tx))
            .await
            .map_err(|_| OverlayError::Stopped)?;
        rx.await.map_err(|_| OverlayError::Stopped)
    }

    /// This node's PeerId.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// Keeps the overlay connections of exactly these members open while
    /// idle (members with sessions), besides the neighbours.
    pub async fn keep_alive(&self, peers: Vec<PeerId>) -> Result<(), OverlayError> {
        self.tx
            .send(Command::KeepAlive(peers))
            .await
            .map_err(|_| OverlayError::Stopped)
    }

    /// Whether `peer` is a verified member; if not, starts reaching it: the
    /// certificate exchange on an open connection, else a private-DHT
    /// lookup of its PeerId (which connects to it, and the exchange
    /// follows) and a dial. Call again to learn the outcome.
    pub async fn reach(&self, peer: PeerId) -> Result<bool, OverlayError> {
        self.ask(|tx| Command::Reach(peer, tx)).await
    }

    /// The addresses the node listens on.
    pub async fn listen_addrs(&self) -> Result<Vec<Multiaddr>, OverlayError> {
        self.ask(Command::ListenAddrs).await
    }

    /// Resolves a virtual address to its owner's PeerId and certificate
    /// (cached until the claim expires or the cache TTL passes).
    pub async fn resolve(&self, addr: IpAddr) -> Result<Resolved, OverlayError> {
        self.ask(|tx| Command::Resolve(addr, tx)).await?
    }

    /// Verified members currently known.
    pub async fn members(&self) -> Result<Vec<PeerId>, OverlayError> {
        self.ask(Command::Members).await
    }

    /// Peers in the private Kademlia routing table.
    pub async fn private_routing_table(&self) -> Result<Vec<PeerId>, OverlayError> {
        self.ask(Command::PrivateRoutingTable).await
    }

    /// Counters.
    pub async fn stats(&self) -> Result<OverlayStats, OverlayError> {
        self.ask(Command::Stats).await
    }

    /// Sends one session handshake request to a verified member and returns
    /// its response bytes (for `SessionManager::handle_response`).
    pub async fn send_session(&self, peer: PeerId, msg: Vec<u8>) -> Result<Vec<u8>, OverlayError> {
        self.ask(|tx| Command::SendSession(peer, msg, tx)).await?
    }

    /// Installs a newer CRL; members it revokes are expelled at once, and
    /// the CRL is published on the group topic (the other members install
    /// it too).
    pub async fn set_crl(&self, crl: Crl) -> Result<(), OverlayError> {
        self.ask(|tx| Command::SetCrl(crl, tx)).await?
    }

    /// Tells every verified member this node's current virtual addresses
    /// (with its data port and underlay IPs) through the membership
    /// protocol.
    pub async fn announce(&self, addresses: Vec<IpAddr>) -> Result<(), OverlayError> {
        self.tx
            .send(Command::Announce(addresses))
            .await
            .map_err(|_| OverlayError::Stopped)
    }

    /// Every verified claim on `addr` in the private DHT (all replicas the
    /// lookup reaches and the local store, merged: one per owner). Empty
    /// when there is none.
    pub async fn get_claims(&self, addr: IpAddr) -> Result<Vec<VerifiedClaim>, OverlayError> {
        self.ask(|tx| Command::GetClaims(addr, tx)).await?
    }

    /// Signs `value` (an encoded `vpn_core::addr::Claim` of this node) with
    /// this node's key and certificate and stores it under the key of
    /// `addr` until `expires`, locally and at the closest members. An error
    /// may still have stored it somewhere (read it back).
    pub async fn put_claim(
        &self,
        addr: IpAddr,
        value: Vec<u8>,
        expires: std::time::SystemTime,
    ) -> Result<(), OverlayError> {
        self.ask(|reply| Command::PutClaim {
            addr,
            value,
            expires,
            reply,
        })
        .await?
    }

    /// Stops the event loop.
    pub async fn shutdown(&self) {
        let _ = self.tx.send(Command::Shutdown).await;
    }
}
