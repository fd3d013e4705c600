//! The per-input context a slot works with: config, identity, randomness,
//! the action queue and request ids.

use std::collections::VecDeque;
use std::net::IpAddr;

use super::claim::{dht_key, Claim};
use super::{Action, Config, Random, RequestId, Stats};

/// What a slot needs from its allocator while it handles one input.
pub(super) struct Ctx<'a> {
    pub cfg: &'a Config,
    pub group: &'a str,
    pub owner: &'a [u8],
    pub rng: &'a mut dyn Random,
    pub out: &'a mut VecDeque<Action>,
    pub next_id: &'a mut u64,
    pub stats: &'a mut Stats,
}

impl Ctx<'_> {
    fn id(&mut self) -> RequestId {
        *self.next_id += 1;
        RequestId(*self.next_id)
    }

    pub(super) fn get(&mut self, addr: IpAddr) -> RequestId {
        let id = self.id();
        self.stats.gets += 1;
        let key = dht_key(addr);
        self.out.push_back(Action::Get { id, key });
        id
    }

    pub(super) fn put(&mut self, claim: &Claim) -> RequestId {
        let id = self.id();
        self.stats.puts += 1;
        self.out.push_back(Action::Put {
            id,
            key: dht_key(claim.addr),
            value: claim.encode(),
            expires: claim.expiry,
        });
        id
    }
}
