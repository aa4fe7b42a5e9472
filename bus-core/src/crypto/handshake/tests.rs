use super::*;
use crate::crypto::{EpochReceiver, OpenError, SenderEpoch};

const CLIENT: PeerId = PeerId([0xc1; 16]);
const RESPONDER: PeerId = PeerId([0xd2; 16]);
const PSK: [u8; 32] = [0x5c; 32];

/// The epoch key derivation of PSK mode, for `EpochReceiver::open`.
fn psk_key(psk: [u8; 32]) -> impl FnOnce(PeerId, &[u8; 32], u64) -> Option<[u8; 32]> {
    move |sender, material, ts| Some(crate::crypto::epoch_key_psk(&psk, sender, material, ts))
}

/// A fresh key pair (the core draws no randomness of its own; tests pass the thread's).
fn fresh() -> Keypair {
    Keypair::generate(&mut rand::rng()).unwrap()
}

fn psk() -> Credentials {
    Credentials::Psk {
        key: PresharedKey(PSK),
        responder: RESPONDER,
    }
}

fn handshake(initiator: &Credentials, responder: &Credentials) -> (Session, Session, Vec<Vec<u8>>) {
    let (initiation, init) = Initiation::start(CLIENT, initiator, 7, 1_000, fresh()).unwrap();
    let accepted = respond(&init, responder, 9, Instant::ZERO, fresh()).unwrap();
    assert_eq!(accepted.client, CLIENT);
    assert_eq!(accepted.timestamp, 1_000);
    let session = initiation
        .finish(&accepted.response, Instant::ZERO)
        .unwrap();
    (
        session,
        accepted.session,
        vec![init.to_vec(), accepted.response.to_vec()],
    )
}

fn sealed(session: &mut Session, body: &[u8]) -> Vec<u8> {
    let mut packet = Vec::new();
    session.seal(body, &mut packet).unwrap();
    packet
}

#[test]
fn psk_handshake_gives_sessions_that_talk_both_ways() {
    let (mut a, mut b, wire) = handshake(&psk(), &psk());
    assert_eq!(wire[0].len(), INIT_LEN);
    assert_eq!(wire[1].len(), RESP_LEN);
    assert_eq!((a.local_index, a.remote_index), (7, 9));
    assert_eq!((b.local_index, b.remote_index), (9, 7));
    let mut packet = sealed(&mut a, b"hello");
    assert_eq!(b.open(&mut packet).unwrap(), b"hello");
    let mut packet = sealed(&mut b, b"back");
    assert_eq!(a.open(&mut packet).unwrap(), b"back");
}

#[test]
fn public_key_handshake_gives_sessions_that_talk() {
    let client = fresh();
    let server = fresh();
    let initiator = Credentials::PublicKey {
        local: client.clone(),
        remote: *server.public(),
    };
    let responder = Credentials::PublicKey {
        local: server,
        remote: *client.public(),
    };
    let (mut a, mut b, _) = handshake(&initiator, &responder);
    let mut packet = sealed(&mut a, b"pk");
    assert_eq!(b.open(&mut packet).unwrap(), b"pk");
}

#[test]
fn the_wrong_psk_is_refused_at_mac1_before_any_dh() {
    let (_, init) = Initiation::start(CLIENT, &psk(), 1, 1, fresh()).unwrap();
    let wrong = Credentials::Psk {
        key: PresharedKey([0x11; 32]),
        responder: RESPONDER,
    };
    assert_eq!(
        respond(&init, &wrong, 2, Instant::ZERO, fresh()).unwrap_err(),
        HandshakeError::BadMac
    );
}

#[test]
fn a_tampered_initiation_or_response_is_refused() {
    let (_, init) = Initiation::start(CLIENT, &psk(), 1, 1, fresh()).unwrap();
    for i in 0..100 {
        // Every byte mac1 covers; mac2 (100..116) is reserved and ignored.
        let mut bad = init;
        bad[i] ^= 0x01;
        assert!(
            respond(&bad, &psk(), 2, Instant::ZERO, fresh()).is_err(),
            "byte {i}"
        );
    }
    let (initiation, init) = Initiation::start(CLIENT, &psk(), 1, 1, fresh()).unwrap();
    let accepted = respond(&init, &psk(), 2, Instant::ZERO, fresh()).unwrap();
    let mut bad = accepted.response;
    bad[20] ^= 0x80;
    assert!(initiation.finish(&bad, Instant::ZERO).is_err());
}

#[test]
fn a_response_to_another_initiation_is_refused() {
    let (first, _) = Initiation::start(CLIENT, &psk(), 1, 1, fresh()).unwrap();
    let (_, second) = Initiation::start(CLIENT, &psk(), 2, 2, fresh()).unwrap();
    let accepted = respond(&second, &psk(), 3, Instant::ZERO, fresh()).unwrap();
    assert_eq!(
        first.finish(&accepted.response, Instant::ZERO).unwrap_err(),
        HandshakeError::UnknownIndex
    );
}

