//! The anti-replay window of RFC 6479: a ring of bits over the highest counters seen.
//!
//! Checking and updating are separate so that the caller can check before the AEAD and update
//! only after it verifies: a forged packet cannot move the window.

/// Bits in the ring (32 words of 64).
const BITS: u64 = 2048;
/// How far below the highest counter a packet may still be accepted: the ring less one word,
/// which RFC 6479 keeps clear for the next advance.
pub const REPLAY_WINDOW: u64 = BITS - 64;

/// Which counters of one key have been accepted. 256 bytes.
#[derive(Clone, Debug)]
pub struct ReplayWindow {
    highest: Option<u64>,
    ring: [u64; (BITS / 64) as usize],
}

impl Default for ReplayWindow {
    fn default() -> ReplayWindow {
        ReplayWindow {
            highest: None,
            ring: [0; (BITS / 64) as usize],
        }
    }
}

impl ReplayWindow {
    fn position(counter: u64) -> (usize, u64) {
        let word = ((counter / 64) % (BITS / 64)) as usize;
        (word, 1 << (counter % 64))
    }

    /// Whether `counter` may be new: above the window's floor and not seen. Changes nothing.
    pub fn check(&self, counter: u64) -> bool {
        let Some(highest) = self.highest else {
            return true;
        };
        if counter > highest {
            return true;
        }
        if highest - counter >= REPLAY_WINDOW {
            return false;
        }
        let (word, bit) = Self::position(counter);
        self.ring[word] & bit == 0
    }

    /// Records `counter` as accepted (call only after the packet authenticated). Returns false,
    /// changing nothing, if it was not new.
    pub fn accept(&mut self, counter: u64) -> bool {
        if !self.check(counter) {
            return false;
        }
        match self.highest {
            Some(highest) if counter <= highest => {}
            previous => {
                // Clear the words the window moves over.
                let from = previous.map_or(0, |h| h / 64 + 1);
                let to = counter / 64;
                let words = (to + 1).saturating_sub(from).min(BITS / 64);
                for i in 0..words {
                    let word = ((to - i) % (BITS / 64)) as usize;
                    self.ring[word] = 0;
                }
                self.highest = Some(counter);
            }
        }
        let (word, bit) = Self::position(counter);
        self.ring[word] |= bit;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn in_order_out_of_order_and_replayed() {
        let mut w = ReplayWindow::default();
        assert!(w.accept(0));
        assert!(w.accept(2));
        assert!(w.accept(1));
        assert!(!w.accept(1));
        assert!(!w.accept(0));
        assert!(w.accept(100));
        assert!(w.accept(50));
        assert!(!w.accept(50));
    }

    #[test]
    fn too_old_is_refused_after_the_window_moves() {
        let mut w = ReplayWindow::default();
        assert!(w.accept(5));
        assert!(w.accept(5 + REPLAY_WINDOW));
        assert!(!w.check(5), "exactly the window's width below the highest");
        assert!(!w.accept(4));
        assert!(w.accept(6), "just inside the window");
        assert!(!w.accept(6));
    }

    #[test]
    fn a_big_jump_clears_the_ring() {
        let mut w = ReplayWindow::default();
        for c in 0..2000 {
            assert!(w.accept(c));
        }
        assert!(w.accept(1_000_000));
        // Everything still inside the window is new again except what was accepted.
        assert!(w.check(1_000_000 - 1));
        assert!(!w.check(1_000_000));
        assert!(!w.check(1999));
    }

    #[test]
    fn check_changes_nothing() {
        let mut w = ReplayWindow::default();
        assert!(w.check(10));
        assert!(w.check(10));
        assert!(w.accept(10));
        assert!(!w.check(10));
    }

    proptest! {
        /// No counter is ever accepted twice, and any counter within the window that was not
        /// accepted before is accepted.
        #[test]
        fn never_twice_and_nothing_new_refused(
            counters in proptest::collection::vec(0u64..6000, 0..3000),
        ) {
            let mut w = ReplayWindow::default();
            let mut accepted = std::collections::HashSet::new();
            let mut highest: Option<u64> = None;
            for c in counters {
                let fresh = !accepted.contains(&c)
                    && highest.is_none_or(|h| c > h || h - c < REPLAY_WINDOW);
                prop_assert_eq!(w.accept(c), fresh, "counter {}", c);
                if fresh {
                    accepted.insert(c);
                    highest = Some(highest.map_or(c, |h| h.max(c)));
                }
            }
        }
    }
}
