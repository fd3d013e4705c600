//! Sans-IO session core: negotiates, rotates and removes the data-plane keys
//! of every peer. Bytes and `now` go in; [`Action`]s come out. There is no
//! clock, socket, task or random source inside: time is a [`Duration`] since
//! any fixed origin the caller picks, and randomness comes through
//! [`Entropy`].
//!
//! # Session keys
//!
//! **Where it runs.** Over an already-authenticated request-response stream:
//! libp2p's Noise has proved both PeerIds and the daemon has checked the
//! peer's group certificate (CA signature, validity, group, PeerId, CRL)
//! before it calls [`SessionManager::admit`]. The core adds forward secrecy
//! (fresh ephemeral X25519 keys per session) and binds each session to the
//! two identities it was made for.
//!
//! **Handshake.** Two request-response round trips (message layout in
//! [`wire`]):
//!
//! 1. *Init* (request, initiator to responder): version, the initiator's
//!    ephemeral X25519 public key `Ei`, its new receiver index `Ii`, a 16-byte
//!    random nonce and the *binding* `B = SHA-256(label, PeerId_i, certfp_i,
//!    PeerId_r, certfp_r)` (length-prefixed fields). The responder computes
//!    `B` from its own view and answers *Reject(Binding)* on a mismatch.
//! 2. *Reply* (response): the responder's ephemeral key `Er`, its receiver
//!    index `Ir`, `Ii` echoed, and a 16-byte tag. Both sides compute
//!    `TH = SHA-256(label, B, Ei, Ii, nonce, Er, Ir)`,
//!    `PRK = HKDF-Extract(salt = TH, X25519(e, E'))` and expand it
//!    (HKDF-SHA256, ring) into `K_i→r`, `K_r→i` and a confirmation key; the
//!    tags are HMAC-SHA256 under the confirmation key (and `TH`), truncated
//!    to 16 bytes. The two directions never share a key; the responder
//!    installs the receive key `(Ir, K_i→r)` *before* it replies.
//! 3. *Confirm* (request): `Ii`, `Ir` and the initiator's tag, sent after the
//!    initiator installed `tx = (K_i→r, Ir)` and `rx = (Ii, K_r→i)`.
//! 4. *Ack* (response): the responder has switched its sending key.
//!
//! **When sending switches (the rule that loses no packet in flight).**
//! A side starts sending on a new key only once the peer provably holds the
//! matching receive key:
//! * the initiator switches when the Reply arrives (the responder installed
//!   its receive key before replying);
//! * the responder switches when the Confirm arrives (the initiator
//!   installed its receive key before confirming).
//!
//! Until then each keeps sending on the old key, and the old receive key
//! stays installed: on the responder for [`Config::previous_grace`] after the
//! switch; on the initiator until the Ack plus `previous_grace` (the
//! responder may still be sending on the old key until it has the Confirm),
//! or `previous_grace` after the handshake gave up. Both are capped at the
//! old key's `reject_after_time + rekey_attempt_time` (see "Timers" for why
//! not `reject_after_time`). Up to two such
//! receive-only keys are kept, so a peer holds at most four receive keys
//! (current, pending, two previous). The daemon must apply actions in the
//! order they come out (an `Install` before the `Send` that follows it) and
//! must apply the actions a [`SessionManager::handle_request`] call queued
//! before it transmits that call's response.
//!
//! **One handshake per pair at a time.** A side that answered the peer's
//! Init and waits for its Confirm neither rekeys nor initiates
//! ([`SessionManager::connect`] is then a no-op): the peer retries the
//! Confirm, which gives this side its sending key. Without this rule two
//! handshakes completing in opposite orders on the two sides leave each
//! side sending on a different session, and one of them loses its receive
//! key after the grace window (the randomized lossy-channel test found
//! exactly that). A pending answered handshake that never gets its Confirm
//! is dropped after `rekey_attempt_time + rekey_timeout`.
//!
//! **Receiver indices** are random `u32`s drawn through [`Entropy`], never 0,
//! unique among all sessions of this node (a collision draws again). Each
//! handshake attempt takes a fresh index and a fresh ephemeral key.
//!
//! **Timers** ([`Config::default`] mirrors WireGuard's):
//!
//! | timer | default | meaning |
//! |---|---|---|
//! | `rekey_after_time` | 120 s | the initiator of the current session starts a rekey when it is this old and traffic was reported on it (at once if traffic is reported later) |
//! | `responder_rekey_delay` | +10 s | the responder of the current session rekeys at `rekey_after_time` + this, if the initiator has not |
//! | `rekey_after_messages` | 2^60 | rekey once this many packets were reported sent on the key |
//! | `reject_after_time` | 180 s | a key older than this is removed, unless its rekey is still being retried (below) |
//! | `reject_after_messages` | 2^64 − 2^13 − 1 | sending key dropped past this count |
//! | `rekey_timeout` | 5 s | an unanswered Init (fresh key and index) or Confirm is retried after this … |
//! | `rekey_jitter` | 0–333 ms | … plus a random jitter |
//! | `rekey_attempt_time` | 90 s | a handshake that has not completed by then is given up ([`Event::HandshakeFailed`]) |
//! | `previous_grace` | 10 s | the previous receive key outlives the switch by this |
//!
//! A session with no reported traffic is not rekeyed and disappears at
//! `reject_after_time` ([`Event::Expired`]); the next packet for the peer
//! starts a new handshake ([`SessionManager::connect`]).
//!
//! **Where these differ from WireGuard: keys outlive `reject_after_time`
//! while their rekey is retried.** A rekey starts at `rekey_after_time`
//! (120 s) and may be retried for `rekey_attempt_time` (90 s), i.e. until
//! 210 s, but WireGuard drops the key at 180 s: under heavy control loss the
//! session then expires in the middle of its rekey and packets are lost
//! (the randomized test found it with 29 % loss). Here the current key is
//! kept past `reject_after_time` as long as a rekey is under way (our Init
//! is out or waits to be resent after a collision, or we answered the
//! peer's Init and wait for its Confirm), and dropped when that rekey gives
//! up; a receive-only previous key is kept until the peer provably switched
//! (plus `previous_grace`). No key is used longer than
//! `reject_after_time + rekey_attempt_time` (270 s by default) after its
//! handshake. A session with no rekey under way still expires at
//! `reject_after_time` exactly.
//!
//! **Simultaneous initiation.** When an Init arrives while our own Init to
//! the same peer is unanswered, the side with the lexicographically lower
//! PeerId bytes (the daemon passes `PeerId::to_bytes()`) stays initiator: it
//! answers *Reject(Collision)* and sends its own Init once more at once (the
//! peer is evidently reachable, and the first copy may have been lost); the
//! other abandons its attempt and answers the winner's Init. A responder
//! answers a repeated Init with the very same Reply (no second session), and
//! an initiator ignores a repeated Reply. A loser that is rejected without
//! having seen the winner's Init waits `2 × rekey_timeout` for it, then
//! initiates again, so no ordering deadlocks.
//!
//! **Restarts.** A restarted node has no sessions; its next handshake (its
//! own, or the peer's rekey, retried) replaces the peer's session with the
//! same rules. A Confirm for a session the responder no longer holds gets
//! *Reject(UnknownSession)*; if the initiator is sending on that session it
//! drops the key ([`Event::Expired`]) and starts over at once. A survivor
//! that only sends (and never hears from the restarted peer) would keep
//! sending on a dead index until its next rekey; the daemon therefore calls
//! [`SessionManager::teardown`] when the overlay connection to a peer
//! closes, and the next packet starts a new handshake.
//!
//! **Removal.** [`SessionManager::teardown`] (connection lost) and
//! [`SessionManager::remove`] (revoked or left the group) drop every key of
//! the peer at once ([`Action::Remove`]); expiry removes keys one by one.
//!
//! **Output.** [`Action::Install`] carries the peer's complete key set
//! (the sending key and every receive key) and maps 1:1 onto
//! `vpn_control::dataplane::{TxKey, RxKey}` in `DesiredPeer::{tx, rx}`; a
//! fresh key starts at counter 0 (each key is used with one counter
//! sequence only, so nonces never repeat). The next deadline is
//! [`SessionManager::poll_timeout`]; call [`SessionManager::handle_timeout`]
//! when it passes.
//!
//! **Packets waiting for a session** are held by the daemon in a
//! [`queue::PendingQueue`] (bounded per peer and in total, oldest dropped),
//! flushed on [`Event::Established`] and dropped on
//! [`Event::HandshakeFailed`]. The core never sees packets.

