//! Frames too large for one datagram: split into [`Frame::Fragment`]s by the sender and put back
//! together by the receiver, within bounds a hostile sender cannot make it exceed.
//!
//! A fragmented frame is the encoding of one ordinary frame (a publish, later a call or a
//! register value); its fragments carry a fragment id of the sender's, the whole length and
//! each piece's offset. The receiver reserves the whole length when a frame's first fragment
//! arrives (refusing it if the sender's or the total budget has no room), so what it holds is
//! bounded by its limits whatever the headers claim; pieces that do not fit what it already
//! holds (another total, a range past the end, a partial overlap) are refused and counted.
//! Incomplete frames expire.

use std::collections::{HashMap, VecDeque};

use crate::wire::Frame;
use crate::{Duration, Instant, PeerId};

/// What reassembly may hold.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct ReassemblyLimits {
    /// The largest frame that may be reassembled (and sent).
    pub max_message: usize,
    /// Bytes reserved for one sender's incomplete frames at most.
    pub per_sender_bytes: usize,
    /// Bytes reserved for all incomplete frames at most.
    pub total_bytes: usize,
    /// An incomplete frame is dropped once this long has passed without a new piece of it (a
    /// frame still filling in, such as a request sent again whole through loss, is kept).
    pub timeout: Duration,
}

impl Default for ReassemblyLimits {
    fn default() -> Self {
        ReassemblyLimits {
            max_message: 16 << 20,
            per_sender_bytes: 32 << 20,
            total_bytes: 64 << 20,
            timeout: Duration::from_secs(5),
        }
    }
}

/// Bytes of a large reliable message in flight toward one peer by default: a quarter of a
/// millisecond at 1 GB/s, and within the receive buffer Linux gives a socket by default
/// (212,992 bytes asked, twice that granted), so that a burst does not overflow it and a small
/// message behind it waits little. Larger windows bought no throughput on loopback and cost
/// latency: 64-byte round trips during 16 MiB transfers took 9 ms at the median with 1 MiB.
pub const DEFAULT_LARGE_WINDOW: usize = 256 << 10;

/// Why a fragment was refused.
#[derive(Clone, Copy, Debug, Eq, PartialEq, thiserror::Error)]
pub enum FragmentRefused {
    /// It claims a whole length of 0 or over the limit, or its piece lies past that length.
    #[error("a fragment's claimed length or range is out of bounds")]
    OutOfBounds,
    /// Its frame is being reassembled with another whole length, or its piece overlaps part
    /// of one already held.
    #[error("a fragment is inconsistent with the fragments already held")]
    Inconsistent,
    /// Reserving its frame would take the sender or all senders past their budget.
    #[error("no room to reassemble a fragmented frame")]
    Full,
}

/// What a fragment did.
#[derive(Debug, Eq, PartialEq)]
pub enum FragmentArrival {
    /// Held; the frame is not complete yet.
    Held,
    /// A piece already held (a duplicate): ignored.
    Duplicate,
    /// A piece of a frame already completed: ignored, but it says the sender did not learn of
    /// the completion; carries what [`Reassembler::tag_completed`] noted of the frame.
    AlreadyComplete(Option<CompletedTag>),
    /// The last piece: the whole frame, its bytes in order.
    Complete(Vec<u8>),
}

struct Partial {
    bytes: Vec<u8>,
    /// Held pieces as sorted, disjoint `start..end` ranges, touching ones merged.
    held: Vec<(u64, u64)>,
    /// The order frames were started in, across senders.
    started: u64,
    expires_at: Instant,
    /// Whether the last piece taken opened a new hole: pieces before it went missing.
    opened_hole: bool,
}

impl Partial {
    /// Whether `start..end` is held entirely (`Some(true)`), not at all (`Some(false)`), or in
    /// part (`None`).
    fn covers(&self, start: u64, end: u64) -> Option<bool> {
        for &(s, e) in &self.held {
            if s <= start && end <= e {
                return Some(true);
            }
            if start < e && s < end {
                return None;
            }
        }
        Some(false)
    }

    fn insert(&mut self, start: u64, end: u64) {
        let at = self.held.partition_point(|&(s, _)| s < start);
        self.held.insert(at, (start, end));
        // Merge with neighbours that now touch it.
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(self.held.len());
        for &(s, e) in &self.held {
            match merged.last_mut() {
                Some(last) if last.1 == s => last.1 = e,
                _ => merged.push((s, e)),
            }
        }
        self.held = merged;
    }
}

/// Completed fragment ids remembered per sender, so a late duplicate of a finished frame does
/// not start it again.
const COMPLETED_REMEMBERED: usize = 64;

/// What the endpoint noted of a completed frame, for the late pieces of it to give back.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum CompletedTag {
    /// A reliable message, acknowledged under this id: acknowledge it again.
    Acknowledged(u64),
    /// A call or register request of this id: its answer may be sent again.
    Request(u64),
}

