//! Remote registers: typed values a peer serves by name, which other peers read, write
//! (acknowledged, applied at most once), write unreliably, and observe.
//!
//! A register is a [`Topic`] type: its name and schema fingerprint are the register's, and
//! the owner publishes the value on that topic, reliably, whenever it changes, so observing a
//! register is subscribing to its topic. Each register is a [`RegisterActor`], which holds the
//! value, runs the validation of writes, and announces changes; the socket actor only routes
//! requests to it.

use actix::prelude::*;
use bus_core::endpoint::Endpoint;
use bus_core::rpc::{STATUS_NO_SUCH_REGISTER, STATUS_UNDECODABLE};
use bus_core::{Duration, PeerId, Topic};
use bytes::Bytes;

use crate::bus::Bus;
use crate::error::Error;
use crate::messages::Event;
use crate::rpc::{Answer, DEFAULT_CALL_DEADLINE, Refusal, refused};
use crate::shared::lock;
use crate::subscription::Subscription;

/// Decides whether a write of a register from a peer is taken: `Err` refuses it, and the
/// writer gets the refusal's code and message ([`Error::Refused`]).
pub type Validation<T> = Box<dyn Fn(PeerId, &T) -> Result<(), Refusal>>;

/// A read (`write` is `None`) or a write of a register, from the network.
#[derive(Message)]
#[rtype(result = "Answer")]
pub(crate) struct RegisterOp {
    pub(crate) from: PeerId,
    pub(crate) write: Option<Bytes>,
}

/// A register this peer serves, as the socket actor routes to it.
#[derive(Clone, Debug)]
pub(crate) struct ServedRegister {
    name: &'static str,
    fingerprint: u64,
    actor: Recipient<RegisterOp>,
}

impl ServedRegister {
    /// The register a request by a peer whose type for it has `fingerprint` goes to, or the
    /// answer that refuses it before it reaches a register's actor.
    pub(crate) fn check(
        served: Option<ServedRegister>,
        fingerprint: u64,
    ) -> Result<Recipient<RegisterOp>, Answer> {
        match served {
            None => Err((STATUS_NO_SUCH_REGISTER, b"no such register".to_vec())),
            Some(served) if served.fingerprint != fingerprint => Err((
                STATUS_UNDECODABLE,
                format!("register {} is of another type here", served.name).into_bytes(),
            )),
            Some(served) => Ok(served.actor),
        }
    }
}

/// One register's value, and who may change it.
pub(crate) struct RegisterActor<T: Topic + Clone + Unpin> {
    value: T,
    validation: Option<Validation<T>>,
    bus: Bus,
}

impl<T: Topic + Clone + Unpin> Actor for RegisterActor<T> {
    type Context = Context<Self>;
}

impl<T: Topic + Clone + Unpin> RegisterActor<T> {
    /// Takes `value` and tells observers.
    fn change(&mut self, value: T, ctx: &mut Context<Self>) {
        self.value = value.clone();
        let bus = self.bus.clone();
        ctx.spawn(
            async move {
                // Nobody observing is not a failure; one that did not acknowledge in time
                // reads the value when it wants it.
                if let Err(e) = bus.publish_reliable(value).await
                    && !matches!(e, Error::NoSubscribers { .. })
                {
                    tracing::debug!(register = T::NAME, error = %e, "change not delivered");
                }
            }
            .into_actor(self),
        );
    }

    /// The answer to a read or a write from the network.
    fn apply(&mut self, op: RegisterOp, ctx: &mut Context<Self>) -> Answer {
        let Some(bytes) = op.write else {
            return match self.value.encode() {
                Ok(encoded) => (0, encoded),
                Err(_) => (
                    bus_core::rpc::STATUS_UNENCODABLE_REPLY,
                    b"unencodable value".to_vec(),
                ),
            };
        };
        let Ok(value) = T::decode(T::FINGERPRINT, &bytes) else {
            let message = format!("undecodable value for register {}", T::NAME);
            return (STATUS_UNDECODABLE, message.into_bytes());
        };
        if let Some(validation) = &self.validation
            && let Err(refusal) = validation(op.from, &value)
        {
            return refused(&refusal);
        }
        self.change(value, ctx);
        (0, Vec::new())
    }
}

impl<T: Topic + Clone + Unpin> Handler<RegisterOp> for RegisterActor<T> {
    type Result = MessageResult<RegisterOp>;

    fn handle(&mut self, op: RegisterOp, ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(self.apply(op, ctx))
    }
}

#[derive(Message)]
#[rtype(result = "T")]
struct Get<T: Topic + Clone + Unpin>(std::marker::PhantomData<T>);

impl<T: Topic + Clone + Unpin> Handler<Get<T>> for RegisterActor<T> {
    type Result = MessageResult<Get<T>>;
    fn handle(&mut self, _: Get<T>, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.value.clone())
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct Set<T: Topic + Clone + Unpin>(T);

impl<T: Topic + Clone + Unpin> Handler<Set<T>> for RegisterActor<T> {
    type Result = ();
    fn handle(&mut self, Set(value): Set<T>, ctx: &mut Context<Self>) {
        self.change(value, ctx);
    }
}

/// The owner's handle on a register it serves.
pub struct Register<T: Topic + Clone + Unpin> {
    actor: Addr<RegisterActor<T>>,
}

impl<T: Topic + Clone + Unpin> Clone for Register<T> {
    fn clone(&self) -> Self {
        Register {
            actor: self.actor.clone(),
        }
    }
}

impl<T: Topic + Clone + Unpin> std::fmt::Debug for Register<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Register").field("name", &T::NAME).finish()
    }
}

