//! Membership: certificate exchange messages and the table of verified
//! members (pure; time passed in).
//!
//! A peer is a member for this node only after its certificate passed
//! [`vpn_pki::verify_member`] for the PeerId of the connection it came on:
//! CA signature, validity at `now`, group, PeerId and the current CRL. Until
//! then it gets nothing private (see [`super::gate`]).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::SystemTime;

use libp2p::PeerId;
use serde::{Deserialize, Serialize};
use vpn_pki::{CaCertificate, Crl, MemberInfo};

use super::ids::to_pki_peer;

/// What a member tells verified members about its data plane, inside the
/// (Noise-authenticated) membership exchange. It is sent with the
/// certificate on the first exchange and again, as a repeated membership
/// request, whenever it changes (an address acquired or lost).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataInfo {
    /// The UDP port of its data plane (0: none).
    pub port: u16,
    /// Underlay IPs it can be reached at (configured addresses, then the
    /// IPs of its specific listen addresses), best first.
    pub ips: Vec<IpAddr>,
    /// The virtual addresses it holds now. A receiver believes an address
    /// only after it resolved it to the sender in the private DHT (or found
    /// it fixed in the sender's certificate).
    pub addresses: Vec<IpAddr>,
}

/// `membership` request: "here is my certificate".
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MembershipRequest {
    /// The sender's member certificate (DER).
    pub cert: Vec<u8>,
    /// The sender's data-plane information.
    #[serde(default)]
    pub data: DataInfo,
    /// The sender's current CRL (DER), if it has one: a member that joins
    /// (or comes back) after a revocation was broadcast learns it here.
    #[serde(default)]
    pub crl: Option<Vec<u8>>,
    /// The sender chose the receiver as one of its neighbours: both keep
    /// the connection open while idle.
    #[serde(default)]
    pub neighbour: bool,
}

/// `membership` response.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum MembershipResponse {
    /// The requester's certificate was accepted; here is mine.
    Accepted {
        /// The responder's member certificate (DER).
        cert: Vec<u8>,
        /// The responder's data-plane information.
        #[serde(default)]
        data: DataInfo,
        /// The responder's current CRL (DER), if it has one.
        #[serde(default)]
        crl: Option<Vec<u8>>,
    },
    /// The requester's certificate was refused.
    Refused {
        /// Why (the `vpn_pki::PkiError` text).
        reason: String,
    },
}

/// A verified member.
#[derive(Clone, Debug)]
pub struct Member {
    /// Its certificate (DER).
    pub cert: Vec<u8>,
    /// What the certificate proves.
    pub info: MemberInfo,
}

/// What a node knows about its group and which peers it has verified.
#[derive(Debug)]
pub struct MemberTable {
    group: String,
    ca: CaCertificate,
    crl: Option<Crl>,
    members: HashMap<PeerId, Member>,
}

impl MemberTable {
    /// A table for `group` under `ca`, with the current CRL if any.
    pub fn new(group: String, ca: CaCertificate, crl: Option<Crl>) -> Self {
        Self {
            group,
            ca,
            crl,
            members: HashMap::new(),
        }
    }

    /// The group.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// The group CA.
    pub fn ca(&self) -> &CaCertificate {
        &self.ca
    }

    /// The current CRL, if any.
    pub fn crl(&self) -> Option<&Crl> {
        self.crl.as_ref()
    }

    /// Whether `addr` is a host address of one of the group's ranges.
    pub fn in_range(&self, addr: IpAddr) -> bool {
        self.ca.ranges().iter().any(|r| r.is_host_address(addr))
    }

    /// Checks a certificate presented by `peer` (the PeerId of the
    /// authenticated connection) at `now`, without recording it.
    pub fn check(
        &self,
        peer: &PeerId,
        cert: &[u8],
        now: SystemTime,
    ) -> Result<MemberInfo, vpn_pki::PkiError> {
        // A verified member's own certificate again (claims, repeated
        // exchanges): no second signature check. `recheck` expels members
        // whose certificate expired or a newer CRL revoked, so a member in
        // the table is valid up to its validity bounds.
        if let Some(m) = self.members.get(peer) {
            if m.cert == cert && now >= m.info.not_before && now < m.info.not_after {
                return Ok(m.info.clone());
            }
        }
        self.verify(peer, cert, now)
    }

    /// The full check (signatures, validity, group, PeerId, CRL).
    fn verify(
        &self,
        peer: &PeerId,
        cert: &[u8],
        now: SystemTime,
    ) -> Result<MemberInfo, vpn_pki::PkiError> {
        vpn_pki::verify_member(
            cert,
            &self.ca,
            self.crl.as_ref(),
            &to_pki_peer(peer),
            &self.group,
            now,
        )
    }

    /// Checks and, if it passes, records `peer` as a member. Returns whether
    /// it is newly verified.
    pub fn admit(
        &mut self,
        peer: PeerId,
        cert: &[u8],
        now: SystemTime,
    ) -> Result<bool, vpn_pki::PkiError> {
        let info = self.check(&peer, cert, now)?;
        Ok(self
            .members
            .insert(
                peer,
                Member {
                    cert: cert.to_vec(),
                    info,
                },
            )
            .is_none())
    }

    /// Whether `peer` is a verified member.
    pub fn is_member(&self, peer: &PeerId) -> bool {
        self.members.contains_key(peer)
    }

    /// The verified member `peer`.
    pub fn get(&self, peer: &PeerId) -> Option<&Member> {
        self.members.get(peer)
    }

    /// Verified members.
    pub fn members(&self) -> impl Iterator<Item = (&PeerId, &Member)> {
        self.members.iter()
    }

    /// Number of verified members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether no peer is verified.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Installs a newer CRL (refuses one that does not verify against the CA
    /// at `now` or does not supersede the current one).
    pub fn set_crl(&mut self, crl: Crl, now: SystemTime) -> Result<(), vpn_pki::PkiError> {
        crl.verify(&self.ca, now)?;
        if let Some(cur) = &self.crl {
            if !crl.supersedes(cur) {
                return Err(vpn_pki::PkiError::InvalidInput {
                    what: "crl",
                    reason: "does not supersede the current CRL".into(),
                });
            }
        }
        self.crl = Some(crl);
        Ok(())
    }

    /// Re-checks every member at `now` (expiry, CRL); removes and returns the
    /// ones that no longer pass, with the reason.
    pub fn recheck(&mut self, now: SystemTime) -> Vec<(PeerId, vpn_pki::PkiError)> {
        let failed: Vec<_> = self
            .members
            .iter()
            .filter_map(|(p, m)| self.verify(p, &m.cert, now).err().map(|e| (*p, e)))
            .collect();
        for (p, _) in &failed {
            self.members.remove(p);
        }
        failed
    }

    /// Forgets `peer`.
    pub fn remove(&mut self, peer: &PeerId) -> Option<Member> {
        self.members.remove(peer)
    }
}
