//! The session protocol's messages and their binary encoding.
//!
//! Every message starts with a 4-byte header:
//!
//! | offset | size | field                                              |
//! |-------:|-----:|----------------------------------------------------|
//! | 0      | 1    | version, [`VERSION`] (= 1)                         |
//! | 1      | 1    | type: 1 Init, 2 Reply, 3 Confirm, 4 Ack, 5 Reject  |
//! | 2      | 2    | body length in bytes, u16 little endian            |
//!
//! The body length must equal both the number of bytes that follow and the
//! fixed size of the type's body; anything else is an error (trailing bytes
//! included). Integers are little endian. Bodies:
//!
//! * **Init** (84 bytes; initiator to responder, a request):
//!   ephemeral X25519 public key (32), initiator's receiver index (u32),
//!   nonce (16 random bytes), binding (32: SHA-256 over both PeerIds and both
//!   certificate fingerprints, see [`super::crypto::binding`]).
//! * **Reply** (56 bytes; the response to an Init): responder's ephemeral
//!   public key (32), responder's receiver index (u32), the initiator's
//!   receiver index echoed (u32), reply tag (16: HMAC-SHA256 under the
//!   confirmation key, truncated, proves the responder derived the same keys).
//! * **Confirm** (24 bytes; initiator to responder, a request): initiator's
//!   index (u32), responder's index (u32), confirm tag (16). Tells the
//!   responder that the initiator has installed the new keys.
//! * **Ack** (8 bytes; the response to a Confirm): initiator's index (u32),
//!   responder's index (u32).
//! * **Reject** (5 bytes; a response to an Init or Confirm): the initiator's
//!   index the request carried (u32), reason (u8, see [`RejectReason`]).
//!
//! Receiver index 0 is never valid (it is the "no session" value of the data
//! plane); a message carrying index 0 where an index is required is refused
//! at decode time.

use super::SessionError;

/// The protocol version this code speaks.
pub const VERSION: u8 = 1;
/// Size of the common header.
pub const HEADER_LEN: usize = 4;
/// Length of the truncated HMAC tags.
pub const TAG_LEN: usize = 16;
/// Length of the Init nonce.
pub const NONCE_LEN: usize = 16;

const T_INIT: u8 = 1;
const T_REPLY: u8 = 2;
const T_CONFIRM: u8 = 3;
const T_ACK: u8 = 4;
const T_REJECT: u8 = 5;

const INIT_LEN: usize = 32 + 4 + NONCE_LEN + 32;
const REPLY_LEN: usize = 32 + 4 + 4 + TAG_LEN;
const CONFIRM_LEN: usize = 4 + 4 + TAG_LEN;
const ACK_LEN: usize = 4 + 4;
const REJECT_LEN: usize = 4 + 1;

/// Why a request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RejectReason {
    /// Both sides initiated at once and the sender is the initiator that wins
    /// (lower PeerId); the receiver should wait for the winner's Init.
    Collision = 1,
    /// The binding did not match the responder's view of the two identities.
    Binding = 2,
    /// A Confirm named a session the responder does not hold (e.g. after a
    /// restart); the initiator should start a new handshake.
    UnknownSession = 3,
    /// The responder does not (or no longer) accept sessions from this peer.
    NotAdmitted = 4,
}

impl RejectReason {
    fn from_u8(v: u8) -> Result<Self, SessionError> {
        Ok(match v {
            1 => Self::Collision,
            2 => Self::Binding,
            3 => Self::UnknownSession,
            4 => Self::NotAdmitted,
            _ => return Err(SessionError::Malformed("unknown reject reason")),
        })
    }
}

/// Initiator's first message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Init {
    pub ephemeral: [u8; 32],
    pub initiator_index: u32,
    pub nonce: [u8; NONCE_LEN],
    pub binding: [u8; 32],
}

/// Responder's answer to an [`Init`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub ephemeral: [u8; 32],
    pub responder_index: u32,
    pub initiator_index: u32,
    pub tag: [u8; TAG_LEN],
}

/// Initiator's key confirmation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Confirm {
    pub initiator_index: u32,
    pub responder_index: u32,
    pub tag: [u8; TAG_LEN],
}

