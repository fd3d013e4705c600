//! The key state of one peer: current, previous and pending sessions, the
//! handshake in progress and its timers.

use std::collections::BTreeSet;
use std::time::Duration;

use ring::agreement::EphemeralPrivateKey;

mod timers;

use super::crypto::{self, Entropy, Identity, Transcript};
use super::wire::{Ack, Confirm, Init, Message, Reject, RejectReason, Reply, TAG_LEN};
use super::{Config, Event, RxKey, SessionError, TxKey};

/// How many index draws before giving up (only reachable when the index
/// space is nearly full or the entropy source is broken).
const INDEX_DRAWS: usize = 64;

/// Receive-only keys kept after switches. Two back-to-back switches (a
/// handshake of each side completing within one round trip) must not evict a
/// key the peer may still be sending on before its grace window ends; when a
/// third switch comes the oldest goes.
const MAX_PREVIOUS: usize = 2;

/// What a peer operation produces; the manager adds the peer.
#[derive(Debug)]
pub(super) enum Out {
    Send(Vec<u8>),
    Install { tx: Option<TxKey>, rx: Vec<RxKey> },
    Remove,
    Event(Event),
}

/// What a peer operation may touch besides the peer.
pub(super) struct Ctx<'a, E> {
    pub cfg: &'a Config,
    pub local: &'a Identity,
    pub entropy: &'a mut E,
    pub indices: &'a mut BTreeSet<u32>,
    pub out: &'a mut Vec<Out>,
}

impl<E: Entropy> Ctx<'_, E> {
    fn alloc_index(&mut self) -> Result<u32, SessionError> {
        for _ in 0..INDEX_DRAWS {
            let mut b = [0; 4];
            self.entropy.fill(&mut b);
            let i = u32::from_le_bytes(b);
            if i != 0 && self.indices.insert(i) {
                return Ok(i);
            }
        }
        Err(SessionError::IndicesExhausted)
    }

    fn free(&mut self, index: u32) {
        let was = self.indices.remove(&index);
        debug_assert!(was, "freeing index {index} that was not allocated");
    }

    fn retry_at(&mut self, now: Duration) -> Duration {
        let mut b = [0; 8];
        self.entropy.fill(&mut b);
        let span = self.cfg.rekey_jitter.as_nanos() as u64;
        let jitter = match span {
            0 => 0,
            s => u64::from_le_bytes(b) % (s + 1),
        };
        now + self.cfg.rekey_timeout + Duration::from_nanos(jitter)
    }
}

/// One negotiated session (both directions).
struct Keys {
    local_index: u32,
    remote_index: u32,
    tx: [u8; 32],
    rx: [u8; 32],
    created: Duration,
    /// Whether we were the initiator of this session.
    initiator: bool,
    /// Packets reported sent on this key.
    sent: u64,
    /// Whether any traffic was reported while this was the current key.
    traffic: bool,
    /// Responder only: the tag the initiator's Confirm must carry.
    confirm_tag: [u8; TAG_LEN],
    /// Responder only, while pending: the Init and our Reply, so that a
    /// repeated Init gets the same Reply instead of a second session.
    answer: Option<Box<(Init, Reply)>>,
}

impl Keys {
    fn rx_key(&self) -> RxKey {
        RxKey {
            key: self.rx,
            local_index: self.local_index,
        }
    }
}

/// The session that was current before the last switch: receive only.
struct Previous {
    keys: Keys,
    /// Removal at the latest: `reject_after_time + rekey_attempt_time`
    /// after the key was made.
    cap: Duration,
    /// Removal time; `None` while the initiator waits for the Ack (the
    /// responder may still send on this key).
    until: Option<Duration>,
}

enum Handshake {
    /// Our Init is out.
    AwaitReply {
        private: EphemeralPrivateKey,
        init: Init,
        binding: [u8; 32],
        retry_at: Duration,
    },
    /// We installed the keys of our handshake; the Confirm is out.
    AwaitAck {
        confirm: Confirm,
        retry_at: Duration,
    },
    /// Lost a collision (or a Reply failed to verify): wait, then initiate
    /// again unless the peer's handshake completed meanwhile.
    Wait { until: Duration },
}

pub(super) struct Peer {
    remote: Identity,
    current: Option<Keys>,
    /// Oldest first, at most [`MAX_PREVIOUS`].
    previous: Vec<Previous>,
    /// Responder: receive key installed, waiting for the Confirm.
    next: Option<Keys>,
    handshake: Option<Handshake>,
    /// Start of the handshake attempt (for `rekey_attempt_time`).
    attempt_started: Duration,
    installed: Option<(Option<TxKey>, Vec<RxKey>)>,
}

