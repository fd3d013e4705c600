//! `vpn-control dht-node`: a public-DHT-only node (a bootstrap node for
//! members; not a group member, holds no certificate).

use std::path::Path;

use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, StreamProtocol};
use tokio::signal::unix::{signal, SignalKind};

use super::DaemonError;
use crate::overlay::{self, PublicNode, TransportKind};

/// Splits `/.../p2p/<PeerId>` into the PeerId and the address before it.
fn split_p2p(m: &Multiaddr) -> Result<(libp2p::PeerId, Multiaddr), String> {
    let mut addr = m.clone();
    match addr.pop() {
        Some(Protocol::P2p(peer)) => Ok((peer, addr)),
        _ => Err(format!("{m} does not end in /p2p/<PeerId>")),
    }
}

/// The address printed for a listen address: refused when its port is 0
/// (the actual port would be unknown to whoever reads the line).
fn announced(listen: &Multiaddr) -> Result<Multiaddr, String> {
    let port = listen.iter().find_map(|p| match p {
        Protocol::Tcp(port) => Some(port),
        _ => None,
    });
    match port {
        Some(0) => Err(format!("{listen}: give an explicit TCP port (not 0)")),
        Some(_) => Ok(listen.clone()),
        None => Err(format!("{listen}: only TCP listen addresses are supported")),
    }
}

/// Runs the node until SIGINT/SIGTERM. Prints
/// `dht-node listening on <multiaddr>/p2p/<PeerId>` once the listener is
/// bound (libp2p's TCP transport binds in `listen_on`).
pub async fn run(
    identity: &Path,
    listen: Multiaddr,
    bootstrap: &[Multiaddr],
    kad_protocol: &str,
) -> Result<(), DaemonError> {
    let (id, created) = vpn_pki::NodeIdentity::load_or_create(identity)
        .map_err(|e| DaemonError::Config(format!("--identity {}: {e}", identity.display())))?;
    if created {
        tracing::info!("created the node identity {}", identity.display());
    }
    let shown = announced(&listen).map_err(|e| DaemonError::Config(format!("--listen {e}")))?;
    let protocol = StreamProtocol::try_from_owned(kad_protocol.to_owned())
        .map_err(|e| DaemonError::Config(format!("--kad-protocol {kad_protocol:?}: {e}")))?;
    let peers = bootstrap
        .iter()
        .map(split_p2p)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| DaemonError::Config(format!("--bootstrap {e}")))?;
    let kp = overlay::ids::keypair_of(&id);
    let mut node = PublicNode::new(kp, TransportKind::Tcp, listen.clone(), protocol)
        .map_err(|e| DaemonError::Overlay(e.to_string()))?;
    for (peer, addr) in peers {
        node.add_peer(peer, addr);
    }
    let peer_id = node.peer_id();
    let mut int = signal(SignalKind::interrupt()).map_err(|e| DaemonError::Io(e.to_string()))?;
    let mut term = signal(SignalKind::terminate()).map_err(|e| DaemonError::Io(e.to_string()))?;
    let task = tokio::spawn(node.run());
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "dht-node listening on {shown}/p2p/{peer_id}");
        let _ = out.flush();
    }
    tracing::info!("public DHT node {peer_id} on {shown} ({kad_protocol})");
    tokio::select! {
        _ = int.recv() => tracing::info!("SIGINT: stopping"),
        _ = term.recv() => tracing::info!("SIGTERM: stopping"),
    }
    task.abort();
    let _ = task.await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        let m: Multiaddr =
            "/ip4/10.0.0.1/tcp/4001/p2p/12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"
                .parse()
                .unwrap();
        let (peer, addr) = split_p2p(&m).unwrap();
        assert_eq!(addr.to_string(), "/ip4/10.0.0.1/tcp/4001");
        assert_eq!(
            peer.to_string(),
            "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"
        );
        assert!(split_p2p(&addr).is_err());
        assert!(announced(&"/ip4/10.0.0.1/tcp/0".parse().unwrap()).is_err());
        assert!(announced(&"/ip4/10.0.0.1/udp/4001".parse().unwrap()).is_err());
        assert_eq!(announced(&addr).unwrap(), addr);
    }
}
