//! Names and keys of the overlay: protocol names, DHT keys, identity
//! conversions between `vpn-pki` (libp2p-identity 0.2) and libp2p 0.57
//! (libp2p-identity 0.3).

use std::net::IpAddr;

use libp2p::identity::Keypair;
use libp2p::{PeerId, StreamProtocol};
use sha2::{Digest, Sha256};

/// The public DHT's default protocol: the standard libp2p Kademlia wire
/// protocol of the IPFS DHT, so a group can bootstrap from public nodes.
pub const DEFAULT_PUBLIC_KAD_PROTOCOL: &str = "/ipfs/kad/1.0.0";
/// Identify's protocol name (the standard one).
pub const IDENTIFY_PROTOCOL: &str = "/ipfs/id/1.0.0";

/// The provider key of a group in the public DHT: the sha2-256 multihash
/// (`0x12 0x20 || digest`) of `"private:<group>"` (paper IV-B). Other
/// Kademlia implementations refuse keys that are not multihashes or CIDs.
pub fn provider_key(group: &str) -> Vec<u8> {
    let digest = Sha256::digest(format!("private:{group}").as_bytes());
    let mut k = Vec::with_capacity(34);
    k.extend_from_slice(&[0x12, 0x20]);
    k.extend_from_slice(&digest);
    k
}

/// The private DHT's key of an address claim.
pub fn address_key(addr: IpAddr) -> Vec<u8> {
    format!("/groupvpn/addr/{addr}").into_bytes()
}

fn proto(s: String) -> StreamProtocol {
    StreamProtocol::try_from_owned(s).expect("protocol names start with '/'")
}

/// The members-only Kademlia protocol of `group`.
pub fn private_kad_protocol(group: &str) -> StreamProtocol {
    proto(format!("/groupvpn/{group}/kad/1.0.0"))
}

/// The membership (certificate exchange) protocol of `group`.
pub fn membership_protocol(group: &str) -> StreamProtocol {
    proto(format!("/groupvpn/{group}/membership/1.0.0"))
}

/// The session (key exchange) protocol of `group`.
pub fn session_protocol(group: &str) -> StreamProtocol {
    proto(format!("/groupvpn/{group}/session/1.0.0"))
}

/// The gossipsub topic of `group` (revocation broadcast).
pub fn group_topic(group: &str) -> String {
    format!("/groupvpn/{group}/events")
}

/// A libp2p 0.57 PeerId as the `vpn-pki` (libp2p-identity 0.2) type.
pub fn to_pki_peer(p: &PeerId) -> vpn_pki::PeerId {
    vpn_pki::PeerId::from_bytes(&p.to_bytes())
        .expect("the multihash encoding is stable across libp2p-identity 0.2/0.3")
}

/// A `vpn-pki` PeerId as the libp2p 0.57 type.
pub fn from_pki_peer(p: &vpn_pki::PeerId) -> PeerId {
    PeerId::from_bytes(&p.to_bytes())
        .expect("the multihash encoding is stable across libp2p-identity 0.2/0.3")
}

/// The libp2p 0.57 key pair of a node identity.
pub fn keypair_of(id: &vpn_pki::NodeIdentity) -> Keypair {
    let kp = id
        .keypair()
        .try_into_ed25519()
        .expect("node identities are Ed25519");
    let mut bytes = kp.to_bytes();
    Keypair::ed25519_from_bytes(&mut bytes[..32]).expect("32-byte Ed25519 secret")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_key_is_sha256_multihash() {
        let k = provider_key("lab");
        assert_eq!(k.len(), 34);
        assert_eq!(&k[..2], &[0x12, 0x20]);
        // Decodes as a multihash with code sha2-256.
        let mh = libp2p::multihash::Multihash::<64>::from_bytes(&k).unwrap();
        assert_eq!(mh.code(), 0x12);
        assert_eq!(mh.digest(), Sha256::digest(b"private:lab").as_slice());
        assert_ne!(provider_key("lab"), provider_key("lab2"));
    }

    #[test]
    fn identity_conversions_agree() {
        let id = vpn_pki::NodeIdentity::generate();
        let kp = keypair_of(&id);
        assert_eq!(from_pki_peer(&id.peer_id()), kp.public().to_peer_id());
        assert_eq!(to_pki_peer(&kp.public().to_peer_id()), id.peer_id());
    }
}