impl Peer {
    pub fn new(remote: Identity) -> Self {
        Self {
            remote,
            current: None,
            previous: Vec::new(),
            next: None,
            handshake: None,
            attempt_started: Duration::ZERO,
            installed: None,
        }
    }

    pub fn remote(&self) -> &Identity {
        &self.remote
    }

    /// Every receiver index this peer holds (for invariant checks).
    #[cfg(test)]
    pub fn indices(&self) -> Vec<u32> {
        let mut v = Vec::new();
        v.extend(self.current.as_ref().map(|k| k.local_index));
        v.extend(self.previous.iter().map(|p| p.keys.local_index));
        v.extend(self.next.as_ref().map(|k| k.local_index));
        if let Some(Handshake::AwaitReply { init, .. }) = &self.handshake {
            v.push(init.initiator_index);
        }
        v
    }

    /// The key set the data plane should hold for this peer.
    pub fn desired(&self) -> (Option<TxKey>, Vec<RxKey>) {
        let tx = self.current.as_ref().map(|k| TxKey {
            key: k.tx,
            remote_index: k.remote_index,
            initial_counter: 0,
        });
        let mut rx = Vec::new();
        rx.extend(self.current.as_ref().map(Keys::rx_key));
        rx.extend(self.next.as_ref().map(Keys::rx_key));
        rx.extend(self.previous.iter().rev().map(|p| p.keys.rx_key()));
        (tx, rx)
    }

    pub fn has_tx(&self) -> bool {
        self.current.is_some()
    }

    /// Emits `Install`/`Remove` if the desired key set changed.
    pub fn sync<E>(&mut self, ctx: &mut Ctx<'_, E>) {
        let (tx, rx) = self.desired();
        if tx.is_none() && rx.is_empty() {
            if self.installed.take().is_some() {
                ctx.out.push(Out::Remove);
            }
            return;
        }
        if self.installed.as_ref() != Some(&(tx, rx.clone())) {
            self.installed = Some((tx, rx.clone()));
            ctx.out.push(Out::Install { tx, rx });
        }
    }

    fn drop_keys<E: Entropy>(ctx: &mut Ctx<'_, E>, keys: Option<Keys>) {
        if let Some(k) = keys {
            ctx.free(k.local_index);
        }
    }

    fn abandon_handshake<E: Entropy>(&mut self, ctx: &mut Ctx<'_, E>) {
        if let Some(Handshake::AwaitReply { init, .. }) = self.handshake.take() {
            ctx.free(init.initiator_index);
        }
    }

    /// Drops everything (teardown, removal, identity change).
    pub fn clear<E: Entropy>(&mut self, ctx: &mut Ctx<'_, E>) {
        self.abandon_handshake(ctx);
        self.handshake = None;
        Self::drop_keys(ctx, self.current.take());
        Self::drop_keys(ctx, self.next.take());
        for p in std::mem::take(&mut self.previous) {
            ctx.free(p.keys.local_index);
        }
        self.sync(ctx);
    }

    /// Sends a new Init. `fresh` starts a new `rekey_attempt_time` window.
    fn initiate<E: Entropy>(
        &mut self,
        now: Duration,
        ctx: &mut Ctx<'_, E>,
        fresh: bool,
    ) -> Result<(), SessionError> {
        self.abandon_handshake(ctx);
        self.handshake = None;
        if fresh {
            self.attempt_started = now;
        }
        let private = ctx.entropy.ephemeral_key()?;
        let ephemeral = crypto::public_key(&private)?;
        let index = ctx.alloc_index()?;
        let mut nonce = [0; 16];
        ctx.entropy.fill(&mut nonce);
        let binding = crypto::binding(ctx.local, &self.remote);
        let init = Init {
            ephemeral,
            initiator_index: index,
            nonce,
            binding,
        };
        ctx.out
            .push(Out::Send(Message::Init(init.clone()).encode()));
        let retry_at = ctx.retry_at(now);
        self.handshake = Some(Handshake::AwaitReply {
            private,
            init,
            binding,
            retry_at,
        });
        Ok(())
    }

    /// The daemon wants to send to this peer.
    pub fn connect<E: Entropy>(
        &mut self,
        now: Duration,
        ctx: &mut Ctx<'_, E>,
    ) -> Result<(), SessionError> {
        // With `next` the peer's handshake is under way (we answered its
        // Init): its Confirm, retried by the peer, gives us a sending key.
        // One handshake per pair at a time keeps both sides on one session.
        if self.current.is_some() || self.handshake.is_some() || self.next.is_some() {
            return Ok(());
        }
        self.initiate(now, ctx, true)
    }

