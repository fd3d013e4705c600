//! The request-response protocols of the event loop: `membership`
//! (certificate exchange, the gate's entry) and `session` (handshake
//! messages for the session core, members only).

use std::time::Instant;

use libp2p::request_response;
use tokio::sync::oneshot;
use tracing::{debug, warn};

use super::super::behaviour::{SessionRequest, SessionResponse};
use super::super::membership::{MembershipRequest, MembershipResponse};
use super::super::{OverlayError, OverlayEvent};
use super::EventLoop;

impl EventLoop {
    pub(super) fn on_membership(
        &mut self,
        ev: request_response::Event<MembershipRequest, MembershipResponse>,
    ) {
        use request_response::{Event, Message};
        match ev {
            Event::Message {
                peer,
                message:
                    Message::Request {
                        request, channel, ..
                    },
                ..
            } => {
                // A newer CRL first: it may revoke the requester itself.
                self.learn_crl(peer, request.crl.as_deref());
                // Kept as a neighbour up to twice our own budget: early
                // members of a group are everyone's first providers.
                if request.neighbour && self.chosen_by.len() < 2 * self.neighbour_target {
                    self.chosen_by.insert(peer);
                }
                let resp = match self.admit(peer, &request.cert) {
                    Ok(()) => {
                        self.emit_member_data(peer, request.data);
                        MembershipResponse::Accepted {
                            cert: self.own_cert.clone(),
                            data: self.own_data(),
                            crl: self.own_crl(),
                        }
                    }
                    Err(reason) => MembershipResponse::Refused { reason },
                };
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .membership
                    .send_response(channel, resp);
            }
            Event::Message {
                peer,
                message: Message::Response { response, .. },
                ..
            } => {
                self.membership_pending.remove(&peer);
                match response {
                    MembershipResponse::Accepted { cert, data, crl } => {
                        self.learn_crl(peer, crl.as_deref());
                        if self.admit(peer, &cert).is_ok() {
                            // It verified us before answering: our private
                            // requests to it may go now.
                            let b = self.swarm.behaviour_mut();
                            b.private_kad.release(peer);
                            b.gossipsub.release(peer);
                            self.emit_member_data(peer, data);
                        }
                    }
                    MembershipResponse::Refused { reason } => {
                        self.stats.refused_by_peer += 1;
                        self.backoff.insert(peer, Instant::now());
                        warn!(%peer, %reason, "overlay: peer refused our certificate");
                    }
                }
            }
            Event::OutboundFailure { peer, error, .. } => {
                self.membership_pending.remove(&peer);
                debug!(%peer, "overlay: membership request failed: {error}");
            }
            Event::InboundFailure { peer, error, .. } => {
                debug!(%peer, "overlay: inbound membership request failed: {error}");
            }
            Event::ResponseSent { .. } => {}
        }
    }

    pub(super) fn on_session(
        &mut self,
        ev: request_response::Event<SessionRequest, SessionResponse>,
    ) {
        use request_response::{Event, Message};
        match ev {
            Event::Message {
                peer,
                message:
                    Message::Request {
                        request, channel, ..
                    },
                ..
            } => {
                let resp = if !self.members.is_member(&peer) {
                    self.stats.private_requests_refused += 1;
                    warn!(%peer, "overlay: session request from a non-member refused");
                    // It may be a member we have not verified (we restarted,
                    // or it reached us on demand): offer the exchange, so
                    // that its next attempt finds it verified.
                    self.introduce(peer);
                    SessionResponse::Refused("not a verified member".into())
                } else {
                    // The owner (session core driver) answers through the
                    // one-shot; the response goes out when it does.
                    let (tx, rx) = oneshot::channel();
                    match self.events.try_send(OverlayEvent::SessionRequest {
                        peer,
                        msg: request.0,
                        reply: tx,
                    }) {
                        Ok(()) => {
                            self.session_answers
                                .push(Box::pin(async move { (channel, rx.await.ok()) }));
                            return;
                        }
                        Err(_) => {
                            self.stats.events_dropped += 1;
                            SessionResponse::Refused("busy".into())
                        }
                    }
                };
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .session
                    .send_response(channel, resp);
            }
            Event::Message {
                message:
                    Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                if let Some(tx) = self.session_pending.remove(&request_id) {
                    let _ = tx.send(match response {
                        SessionResponse::Reply(b) => Ok(b),
                        SessionResponse::Refused(r) => Err(OverlayError::Request(r)),
                    });
                }
            }
            Event::OutboundFailure {
                request_id, error, ..
            } => {
                if let Some(tx) = self.session_pending.remove(&request_id) {
                    let _ = tx.send(Err(OverlayError::Request(error.to_string())));
                }
            }
            Event::InboundFailure { peer, error, .. } => {
                debug!(%peer, "overlay: inbound session request failed: {error}");
            }
            Event::ResponseSent { .. } => {}
        }
    }
}
