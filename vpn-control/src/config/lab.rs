//! Lab peers (static keys from the file) as the data plane's desired state.

use std::collections::BTreeMap;

use super::Config;
use crate::dataplane::{DesiredPeer, DesiredState, RxKey, TxKey};

impl Config {
    /// The desired state for the lab peers: ids 1..=n in file order. Every
    /// send session starts at `now_unix_nanos`, so a restarted node with the
    /// same static key never reuses a nonce and never falls behind the
    /// peer's replay window (no node sends more than one packet per
    /// nanosecond).
    pub fn desired_state(&self, now_unix_nanos: u64) -> DesiredState {
        let peers = self
            .peers
            .iter()
            .enumerate()
            .map(|(n, p)| {
                let id = n as u32 + 1;
                let peer = DesiredPeer {
                    id,
                    name: p.name.clone(),
                    endpoint: Some(p.endpoint),
                    allowed: p.allowed_ips.clone(),
                    tx: Some(TxKey {
                        key: p.send_key.0,
                        remote_index: p.remote_index,
                        initial_counter: now_unix_nanos,
                    }),
                    rx: vec![RxKey {
                        key: p.recv_key.0,
                        local_index: p.local_index,
                    }],
                };
                (id, peer)
            })
            .collect::<BTreeMap<_, _>>();
        DesiredState { peers }
    }
}