    pub fn handle_init<E: Entropy>(
        &mut self,
        now: Duration,
        ctx: &mut Ctx<'_, E>,
        init: Init,
    ) -> Result<Message, SessionError> {
        let reject = |reason| {
            Ok(Message::Reject(Reject {
                initiator_index: init.initiator_index,
                reason,
            }))
        };
        if init.binding != crypto::binding(&self.remote, ctx.local) {
            return reject(RejectReason::Binding);
        }
        if let Some((i, r)) = self.next.as_ref().and_then(|k| k.answer.as_deref()) {
            if *i == init {
                return Ok(Message::Reply(r.clone()));
            }
        }
        match &self.handshake {
            Some(Handshake::AwaitReply { init: ours, .. }) => {
                if ctx.local.peer_id < self.remote.peer_id {
                    // We stay initiator; the peer waits for our Init. Send
                    // it again now: the peer is reachable, and if our Init
                    // was lost it would otherwise wait for our retry timer
                    // (a repeat is answered with the same Reply).
                    ctx.out
                        .push(Out::Send(Message::Init(ours.clone()).encode()));
                    return reject(RejectReason::Collision);
                }
                self.abandon_handshake(ctx);
            }
            Some(Handshake::Wait { .. }) => self.handshake = None,
            Some(Handshake::AwaitAck { .. }) | None => {}
        }
        let private = ctx.entropy.ephemeral_key()?;
        let ephemeral = crypto::public_key(&private)?;
        let index = ctx.alloc_index()?;
        let t = Transcript {
            binding: &init.binding,
            initiator_ephemeral: &init.ephemeral,
            initiator_index: init.initiator_index,
            nonce: &init.nonce,
            responder_ephemeral: &ephemeral,
            responder_index: index,
        };
        let derived = match crypto::derive(private, &init.ephemeral, &t) {
            Ok(d) => d,
            Err(e) => {
                ctx.free(index);
                return Err(e);
            }
        };
        let reply = Reply {
            ephemeral,
            responder_index: index,
            initiator_index: init.initiator_index,
            tag: derived.reply_tag(),
        };
        Self::drop_keys(ctx, self.next.take());
        self.next = Some(Keys {
            local_index: index,
            remote_index: init.initiator_index,
            tx: derived.r2i,
            rx: derived.i2r,
            created: now,
            initiator: false,
            sent: 0,
            traffic: false,
            confirm_tag: derived.confirm_tag(),
            answer: Some(Box::new((init, reply.clone()))),
        });
        // The receive key is installed before the Reply leaves.
        self.sync(ctx);
        Ok(Message::Reply(reply))
    }

    /// Replaces the current session by `new`; the old one becomes the
    /// previous (receive-only) one until `until`.
    fn switch<E: Entropy>(&mut self, ctx: &mut Ctx<'_, E>, new: Keys, until: Option<Duration>) {
        let had_tx = self.current.is_some();
        if let Some(keys) = self.current.take() {
            // A receive-only key goes `previous_grace` after the peer
            // provably switched (`until`); this cap only bounds a key whose
            // handshake neither completes nor gives up.
            let cap = keys.created + ctx.cfg.reject_after_time + ctx.cfg.rekey_attempt_time;
            self.previous.push(Previous { keys, until, cap });
        }
        while self.previous.len() > MAX_PREVIOUS {
            let oldest = self.previous.remove(0);
            ctx.free(oldest.keys.local_index);
        }
        self.current = Some(new);
        self.sync(ctx);
        if !had_tx {
            ctx.out.push(Out::Event(Event::Established));
        }
    }

    pub fn handle_confirm<E: Entropy>(
        &mut self,
        now: Duration,
        ctx: &mut Ctx<'_, E>,
        c: Confirm,
    ) -> Result<Message, SessionError> {
        let ack = Message::Ack(Ack {
            initiator_index: c.initiator_index,
            responder_index: c.responder_index,
        });
        let matches =
            |k: &Keys| k.local_index == c.responder_index && k.remote_index == c.initiator_index;
        if let Some(next) = self.next.as_ref().filter(|k| matches(k)) {
            let mut diff = 0u8;
            for (a, b) in next.confirm_tag.iter().zip(&c.tag) {
                diff |= a ^ b;
            }
            if diff != 0 {
                return Err(SessionError::BadTag);
            }
            let mut next = self.next.take().ok_or(SessionError::Stale)?;
            next.answer = None;
            if let Some(Handshake::Wait { .. }) = self.handshake {
                self.handshake = None;
            }
            self.switch(ctx, next, Some(now + ctx.cfg.previous_grace));
            return Ok(ack);
        }
        if self
            .current
            .as_ref()
            .is_some_and(|k| matches(k) && !k.initiator)
        {
            // A retransmitted Confirm (our Ack was lost).
            return Ok(ack);
        }
        Ok(Message::Reject(Reject {
            initiator_index: c.initiator_index,
            reason: RejectReason::UnknownSession,
        }))
    }

