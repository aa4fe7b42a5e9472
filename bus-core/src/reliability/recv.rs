//! The receiving side of reliable messages: deduplication by (sender, message id).
//!
//! A retransmission must be delivered even if later messages got through first (the original
//! Pavillion kept only the highest id seen, and dropped such retransmissions as duplicates), and
//! a duplicate must never be delivered twice, however the network reorders. So the window keeps
//! one bit per id from a floor upwards. The floor comes from the sender: each reliable frame says
//! how far below its id the sender's oldest unfinished message is, and the sender never
//! retransmits below that, so the receiver can forget everything under it. The window therefore
//! spans at most the sender's in-flight messages, not the history.

use std::collections::VecDeque;

/// The widest span of ids a window tracks above its floor; a sender whose in-flight span is
/// wider is misbehaving, and ids beyond it are refused rather than allowed to grow memory.
pub const MAX_WINDOW_SPAN: u64 = 1 << 20;

/// Ids further than this from a window's range belong to another incarnation of the sender
/// (ids start at a random point each time a peer starts).
const INCARNATION_DISTANCE: u64 = 1 << 32;

/// What to do with an arriving reliable message.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Arrival {
    /// First time: deliver it, and acknowledge it.
    New,
    /// Seen before (or below the sender's floor, so seen or given up): do not deliver, but
    /// acknowledge again: the sender may have missed the first acknowledgement.
    Duplicate,
    /// Beyond [`MAX_WINDOW_SPAN`] above the floor: refused, not acknowledged.
    OutOfWindow,
    /// Its bit would grow the bitmaps past the room the caller gave: refused, not
    /// acknowledged (the sender retransmits; by then room may have been freed).
    NoRoom,
}

/// Which ids of one sender's incarnation have arrived, from a floor upwards.
#[derive(Clone, Debug)]
pub struct DedupWindow {
    /// Every id below `floor` counts as received.
    floor: u64,
    /// Bit `i` of word `w` stands for id `base + 64 w + i`; `base` is `floor` rounded down to 64.
    base: u64,
    words: VecDeque<u64>,
}

impl DedupWindow {
    /// A window whose first expected id is `floor`.
    pub fn new(floor: u64) -> DedupWindow {
        DedupWindow {
            floor,
            base: floor & !63,
            words: VecDeque::new(),
        }
    }

    /// The lowest id that can still arrive as new.
    pub fn floor(&self) -> u64 {
        self.floor
    }

    /// Whether `id` is close enough to this window to belong to the same incarnation.
    fn is_near(&self, id: u64) -> bool {
        let top = self.base + 64 * self.words.len() as u64;
        id.saturating_add(INCARNATION_DISTANCE) >= self.floor
            && id <= top.saturating_add(INCARNATION_DISTANCE)
    }

    /// Raises the floor to `floor` (never lowers it), forgetting what lies below.
    pub fn advance_floor(&mut self, floor: u64) {
        if floor <= self.floor {
            return;
        }
        self.floor = floor;
        let new_base = floor & !63;
        while self.base < new_base {
            if self.words.pop_front().is_none() {
                self.base = new_base;
                break;
            }
            self.base += 64;
        }
        // Ids below the floor count as received.
        if let Some(front) = self.words.front_mut() {
            *front |= (1u64 << (floor - self.base)) - 1;
        }
        self.slide();
    }

    /// Moves the floor over a run of received ids at the front, so the window stays small when
    /// nothing is missing.
    fn slide(&mut self) {
        while self.words.front() == Some(&u64::MAX) {
            self.words.pop_front();
            self.base += 64;
            self.floor = self.floor.max(self.base);
        }
    }

    /// Records the arrival of `id`, whose frame said the sender's floor is `sender_floor`.
    pub fn on_arrival(&mut self, id: u64, sender_floor: u64) -> Arrival {
        self.on_arrival_within(id, sender_floor, usize::MAX)
    }

    /// Like [`DedupWindow::on_arrival`], but refuses an id whose bit would grow the bitmap by
    /// more than `room` bytes.
    pub fn on_arrival_within(&mut self, id: u64, sender_floor: u64, room: usize) -> Arrival {
        self.advance_floor(sender_floor.min(id));
        if id < self.floor {
            return Arrival::Duplicate;
        }
        if id - self.floor >= MAX_WINDOW_SPAN {
            return Arrival::OutOfWindow;
        }
        let offset = id - self.base;
        let word = usize::try_from(offset / 64).unwrap_or(usize::MAX);
        if word >= self.words.len() {
            if (word + 1 - self.words.len()).saturating_mul(8) > room {
                return Arrival::NoRoom;
            }
            let was_empty = self.words.is_empty();
            self.words.resize(word + 1, 0);
            if was_empty {
                // Ids below the floor count as received.
                self.words[0] |= (1u64 << (self.floor - self.base)) - 1;
            }
        }
        let bit = 1u64 << (offset % 64);
        if self.words[word] & bit != 0 {
            return Arrival::Duplicate;
        }
        self.words[word] |= bit;
        self.slide();
        Arrival::New
    }

