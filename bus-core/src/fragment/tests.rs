use proptest::prelude::*;

use super::*;
use crate::wire::Frames;

/// Splits the encoding of one frame, `encoded`, into fragments of id `fragment_id`, each
/// encoding in at most `max_frame` bytes. Returns `None` if `max_frame` leaves no room for data.
fn split(fragment_id: u64, encoded: &[u8], max_frame: usize) -> Option<Vec<Frame<'_>>> {
    let len = piece_len(fragment_id, encoded.len(), max_frame)?;
    let count = encoded.len().div_ceil(len);
    Some(
        (0..count)
            .map(|i| piece(fragment_id, encoded, len, i, (false, false)))
            .collect(),
    )
}

const ALICE: PeerId = PeerId([1; 16]);
const MALLORY: PeerId = PeerId([9; 16]);

fn limits() -> ReassemblyLimits {
    ReassemblyLimits {
        max_message: 1 << 20,
        per_sender_bytes: 2 << 20,
        total_bytes: 3 << 20,
        timeout: Duration::from_secs(5),
    }
}

fn message(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 + 7) as u8).collect()
}

/// The fields of a fragment frame.
fn fields<'a>(frame: &Frame<'a>) -> ((u64, u64, u64), &'a [u8]) {
    match *frame {
        Frame::Fragment {
            message_id,
            total_len,
            offset,
            data,
            ..
        } => ((message_id, total_len, offset), data),
        _ => panic!("not a fragment: {frame:?}"),
    }
}

fn feed(r: &mut Reassembler, frame: &Frame<'_>) -> Result<FragmentArrival, FragmentRefused> {
    feed_from(r, ALICE, frame)
}

fn feed_from(
    r: &mut Reassembler,
    sender: PeerId,
    frame: &Frame<'_>,
) -> Result<FragmentArrival, FragmentRefused> {
    let (header, data) = fields(frame);
    r.on_fragment(Instant::ZERO, sender, header, data)
}

#[test]
fn every_fragment_fits_its_frame_budget_and_the_pieces_cover_the_whole() {
    for (len, max_frame) in [
        (1, 16),
        (1199, 1200),
        (1200, 1200),
        (100_000, 1200),
        (70_000, 16_343),
    ] {
        let whole = message(len);
        let frames = split(3, &whole, max_frame).expect("room for data");
        let mut rebuilt = Vec::new();
        for frame in &frames {
            assert!(frame.encoded_len() <= max_frame, "{len} in {max_frame}");
            let mut bytes = Vec::new();
            frame.emit(&mut bytes);
            let parsed: Vec<_> = Frames::new(&bytes)
                .collect::<Result<_, _>>()
                .expect("parses");
            assert_eq!(parsed, vec![frame.clone()]);
            let ((id, total, offset), data) = fields(frame);
            assert_eq!((id, total, offset), (3, len as u64, rebuilt.len() as u64));
            rebuilt.extend_from_slice(data);
        }
        assert_eq!(rebuilt, whole);
    }
    assert!(split(3, &message(10), 5).is_none(), "no room for data");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any order, any duplicates: the frame comes out once, whole, and nothing stays held.
    #[test]
    fn reassembles_in_any_order_with_duplicates(
        len in 1usize..20_000,
        max_frame in 40usize..1500,
        order in proptest::collection::vec(any::<u16>(), 1..400),
    ) {
        let whole = message(len);
        let frames = split(7, &whole, max_frame).expect("room");
        let mut r = Reassembler::new(limits());
        let mut sequence: Vec<usize> = order.iter().map(|i| *i as usize % frames.len()).collect();
        // Every fragment at least once, somewhere after the shuffled prefix.
        sequence.extend(0..frames.len());
        let mut completed = Vec::new();
        for i in sequence {
            if let FragmentArrival::Complete(bytes) = feed(&mut r, &frames[i]).expect("taken") {
                completed.push(bytes);
            }
        }
        prop_assert_eq!(completed, vec![whole]);
        prop_assert_eq!((r.entries(), r.bytes()), (0, 0));
    }
}