#[test]
fn a_tampered_byte_anywhere_is_dropped_and_changes_nothing() {
    let (mut a, mut b, _) = handshake(&psk(), &psk());
    let packet = sealed(&mut a, b"payload of some length");
    for i in 0..packet.len() {
        for flip in [0x01, 0x80] {
            let mut bad = packet.clone();
            bad[i] ^= flip;
            assert!(b.open(&mut bad).is_err(), "byte {i} flipped by {flip:#x}");
        }
    }
    // The genuine packet is still accepted afterwards: nothing moved.
    let mut good = packet.clone();
    assert_eq!(b.open(&mut good).unwrap(), b"payload of some length");
}

#[test]
fn a_rewritten_suite_byte_is_dropped() {
    let (mut a, mut b, _) = handshake(&psk(), &psk());
    let mut packet = sealed(&mut a, b"x");
    packet[1] = 0x00;
    assert_eq!(b.open(&mut packet).unwrap_err(), OpenError::BadSuite(0));
    let mut packet = sealed(&mut a, b"x");
    packet[1] = 0x02;
    assert_eq!(b.open(&mut packet).unwrap_err(), OpenError::BadSuite(2));
    let mut next = sealed(&mut a, b"next");
    assert_eq!(b.open(&mut next).unwrap(), b"next");
}

#[test]
fn replayed_packets_are_never_accepted_twice() {
    let (mut a, mut b, _) = handshake(&psk(), &psk());
    let packets: Vec<Vec<u8>> = (0..3000u32)
        .map(|i| sealed(&mut a, &i.to_le_bytes()))
        .collect();
    let mut accepted = std::collections::HashSet::new();
    // Out of order: evens, then odds backwards, then everything again, twice.
    let order = (0..3000)
        .step_by(2)
        .chain((1..3000).step_by(2).rev())
        .chain(0..3000)
        .chain((0..3000).rev());
    for i in order {
        let mut copy = packets[i].clone();
        if let Ok(body) = b.open(&mut copy) {
            assert!(accepted.insert(body.to_vec()), "packet {i} accepted twice");
        }
    }
    // Everything within the window of the highest was accepted once; nothing twice.
    assert!(accepted.len() >= 1984);
    let mut fresh = sealed(&mut a, b"fresh");
    assert_eq!(b.open(&mut fresh).unwrap(), b"fresh");
}

#[test]
fn a_packet_for_another_session_is_dropped() {
    let (mut a, _, _) = handshake(&psk(), &psk());
    let (_, mut other, _) = handshake(&psk(), &psk());
    other.local_index = 99;
    let mut packet = sealed(&mut a, b"x");
    assert_eq!(
        other.open(&mut packet).unwrap_err(),
        OpenError::UnknownSender
    );
    // Same index, other keys: authentication fails.
    let (mut a, _, _) = handshake(&psk(), &psk());
    let (_, mut stranger, _) = handshake(&psk(), &psk());
    let mut packet = sealed(&mut a, b"x");
    assert_eq!(stranger.open(&mut packet).unwrap_err(), OpenError::Auth);
}

#[test]
fn multicast_epochs_open_for_key_holders_only() {
    let mut epoch = SenderEpoch::new_psk(CLIENT, &PSK, [0x42; 32], 1_790_000_000_000);
    let mut receiver = EpochReceiver::new(4);
    let mut packet = Vec::new();
    epoch.seal(b"to all", &mut packet).unwrap();
    let mut copy = packet.clone();
    let (sender, body) = receiver.open(&mut copy, psk_key(PSK)).unwrap();
    assert_eq!((sender, body), (CLIENT, &b"to all"[..]));
    // Replayed.
    let mut copy = packet.clone();
    assert_eq!(
        receiver.open(&mut copy, psk_key(PSK)).unwrap_err(),
        OpenError::Replay
    );
    // The wrong key, or an unknown sender: refused, and nothing cached.
    let mut other = EpochReceiver::new(4);
    let mut copy = packet.clone();
    assert_eq!(
        other.open(&mut copy, psk_key([0; 32])).unwrap_err(),
        OpenError::Auth
    );
    let mut copy = packet.clone();
    assert_eq!(
        other.open(&mut copy, |_, _, _| None).unwrap_err(),
        OpenError::UnknownSender
    );
    assert!(other.is_empty());
    // A tampered byte anywhere.
    let mut next = Vec::new();
    epoch.seal(b"second", &mut next).unwrap();
    for i in 0..next.len() {
        let mut bad = next.clone();
        bad[i] ^= 0x04;
        assert!(receiver.open(&mut bad, psk_key(PSK)).is_err(), "byte {i}");
    }
    assert_eq!(receiver.open(&mut next, psk_key(PSK)).unwrap().1, b"second");
}

