//! Messages to one chosen peer: typed like published ones, delivered to that peer's
//! subscribers of the topic, whether or not it announced the topic, and to nobody else.

use bus_core::endpoint::PublishError;
use bus_core::reliability::DeliveryReport;
use bus_core::{Duration, PeerId, Topic};

use crate::bus::{Bus, TopicKey};
use crate::error::Error;
use crate::messages::ReportTo;
use crate::scratch::Scratch;

impl Bus {
    /// Sends a message to `peer` alone with the topic's default reliability: as
    /// [`Bus::send_reliable_to`] for topics derived with `#[topic(reliable)]`, as
    /// [`Bus::send_best_effort_to`] otherwise.
    ///
    /// # Errors
    /// As the method it stands for.
    pub async fn send_to<T: Topic>(&self, peer: PeerId, message: T) -> Result<(), Error> {
        if T::RELIABLE {
            self.send_reliable_to(peer, message).await.map(drop)
        } else {
            self.send_best_effort_to(peer, message).await
        }
    }

    /// Sends a message to `peer` alone, best effort: one unicast copy, no acknowledgement. Its
    /// subscribers of `T` get it; a peer with none drops it. A peer whose address has not yet
    /// answered a ping (just discovered) may be sent only a little, against amplification:
    /// what is over is dropped and counted (`amplification_limit`).
    ///
    /// # Errors
    /// [`Error::UnknownPeer`] if `peer` is not in the peer table; [`Error::MessageTooLarge`],
    /// [`Error::Core`] and [`Error::ShutDown`] as [`Bus::publish_best_effort`].
    pub async fn send_best_effort_to<T: Topic>(
        &self,
        peer: PeerId,
        message: T,
    ) -> Result<(), Error> {
        self.check_running()?;
        let payload = Scratch::encode(&message)?;
        let key = TopicKey::of::<T>();
        if peer == self.local_id() {
            self.deliver_locally(key, &payload);
            return Ok(());
        }
        loop {
            let space = self.shared.outbox_space.notified();
            tokio::pin!(space);
            space.as_mut().enable();
            let sent = self.shared.command(|endpoint, _| {
                endpoint
                    .outbox_has_room()
                    .then(|| endpoint.send_to(peer, (key.id, key.fingerprint), &payload))
            });
            match sent {
                Some(Ok(())) => return Ok(()),
                Some(Err(refused)) => return Err(refusal(key, refused)),
                // The driver is sending (the outbox is not idle while it holds anything).
                None => space.await,
            }
            self.check_running()?;
        }
    }

    /// Sends a message to `peer` alone, reliably: retransmitted until `peer` acknowledges, and
    /// delivered to its subscribers of `T` exactly once. Resolves with the report, which names
    /// `peer`; `Ok` means `peer` took it. A peer with no subscriber of `T` does not acknowledge
    /// (nobody would have it), so its report names it missing at the deadline.
    ///
    /// # Errors
    /// [`Error::Undelivered`] if `peer` did not acknowledge before the deadline (the topic's,
    /// or the bus's) or left first; [`Error::UnknownPeer`] if `peer` is not in the peer table;
    /// [`Error::MessageTooLarge`], [`Error::Core`] and [`Error::ShutDown`] as
    /// [`Bus::publish_reliable`].
    pub async fn send_reliable_to<T: Topic>(
        &self,
        peer: PeerId,
        message: T,
    ) -> Result<DeliveryReport, Error> {
        self.send_reliable_to_within(peer, message, self.deadline_of(T::ID))
            .await
    }

    /// [`Bus::send_reliable_to`] with a deadline of its own for this message.
    ///
    /// # Errors
    /// As [`Bus::send_reliable_to`].
    pub async fn send_reliable_to_within<T: Topic>(
        &self,
        peer: PeerId,
        message: T,
        deadline: Duration,
    ) -> Result<DeliveryReport, Error> {
        self.check_running()?;
        let payload = Scratch::encode(&message)?;
        let key = TopicKey::of::<T>();
        if peer == self.local_id() {
            self.deliver_only_locally(key, &payload)?;
            return Ok(DeliveryReport {
                message_id: 0,
                acked: vec![peer],
                left: Vec::new(),
                missing: Vec::new(),
                retransmissions: 0,
            });
        }
        let (reply, report) = tokio::sync::oneshot::channel();
        let reply = Some(ReportTo::Caller(reply));
        self.open_reliable_to(Some(peer), key, &payload, (deadline, true), reply)
            .await?;
        // Back to the thread's scratch before waiting for the acknowledgement.
        drop(payload);
        let report = report.await.map_err(|_| Error::ShutDown)?;
        if report.acked.contains(&peer) {
            Ok(report)
        } else {
            Err(Error::Undelivered {
                topic: key.name,
                report,
            })
        }
    }
}

/// The error for a message the endpoint refused to send.
pub(crate) fn refusal(key: TopicKey, refused: PublishError) -> Error {
    match refused {
        PublishError::TooLarge(e) => Error::MessageTooLarge {
            topic: key.name,
            len: e.len,
            max: e.max,
            limit: "BusBuilder::max_message_size",
        },
        PublishError::UnknownPeer(peer) => Error::UnknownPeer { peer },
        PublishError::Busy(busy) => Error::Busy(busy),
    }
}