#[test]
fn a_claimed_length_over_the_limit_or_a_range_past_the_end_is_refused_and_holds_nothing() {
    let mut r = Reassembler::new(limits());
    let over = (1 << 20) + 1;
    assert_eq!(
        r.on_fragment(Instant::ZERO, MALLORY, (1, over, 0), b"x"),
        Err(FragmentRefused::OutOfBounds)
    );
    assert_eq!(
        r.on_fragment(Instant::ZERO, MALLORY, (1, u64::MAX, u64::MAX - 1), b"xy"),
        Err(FragmentRefused::OutOfBounds)
    );
    assert_eq!(
        r.on_fragment(Instant::ZERO, MALLORY, (1, 100, 99), b"xy"),
        Err(FragmentRefused::OutOfBounds),
        "a piece past the end"
    );
    assert_eq!(
        r.on_fragment(Instant::ZERO, MALLORY, (1, 0, 0), b""),
        Err(FragmentRefused::OutOfBounds)
    );
    assert_eq!((r.entries(), r.bytes()), (0, 0));
}

#[test]
fn a_total_changing_mid_message_or_a_partial_overlap_is_refused_and_the_frame_still_completes() {
    let whole = message(3000);
    let frames = split(5, &whole, 1200).expect("room");
    let mut r = Reassembler::new(limits());
    assert_eq!(feed(&mut r, &frames[0]), Ok(FragmentArrival::Held));
    assert_eq!(r.bytes(), 3000);
    let ((id, _, _), data) = fields(&frames[1]);
    let (_, first) = fields(&frames[0]);
    let second_at = first.len() as u64;
    assert_eq!(
        r.on_fragment(Instant::ZERO, ALICE, (id, 1 << 20, second_at), data),
        Err(FragmentRefused::Inconsistent),
        "another total"
    );
    assert_eq!(
        r.on_fragment(Instant::ZERO, ALICE, (id, 3000, 10), &data[..20]),
        Ok(FragmentArrival::Duplicate),
        "within the first piece: ignored, the piece held is not overwritten"
    );
    assert_eq!(
        r.on_fragment(Instant::ZERO, ALICE, (id, 3000, second_at - 5), &data[..20]),
        Err(FragmentRefused::Inconsistent),
        "straddling the first piece's end"
    );
    assert_eq!(r.bytes(), 3000, "nothing more reserved");
    assert_eq!(feed(&mut r, &frames[0]), Ok(FragmentArrival::Duplicate));
    assert_eq!(feed(&mut r, &frames[2]), Ok(FragmentArrival::Held));
    assert_eq!(
        feed(&mut r, &frames[1]),
        Ok(FragmentArrival::Complete(whole.clone()))
    );
    assert_eq!((r.entries(), r.bytes()), (0, 0));
    assert_eq!(
        feed(&mut r, &frames[1]),
        Ok(FragmentArrival::AlreadyComplete(None)),
        "a late copy of a completed frame does not start it again"
    );
    r.tag_completed(ALICE, 5, CompletedTag::Acknowledged(42));
    assert_eq!(
        feed(&mut r, &frames[0]),
        Ok(FragmentArrival::AlreadyComplete(Some(
            CompletedTag::Acknowledged(42)
        ))),
        "and gives back what was noted of it"
    );
    assert_eq!(r.entries(), 0);
}

