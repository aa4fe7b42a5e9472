//! The buffer publishes encode their payload into.

use bus_core::Topic;

use crate::error::Error;

/// A buffer to encode a payload into, reused across publishes on a thread: the payload is copied
/// into the outbox (or a frame) right after, so a fresh allocation each time would be waste.
pub(crate) struct Scratch(Vec<u8>);

thread_local! {
    static SCRATCH: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

impl Scratch {
    pub(crate) fn encode<T: Topic>(message: &T) -> Result<Scratch, Error> {
        let mut buffer = SCRATCH.take();
        buffer.clear();
        message.encode_into(&mut buffer)?;
        Ok(Scratch(buffer))
    }
}

impl std::ops::Deref for Scratch {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // A publish that awaited may have moved threads or overlapped another: whichever
        // buffer comes back last is kept, the other freed. Huge ones are not kept.
        if self.0.capacity() <= 64 * 1024 {
            SCRATCH.set(std::mem::take(&mut self.0));
        }
    }
}
