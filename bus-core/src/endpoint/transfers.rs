//! Frames larger than a datagram on their way out: each copy a [`Transfer`] whose pieces go
//! one datagram at a time, after everything else queued. A reliable message's transfers are
//! paced and repaired from what its receivers report they hold ([`Frame::FragmentAck`]):
//! only missing pieces are sent again, and no more than
//! [`EndpointConfig::large_window`](super::EndpointConfig::large_window) bytes are in flight
//! toward a peer, so a large message neither overflows a receiver's socket buffer nor sits in
//! front of the small messages sent after it.

use std::cmp::Reverse;
use std::collections::VecDeque;
use std::ops::Range;

use bytes::Bytes;

use super::{Endpoint, Target};
use crate::PeerId;
use crate::fragment;
use crate::metrics::DropReason;
use crate::time::Instant;
use crate::wire::{AckRanges, Frame, FrameType};

/// One copy of a fragmented frame to one target.
#[derive(Debug)]
pub(super) struct Transfer {
    target: Target,
    frame: Bytes,
    fragment_id: u64,
    piece_len: usize,
    /// The pieces still to send, by index, ascending.
    todo: VecDeque<Range<usize>>,
    /// A reliable message's copy: the message's id (its receivers' reports pace the copy).
    message_id: Option<u64>,
    /// The peer a reliable unicast copy is for; a group copy is for every peer still owed.
    peer: Option<PeerId>,
    /// Pieces sent since the last that asked for a report.
    unreported: u64,
}

impl Transfer {
    /// A best-effort copy of `frame`, every piece once.
    pub(super) fn best_effort(
        target: Target,
        frame: Bytes,
        fragment_id: u64,
        piece_len: usize,
    ) -> Transfer {
        let pieces = frame.len().div_ceil(piece_len);
        Transfer {
            target,
            frame,
            fragment_id,
            piece_len,
            todo: all_pieces(pieces),
            message_id: None,
            peer: None,
            unreported: 0,
        }
    }

    fn bytes(&self) -> usize {
        self.todo.iter().map(|r| r.len()).sum::<usize>() * self.piece_len
    }
}

/// A fragmented reliable message's progress toward each peer still owed it.
#[derive(Debug)]
pub(super) struct Large {
    pub(super) fragment_id: u64,
    piece_len: usize,
    total: u64,
    peers: Vec<Progress>,
}

#[derive(Debug)]
struct Progress {
    peer: PeerId,
    /// The byte ranges it held at its latest report, ascending `start..end`.
    held: Vec<(u64, u64)>,
    held_bytes: u64,
    /// The end of the highest piece sent to it.
    sent_end: u64,
    /// Bytes sent to it, and those of them taken for lost since (sent again, or written off at
    /// a timeout): what is neither held nor lost is in flight.
    sent: u64,
    lost: u64,
    /// Holes below this were sent again since the last timeout.
    repaired_below: u64,
    /// Bytes it may have in flight: the configured window, down to two pieces after a
    /// retransmission timeout, then growing again by what it reports held (slow start).
    window: u64,
}

/// Pieces above a hole that must have arrived before it is taken for lost rather than late.
const REORDERING_PIECES: u64 = 3;

/// Pieces sent at most between two that ask for a report.
const REPORT_EVERY: u64 = 16;

/// Held ranges a report frame carries at most: well inside a datagram (a few bytes each).
const RANGES_PER_REPORT: usize = 64;

impl Progress {
    fn window_shut(&self) -> bool {
        self.sent.saturating_sub(self.lost + self.held_bytes) >= self.window
    }

