use super::*;
use proptest::prelude::*;

fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap()
}

#[test]
fn rfc9605_header_vectors() {
    let text = include_str!("../../tests/data/rfc9605-headers.txt");
    let mut n = 0;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let mut it = line.split_whitespace();
        let kid = u64::from_str_radix(&it.next().unwrap()[2..], 16).unwrap();
        let ctr = u64::from_str_radix(&it.next().unwrap()[2..], 16).unwrap();
        let want = unhex(it.next().unwrap());
        let h = SframeHeader { kid, ctr };
        let mut out = [0u8; MAX_SFRAME_HEADER_LEN];
        let len = h.encode(&mut out);
        assert_eq!(&out[..len], &want[..], "kid {kid:#x} ctr {ctr:#x}");
        assert_eq!(h.encoded_len(), len);
        assert_eq!(SframeHeader::decode(&want).unwrap(), (h, want.len()));
        n += 1;
    }
    assert_eq!(n, 289);
}

/// RFC 9605 Appendix C.3, cipher suite 0x0005 (AES_256_GCM_SHA512_128).
#[test]
fn rfc9605_encryption_vector_aes_256_gcm_sha512() {
    let key = SframeKey::derive(0x123, &unhex("000102030405060708090a0b0c0d0e0f"));
    assert_eq!(key.salt.to_vec(), unhex("84991c167b8cd23c93708ec7"));
    let metadata = unhex("4945544620534672616d65205747");
    let mut buf = unhex("64726166742d696574662d736672616d652d656e63");
    let tag = key.seal_in_place(0x4567, &metadata, &mut buf);
    let mut got = unhex("9901234567");
    got.extend_from_slice(&buf);
    got.extend_from_slice(&tag);
    assert_eq!(
        got,
        unhex(
            "990123456794f509d36e9beacb0e261d99c7d1e972f1fed787d4049f17ca21353c1cc24d56ceabced279"
        )
    );
    let mut ct = got[5..].to_vec();
    let n = key.open_in_place(0x4567, &metadata, &mut ct).unwrap();
    assert_eq!(&ct[..n], b"draft-ietf-sframe-enc");
}

proptest! {
    #[test]
    fn sframe_header_round_trips(kid in any::<u64>(), ctr in any::<u64>()) {
        let h = SframeHeader { kid, ctr };
        let mut out = [0u8; MAX_SFRAME_HEADER_LEN];
        let len = h.encode(&mut out);
        prop_assert_eq!(SframeHeader::decode(&out[..len]), Ok((h, len)));
    }

    #[test]
    fn sframe_header_decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..20)) {
        let _ = SframeHeader::decode(&bytes);
        let _ = SealedFrame::parse(&bytes);
    }

    #[test]
    fn key_id_round_trips(pairwise in any::<bool>(), epoch in 0..=MAX_EPOCH, sender in any::<u32>(), generation in any::<u8>()) {
        let scope = if pairwise { KeyScope::Pairwise } else { KeyScope::Group { epoch } };
        let id = KeyId { scope, sender: PeerId(sender), generation };
        prop_assert_eq!(KeyId::from_kid(id.to_kid()), id);
    }

    #[test]
    fn seal_open_round_trips(payload in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let (mut s, mut o) = pair();
        let mut buf = SealBuf::from_plaintext(&payload);
        s.seal(FrameClass::Screen, SessionId(77), PeerId::BROADCAST, &mut buf).unwrap();
        let sealed = SealedFrame::parse(buf.frame()).unwrap();
        let opened = o.open_in_place(&sealed, buf.frame_mut()).unwrap();
        prop_assert_eq!(&buf.frame()[opened.plaintext.clone()], &payload[..]);
        prop_assert_eq!(buf.plaintext(), &payload[..]);
    }
}

fn pair() -> (FrameSealer, FrameOpener) {
    let base = [7u8; 32];
    let scope = KeyScope::Group { epoch: 3 };
    (
        FrameSealer::new(&base, scope, PeerId(5)),
        FrameOpener::new(&base, scope, PeerId(5)),
    )
}

fn seal(s: &mut FrameSealer, payload: &[u8]) -> Vec<u8> {
    let mut buf = SealBuf::from_plaintext(payload);
    s.seal(FrameClass::Chat, SessionId(1), PeerId::BROADCAST, &mut buf)
        .unwrap();
    buf.frame().to_vec()
}

fn open(o: &mut FrameOpener, frame: &[u8]) -> Result<Vec<u8>, SframeError> {
    let mut f = frame.to_vec();
    let sealed = SealedFrame::parse(&f)?;
    let opened = o.open_in_place(&sealed, &mut f)?;
    Ok(f[opened.plaintext].to_vec())
}

#[test]
fn every_flipped_bit_is_detected() {
    let (mut s, _) = pair();
    let frame = seal(&mut s, b"hello, world");
    for i in 0..frame.len() {
        for bit in 0..8 {
            let (_, mut o) = pair();
            let mut f = frame.clone();
            f[i] ^= 1 << bit;
            assert!(open(&mut o, &f).is_err(), "byte {i} bit {bit}");
        }
    }
    let (_, mut o) = pair();
    assert_eq!(open(&mut o, &frame).unwrap(), b"hello, world");
}

#[test]
fn replays_are_refused_and_reordering_within_the_window_is_not() {
    let (mut s, mut o) = pair();
    let frames: Vec<_> = (0..200u32)
        .map(|i| seal(&mut s, &i.to_be_bytes()))
        .collect();
    assert!(open(&mut o, &frames[150]).is_ok());
    assert!(open(&mut o, &frames[100]).is_ok(), "within the window");
    assert_eq!(open(&mut o, &frames[100]), Err(SframeError::Replay(100)));
    assert_eq!(open(&mut o, &frames[150]), Err(SframeError::Replay(150)));
    assert_eq!(
        open(&mut o, &frames[10]),
        Err(SframeError::Replay(10)),
        "too old"
    );
    assert!(open(&mut o, &frames[199]).is_ok());
    assert!(open(&mut o, &frames[151]).is_ok());
}