/// Responder's answer to a [`Confirm`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ack {
    pub initiator_index: u32,
    pub responder_index: u32,
}

/// A refused request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reject {
    pub initiator_index: u32,
    pub reason: RejectReason,
}

/// Any message of the protocol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    Init(Init),
    Reply(Reply),
    Confirm(Confirm),
    Ack(Ack),
    Reject(Reject),
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], SessionError> {
        let (head, rest) = self
            .buf
            .split_first_chunk::<N>()
            .ok_or(SessionError::Malformed("truncated body"))?;
        self.buf = rest;
        Ok(*head)
    }

    fn u32(&mut self) -> Result<u32, SessionError> {
        Ok(u32::from_le_bytes(self.take()?))
    }

    fn index(&mut self) -> Result<u32, SessionError> {
        match self.u32()? {
            0 => Err(SessionError::Malformed("receiver index 0")),
            i => Ok(i),
        }
    }
}

impl Message {
    /// Decodes one message; every deviation from the format is an error.
    pub fn decode(bytes: &[u8]) -> Result<Self, SessionError> {
        let (hdr, body) = bytes
            .split_first_chunk::<HEADER_LEN>()
            .ok_or(SessionError::Malformed("shorter than the header"))?;
        if hdr[0] != VERSION {
            return Err(SessionError::Version(hdr[0]));
        }
        let len = usize::from(u16::from_le_bytes([hdr[2], hdr[3]]));
        if len != body.len() {
            return Err(SessionError::Malformed("length field does not match"));
        }
        let expect = match hdr[1] {
            T_INIT => INIT_LEN,
            T_REPLY => REPLY_LEN,
            T_CONFIRM => CONFIRM_LEN,
            T_ACK => ACK_LEN,
            T_REJECT => REJECT_LEN,
            _ => return Err(SessionError::Malformed("unknown message type")),
        };
        if len != expect {
            return Err(SessionError::Malformed("wrong body length for type"));
        }
        let mut r = Reader { buf: body };
        let msg = match hdr[1] {
            T_INIT => Self::Init(Init {
                ephemeral: r.take()?,
                initiator_index: r.index()?,
                nonce: r.take()?,
                binding: r.take()?,
            }),
            T_REPLY => Self::Reply(Reply {
                ephemeral: r.take()?,
                responder_index: r.index()?,
                initiator_index: r.index()?,
                tag: r.take()?,
            }),
            T_CONFIRM => Self::Confirm(Confirm {
                initiator_index: r.index()?,
                responder_index: r.index()?,
                tag: r.take()?,
            }),
            T_ACK => Self::Ack(Ack {
                initiator_index: r.index()?,
                responder_index: r.index()?,
            }),
            _ => Self::Reject(Reject {
                initiator_index: r.index()?,
                reason: RejectReason::from_u8(r.take::<1>()?[0])?,
            }),
        };
        debug_assert!(r.buf.is_empty());
        Ok(msg)
    }