    /// Takes a report: of the bytes of `span`, exactly those of `held` are held.
    fn apply_report(&mut self, span: Range<u64>, held: &AckRanges) {
        let reported = held
            .ranges()
            .iter()
            .rev()
            .map(|r| (*r.start(), r.end().saturating_add(1)));
        // What was known outside the span stays, clipped to it.
        let below = self
            .held
            .iter()
            .filter(|&&(s, _)| s < span.start)
            .map(|&(s, e)| (s, e.min(span.start)));
        let above = self
            .held
            .iter()
            .filter(|&&(_, e)| e > span.end)
            .map(|&(s, e)| (s.max(span.end), e));
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(self.held.len());
        for (s, e) in below.chain(reported).chain(above) {
            match merged.last_mut() {
                Some(last) if last.1 >= s => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        self.held_bytes = merged.iter().map(|(s, e)| e - s).sum();
        self.held = merged;
    }

    fn holds(&self, start: u64, end: u64) -> bool {
        let at = self.held.partition_point(|&(_, e)| e < end);
        self.held
            .get(at)
            .is_some_and(|&(s, e)| s <= start && end <= e)
    }

    /// The byte ranges of `from..to` it did not hold at its latest report.
    fn holes(&self, from: u64, to: u64) -> Vec<(u64, u64)> {
        let mut holes = Vec::new();
        let mut at = from;
        for &(s, e) in &self.held {
            if s >= to {
                break;
            }
            if s > at {
                holes.push((at, s));
            }
            at = at.max(e);
        }
        if at < to {
            holes.push((at, to));
        }
        holes
    }
}

impl Large {
    /// A message of `total` bytes in pieces of `piece_len`, owed to `peers`, with `window`
    /// bytes in flight toward each.
    pub(super) fn new(
        fragment_id: u64,
        (piece_len, total): (usize, usize),
        peers: &[PeerId],
        window: usize,
    ) -> Large {
        Large {
            fragment_id,
            piece_len,
            total: total as u64,
            peers: peers
                .iter()
                .map(|peer| Progress {
                    peer: *peer,
                    held: Vec::new(),
                    held_bytes: 0,
                    sent_end: 0,
                    sent: 0,
                    lost: 0,
                    repaired_below: 0,
                    window: window as u64,
                })
                .collect(),
        }
    }

    /// `peer` is owed the message no more.
    pub(super) fn done(&mut self, peer: PeerId) {
        self.peers.retain(|p| p.peer != peer);
    }

    fn progress(&mut self, peer: PeerId) -> Option<&mut Progress> {
        self.peers.iter_mut().find(|p| p.peer == peer)
    }

    /// The pieces covering the byte ranges `holes`.
    fn pieces(&self, holes: &[(u64, u64)]) -> VecDeque<Range<usize>> {
        let len = self.piece_len as u64;
        let mut pieces: VecDeque<Range<usize>> = VecDeque::new();
        for &(s, e) in holes {
            let range = (s / len) as usize..e.div_ceil(len) as usize;
            match pieces.back_mut() {
                Some(last) if last.end >= range.start => last.end = last.end.max(range.end),
                _ => pieces.push_back(range),
            }
        }
        pieces
    }

    /// A reliable copy of the message `frame` (id `message_id`) to `target`: every piece, or
    /// those of `holes`.
    fn transfer(
        &self,
        (target, peer): (Target, Option<PeerId>),
        (message_id, frame): (u64, Bytes),
        holes: Option<&[(u64, u64)]>,
    ) -> Transfer {
        let todo = match holes {
            Some(holes) => self.pieces(holes),
            None => all_pieces((self.total as usize).div_ceil(self.piece_len)),
        };
        Transfer {
            target,
            frame,
            fragment_id: self.fragment_id,
            piece_len: self.piece_len,
            todo,
            message_id: Some(message_id),
            peer,
            unreported: 0,
        }
    }
}

impl Endpoint {
    /// Queues `transfer`: behind the other transfers, or, for a repair, in front of them (it
    /// completes a message its receiver already holds most of).
    pub(super) fn queue_transfer(&mut self, transfer: Transfer, repair: bool) {
        if transfer.todo.is_empty() {
            return;
        }
        self.bulk_bytes += transfer.bytes();
        if repair {
            self.bulk.push_front(transfer);
        } else {
            self.bulk.push_back(transfer);
        }
        self.mark_busy();
    }

    /// Queues a whole copy of the large reliable message `message_id` to `target` (`peer`'s
    /// address, or the group for every peer owed it).
    pub(super) fn queue_large_copy(
        &mut self,
        message_id: u64,
        target: Target,
        peer: Option<PeerId>,
    ) {
        let Some(pending) = self.pending.get(&message_id) else {
            return;
        };
        let Some(large) = &pending.large else {
            return;
        };
        let transfer = large.transfer((target, peer), (message_id, pending.frame.clone()), None);
        self.queue_transfer(transfer, false);
    }

    /// A retransmission timeout of the large reliable message `message_id` toward `peer` at
    /// `addr`: everything sent to it that its latest report did not show held is taken for
    /// lost and sent again (at least one piece, whose report tells what it holds now), two
    /// pieces at first, more as it reports them held.
    pub(super) fn resend_large(
        &mut self,
        message_id: u64,
        peer: PeerId,
        addr: std::net::SocketAddr,
    ) -> bool {
        let Some(pending) = self.pending.get_mut(&message_id) else {
            return false;
        };
        let frame = pending.frame.clone();
        let Some(large) = pending.large.as_mut() else {
            return false;
        };
        let piece_len = large.piece_len as u64;
        let Some(progress) = large.progress(peer) else {
            return false;
        };
        if progress.sent_end == 0 {
            // Its first copy has not started yet: nothing to take for lost.
            return false;
        }
        let mut holes = progress.holes(0, progress.sent_end);
        if holes.is_empty() {
            // All held at the latest report, yet no acknowledgement: the last piece asks again
            // (a receiver that completed the message acknowledges it again).
            let last = progress.sent_end.saturating_sub(1);
            holes.push((last, last + 1));
        }
        progress.lost = progress.sent.saturating_sub(progress.held_bytes);
        progress.repaired_below = progress.sent_end;
        progress.window = 2 * piece_len;
        let transfer = large.transfer(
            (Target::Unicast(addr), Some(peer)),
            (message_id, frame),
            Some(&holes),
        );
        self.queue_transfer(transfer, true);
        true
    }

    /// `peer` reported what it holds of our fragmented frame `fragment_id`: the window toward
    /// it moves, its retransmission timer restarts if it got further, and the holes far enough
    /// below what it holds are sent again at once.
    pub(super) fn on_fragment_report(
        &mut self,
        now: Instant,
        peer: PeerId,
        fragment_id: u64,
        (span, held): (std::ops::Range<u64>, &AckRanges),
    ) {
        let Some(&message_id) = self.large_ids.get(&fragment_id) else {
            return;
        };
        let Some(addr) = self.addr_of(peer) else {
            return;
        };
        let Some(pending) = self.pending.get_mut(&message_id) else {
            return;
        };
        let frame = pending.frame.clone();
        let Some(large) = pending.large.as_mut() else {
            return;
        };
        let (total, piece_len) = (large.total, large.piece_len as u64);
        let Some(progress) = large.progress(peer) else {
            return;
        };
        // A span past the frame's end is a liar's: the report is ignored whole.
        if span.end > total {
            self.metrics.dropped(DropReason::FragmentInvalid);
            return;
        }
        let before = progress.held_bytes;
        progress.apply_report(span, held);
        let grew = progress.held_bytes > before;
        if grew {
            let most = self.config.large_window as u64;
            progress.window = (progress.window + progress.held_bytes - before).min(most);
        }
        let held_end = progress.held.last().map_or(0, |&(_, e)| e);
        // Pieces arrive in order but for loss and some reordering: a hole is taken for lost
        // once pieces well above it arrived, or once the last piece did.
        let repair_to = if held_end == total {
            total
        } else {
            held_end.saturating_sub(REORDERING_PIECES * piece_len)
        };
        let holes = if repair_to > progress.repaired_below {
            let holes = progress.holes(progress.repaired_below, repair_to);
            progress.repaired_below = repair_to;
            progress.lost += holes.iter().map(|(s, e)| e - s).sum::<u64>();
            holes
        } else {
            Vec::new()
        };
        if grew && let Some(at) = pending.send.progressed(peer, now) {
            self.wakes.push(Reverse((at, message_id)));
        }
        let transfer = (!holes.is_empty()).then(|| {
            large.transfer(
                (Target::Unicast(addr), Some(peer)),
                (message_id, frame),
                Some(&holes),
            )
        });
        if let Some(transfer) = transfer {
            self.queue_transfer(transfer, true);
        }
        // The window may have opened.
        self.mark_busy();
    }

    /// The next fragment to send, once nothing else is queued: from the first transfer the
    /// window lets send (a best-effort copy always may).
    pub(super) fn poll_bulk(&mut self) -> Option<(Target, Vec<u8>)> {
        let mut i = 0;
        while i < self.bulk.len() {
            match self.bulk_step(i) {
                Step::Send(target, body) => {
                    if self.bulk[i].todo.is_empty() {
                        self.bulk.remove(i);
                    }
                    self.metrics.frame_out(FrameType::Fragment);
                    return Some((target, body));
                }
                Step::Skipped => {
                    if self.bulk[i].todo.is_empty() {
                        self.bulk.remove(i);
                    }
                }
                Step::Shut => i += 1,
                Step::Over => self.drop_transfer(i),
            }
        }
        None
    }

    /// The next piece of transfer `i`, if it may go.
    fn bulk_step(&mut self, i: usize) -> Step {
        if let Some(shut) = self.may_not_start(i) {
            return shut;
        }
        let Endpoint {
            bulk,
            bulk_bytes,
            pending,
            ..
        } = self;
        let transfer = &mut bulk[i];
        let mut large = match transfer.message_id {
            None => None,
            Some(id) => match pending.get_mut(&id).and_then(|p| p.large.as_mut()) {
                Some(large) => Some(large),
                // Finished meanwhile.
                None => return Step::Over,
            },
        };
        let peer = transfer.peer;
        // Reports are asked for four times a window (the smallest of the peers'), at most
        // every REPORT_EVERY pieces, and at the end of the copy.
        let mut report_every = 0;
        if let Some(large) = &large {
            let owed = || {
                large
                    .peers
                    .iter()
                    .filter(|p| peer.is_none_or(|peer| peer == p.peer))
            };
            let Some(window) = owed().map(|p| p.window).min() else {
                return Step::Over;
            };
            if owed().any(Progress::window_shut) {
                return Step::Shut;
            }
            let pieces = window / (4 * large.piece_len as u64);
            report_every = pieces.clamp(1, REPORT_EVERY);
        }
        let Some(index) = next_piece(transfer) else {
            return Step::Over;
        };
        *bulk_bytes = bulk_bytes.saturating_sub(transfer.piece_len);
        transfer.unreported += 1;
        let report =
            large.is_some() && (transfer.unreported >= report_every || transfer.todo.is_empty());
        if report {
            transfer.unreported = 0;
        }
        let piece = fragment::piece(
            transfer.fragment_id,
            &transfer.frame,
            transfer.piece_len,
            index,
            (large.is_some(), report),
        );
        let Frame::Fragment { offset, data, .. } = &piece else {
            return Step::Over;
        };
        let (start, end) = (*offset, *offset + data.len() as u64);
        if let Some(large) = large.as_mut() {
            let held = |p: &Progress| p.peer == peer.unwrap_or(p.peer) && p.holds(start, end);
            if peer.is_some() && large.peers.iter().any(held) {
                // A repair skips what its peer's latest report holds.
                return Step::Skipped;
            }
            for progress in &mut large.peers {
                if peer.is_none_or(|peer| peer == progress.peer) {
                    progress.sent += end - start;
                    progress.sent_end = progress.sent_end.max(end);
                }
            }
        }
        let mut body = Vec::with_capacity(piece.encoded_len());
        piece.emit(&mut body);
        Step::Send(transfer.target, body)
    }

    /// Why transfer `i`, of a reliable message, may not go now: its message finished
    /// ([`Step::Over`]), or it is the first copy toward a peer that holds other large messages
    /// of ours in part, as many as its reassembly can take ([`Step::Shut`]; a receiver out of
    /// room drops its oldest incomplete frame, which we would then send again whole). Peers
    /// are taken to share our [`ReassemblyLimits`](crate::fragment::ReassemblyLimits).
    fn may_not_start(&self, i: usize) -> Option<Step> {
        let transfer = &self.bulk[i];
        let message_id = transfer.message_id?;
        let Some(large) = self.pending.get(&message_id).and_then(|p| p.large.as_ref()) else {
            return Some(Step::Over);
        };
        let budget = self.config.reassembly.per_sender_bytes as u64;
        let starting = large
            .peers
            .iter()
            .filter(|p| p.sent == 0 && transfer.peer.is_none_or(|peer| peer == p.peer));
        for progress in starting {
            let started: u64 = self
                .large_ids
                .values()
                .filter(|id| **id != message_id)
                .filter_map(|id| self.pending.get(id).and_then(|p| p.large.as_ref()))
                .filter(|other| {
                    other
                        .peers
                        .iter()
                        .any(|p| p.peer == progress.peer && p.sent > 0)
                })
                .map(|other| other.total)
                .sum();
            if started > 0 && started + large.total > budget {
                return Some(Step::Shut);
            }
        }
        None
    }

    fn drop_transfer(&mut self, i: usize) {
        if let Some(transfer) = self.bulk.remove(i) {
            self.bulk_bytes = self.bulk_bytes.saturating_sub(transfer.bytes());
        }
    }

    /// Turns the reports owed into fragment-ack frames: what each sender's incomplete frames
    /// hold now, in as many frames as their holes need, for spans one after the other up to
    /// the frame's end.
    pub(super) fn queue_fragment_reports(&mut self) {
        for (to, sender, fragment_id) in std::mem::take(&mut self.reports_owed) {
            let Some((held, total)) = self.reassembler.held(sender, fragment_id) else {
                // Completed (its acknowledgement says so) or dropped meanwhile.
                continue;
            };
            let mut reports = Vec::with_capacity(held.len().div_ceil(RANGES_PER_REPORT));
            let mut start = 0;
            let mut chunks = held.chunks(RANGES_PER_REPORT).peekable();
            while let Some(chunk) = chunks.next() {
                let end = match chunks.peek() {
                    Some(next) => next[0].0,
                    None => total,
                };
                let held = AckRanges::from_ranges(chunk.iter().map(|&(s, e)| s..=e - 1));
                reports.push(Frame::FragmentAck {
                    fragment_id,
                    span: start..end,
                    held,
                });
                start = end;
            }
            for report in &reports {
                if self.queue(Target::Unicast(to), report).is_err() {
                    self.metrics.dropped(DropReason::SendFailed);
                }
            }
        }
    }
}

/// What the next piece of a transfer does.
enum Step {
    /// Goes, in this datagram body.
    Send(Target, Vec<u8>),
    /// Is held by its peer already: not sent.
    Skipped,
    /// Waits for the window to open.
    Shut,
    /// None: the transfer is over (sent, or its message finished).
    Over,
}

/// Pieces `0..count`, as a transfer's list.
fn all_pieces(count: usize) -> VecDeque<Range<usize>> {
    let mut todo = VecDeque::with_capacity(1);
    todo.push_back(0..count);
    todo
}

/// The next piece `transfer` sends, taken off its list.
fn next_piece(transfer: &mut Transfer) -> Option<usize> {
    let range = transfer.todo.front_mut()?;
    let index = range.start;
    range.start += 1;
    if range.start >= range.end {
        transfer.todo.pop_front();
    }
    Some(index)
}