#[test]
fn forged_frames_do_not_move_the_replay_window() {
    let (mut s, mut o) = pair();
    let f0 = seal(&mut s, b"a");
    let mut forged = seal(&mut s, b"b");
    let last = forged.len() - 1;
    forged[last] ^= 1;
    assert_eq!(open(&mut o, &forged), Err(SframeError::Authentication));
    assert!(open(&mut o, &f0).is_ok());
}

#[test]
fn sender_moves_to_a_new_generation_before_the_usage_limit() {
    let (mut s, mut o) = pair();
    let early = seal(&mut s, b"gen0");
    s.counter = KEY_USAGE_LIMIT - 1;
    let last0 = seal(&mut s, b"last of gen0");
    let first1 = seal(&mut s, b"first of gen1");
    let k0 = SealedFrame::parse(&last0).unwrap();
    let k1 = SealedFrame::parse(&first1).unwrap();
    assert_eq!(
        (k0.key_id.generation, k0.sframe.ctr),
        (0, KEY_USAGE_LIMIT - 1)
    );
    assert_eq!((k1.key_id.generation, k1.sframe.ctr), (1, 0));
    assert_eq!(open(&mut o, &first1).unwrap(), b"first of gen1");
    // Generation 0 is still accepted for frames in flight, once; frames far
    // behind its newest counter are outside the replay window.
    assert_eq!(open(&mut o, &last0).unwrap(), b"last of gen0");
    assert_eq!(
        open(&mut o, &last0),
        Err(SframeError::Replay(KEY_USAGE_LIMIT - 1))
    );
    assert_eq!(open(&mut o, &early), Err(SframeError::Replay(0)));
    s.generation = u8::MAX;
    s.counter = KEY_USAGE_LIMIT;
    let mut buf = SealBuf::from_plaintext(b"x");
    assert_eq!(
        s.seal(FrameClass::Chat, SessionId(1), PeerId(1), &mut buf),
        Err(SframeError::KeysExhausted)
    );
}

#[test]
fn counters_beyond_the_limit_are_refused() {
    let (mut s, mut o) = pair();
    // A sender that skipped its generation change (or a forger) is refused.
    s.counter = KEY_USAGE_LIMIT;
    s.generation = 0;
    let ctr = s.counter;
    let sh = SframeHeader {
        kid: s.key.kid,
        ctr,
    };
    let mut buf = SealBuf::from_plaintext(b"x");
    // Build the frame by hand since the sealer itself would roll over.
    let mut sb = [0u8; MAX_SFRAME_HEADER_LEN];
    let sl = sh.encode(&mut sb);
    let rh = RoutingHeader {
        class: FrameClass::Chat,
        session: SessionId(1),
        sender: PeerId(5),
        destination: PeerId::BROADCAST,
        payload_len: (sl + 1 + TAG_LEN) as u32,
    }
    .encode();
    let mut payload = b"x".to_vec();
    let tag = s.key.seal_in_place(ctr, &rh, &mut payload);
    let mut frame = rh.to_vec();
    frame.extend_from_slice(&sb[..sl]);
    frame.extend_from_slice(&payload);
    frame.extend_from_slice(&tag);
    assert_eq!(open(&mut o, &frame), Err(SframeError::CounterTooLarge(ctr)));
    buf.clear();
}

#[test]
fn a_frame_claiming_another_sender_is_refused() {
    let (mut s, mut o) = pair();
    let mut f = seal(&mut s, b"x");
    // The relay rewrites the sender in the routing header.
    f[12..16].copy_from_slice(&9u32.to_be_bytes());
    assert!(matches!(open(&mut o, &f), Err(SframeError::WrongKey(_))));
}

#[test]
fn a_frame_for_another_key_is_refused() {
    let (mut s, _) = pair();
    let f = seal(&mut s, b"x");
    let mut other = FrameOpener::new(&[8u8; 32], KeyScope::Group { epoch: 3 }, PeerId(5));
    assert_eq!(open(&mut other, &f), Err(SframeError::Authentication));
    let mut pairwise = FrameOpener::new(&[7u8; 32], KeyScope::Pairwise, PeerId(5));
    assert!(matches!(
        open(&mut pairwise, &f),
        Err(SframeError::WrongKey(_))
    ));
}

#[test]
fn plaintext_limits_are_enforced() {
    let (mut s, _) = pair();
    let mut buf = SealBuf::from_plaintext(&vec![0u8; MAX_PLAINTEXT + 1]);
    assert_eq!(
        s.seal(FrameClass::File, SessionId(1), PeerId(1), &mut buf),
        Err(SframeError::PlaintextTooLarge(MAX_PLAINTEXT + 1))
    );
    let mut buf = SealBuf::from_plaintext(&vec![0u8; MAX_PLAINTEXT]);
    s.seal(FrameClass::File, SessionId(1), PeerId(1), &mut buf)
        .unwrap();
    assert!(buf.frame().len() <= crate::frame::MAX_FRAME);
    let mut buf = SealBuf::from_plaintext(b"x");
    assert_eq!(
        s.seal(FrameClass::Handshake, SessionId(1), PeerId(1), &mut buf),
        Err(SframeError::NotSframe(FrameClass::Handshake))
    );
    assert_eq!(
        s.seal(FrameClass::Roster, SessionId(1), PeerId(1), &mut buf),
        Err(SframeError::NotSframe(FrameClass::Roster))
    );
}