    /// Bytes of bitmap held.
    pub fn memory(&self) -> usize {
        self.words.len() * 8
    }
}

/// The windows of one sender: its current incarnation and the one before, so that stragglers
/// from a restarted peer's previous life are still recognised.
#[derive(Clone, Debug, Default)]
pub struct SenderWindows {
    windows: Vec<DedupWindow>,
}

impl SenderWindows {
    /// Records the arrival of `id` with the sender's floor `sender_floor`.
    pub fn on_arrival(&mut self, id: u64, sender_floor: u64) -> Arrival {
        self.on_arrival_within(id, sender_floor, usize::MAX)
    }

    /// Like [`SenderWindows::on_arrival`], but refuses an id whose bit would grow the bitmaps
    /// by more than `room` bytes (a refused id of a new life forgets no window).
    pub fn on_arrival_within(&mut self, id: u64, sender_floor: u64, room: usize) -> Arrival {
        match self.windows.iter_mut().find(|w| w.is_near(id)) {
            Some(window) => window.on_arrival_within(id, sender_floor, room),
            None => {
                let mut window = DedupWindow::new(sender_floor.min(id));
                let arrival = window.on_arrival_within(id, sender_floor, room);
                if !matches!(arrival, Arrival::OutOfWindow | Arrival::NoRoom) {
                    if self.windows.len() == 2 {
                        self.windows.remove(0);
                    }
                    self.windows.push(window);
                }
                arrival
            }
        }
    }

    /// Bytes of bitmap held.
    pub fn memory(&self) -> usize {
        self.windows.iter().map(DedupWindow::memory).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_retransmission_is_delivered_after_later_messages() {
        // Pavillion's bug 3: 0 is lost, 1 and 2 arrive, then 0's retransmission.
        let mut w = DedupWindow::new(0);
        assert_eq!(w.on_arrival(1, 0), Arrival::New);
        assert_eq!(w.on_arrival(2, 0), Arrival::New);
        assert_eq!(w.on_arrival(0, 0), Arrival::New);
        assert_eq!(w.on_arrival(0, 0), Arrival::Duplicate);
        assert_eq!(w.on_arrival(2, 0), Arrival::Duplicate);
    }

    #[test]
    fn the_floor_forgets_what_the_sender_finished() {
        let mut w = DedupWindow::new(0);
        for id in 0..1000 {
            if id != 500 {
                assert_eq!(w.on_arrival(id, 0), Arrival::New);
            }
        }
        // 500 is missing, so everything above it is kept: 500 bits' worth and a bit more.
        assert!(w.memory() <= 8 * 9, "{} bytes", w.memory());
        // The sender gives up on 500: its floor moves past it.
        assert_eq!(w.on_arrival(1000, 501), Arrival::New);
        assert!(w.memory() <= 16);
        assert_eq!(w.on_arrival(500, 501), Arrival::Duplicate);
    }

    #[test]
    fn ids_far_above_the_floor_are_refused() {
        let mut w = DedupWindow::new(0);
        assert_eq!(w.on_arrival(MAX_WINDOW_SPAN, 0), Arrival::OutOfWindow);
        assert_eq!(w.memory(), 0);
    }

    #[test]
    fn a_restarted_sender_gets_a_fresh_window() {
        let mut s = SenderWindows::default();
        assert_eq!(s.on_arrival(1 << 50, 1 << 50), Arrival::New);
        // A new incarnation far away starts fresh...
        assert_eq!(s.on_arrival(7, 7), Arrival::New);
        assert_eq!(s.on_arrival(7, 7), Arrival::Duplicate);
        // ...and a straggler of the old one is still recognised.
        assert_eq!(s.on_arrival(1 << 50, 1 << 50), Arrival::Duplicate);
    }

    #[test]
    fn a_window_grows_only_within_the_room_given() {
        let mut s = SenderWindows::default();
        assert_eq!(s.on_arrival_within(0, 0, 8), Arrival::New);
        assert_eq!(s.memory(), 8);
        assert_eq!(s.on_arrival_within(64 * 4, 0, 16), Arrival::NoRoom);
        assert_eq!(s.on_arrival_within(64 * 2, 0, 16), Arrival::New);
        assert_eq!(s.memory(), 24);
        // A new life refused for want of room forgets nothing of the old one.
        assert_eq!(s.on_arrival_within(1 << 40, 1 << 40, 0), Arrival::NoRoom);
        assert_eq!(s.on_arrival_within(64 * 2, 0, 0), Arrival::Duplicate);
    }

    proptest! {
        /// Whatever the order and duplication, each id is new exactly once.
        #[test]
        fn each_id_is_new_exactly_once(
            order in proptest::collection::vec(0u64..2000, 0..4000),
        ) {
            let mut w = DedupWindow::new(0);
            let mut delivered = std::collections::HashSet::new();
            for id in order {
                match w.on_arrival(id, 0) {
                    Arrival::New => prop_assert!(delivered.insert(id), "{} twice", id),
                    Arrival::Duplicate => prop_assert!(delivered.contains(&id)),
                    Arrival::OutOfWindow | Arrival::NoRoom => prop_assert!(false),
                }
            }
        }
    }
}