    /// Encodes the message (header included).
    pub fn encode(&self) -> Vec<u8> {
        let (ty, len) = match self {
            Self::Init(_) => (T_INIT, INIT_LEN),
            Self::Reply(_) => (T_REPLY, REPLY_LEN),
            Self::Confirm(_) => (T_CONFIRM, CONFIRM_LEN),
            Self::Ack(_) => (T_ACK, ACK_LEN),
            Self::Reject(_) => (T_REJECT, REJECT_LEN),
        };
        let mut out = Vec::with_capacity(HEADER_LEN + len);
        out.push(VERSION);
        out.push(ty);
        // Body lengths are small constants.
        out.extend_from_slice(&(len as u16).to_le_bytes());
        match self {
            Self::Init(m) => {
                out.extend_from_slice(&m.ephemeral);
                out.extend_from_slice(&m.initiator_index.to_le_bytes());
                out.extend_from_slice(&m.nonce);
                out.extend_from_slice(&m.binding);
            }
            Self::Reply(m) => {
                out.extend_from_slice(&m.ephemeral);
                out.extend_from_slice(&m.responder_index.to_le_bytes());
                out.extend_from_slice(&m.initiator_index.to_le_bytes());
                out.extend_from_slice(&m.tag);
            }
            Self::Confirm(m) => {
                out.extend_from_slice(&m.initiator_index.to_le_bytes());
                out.extend_from_slice(&m.responder_index.to_le_bytes());
                out.extend_from_slice(&m.tag);
            }
            Self::Ack(m) => {
                out.extend_from_slice(&m.initiator_index.to_le_bytes());
                out.extend_from_slice(&m.responder_index.to_le_bytes());
            }
            Self::Reject(m) => {
                out.extend_from_slice(&m.initiator_index.to_le_bytes());
                out.push(m.reason as u8);
            }
        }
        debug_assert_eq!(out.len(), HEADER_LEN + len);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn samples() -> Vec<Message> {
        vec![
            Message::Init(Init {
                ephemeral: [1; 32],
                initiator_index: 0x0102_0304,
                nonce: [2; 16],
                binding: [3; 32],
            }),
            Message::Reply(Reply {
                ephemeral: [4; 32],
                responder_index: 7,
                initiator_index: 9,
                tag: [5; 16],
            }),
            Message::Confirm(Confirm {
                initiator_index: 9,
                responder_index: 7,
                tag: [6; 16],
            }),
            Message::Ack(Ack {
                initiator_index: 9,
                responder_index: 7,
            }),
            Message::Reject(Reject {
                initiator_index: 9,
                reason: RejectReason::Collision,
            }),
        ]
    }

    #[test]
    fn roundtrip_and_layout() {
        for m in samples() {
            let b = m.encode();
            assert_eq!(b[0], VERSION);
            assert_eq!(
                usize::from(u16::from_le_bytes([b[2], b[3]])),
                b.len() - HEADER_LEN
            );
            assert_eq!(Message::decode(&b).unwrap(), m);
        }
        // Known layout of an Init: index right after the key, little endian.
        let b = samples()[0].encode();
        assert_eq!(&b[..4], &[1, 1, 84, 0]);
        assert_eq!(&b[36..40], &[4, 3, 2, 1]);
        assert_eq!(b.len(), 88);
    }

    #[test]
    fn every_truncation_and_extension_is_refused() {
        for m in samples() {
            let b = m.encode();
            for n in 0..b.len() {
                assert!(Message::decode(&b[..n]).is_err(), "prefix {n} of {m:?}");
            }
            let mut longer = b.clone();
            longer.push(0);
            assert!(Message::decode(&longer).is_err());
            // Fixing up the length field does not help: sizes are per type.
            let l = (longer.len() - HEADER_LEN) as u16;
            longer[2..4].copy_from_slice(&l.to_le_bytes());
            assert!(Message::decode(&longer).is_err());
        }
    }

    #[test]
    fn bad_version_type_index_reason() {
        let good = samples()[3].encode();
        let mut b = good.clone();
        b[0] = 2;
        assert!(matches!(Message::decode(&b), Err(SessionError::Version(2))));
        let mut b = good.clone();
        b[1] = 9;
        assert!(Message::decode(&b).is_err());
        let mut b = good.clone();
        b[4..8].fill(0);
        assert!(Message::decode(&b).is_err(), "index 0");
        let mut b = samples()[4].encode();
        *b.last_mut().unwrap() = 0;
        assert!(Message::decode(&b).is_err(), "reason 0");
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
            if let Ok(m) = Message::decode(&bytes) {
                // Whatever decodes re-encodes to the very same bytes.
                prop_assert_eq!(m.encode(), bytes);
            }
        }

        #[test]
        fn valid_header_random_body_never_panics(
            ty in 0u8..8,
            body in proptest::collection::vec(any::<u8>(), 0..100),
        ) {
            let mut b = vec![VERSION, ty];
            b.extend_from_slice(&(body.len() as u16).to_le_bytes());
            b.extend_from_slice(&body);
            if let Ok(m) = Message::decode(&b) {
                prop_assert_eq!(m.encode(), b);
            }
        }
    }
}