/// Pavillion's bug 1: a secret key in a handshake packet. Every byte sent during a handshake
/// and a session is searched for every secret: the PSK, static and ephemeral private keys, and
/// both session keys.
#[test]
fn no_secret_ever_travels() {
    let client_static = fresh();
    let server_static = fresh();
    let ephemeral_i = fresh();
    let ephemeral_r = fresh();
    let mut wire: Vec<Vec<u8>> = Vec::new();
    let mut secrets: Vec<[u8; 32]> = vec![
        PSK,
        *client_static.private_bytes(),
        *server_static.private_bytes(),
        *ephemeral_i.private_bytes(),
        *ephemeral_r.private_bytes(),
    ];
    // PSK mode, then public-key mode, each followed by a session's worth of packets.
    let modes = [
        (psk(), psk()),
        (
            Credentials::PublicKey {
                local: client_static.clone(),
                remote: *server_static.public(),
            },
            Credentials::PublicKey {
                local: server_static.clone(),
                remote: *client_static.public(),
            },
        ),
    ];
    for (initiator, responder) in modes {
        let (initiation, init) =
            Initiation::start(CLIENT, &initiator, 1, 1, ephemeral_i.clone()).unwrap();
        let accepted = respond(&init, &responder, 2, Instant::ZERO, ephemeral_r.clone()).unwrap();
        let mut a = initiation
            .finish(&accepted.response, Instant::ZERO)
            .unwrap();
        let mut b = accepted.session;
        wire.push(init.to_vec());
        wire.push(accepted.response.to_vec());
        secrets.extend(a.keys());
        secrets.extend(b.keys());
        for i in 0..100u8 {
            let body = vec![i; usize::from(i)];
            wire.push(sealed(&mut a, &body));
            wire.push(sealed(&mut b, &body));
        }
    }
    for datagram in &wire {
        for secret in &secrets {
            // Any 8 consecutive bytes of a secret would be a leak.
            for window in secret.windows(8) {
                assert!(
                    !datagram.windows(8).any(|w| w == window),
                    "a secret appears on the wire"
                );
            }
        }
    }
}

#[test]
fn public_key_epochs_open_for_the_group_and_name_the_sender() {
    let sender_static = fresh();
    let group = fresh();
    let mut epoch =
        SenderEpoch::generate_pk(CLIENT, &sender_static, group.public(), 5, &mut rand::rng())
            .unwrap();
    let mut packet = Vec::new();
    epoch.seal(b"to the group", &mut packet).unwrap();
    let mut receiver = EpochReceiver::new(4);
    let key_of = |static_key: [u8; 32]| {
        let group = group.clone();
        move |sender, material: &[u8; 32], ts| {
            crate::crypto::epoch_key_receiver(&group, sender, &static_key, material, ts).ok()
        }
    };
    // With another static key claimed for the sender, nothing opens.
    let impostor = fresh();
    let mut copy = packet.clone();
    assert_eq!(
        receiver
            .open(&mut copy, key_of(*impostor.public()))
            .unwrap_err(),
        OpenError::Auth
    );
    let (sender, body) = receiver
        .open(&mut packet, key_of(*sender_static.public()))
        .unwrap();
    assert_eq!((sender, body), (CLIENT, &b"to the group"[..]));
}

#[test]
fn a_cookie_round_trip_proves_the_initiators_address() {
    let here: std::net::SocketAddr = "127.0.0.1:4000".parse().unwrap();
    let elsewhere: std::net::SocketAddr = "127.0.0.1:4001".parse().unwrap();
    let secret = CookieSecret::new(Instant::ZERO, &mut rand::rng());
    let (mut initiation, init) = Initiation::start(CLIENT, &psk(), 5, 1, fresh()).unwrap();
    // No mac2 yet: a responder under load answers with a cookie instead of working.
    assert!(!secret.check_mac2(&init, here));
    let reply = secret.reply(&init, here, &psk(), &mut rand::rng()).unwrap();
    assert_eq!(reply.len(), COOKIE_REPLY_LEN);
    assert!(reply.len() < init.len(), "no amplification");
    // A tampered reply is refused.
    let mut bad = reply;
    bad[40] ^= 1;
    assert_eq!(
        initiation.accept_cookie(&bad).unwrap_err(),
        HandshakeError::Auth
    );
    let again = initiation.accept_cookie(&reply).unwrap();
    assert!(secret.check_mac2(&again, here));
    assert!(
        !secret.check_mac2(&again, elsewhere),
        "the cookie is bound to the address"
    );
    // The retried initiation is otherwise the same one, and completes the handshake.
    assert_eq!(again[..100], init[..100]);
    let accepted = respond(&again, &psk(), 6, Instant::ZERO, fresh()).unwrap();
    assert!(initiation.finish(&accepted.response, Instant::ZERO).is_ok());
}