#[test]
fn a_flood_of_claimed_frames_stops_at_the_sender_budget_and_the_total_budget() {
    let mut r = Reassembler::new(limits());
    let max = 1u64 << 20;
    for id in 0..100 {
        let arrival = r.on_fragment(Instant::ZERO, MALLORY, (id, max, 0), b"x");
        assert_eq!(
            arrival,
            Ok(FragmentArrival::Held),
            "its own oldest make room"
        );
    }
    assert_eq!(r.bytes(), 2 << 20, "the sender's budget");
    assert_eq!(r.take_evicted(), 98);
    // Other senders share what is left of the total, and no more: they evict nothing of
    // Mallory's, and once the total is reached, a sender holding nothing is refused.
    let mut refused = 0;
    for sender in 10..20u8 {
        match r.on_fragment(Instant::ZERO, PeerId([sender; 16]), (0, max, 0), b"x") {
            Ok(FragmentArrival::Held) => {}
            Err(FragmentRefused::Full) => refused += 1,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!((r.bytes(), refused, r.take_evicted()), (3 << 20, 9, 0));
    assert_eq!(
        r.on_fragment(Instant::ZERO, ALICE, (0, 10, 0), b"x"),
        Err(FragmentRefused::Full)
    );
    assert_eq!(r.handle_timeout(Instant::from_millis(5000)), 3);
    assert_eq!((r.entries(), r.bytes()), (0, 0));
}

/// A sender whose frames lost fragments (a burst its receiver's buffer could not hold) is not
/// refused until they expire: its oldest incomplete frame makes room for its newest, which
/// completes.
#[test]
fn a_sender_out_of_room_drops_its_own_oldest_frame_for_a_new_one() {
    let mut r = Reassembler::new(limits());
    let whole = message(900 << 10);
    for id in 0..2 {
        let frames = split(id, &whole, 16_000).expect("room");
        feed_from(&mut r, ALICE, &frames[1]).expect("held");
    }
    let frames = split(2, &whole, 16_000).expect("room");
    let mut completed = None;
    for frame in &frames {
        if let FragmentArrival::Complete(bytes) = feed_from(&mut r, ALICE, frame).expect("taken") {
            completed = Some(bytes);
        }
    }
    assert_eq!(completed.as_deref(), Some(&whole[..]));
    assert_eq!(r.take_evicted(), 1, "frame 0 made room");
    assert_eq!(r.entries(), 1, "frame 1 is still held");
}

#[test]
fn a_frame_missing_one_fragment_is_freed_at_its_timeout() {
    let whole = message(5000);
    let frames = split(1, &whole, 1200).expect("room");
    let mut r = Reassembler::new(limits());
    let start = Instant::from_millis(1000);
    for frame in &frames[1..] {
        let (header, data) = fields(frame);
        assert_eq!(
            r.on_fragment(start, ALICE, header, data),
            Ok(FragmentArrival::Held)
        );
    }
    assert_eq!((r.entries(), r.bytes()), (1, 5000));
    assert_eq!(r.poll_timeout(), Some(start + Duration::from_secs(5)));
    assert_eq!(r.handle_timeout(start + Duration::from_millis(4999)), 0);
    assert_eq!(r.entries(), 1);
    assert_eq!(r.handle_timeout(start + Duration::from_secs(5)), 1);
    assert_eq!((r.entries(), r.bytes(), r.poll_timeout()), (0, 0, None));
}

#[test]
fn forgetting_a_sender_frees_what_it_held() {
    let mut r = Reassembler::new(limits());
    r.on_fragment(Instant::ZERO, ALICE, (1, 100, 0), b"x")
        .expect("held");
    r.on_fragment(Instant::ZERO, MALLORY, (1, 100, 0), b"x")
        .expect("held");
    r.forget(ALICE);
    assert_eq!((r.entries(), r.bytes()), (1, 100));
}

/// A sender refused because others hold the rest of the total drops nothing of its own for it.
#[test]
fn a_sender_refused_for_want_of_total_room_keeps_what_it_holds() {
    let mut r = Reassembler::new(limits());
    let max = 1u64 << 20;
    r.on_fragment(Instant::ZERO, ALICE, (0, 10, 0), b"x")
        .expect("held");
    // The rest of the total, to the byte.
    for (sender, total) in [(10u8, max), (11, max), (12, max - 10)] {
        let held = r.on_fragment(Instant::ZERO, PeerId([sender; 16]), (0, total, 0), b"x");
        assert_eq!(held, Ok(FragmentArrival::Held));
    }
    assert_eq!(r.bytes(), 3 << 20);
    assert_eq!(
        r.on_fragment(Instant::ZERO, ALICE, (1, max, 0), b"x"),
        Err(FragmentRefused::Full)
    );
    assert_eq!(r.take_evicted(), 0);
    assert_eq!(
        r.on_fragment(Instant::ZERO, ALICE, (0, 10, 1), b"y"),
        Ok(FragmentArrival::Held),
        "its frame is still there"
    );
}

/// A frame still filling in is kept past the timeout: it is dropped only once that long
/// passes with no new piece.
#[test]
fn a_frame_that_makes_progress_is_kept_past_its_timeout() {
    let whole = message(5000);
    let frames = split(1, &whole, 1200).expect("room");
    let mut r = Reassembler::new(limits());
    let mut now = Instant::from_millis(1000);
    for frame in &frames[1..] {
        let (header, data) = fields(frame);
        assert_eq!(
            r.on_fragment(now, ALICE, header, data),
            Ok(FragmentArrival::Held)
        );
        now += Duration::from_secs(4);
        assert_eq!(r.handle_timeout(now), 0);
    }
    let (header, data) = fields(&frames[0]);
    assert_eq!(
        r.on_fragment(now, ALICE, header, data),
        Ok(FragmentArrival::Complete(whole))
    );
}
