//! The group topic (gossipsub `/groupvpn/<group>/events`): messages are
//! accepted (and forwarded) only from verified members; revocation lists
//! travel on it.
//!
//! A CRL message is `"GVCRL1" | CRL (DER)`. A node that installs a newer CRL
//! (from its file, [`super::super::Client::set_crl`]) publishes it; a
//! member that receives one checks it against the CA, installs it if it
//! supersedes its own, expels the members it revokes, and lets gossipsub
//! forward it. A CRL that does not verify is rejected (and its sender's
//! gossipsub score suffers); an older or equal one is ignored (not
//! forwarded). Other messages reach the owner as
//! [`OverlayEvent::GroupMessage`].

use std::time::SystemTime;

use libp2p::gossipsub::{self, IdentTopic, MessageAcceptance, MessageId};
use libp2p::PeerId;
use tracing::{debug, info, warn};
use vpn_pki::Crl;

use super::super::{ids, OverlayError, OverlayEvent};
use super::EventLoop;

const CRL_TAG: &[u8] = b"GVCRL1";

impl EventLoop {
    /// Installs a newer CRL, expels the members it revokes and, with
    /// `publish`, tells the group.
    pub(super) fn install_crl(&mut self, crl: Crl, publish: bool) -> Result<(), OverlayError> {
        let der = crl.der().to_vec();
        self.members.set_crl(crl, SystemTime::now())?;
        self.recheck();
        if publish {
            let topic = IdentTopic::new(ids::group_topic(self.members.group()));
            let msg = [CRL_TAG, der.as_slice()].concat();
            if let Err(e) = self
                .swarm
                .behaviour_mut()
                .gossipsub
                .inner()
                .publish(topic, msg)
            {
                debug!("overlay: publishing the CRL: {e}");
            }
        }
        Ok(())
    }

    /// The current CRL to hand to a peer in a membership exchange.
    pub(super) fn own_crl(&self) -> Option<Vec<u8>> {
        self.members.crl().map(|c| c.der().to_vec())
    }

    /// A CRL a peer sent in the membership exchange (any peer: it counts
    /// only if the group CA signed it and it is newer than ours). It is not
    /// published on the topic: the sender already has it, and so has every
    /// member that was connected when it was issued.
    pub(super) fn learn_crl(&mut self, from: PeerId, der: Option<&[u8]>) {
        let Some(der) = der else { return };
        let crl = match Crl::from_der(der) {
            Ok(c) => c,
            Err(e) => {
                debug!(peer = %from, "overlay: malformed CRL in a membership exchange: {e}");
                return;
            }
        };
        if self.members.crl().is_some_and(|cur| !crl.supersedes(cur)) {
            return;
        }
        match self.install_crl(crl, false) {
            Ok(()) => {
                info!(peer = %from, "overlay: newer CRL learned from a peer");
                self.stats.crls_learned += 1;
            }
            Err(e) => debug!(peer = %from, "overlay: CRL from a peer refused: {e}"),
        }
    }

    pub(super) fn on_group_message(
        &mut self,
        propagation_source: PeerId,
        message_id: MessageId,
        message: gossipsub::Message,
    ) {
        let member = self.members.is_member(&propagation_source)
            && message.source.is_some_and(|s| self.members.is_member(&s));
        let verdict = if !member {
            self.stats.private_requests_refused += 1;
            MessageAcceptance::Reject
        } else if let Some(der) = message.data.strip_prefix(CRL_TAG) {
            self.on_crl_message(der, propagation_source)
        } else {
            MessageAcceptance::Accept
        };
        let accepted = matches!(verdict, MessageAcceptance::Accept);
        self.swarm
            .behaviour_mut()
            .gossipsub
            .inner()
            .report_message_validation_result(&message_id, &propagation_source, verdict);
        if let (true, Some(source)) = (accepted, message.source) {
            if !message.data.starts_with(CRL_TAG) {
                self.emit(OverlayEvent::GroupMessage {
                    source,
                    data: message.data,
                });
            }
        }
    }

    fn on_crl_message(&mut self, der: &[u8], from: PeerId) -> MessageAcceptance {
        let crl = match Crl::from_der(der) {
            Ok(c) => c,
            Err(e) => {
                warn!(peer = %from, "overlay: malformed CRL on the group topic: {e}");
                return MessageAcceptance::Reject;
            }
        };
        if let Err(e) = crl.verify(self.members.ca(), SystemTime::now()) {
            warn!(peer = %from, "overlay: CRL on the group topic refused: {e}");
            return MessageAcceptance::Reject;
        }
        match self.install_crl(crl, false) {
            Ok(()) => {
                info!(peer = %from, "overlay: newer CRL received from the group");
                self.stats.crls_received += 1;
                MessageAcceptance::Accept
            }
            // Verified, but not newer than ours: nothing to forward.
            Err(_) => MessageAcceptance::Ignore,
        }
    }
}
