//! Timers of one peer: rekey (time, messages, traffic), retries with
//! jitter, giving up, and expiry of current, previous and pending keys.

use std::time::Duration;

use super::{Ctx, Handshake, Out, Peer};
use crate::session::crypto::Entropy;
use crate::session::wire::Message;
use crate::session::{Config, Event, SessionError};

impl Peer {
    /// Traffic counters since the last report.
    pub fn on_traffic<E: Entropy>(
        &mut self,
        now: Duration,
        ctx: &mut Ctx<'_, E>,
        sent: u64,
        received: u64,
    ) -> Result<(), SessionError> {
        if let Some(k) = &mut self.current {
            k.sent = k.sent.saturating_add(sent);
            k.traffic |= sent > 0 || received > 0;
            if k.sent >= ctx.cfg.reject_after_messages {
                Self::drop_keys(ctx, self.current.take());
                self.sync(ctx);
                ctx.out.push(Out::Event(Event::Expired));
                return self.connect(now, ctx);
            }
        }
        self.maybe_rekey(now, ctx)
    }

    fn rekey_due(&self, cfg: &Config) -> Option<Duration> {
        let k = self.current.as_ref()?;
        // Not while a handshake of either side is under way.
        if !k.traffic || self.handshake.is_some() || self.next.is_some() {
            return None;
        }
        if k.sent >= cfg.rekey_after_messages {
            return Some(Duration::ZERO);
        }
        let delay = if k.initiator {
            Duration::ZERO
        } else {
            cfg.responder_rekey_delay
        };
        Some(k.created + cfg.rekey_after_time + delay)
    }

    fn maybe_rekey<E: Entropy>(
        &mut self,
        now: Duration,
        ctx: &mut Ctx<'_, E>,
    ) -> Result<(), SessionError> {
        match self.rekey_due(ctx.cfg) {
            Some(at) if at <= now => self.initiate(now, ctx, true),
            _ => Ok(()),
        }
    }

    /// Whether a rekey is under way: our Init is out (or waits to be sent
    /// again after a collision), or we answered the peer's Init and wait
    /// for its Confirm.
    fn rekey_in_progress(&self) -> bool {
        self.next.is_some()
            || matches!(
                self.handshake,
                Some(Handshake::AwaitReply { .. } | Handshake::Wait { .. })
            )
    }

    /// When the current key must go: `reject_after_time` after it was made,
    /// or, while a rekey is being retried, when that rekey gives up, but
    /// never later than `reject_after_time + rekey_attempt_time`.
    fn current_expiry(&self, cfg: &Config) -> Option<Duration> {
        let k = self.current.as_ref()?;
        let reject = k.created + cfg.reject_after_time;
        Some(if self.rekey_in_progress() {
            reject + cfg.rekey_attempt_time
        } else {
            reject
        })
    }

    /// The earliest time at which [`Peer::on_timeout`] has work.
    pub fn deadline(&self, cfg: &Config) -> Option<Duration> {
        let mut d: Option<Duration> = None;
        let mut at = |t: Duration| d = Some(d.map_or(t, |x| x.min(t)));
        let give_up = self.attempt_started + cfg.rekey_attempt_time;
        match &self.handshake {
            Some(Handshake::AwaitReply { retry_at, .. } | Handshake::AwaitAck { retry_at, .. }) => {
                at((*retry_at).min(give_up));
            }
            Some(Handshake::Wait { until }) => at((*until).min(give_up)),
            None => {}
        }
        if let Some(t) = self.current_expiry(cfg) {
            at(t);
        }
        for p in &self.previous {
            at(p.until.map_or(p.cap, |u| u.min(p.cap)));
        }
        if let Some(k) = &self.next {
            at(k.created + cfg.rekey_attempt_time + cfg.rekey_timeout);
        }
        if let Some(t) = self.rekey_due(cfg) {
            at(t);
        }
        d
    }

    pub fn on_timeout<E: Entropy>(
        &mut self,
        now: Duration,
        ctx: &mut Ctx<'_, E>,
    ) -> Result<(), SessionError> {
        let cfg = ctx.cfg;
        if self.current_expiry(cfg).is_some_and(|t| now >= t) {
            let k = self.current.take();
            if let (Some(Handshake::AwaitAck { confirm, .. }), Some(k)) = (&self.handshake, &k) {
                if confirm.initiator_index == k.local_index {
                    self.handshake = None;
                }
            }
            Self::drop_keys(ctx, k);
            ctx.out.push(Out::Event(Event::Expired));
        }
        let indices = &mut *ctx.indices;
        self.previous.retain(|p| {
            let expired = now >= p.cap || p.until.is_some_and(|u| now >= u);
            if expired {
                indices.remove(&p.keys.local_index);
            }
            !expired
        });
        if self
            .next
            .as_ref()
            .is_some_and(|k| now >= k.created + cfg.rekey_attempt_time + cfg.rekey_timeout)
        {
            // The initiator gave up on its handshake.
            Self::drop_keys(ctx, self.next.take());
            if self.current.is_none() {
                ctx.out.push(Out::Event(Event::HandshakeFailed));
            }
        }
        let result = self.handshake_timeout(now, ctx);
        // A rekey that gave up no longer holds the old key past its time.
        if self.current_expiry(cfg).is_some_and(|t| now >= t) {
            Self::drop_keys(ctx, self.current.take());
            ctx.out.push(Out::Event(Event::Expired));
        }
        self.sync(ctx);
        result.and_then(|()| self.maybe_rekey(now, ctx))
    }

    fn handshake_timeout<E: Entropy>(
        &mut self,
        now: Duration,
        ctx: &mut Ctx<'_, E>,
    ) -> Result<(), SessionError> {
        let cfg = ctx.cfg;
        let give_up = now >= self.attempt_started + cfg.rekey_attempt_time;
        match &mut self.handshake {
            None => Ok(()),
            Some(Handshake::AwaitAck { .. }) if give_up => {
                self.handshake = None;
                self.release_previous(now, cfg.previous_grace);
                Ok(())
            }
            Some(_) if give_up => {
                self.abandon_handshake(ctx);
                self.handshake = None;
                ctx.out.push(Out::Event(Event::HandshakeFailed));
                Ok(())
            }
            Some(Handshake::AwaitAck { confirm, retry_at }) => {
                if now >= *retry_at {
                    ctx.out
                        .push(Out::Send(Message::Confirm(confirm.clone()).encode()));
                    *retry_at = ctx.retry_at(now);
                }
                Ok(())
            }
            Some(Handshake::AwaitReply { retry_at, .. }) if now >= *retry_at => {
                self.initiate(now, ctx, false)
            }
            Some(Handshake::Wait { until }) if now >= *until => self.initiate(now, ctx, false),
            Some(_) => Ok(()),
        }
    }
}