pub mod crypto;
mod manager;
mod peer;
pub mod queue;
pub mod wire;

#[cfg(test)]
mod tests;

use std::time::Duration;

pub use crypto::{Entropy, Identity, SystemEntropy};
pub use manager::SessionManager;
pub use queue::PendingQueue;

/// Key and index for sending to a peer (re-exported as
/// `vpn_control::dataplane::TxKey`; lab keys set `initial_counter` too).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TxKey {
    pub key: [u8; 32],
    /// The peer's receiver index for this session.
    pub remote_index: u32,
    /// First counter to use: 0 for every fresh key from a handshake; lab
    /// keys start at a time-based value so restarts never reuse a nonce.
    pub initial_counter: u64,
}

/// Key and index for receiving from a peer (re-exported as
/// `vpn_control::dataplane::RxKey`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct RxKey {
    pub key: [u8; 32],
    /// Our receiver index for this session.
    pub local_index: u32,
}

impl std::fmt::Debug for TxKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TxKey")
            .field("remote_index", &self.remote_index)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for RxKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RxKey")
            .field("local_index", &self.local_index)
            .finish_non_exhaustive()
    }
}

/// Something the daemon should know about, besides key changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// The peer has a sending key now (it had none): flush queued packets.
    Established,
    /// A handshake gave up (`rekey_attempt_time`, or the peer refused):
    /// drop queued packets if there is still no sending key.
    HandshakeFailed,
    /// The last sending key passed `reject_after_time` (or its message
    /// limit) with no replacement.
    Expired,
}