impl<T: Topic + Clone + Unpin> Register<T> {
    /// The value now.
    ///
    /// # Errors
    /// [`Error::ShutDown`] if the register's actor has stopped.
    pub async fn get(&self) -> Result<T, Error> {
        self.actor
            .send(Get(std::marker::PhantomData))
            .await
            .map_err(|_| Error::ShutDown)
    }

    /// Sets the value (no validation: the owner decides) and tells observers.
    ///
    /// # Errors
    /// [`Error::ShutDown`] if the register's actor has stopped.
    pub async fn set(&self, value: T) -> Result<(), Error> {
        self.actor
            .send(Set(value))
            .await
            .map_err(|_| Error::ShutDown)
    }
}

impl Bus {
    /// Serves a register of `T` with the value `initial`, from now on: other peers may read
    /// it and write it, and observe its changes (every change is published reliably on `T`'s
    /// topic). A second register of `T` replaces the first.
    pub fn serve_register<T: Topic + Clone + Unpin>(&self, initial: T) -> Register<T> {
        self.start_register(initial, None)
    }

    /// [`Bus::serve_register`], where each remote write is first given to `validation`: an
    /// `Err` refuses it, and the writer gets the refusal.
    pub fn serve_register_validated<T: Topic + Clone + Unpin>(
        &self,
        initial: T,
        validation: impl Fn(PeerId, &T) -> Result<(), Refusal> + 'static,
    ) -> Register<T> {
        self.start_register(initial, Some(Box::new(validation)))
    }

    fn start_register<T: Topic + Clone + Unpin>(
        &self,
        initial: T,
        validation: Option<Validation<T>>,
    ) -> Register<T> {
        let actor = RegisterActor {
            value: initial,
            validation,
            bus: self.clone(),
        }
        .start();
        let served = ServedRegister {
            name: T::NAME,
            fingerprint: T::FINGERPRINT,
            actor: actor.clone().recipient(),
        };
        lock(&self.shared.registers).insert(T::ID, served);
        Register { actor }
    }

    /// Stops serving the register of `T`: reads and writes of it are answered as of no
    /// register.
    pub fn unserve_register<T: Topic>(&self) {
        lock(&self.shared.registers).remove(&T::ID);
    }

    /// Reads `peer`'s register of `T`, waiting at most [`DEFAULT_CALL_DEADLINE`].
    ///
    /// # Errors
    /// [`Error::Remote`] with `STATUS_NO_SUCH_REGISTER` if it serves none, or
    /// `STATUS_UNDECODABLE` if its register is of another definition of `T`; otherwise as
    /// [`Bus::call_procedure`].
    pub async fn read_register<T: Topic>(&self, peer: PeerId) -> Result<T, Error> {
        let register = (T::ID, T::FINGERPRINT);
        let deadline = DEFAULT_CALL_DEADLINE;
        let value = self
            .request(peer, |endpoint: &mut Endpoint, now| {
                endpoint.read_register(now, peer, register, deadline)
            })
            .await?;
        Ok(T::decode(T::FINGERPRINT, &value)?)
    }

    /// Writes `value` to `peer`'s register of `T` and waits until it is applied (at most once,
    /// however often the write is sent), at most [`DEFAULT_CALL_DEADLINE`].
    ///
    /// # Errors
    /// [`Error::Refused`] if its validation refused the value; otherwise as
    /// [`Bus::read_register`].
    pub async fn write_register<T: Topic>(&self, peer: PeerId, value: &T) -> Result<(), Error> {
        self.write_register_within(peer, value, DEFAULT_CALL_DEADLINE)
            .await
    }

    /// [`Bus::write_register`], waiting at most `deadline`.
    ///
    /// # Errors
    /// As [`Bus::write_register`].
    pub async fn write_register_within<T: Topic>(
        &self,
        peer: PeerId,
        value: &T,
        deadline: Duration,
    ) -> Result<(), Error> {
        let encoded = value.encode()?;
        let register = (T::ID, T::FINGERPRINT);
        self.request(peer, |endpoint: &mut Endpoint, now| {
            endpoint.write_register(now, peer, register, &encoded, deadline)
        })
        .await
        .map(drop)
    }

    /// Writes `value` to `peer`'s register of `T` once, with no answer and no retransmission:
    /// for values that the next write replaces (a setpoint streamed many times a second). A
    /// write that cannot be applied there is dropped and counted (`register_refused`).
    ///
    /// # Errors
    /// [`Error::Call`] if `peer` is not known or the value is larger than the largest message;
    /// [`Error::Core`] if it cannot be encoded.
    pub fn write_register_unreliable<T: Topic>(
        &self,
        peer: PeerId,
        value: &T,
    ) -> Result<(), Error> {
        self.check_running()?;
        let encoded = value.encode()?;
        self.shared
            .command(|endpoint, _| {
                endpoint.write_register_unreliable(peer, (T::ID, T::FINGERPRINT), &encoded)
            })
            .map_err(|e| Error::Call {
                peer,
                reason: e.to_string(),
            })
    }

    /// Turns every change of the registers of `T` that peers serve into an [`Event`] for
    /// `recipient` (its `from` is the register's owner): subscribes it to `T`'s topic, which
    /// owners publish on when the value changes.
    ///
    /// # Errors
    /// As [`Bus::subscribe`].
    pub async fn observe_register<T: Topic>(
        &self,
        recipient: Recipient<Event<T>>,
    ) -> Result<Subscription, Error> {
        self.subscribe(recipient).await
    }
}