/// A completed frame's id, and what the caller noted of it.
#[derive(Clone, Copy, Debug)]
struct Completed {
    fragment_id: u64,
    tag: Option<CompletedTag>,
}

/// The receiver's side: incomplete frames by (sender, fragment id), bounded and expiring.
pub struct Reassembler {
    limits: ReassemblyLimits,
    partials: HashMap<(PeerId, u64), Partial>,
    reserved_by: HashMap<PeerId, usize>,
    reserved: usize,
    completed: HashMap<PeerId, VecDeque<Completed>>,
    started: u64,
    evicted: u64,
}

impl std::fmt::Debug for Reassembler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reassembler")
            .field("entries", &self.partials.len())
            .field("bytes", &self.reserved)
            .finish_non_exhaustive()
    }
}

impl Reassembler {
    /// Reassembly within `limits`.
    pub fn new(limits: ReassemblyLimits) -> Reassembler {
        Reassembler {
            limits,
            partials: HashMap::new(),
            reserved_by: HashMap::new(),
            reserved: 0,
            completed: HashMap::new(),
            started: 0,
            evicted: 0,
        }
    }

    /// Incomplete frames dropped to make room for newer ones of their sender since the last
    /// call.
    pub fn take_evicted(&mut self) -> u64 {
        std::mem::take(&mut self.evicted)
    }

    /// Incomplete frames held.
    pub fn entries(&self) -> usize {
        self.partials.len()
    }

    /// Bytes reserved for them.
    pub fn bytes(&self) -> usize {
        self.reserved
    }

    /// Takes fragment `fragment_id` of `sender` (`total_len` in all, `data` at `offset`).
    ///
    /// # Errors
    /// [`FragmentRefused`] says why it was not taken; nothing held changes. (A fragment taken
    /// may have dropped its sender's own oldest incomplete frames to make room:
    /// [`Reassembler::take_evicted`] counts them.)
    pub fn on_fragment(
        &mut self,
        now: Instant,
        sender: PeerId,
        (fragment_id, total_len, offset): (u64, u64, u64),
        data: &[u8],
    ) -> Result<FragmentArrival, FragmentRefused> {
        let end = offset
            .checked_add(data.len() as u64)
            .ok_or(FragmentRefused::OutOfBounds)?;
        let whole = usize::try_from(total_len).map_err(|_| FragmentRefused::OutOfBounds)?;
        if whole == 0 || whole > self.limits.max_message || end > total_len || data.is_empty() {
            return Err(FragmentRefused::OutOfBounds);
        }
        let key = (sender, fragment_id);
        if !self.partials.contains_key(&key) {
            if let Some(done) = self
                .completed
                .get(&sender)
                .and_then(|ids| ids.iter().find(|c| c.fragment_id == fragment_id))
            {
                return Ok(FragmentArrival::AlreadyComplete(done.tag));
            }
            if !self.make_room(sender, whole) {
                return Err(FragmentRefused::Full);
            }
            self.started += 1;
            *self.reserved_by.entry(sender).or_default() += whole;
            self.reserved += whole;
            self.partials.insert(
                key,
                Partial {
                    bytes: vec![0; whole],
                    held: Vec::new(),
                    started: self.started,
                    expires_at: now + self.limits.timeout,
                    opened_hole: false,
                },
            );
        }
        let partial = self.partials.get_mut(&key).ok_or(FragmentRefused::Full)?;
        if partial.bytes.len() != whole {
            return Err(FragmentRefused::Inconsistent);
        }
        match partial.covers(offset, end) {
            Some(true) => return Ok(FragmentArrival::Duplicate),
            None => return Err(FragmentRefused::Inconsistent),
            Some(false) => {}
        }
        // In bounds: `end <= total_len == bytes.len()`.
        let (start, stop) = (offset as usize, end as usize);
        if let Some(piece) = partial.bytes.get_mut(start..stop) {
            piece.copy_from_slice(data);
        }
        let ranges = partial.held.len();
        partial.insert(offset, end);
        partial.expires_at = now + self.limits.timeout;
        partial.opened_hole = partial.held.len() > ranges && offset > 0;
        if partial.held.first() != Some(&(0, total_len)) {
            return Ok(FragmentArrival::Held);
        }
        let done = self.release(key).map(|p| p.bytes).unwrap_or_default();
        let ids = self.completed.entry(sender).or_default();
        if ids.len() == COMPLETED_REMEMBERED {
            ids.pop_front();
        }
        ids.push_back(Completed {
            fragment_id,
            tag: None,
        });
        Ok(FragmentArrival::Complete(done))
    }

    /// Notes `tag` of `sender`'s completed frame `fragment_id`, for
    /// [`FragmentArrival::AlreadyComplete`] to give back.
    pub fn tag_completed(&mut self, sender: PeerId, fragment_id: u64, tag: CompletedTag) {
        let done = self
            .completed
            .get_mut(&sender)
            .and_then(|ids| ids.iter_mut().rev().find(|c| c.fragment_id == fragment_id));
        if let Some(done) = done {
            done.tag = Some(tag);
        }
    }

