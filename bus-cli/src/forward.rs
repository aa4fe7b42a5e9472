//! An actor that passes what it receives into a channel, for commands that await bus events.

use actix::prelude::*;
use tokio::sync::mpsc;

/// Sends every `M` it receives to its channel.
pub(crate) struct Forward<M>(pub(crate) mpsc::UnboundedSender<M>);

impl<M: 'static> Actor for Forward<M> {
    type Context = Context<Self>;
}

impl<M> Handler<M> for Forward<M>
where
    M: Message<Result = ()> + 'static,
{
    type Result = ();
    fn handle(&mut self, message: M, _: &mut Context<Self>) {
        let _ = self.0.send(message);
    }
}
