//! What the daemon sees of the group: the contract between the overlay (which
//! produces it) and the daemon (which turns it into a `DesiredState` and OS
//! configuration). The daemon depends only on [`GroupOverlay`], so its tests
//! drive a fake.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use futures::future::BoxFuture;
use libp2p::PeerId;
use tokio::sync::watch;

use super::session_driver::PeerKeys;
use super::{OverlayError, OverlayStats};

/// The group as this node currently knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupView {
    /// This node's PeerId.
    pub peer_id: PeerId,
    /// This node's virtual addresses with their prefix length (the group
    /// range's): fixed by the certificate, or allocated from the range
    /// through the private DHT. Empty while an allocation is in progress.
    pub addresses: Vec<(IpAddr, u8)>,
    /// Verified members with a session or a session in progress.
    pub peers: BTreeMap<PeerId, PeerView>,
}

impl GroupView {
    /// An empty view for `peer_id`.
    pub fn empty(peer_id: PeerId) -> Self {
        Self {
            peer_id,
            addresses: Vec::new(),
            peers: BTreeMap::new(),
        }
    }
}

/// One member as the data plane needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerView {
    /// The node name from its certificate (shown by `status`).
    pub name: String,
    /// Its verified virtual addresses (fixed in its certificate, or a live
    /// claim in the private DHT): the host prefixes it may send from and
    /// that route to it.
    pub addresses: Vec<IpAddr>,
    /// Candidate underlay endpoints of its data port, best first.
    pub endpoints: Vec<SocketAddr>,
    /// Its current session keys.
    pub keys: PeerKeys,
}

/// The overlay as the daemon uses it (implemented by the libp2p overlay;
/// faked in the daemon's tests).
pub trait GroupOverlay: Send + Sync {
    /// The current view; changes whenever membership, addresses, endpoints
    /// or keys change.
    fn view(&self) -> watch::Receiver<GroupView>;
    /// Finds the owner of virtual address `ip` and makes sure a session with
    /// it exists. Resolves once the owner's keys are in the view, or fails
    /// (unknown address, not a member, handshake timeout).
    fn connect_ip(&self, ip: IpAddr) -> BoxFuture<'static, Result<PeerId, OverlayError>>;
    /// Overlay counters (for `status`).
    fn stats(&self) -> BoxFuture<'static, Result<OverlayStats, OverlayError>>;
    /// Releases address claims and stops the overlay (clean shutdown).
    fn shutdown(&self) -> BoxFuture<'static, ()>;
    /// Data packets sent to and received from each peer since the last
    /// report, from the data plane's counters (the daemon reports about
    /// once a second, only peers with traffic). Drives the session core's
    /// traffic-dependent rekey (`SessionManager::on_traffic`): without
    /// reports a busy session is never rekeyed and expires at
    /// `reject_after`. (Added by the daemon, H2; the default ignores it.)
    fn report_traffic(&self, traffic: Vec<(PeerId, u64, u64)>) {
        let _ = traffic;
    }
    /// The data plane now holds exactly the peers and keys of `view`
    /// (called by the daemon after every successful apply). The session
    /// core requires a key to be installed before the handshake message
    /// that follows it is sent (a Reply after the responder's receive key, a
    /// Confirm after the initiator's); keys only reach the data plane
    /// through the view, so a driver that sends right after publishing can
    /// lose the first packets on the new key (`unknown_index`). A driver
    /// may wait (bounded) for this call before sending. (Added by the
    /// daemon, H2; the default ignores it.)
    fn applied(&self, view: &GroupView) {
        let _ = view;
    }
}