/// What the core asks the daemon to do, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action<P> {
    /// Send this request to the peer on the session protocol and pass the
    /// response to [`SessionManager::handle_response`].
    Send { peer: P, request: Vec<u8> },
    /// The peer's complete key set from now on (replaces the previous one).
    Install {
        peer: P,
        tx: Option<TxKey>,
        rx: Vec<RxKey>,
    },
    /// The peer has no keys at all any more.
    Remove { peer: P },
    /// A notification.
    Event { peer: P, event: Event },
}

/// Timers and limits; see the table in the module docs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub rekey_after_time: Duration,
    pub responder_rekey_delay: Duration,
    pub reject_after_time: Duration,
    pub rekey_after_messages: u64,
    pub reject_after_messages: u64,
    pub rekey_timeout: Duration,
    pub rekey_jitter: Duration,
    pub rekey_attempt_time: Duration,
    pub previous_grace: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            rekey_after_time: Duration::from_secs(120),
            responder_rekey_delay: Duration::from_secs(10),
            reject_after_time: Duration::from_secs(180),
            rekey_after_messages: 1 << 60,
            reject_after_messages: u64::MAX - (1 << 13),
            rekey_timeout: Duration::from_secs(5),
            rekey_jitter: Duration::from_millis(333),
            rekey_attempt_time: Duration::from_secs(90),
            previous_grace: Duration::from_secs(10),
        }
    }
}

impl Config {
    /// Checks the relations the state machine relies on.
    pub fn validate(&self) -> Result<(), SessionError> {
        let ok = !self.rekey_timeout.is_zero()
            && self.rekey_after_time < self.reject_after_time
            && self.rekey_after_time + self.responder_rekey_delay < self.reject_after_time
            && self.rekey_after_messages < self.reject_after_messages
            && self.rekey_attempt_time >= self.rekey_timeout;
        if ok {
            Ok(())
        } else {
            Err(SessionError::Config(
                "need 0 < rekey_timeout <= rekey_attempt_time, rekey_after_time + responder_rekey_delay < reject_after_time, rekey_after_messages < reject_after_messages",
            ))
        }
    }
}

/// Errors of the session core. None of them is fatal to the core: the
/// offending input is ignored and the state stays consistent.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SessionError {
    #[error("malformed session message: {0}")]
    Malformed(&'static str),
    #[error("unsupported session protocol version {0}")]
    Version(u8),
    #[error("unexpected message: {0}")]
    Unexpected(&'static str),
    #[error("message for a handshake or session that no longer exists")]
    Stale,
    #[error("peer is not admitted (certificate not checked or revoked)")]
    NotAdmitted,
    #[error("handshake tag does not verify")]
    BadTag,
    #[error("key agreement failed (invalid public key)")]
    Crypto,
    #[error("no free receiver index")]
    IndicesExhausted,
    #[error("invalid session config: {0}")]
    Config(&'static str),
}