    pub fn handle_reply<E: Entropy>(
        &mut self,
        now: Duration,
        ctx: &mut Ctx<'_, E>,
        r: Reply,
    ) -> Result<(), SessionError> {
        let matches = matches!(&self.handshake,
            Some(Handshake::AwaitReply { init, .. }) if init.initiator_index == r.initiator_index);
        if !matches {
            let repeat = matches!(&self.handshake,
                Some(Handshake::AwaitAck { confirm, .. })
                    if confirm.initiator_index == r.initiator_index
                        && confirm.responder_index == r.responder_index);
            // A repeated Init got the same Reply twice: nothing to do.
            return if repeat {
                Ok(())
            } else {
                Err(SessionError::Stale)
            };
        }
        let Some(Handshake::AwaitReply {
            private,
            init,
            binding,
            retry_at,
        }) = self.handshake.take()
        else {
            return Err(SessionError::Stale);
        };
        let t = Transcript {
            binding: &binding,
            initiator_ephemeral: &init.ephemeral,
            initiator_index: init.initiator_index,
            nonce: &init.nonce,
            responder_ephemeral: &r.ephemeral,
            responder_index: r.responder_index,
        };
        let derived = crypto::derive(private, &r.ephemeral, &t)
            .and_then(|d| d.check(d.reply_tag(), &r.tag).map(|()| d));
        let derived = match derived {
            Ok(d) => d,
            Err(e) => {
                // Retry with a fresh key at the normal retry time.
                ctx.free(init.initiator_index);
                self.handshake = Some(Handshake::Wait { until: retry_at });
                return Err(e);
            }
        };
        let keys = Keys {
            local_index: init.initiator_index,
            remote_index: r.responder_index,
            tx: derived.i2r,
            rx: derived.r2i,
            created: now,
            initiator: true,
            sent: 0,
            traffic: false,
            confirm_tag: [0; TAG_LEN],
            answer: None,
        };
        // Install first, then confirm: the responder switches on the Confirm.
        self.switch(ctx, keys, None);
        let confirm = Confirm {
            initiator_index: init.initiator_index,
            responder_index: r.responder_index,
            tag: derived.confirm_tag(),
        };
        ctx.out
            .push(Out::Send(Message::Confirm(confirm.clone()).encode()));
        let retry_at = ctx.retry_at(now);
        self.handshake = Some(Handshake::AwaitAck { confirm, retry_at });
        Ok(())
    }

    fn release_previous(&mut self, now: Duration, grace: Duration) {
        for p in &mut self.previous {
            if p.until.is_none() {
                p.until = Some(now + grace);
            }
        }
    }

    pub fn handle_ack<E: Entropy>(
        &mut self,
        now: Duration,
        ctx: &mut Ctx<'_, E>,
        a: Ack,
    ) -> Result<(), SessionError> {
        match &self.handshake {
            Some(Handshake::AwaitAck { confirm, .. })
                if confirm.initiator_index == a.initiator_index
                    && confirm.responder_index == a.responder_index =>
            {
                self.handshake = None;
                self.release_previous(now, ctx.cfg.previous_grace);
                Ok(())
            }
            _ => Err(SessionError::Stale),
        }
    }

    pub fn handle_reject<E: Entropy>(
        &mut self,
        now: Duration,
        ctx: &mut Ctx<'_, E>,
        rj: Reject,
    ) -> Result<(), SessionError> {
        match &self.handshake {
            Some(Handshake::AwaitReply { init, .. })
                if init.initiator_index == rj.initiator_index =>
            {
                self.abandon_handshake(ctx);
                match rj.reason {
                    RejectReason::Collision => {
                        self.handshake = Some(Handshake::Wait {
                            until: now + 2 * ctx.cfg.rekey_timeout,
                        });
                    }
                    RejectReason::Binding
                    | RejectReason::NotAdmitted
                    | RejectReason::UnknownSession => {
                        ctx.out.push(Out::Event(Event::HandshakeFailed));
                    }
                }
                Ok(())
            }
            Some(Handshake::AwaitAck { confirm, .. })
                if confirm.initiator_index == rj.initiator_index =>
            {
                // The responder lost the session (it restarted). If we
                // still send on it, those keys are useless: start over at
                // once, unless the peer's own handshake is under way.
                self.handshake = None;
                self.release_previous(now, ctx.cfg.previous_grace);
                if self
                    .current
                    .as_ref()
                    .is_some_and(|k| k.local_index == rj.initiator_index)
                {
                    Self::drop_keys(ctx, self.current.take());
                    self.sync(ctx);
                    ctx.out.push(Out::Event(Event::Expired));
                    if self.next.is_none() {
                        return self.initiate(now, ctx, true);
                    }
                }
                Ok(())
            }
            _ => Err(SessionError::Stale),
        }
    }
}