    /// Whether the piece of `sender`'s incomplete frame `fragment_id` taken last opened a new
    /// hole: pieces before it went missing (or are late).
    pub fn opened_hole(&self, sender: PeerId, fragment_id: u64) -> bool {
        self.partials
            .get(&(sender, fragment_id))
            .is_some_and(|p| p.opened_hole)
    }

    /// The byte ranges held of `sender`'s incomplete frame `fragment_id`, ascending, as
    /// `start..end` pairs, and the frame's length; `None` if it is not being reassembled.
    pub fn held(&self, sender: PeerId, fragment_id: u64) -> Option<(&[(u64, u64)], u64)> {
        self.partials
            .get(&(sender, fragment_id))
            .map(|p| (&p.held[..], p.bytes.len() as u64))
    }

    /// When the next incomplete frame expires.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.partials.values().map(|p| p.expires_at).min()
    }

    /// Drops the incomplete frames whose time is up; returns how many.
    pub fn handle_timeout(&mut self, now: Instant) -> usize {
        let expired: Vec<_> = self
            .partials
            .iter()
            .filter(|(_, p)| p.expires_at <= now)
            .map(|(key, _)| *key)
            .collect();
        for key in &expired {
            self.release(*key);
        }
        expired.len()
    }

    /// Forgets everything of `sender` (it left, or restarted).
    pub fn forget(&mut self, sender: PeerId) {
        let keys: Vec<_> = self
            .partials
            .keys()
            .filter(|(s, _)| *s == sender)
            .copied()
            .collect();
        for key in keys {
            self.release(key);
        }
        self.completed.remove(&sender);
    }

    /// Whether `whole` more bytes may be reserved for `sender`, once its own oldest incomplete
    /// frames are dropped if need be: a sender whose frames lose fragments (a burst larger than
    /// the receiver's socket buffer) would otherwise have every later frame refused until they
    /// expire. Never another sender's: a flood evicts only itself.
    fn make_room(&mut self, sender: PeerId, whole: usize) -> bool {
        let own = self.reserved_by.get(&sender).copied().unwrap_or(0);
        if whole > self.limits.per_sender_bytes
            || self.reserved - own + whole > self.limits.total_bytes
        {
            // Not even all of its own would make room: drop nothing.
            return false;
        }
        loop {
            let by_sender = self.reserved_by.get(&sender).copied().unwrap_or(0);
            if by_sender + whole <= self.limits.per_sender_bytes
                && self.reserved + whole <= self.limits.total_bytes
            {
                return true;
            }
            let oldest = self
                .partials
                .iter()
                .filter(|((s, _), _)| *s == sender)
                .min_by_key(|(_, p)| p.started)
                .map(|(key, _)| *key);
            let Some(oldest) = oldest else {
                return false;
            };
            self.release(oldest);
            self.evicted += 1;
        }
    }

    fn release(&mut self, key: (PeerId, u64)) -> Option<Partial> {
        let partial = self.partials.remove(&key)?;
        let whole = partial.bytes.len();
        self.reserved -= whole;
        if let Some(by_sender) = self.reserved_by.get_mut(&key.0) {
            *by_sender -= whole;
            if *by_sender == 0 {
                self.reserved_by.remove(&key.0);
            }
        }
        Some(partial)
    }
}

/// The data bytes each fragment `fragment_id` of a frame of `total_len` bytes carries (the
/// last one fewer) so that every fragment encodes in at most `max_frame` bytes; `None` if
/// `max_frame` leaves no room for data.
pub fn piece_len(fragment_id: u64, total_len: usize, max_frame: usize) -> Option<usize> {
    let total_len = total_len as u64;
    // The header of the largest fragment: the offset's varint is at most as long as the total's.
    let header = Frame::Fragment {
        message_id: fragment_id,
        total_len,
        offset: total_len,
        reliable: false,
        report: false,
        data: &[],
    }
    .encoded_len();
    // The data's own length prefix grows with the data: take the widest it can be.
    let room = max_frame.checked_sub(header + crate::wire::varint_len(max_frame as u64))?;
    (room > 0).then_some(room)
}

/// Fragment `index` of the encoding of one frame, `encoded`, cut in pieces of `piece_len`
/// bytes (see [`piece_len`]), with the flags `(reliable, report)` of [`Frame::Fragment`].
pub fn piece(
    fragment_id: u64,
    encoded: &[u8],
    piece_len: usize,
    index: usize,
    (reliable, report): (bool, bool),
) -> Frame<'_> {
    let start = (index * piece_len).min(encoded.len());
    let end = (start + piece_len).min(encoded.len());
    Frame::Fragment {
        message_id: fragment_id,
        total_len: encoded.len() as u64,
        offset: start as u64,
        reliable,
        report,
        data: &encoded[start..end],
    }
}

#[cfg(test)]
mod tests;
