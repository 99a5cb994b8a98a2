//! The relay over real sockets on loopback: every transport end to end with
//! the real stage-2 engines, every refusal, hostile input, slow receivers,
//! the doubling join delay (R12), policy by frame class (R13), the audit log
//! (R17) and shutdown. Requirements R1, R6–R9, R12, R13, R17–R19, R26.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use conclave_protocol::artefact::{LicenseNumber, RevocationList, Role, Version};
use conclave_protocol::bounded::BoundedVec;
use conclave_protocol::fixtures;
use conclave_protocol::frame::{
    plain_frame, FrameClass, PeerId, RoutingHeader, SessionId, HEADER_LEN,
};
use conclave_protocol::stage1::{FromRelay, RefusalCode, SessionKind, ToRelay};
use conclave_protocol::stage2::{MasterEvent, ParticipantEvent};
use conclave_protocol::time::UnixTime;
use conclave_relay::metrics::DropReason;
use conclave_transport::conn::Transport;

async fn chat_end_to_end(t: Transport) {
    let relay = relay().await;
    let mut m = master(&relay, t, Some("pw-123456")).await;
    let mut p = participant(&relay, t, "Carol", Some("pw-123456"), 10).await;
    settle(&mut m, &mut [&mut p]).await;
    m.engine.send_chat("hello over the relay").unwrap();
    m.flush().await;
    p.engine.send_chat("and back").unwrap();
    p.flush().await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        p.pump(20).await;
        m.pump(20).await;
        let got_p = std::iter::from_fn(|| p.engine.poll_event()).any(|e| matches!(e, ParticipantEvent::Chat { ref text, .. } if text == "hello over the relay"));
        let got_m = std::iter::from_fn(|| m.engine.poll_event())
            .any(|e| matches!(e, MasterEvent::Chat { ref text, .. } if text == "and back"));
        if got_p && got_m {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "chat did not arrive over {t}"
        );
    }
    assert_eq!(p.engine.session_code(), Some(m.engine.session_code()));
    assert_eq!(relay.hub().session_count(), 1);
}

/// R19: TLS over TCP carries a whole session.
#[tokio::test]
async fn r19_tls_carries_a_session_end_to_end() {
    chat_end_to_end(Transport::Tls).await;
}

/// R19: QUIC carries a whole session.
#[tokio::test]
async fn r19_quic_carries_a_session_end_to_end() {
    chat_end_to_end(Transport::Quic).await;
}

/// R19: WebSocket over TLS carries a whole session.
#[tokio::test]
async fn r19_websocket_carries_a_session_end_to_end() {
    chat_end_to_end(Transport::WebSocket).await;
}

/// R19: participants on different transports meet in one session.
#[tokio::test]
async fn r19_transports_mix_in_one_session() {
    let relay = relay().await;
    let mut m = master(&relay, Transport::Quic, None).await;
    let mut a = participant(&relay, Transport::Tls, "A", None, 11).await;
    let mut b = participant(&relay, Transport::WebSocket, "B", None, 12).await;
    settle(&mut m, &mut [&mut a, &mut b]).await;
}

/// R6: a client refuses a relay that does not hold the pinned key.
#[tokio::test]
async fn r6_client_refuses_a_relay_with_another_key() {
    let relay = relay().await;
    let wrong = fixtures::identity(99).public_key();
    assert!(
        conclave_transport::conn::connect_tls(relay.tls.unwrap(), wrong)
            .await
            .is_err()
    );
    assert!(
        conclave_transport::conn::connect_quic(relay.quic.unwrap(), wrong)
            .await
            .is_err()
    );
    assert!(
        conclave_transport::conn::connect_websocket(relay.websocket.unwrap(), wrong)
            .await
            .is_err()
    );
}

async fn refused_hello(
    relay: &conclave_relay::Relay,
    h: conclave_protocol::stage1::Hello,
) -> conclave_protocol::stage1::Refusal {
    let mut c = connect(relay, Transport::Tls).await;
    let r = hello(&mut c, h).await.unwrap_err();
    // The relay closes the connection after a refusal.
    assert!(recv(&mut c).await.is_none());
    r
}

/// R8, R9, R10: every stage-1 refusal reaches the client with its code and
/// a message a person can act on.
#[tokio::test]
async fn r8_r9_r10_stage1_refusals_reach_the_client() {
    let mut s = settings();
    s.min_version = Some("1.2.0".into());
    let relay = relay_with(s).await;
    let p = portal();
    let other = fixtures::identity(9);
    let m = fixtures::identity(2);

    let r = refused_hello(&relay, fixtures::participant_hello(&other)).await;
    assert_eq!(r.code, RefusalCode::BuildNotTrusted);

    let mut h = fixtures::participant_hello(&p);
    h.build = fixtures::build(&p, Role::Participant, Version::new(1, 1, 0), None);
    let r = refused_hello(&relay, h).await;
    assert_eq!(r.code, RefusalCode::VersionTooOld);
    assert!(r.message.contains("1.2.0 or later"));

    let mut h = fixtures::participant_hello(&p);
    h.role = Role::Master;
    assert_eq!(refused_hello(&relay, h).await.code, RefusalCode::WrongRole);

    let mut h = fixtures::master_hello(&p, &m, &[0; 32]);
    h.build = fixtures::build(&p, Role::Master, fixtures::VERSION, None);
    assert_eq!(
        refused_hello(&relay, h).await.code,
        RefusalCode::LicenseMissing
    );

    let mut h = fixtures::master_hello(&p, &m, &[0; 32]);
    h.build = fixtures::build(
        &p,
        Role::Master,
        fixtures::VERSION,
        Some(fixtures::license(&other, m.public_key(), 1_234_567_890)),
    );
    assert_eq!(
        refused_hello(&relay, h).await.code,
        RefusalCode::LicenseInvalid
    );

    let mut h = fixtures::master_hello(&p, &m, &[0; 32]);
    let expired = fixtures::license_valid_until(&p, m.public_key(), 1_234_567_890, UnixTime(1_000));
    h.build = fixtures::build(&p, Role::Master, fixtures::VERSION, Some(expired));
    assert_eq!(
        refused_hello(&relay, h).await.code,
        RefusalCode::LicenseExpired
    );

    // A proof over another connection's channel binding.
    let r = refused_hello(&relay, fixtures::master_hello(&p, &m, &[0; 32])).await;
    assert_eq!(r.code, RefusalCode::ProofInvalid);

    // Anything but Hello first.
    let mut c = connect(&relay, Transport::Tls).await;
    send(
        &c,
        to_relay(
            SessionId(0),
            PeerId::RELAY,
            &ToRelay::Join { session: SESSION },
        ),
    )
    .await;
    assert!(
        matches!(recv_relay(&mut c).await, Some(FromRelay::Refused(r)) if r.code == RefusalCode::HelloRequired)
    );

    assert!(relay.hub().metrics.refusals(RefusalCode::ProofInvalid) >= 1);
}

/// R8: a license revoked at the portal is refused by a running relay within
/// its refresh interval; the relay keeps the last valid list.
#[tokio::test]
async fn r8_revoked_license_is_refused_after_refresh() {
    let dir = tempfile::tempdir().unwrap();
    let list_path = dir.path().join("revocations.bin");
    let p = portal();
    let write = |serial: u64, revoked: Vec<u64>| {
        let list = RevocationList {
            serial,
            issued_at: fixtures::NOW,
            revoked: BoundedVec::new(
                revoked
                    .into_iter()
                    .map(|n| LicenseNumber::new(n).unwrap())
                    .collect(),
            )
            .unwrap(),
        };
        std::fs::write(&list_path, conclave_protocol::codec::encode(&p.sign(&list))).unwrap();
    };
    write(1, vec![]);
    let mut s = settings();
    s.revocations = Some(list_path.display().to_string());
    s.revocation_refresh_secs = Some(1);
    let relay = relay_with(s).await;
    let m = fixtures::identity(2);
    let mut c = connect(&relay, Transport::Tls).await;
    {
        let cb = c.channel_binding;
        hello(&mut c, fixtures::master_hello(&p, &m, &cb))
    }
    .await
    .unwrap();

    write(2, vec![1_234_567_890]);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let mut c = connect(&relay, Transport::Tls).await;
        match {
            let cb = c.channel_binding;
            hello(&mut c, fixtures::master_hello(&p, &m, &cb))
        }
        .await
        {
            Err(r) => {
                assert_eq!(r.code, RefusalCode::LicenseRevoked);
                assert!(r.message.contains("1234567890"));
                break;
            }
            Ok(()) => assert!(
                tokio::time::Instant::now() < deadline,
                "revocation not picked up"
            ),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A corrupt or older list later does not undo the revocation.
    std::fs::write(&list_path, b"garbage").unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(relay.hub().revocations().serial, 2);
}

/// R11, R12, R26: session-level refusals: unknown ID (with a doubling wait),
/// taken ID, too-short ID, locked and full sessions.
#[tokio::test]
async fn r12_unknown_session_ids_double_the_wait() {
    let relay = relay().await;
    let mut waits = Vec::new();
    for _ in 0..4 {
        let r = join_refused(&relay, SessionId(55_555)).await;
        assert_eq!(r.code, RefusalCode::SessionNotFound);
        waits.push(r.retry_after_ms);
        // Trying again at once is refused without counting as a guess.
        let r = join_refused(&relay, SessionId(55_556)).await;
        assert_eq!(r.code, RefusalCode::RetryLater);
        assert!(r.message.contains("wait"));
        tokio::time::sleep(Duration::from_millis(r.retry_after_ms + 20)).await;
    }
    assert_eq!(waits, [200, 400, 800, 1600]);
}

#[tokio::test]
async fn r11_r26_session_refusals() {
    let mut s = settings();
    s.max_participants = Some(1);
    let relay = relay_with(s).await;
    let mut m = master(&relay, Transport::Tls, Some("pw-123456")).await;
    m.pump(50).await;

    // The same ID again.
    let mut c = connect(&relay, Transport::Tls).await;
    let p = portal();
    let mk = fixtures::identity(2);
    {
        let cb = c.channel_binding;
        hello(&mut c, fixtures::master_hello(&p, &mk, &cb))
    }
    .await
    .unwrap();
    send(
        &c,
        to_relay(
            SESSION,
            PeerId::RELAY,
            &ToRelay::CreateSession {
                session: SESSION,
                kind: SessionKind::Meeting,
                announce: m.engine.announce().clone(),
            },
        ),
    )
    .await;
    assert!(
        matches!(recv_relay(&mut c).await, Some(FromRelay::Refused(r)) if r.code == RefusalCode::SessionIdTaken)
    );

    // A four-digit ID is too short (R11).
    let cfg = fixtures::master_config(&p, 2, SessionId(1234), SessionKind::Meeting, None);
    let short = conclave_protocol::stage2::MasterSession::new(cfg, fixtures::rng(5), now());
    send(
        &c,
        to_relay(
            SessionId(1234),
            PeerId::RELAY,
            &ToRelay::CreateSession {
                session: SessionId(1234),
                kind: SessionKind::Meeting,
                announce: short.announce().clone(),
            },
        ),
    )
    .await;
    assert!(
        matches!(recv_relay(&mut c).await, Some(FromRelay::Refused(r)) if r.code == RefusalCode::PolicyForbids)
    );

    // Full: the relay allows one participant.
    let mut a = participant(&relay, Transport::Tls, "A", Some("pw-123456"), 20).await;
    settle(&mut m, &mut [&mut a]).await;
    assert_eq!(
        join_refused(&relay, SESSION).await.code,
        RefusalCode::SessionFull
    );

    // Locked (R26).
    m.engine.set_locked(true);
    m.flush().await;
    m.pump(50).await;
    assert_eq!(
        join_refused(&relay, SESSION).await.code,
        RefusalCode::SessionLocked
    );
}

/// Hostile input at every stage: no panic, a clear refusal or a closed
/// connection, and the session next door goes on.
#[tokio::test]
async fn malformed_and_oversized_input_leaves_other_sessions_unaffected() {
    let relay = relay().await;
    let mut m = master(&relay, Transport::Tls, Some("pw-123456")).await;
    let mut p = participant(&relay, Transport::Tls, "Carol", Some("pw-123456"), 10).await;
    settle(&mut m, &mut [&mut p]).await;

    // Garbage instead of a frame: the connection is closed.
    let mut c = connect(&relay, Transport::Tls).await;
    send(&c, Bytes::from_static(&[0xff; 64])).await;
    assert!(recv(&mut c).await.is_none());

    // A header announcing a payload over the limit: closed before the payload.
    let mut c = connect(&relay, Transport::Tls).await;
    let mut h = RoutingHeader {
        class: FrameClass::Relay,
        session: SessionId(0),
        sender: PeerId::RELAY,
        destination: PeerId::RELAY,
        payload_len: 0,
    }
    .encode();
    h[20..24].copy_from_slice(&((1u32 << 20) + 1).to_be_bytes());
    send(&c, Bytes::copy_from_slice(&h)).await;
    assert!(recv(&mut c).await.is_none());

    // A well-framed but undecodable Hello: Malformed.
    let mut c = connect(&relay, Transport::Tls).await;
    send(
        &c,
        Bytes::from(
            plain_frame(
                FrameClass::Relay,
                SessionId(0),
                PeerId::RELAY,
                PeerId::RELAY,
                &[1, 0, 0xff, 0xff],
            )
            .unwrap(),
        ),
    )
    .await;
    assert!(
        matches!(recv_relay(&mut c).await, Some(FromRelay::Refused(r)) if r.code == RefusalCode::Malformed)
    );

    // A participant of the session spoofs the master as sender: dropped.
    let spoof = Bytes::from(
        plain_frame(
            FrameClass::Chat,
            SESSION,
            PeerId::MASTER,
            PeerId::BROADCAST,
            &[0; 40],
        )
        .unwrap(),
    );
    send(&p.conn, spoof).await;
    // A participant sends to another participant directly: dropped.
    let direct = Bytes::from(
        plain_frame(
            FrameClass::Chat,
            SESSION,
            p.engine.peer(),
            PeerId(77),
            &[0; 40],
        )
        .unwrap(),
    );
    send(&p.conn, direct).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while relay.hub().metrics.drops(DropReason::Spoofed) == 0
        || relay.hub().metrics.drops(DropReason::Unroutable) == 0
    {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The session still works.
    m.engine.send_chat("still here").unwrap();
    m.flush().await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        p.pump(50).await;
        if std::iter::from_fn(|| p.engine.poll_event())
            .any(|e| matches!(e, ParticipantEvent::Chat { .. }))
        {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline);
    }
}

/// A receiver that stops reading does not slow a healthy one: lossy screen
/// frames to it are dropped oldest-first, and everyone else gets every frame.
#[tokio::test]
async fn stalled_receiver_does_not_slow_a_healthy_one() {
    let relay = relay().await;
    let mut m = master(&relay, Transport::Tls, None).await;
    let mut healthy = participant(&relay, Transport::Tls, "H", None, 30).await;
    let mut stalled = participant(&relay, Transport::Tls, "S", None, 31).await;
    settle(&mut m, &mut [&mut healthy, &mut stalled]).await;
    m.pump(1200).await; // the batched rekey
    healthy.pump(100).await;
    stalled.pump(100).await;
    // From now on the stalled participant reads nothing. Screen frames carry
    // their number; the healthy receiver must see the last one, which it
    // could not if the stalled one held the relay (or the sender) back.
    const FRAMES: u32 = 600;
    let sender = tokio::spawn(async move {
        for i in 0..FRAMES {
            let mut payload = vec![7u8; 60_000];
            payload[..4].copy_from_slice(&i.to_be_bytes());
            m.engine.send_group(FrameClass::Screen, &payload).unwrap();
            m.flush().await;
        }
        m
    });
    let mut last = None;
    let mut got = 0;
    let deadline = tokio::time::Instant::now() + WAIT;
    while last != Some(FRAMES - 1) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "healthy receiver stopped at {last:?} after {got} frames"
        );
        if let Ok(Some(Ok(f))) =
            tokio::time::timeout(Duration::from_millis(200), healthy.conn.incoming.recv()).await
        {
            let mut f = f.to_vec();
            let _ = healthy.engine.handle_frame(now(), &mut f);
            while let Some(e) = healthy.engine.poll_event() {
                if let ParticipantEvent::Received {
                    class: FrameClass::Screen,
                    data,
                    ..
                } = e
                {
                    let n = u32::from_be_bytes(data[..4].try_into().unwrap());
                    assert!(last.is_none_or(|l| n > l), "frames out of order");
                    last = Some(n);
                    got += 1;
                }
            }
        }
    }
    let _m = tokio::time::timeout(WAIT, sender)
        .await
        .expect("the sender was held back")
        .unwrap();
    assert!(
        relay.hub().metrics.drops(DropReason::LossyOverflow) > 0,
        "the stalled receiver's queue never overflowed"
    );
    drop(stalled);
}

/// R13: file frames are dropped and reported when policy forbids file
/// transfer; screen frames pass.
#[tokio::test]
async fn r13_policy_drops_forbidden_frame_classes() {
    let relay = relay().await;
    let p = portal();
    let mk = fixtures::identity(2);
    // A master whose profile forbids file transfer (shared files, allowed,
    // travel in relay messages and open no door for File frames).
    let mut conn = connect(&relay, Transport::Tls).await;
    let mut h = fixtures::master_hello(&p, &mk, &conn.channel_binding);
    let mut cfg = h.build.verify(&[p.public_key()]).unwrap();
    cfg.profile.file_transfer = false;
    cfg.profile.shared_files = true;
    h.build = p.sign(&cfg);
    hello(&mut conn, h).await.unwrap();
    let engine = conclave_protocol::stage2::MasterSession::new(
        fixtures::master_config(&p, 2, SESSION, SessionKind::Support, Some("pw-123456")),
        fixtures::rng(3),
        now(),
    );
    let mut m = MasterClient { conn, engine };
    m.flush().await;
    let mut a = participant(&relay, Transport::Tls, "A", Some("pw-123456"), 40).await;
    settle(&mut m, &mut [&mut a]).await;
    a.engine
        .send_to_master(FrameClass::File, b"secret.pdf chunk")
        .unwrap();
    a.engine
        .send_group(FrameClass::Screen, b"a screen")
        .unwrap();
    a.flush().await;
    let mut dropped = None;
    let deadline = tokio::time::Instant::now() + WAIT;
    while dropped.is_none() {
        assert!(tokio::time::Instant::now() < deadline);
        a.pump(50).await;
        while let Some(e) = a.engine.poll_event() {
            if let ParticipantEvent::PolicyDropped { class, message } = e {
                dropped = Some((class, message));
            }
        }
    }
    assert_eq!(dropped.as_ref().unwrap().0, FrameClass::File);
    assert!(dropped.unwrap().1.contains("file transfer is disabled"));
    m.pump(300).await;
    let events: Vec<_> = std::iter::from_fn(|| m.engine.poll_event()).collect();
    assert!(events.iter().any(|e| matches!(
        e,
        MasterEvent::Received {
            class: FrameClass::Screen,
            ..
        }
    )));
    assert!(!events.iter().any(|e| matches!(
        e,
        MasterEvent::Received {
            class: FrameClass::File,
            ..
        }
    )));
    assert_eq!(relay.hub().metrics.drops(DropReason::Policy), 1);
}

/// R1: when the master leaves, the session is gone from memory and its
/// participants are told.
#[tokio::test]
async fn r1_session_is_forgotten_when_the_master_leaves() {
    let relay = relay().await;
    let mut m = master(&relay, Transport::Quic, Some("pw-123456")).await;
    let mut a = participant(&relay, Transport::Quic, "A", Some("pw-123456"), 50).await;
    settle(&mut m, &mut [&mut a]).await;
    assert_eq!(relay.hub().session_count(), 1);
    m.engine.end();
    m.flush().await;
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut ended = false;
    while relay.hub().session_count() != 0 || !ended {
        assert!(
            tokio::time::Instant::now() < deadline,
            "sessions {}, ended {ended}",
            relay.hub().session_count()
        );
        a.pump(50).await;
        ended |= std::iter::from_fn(|| a.engine.poll_event()).any(|e| e == ParticipantEvent::Ended);
    }
}

/// R17: every join is in the audit log, the chain verifies with the CLI, and
/// an edited line is caught.
#[tokio::test]
async fn r17_audit_log_records_joins_and_catches_tampering() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let mut s = settings();
    s.audit_log = Some(log.clone());
    let relay = relay_with(s).await;
    let mut m = master(&relay, Transport::Tls, Some("pw-123456")).await;
    let mut a = participant(&relay, Transport::Tls, "A", Some("pw-123456"), 60).await;
    settle(&mut m, &mut [&mut a]).await;
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() >= 2, "{text}");
    let joined: serde_json::Value =
        serde_json::from_str(lines.iter().find(|l| l.contains("\"joined\"")).unwrap()).unwrap();
    assert_eq!(joined["session"], SESSION.0);
    assert_eq!(joined["os_user"], "customer");
    assert_eq!(joined["ip"], "127.0.0.1");
    assert_eq!(joined["participants"], 1);
    let created: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(created["login"], "Acme Support Ltd");

    let bin = env!("CARGO_BIN_EXE_conclave-relay");
    let ok = std::process::Command::new(bin)
        .args(["audit", "verify"])
        .arg(&log)
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
    let tampered = text.replacen("\"os_user\":\"customer\"", "\"os_user\":\"nobody!!\"", 1);
    std::fs::write(&log, tampered).unwrap();
    let bad = std::process::Command::new(bin)
        .args(["audit", "verify"])
        .arg(&log)
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stdout).contains("TAMPERED"));
}

/// Shutdown: no new connections, running sessions drain.
#[tokio::test]
async fn shutdown_stops_accepting_and_drains() {
    let relay = relay().await;
    let tls = relay.tls.unwrap();
    let key = relay.public_key;
    let mut m = master(&relay, Transport::Tls, Some("pw-123456")).await;
    let mut a = participant(&relay, Transport::Tls, "A", Some("pw-123456"), 70).await;
    settle(&mut m, &mut [&mut a]).await;
    let hub = relay.hub().clone();
    let done = tokio::spawn(relay.shutdown(Duration::from_millis(800)));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!hub.is_accepting());
    assert!(conclave_transport::conn::connect_tls(tls, key)
        .await
        .is_err());
    // The running session still forwards during the drain.
    m.engine.send_chat("draining").unwrap();
    m.flush().await;
    a.pump(200).await;
    assert!(std::iter::from_fn(|| a.engine.poll_event())
        .any(|e| matches!(e, ParticipantEvent::Chat { .. })));
    done.await.unwrap();
    // After the drain the connection is closed.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout(Duration::from_millis(200), a.conn.incoming.recv()).await {
            Ok(None) | Ok(Some(Err(_))) => break,
            _ => assert!(
                tokio::time::Instant::now() < deadline,
                "connection not closed after the drain"
            ),
        }
    }
    let _ = HEADER_LEN;
}

/// A newcomer's one command: `conclave-relay --dev` starts and prints its key.
#[tokio::test]
async fn dev_mode_starts_with_one_command() {
    use std::io::BufRead;
    let bin = env!("CARGO_BIN_EXE_conclave-relay");
    let mut child = std::process::Command::new(bin)
        .args([
            "--dev",
            "--quic",
            "127.0.0.1:0",
            "--tls",
            "127.0.0.1:0",
            "--websocket",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let mut lines = std::io::BufReader::new(out).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(
        first.starts_with("relay key ") && first.len() == 10 + 64,
        "{first}"
    );
    let tls_line = lines
        .find(|l| l.as_ref().is_ok_and(|l| l.starts_with("tls ")))
        .unwrap()
        .unwrap();
    let addr: std::net::SocketAddr = tls_line[4..].parse().unwrap();
    let key = conclave_relay::config::parse_public_key(&first[10..]).unwrap();
    assert!(conclave_transport::conn::connect_tls(addr, key)
        .await
        .is_ok());
    child.kill().unwrap();
    let _ = child.wait();
}

/// R12: a join the master reports as failed (wrong password) makes the
/// relay hold back the next attempt from that source, with a wait to show,
/// even when the guesser hung up before the master reported it.
#[tokio::test]
async fn r12_failed_password_join_reported_by_the_master_delays_the_next_even_after_hanging_up() {
    let relay = relay().await;
    let mut m = master(&relay, Transport::Tls, Some("pw-123456")).await;
    let mut guess = participant(&relay, Transport::Tls, "Mallory", Some("wrong-guess"), 80).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        m.pump(30).await;
        guess.pump(30).await;
        if std::iter::from_fn(|| guess.engine.poll_event())
            .any(|e| matches!(e, ParticipantEvent::JoinFailed(_)))
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the wrong password was not refused"
        );
    }
    // The guesser hangs up before the master has reported it: still counted.
    drop(guess);
    tokio::time::sleep(Duration::from_millis(50)).await;
    m.pump(100).await;
    match join_answer(&relay, SESSION).await {
        Some(FromRelay::Refused(r)) => {
            assert_eq!(r.code, RefusalCode::RetryLater);
            assert!(
                r.retry_after_ms > 0 && r.retry_after_ms <= 200,
                "{}",
                r.retry_after_ms
            );
        }
        other => panic!("expected a wait, got {other:?}"),
    }
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    tokio::time::timeout(WAIT, s.read_to_string(&mut out))
        .await
        .unwrap()
        .unwrap();
    out
}

/// The admin listener reports health, Prometheus metrics and availability.
#[tokio::test]
async fn admin_listener_reports_health_metrics_and_availability() {
    let relay = relay().await;
    let mut m = master(&relay, Transport::Tls, None).await;
    m.pump(50).await;
    let admin = relay.admin.unwrap();
    let health = http_get(admin, "/healthz").await;
    assert!(
        health.starts_with("HTTP/1.1 200") && health.ends_with("ok\n"),
        "{health}"
    );
    let metrics = http_get(admin, "/metrics").await;
    assert!(metrics.contains("conclave_relay_sessions 1"), "{metrics}");
    assert!(metrics.contains("conclave_relay_peers 1"));
    assert!(metrics.contains("conclave_relay_refusals_total{reason=\"license_revoked\"} 0"));
    let avail = http_get(admin, "/availability").await;
    let body = &avail[avail.find("\r\n\r\n").unwrap() + 4..];
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(v["sessions"], 1);
    assert_eq!(v["accepting"], true);
}

/// R18: a session moves to a second relay when its relay is lost. The master
/// opens it again with the same announce and lock; the participant rejoins
/// under its ID past the lock, a fresh epoch starts, chat flows, and a new
/// join is still refused by the lock. A rejoin that arrives before the master
/// waits for it; one claiming a taken ID is refused.
#[tokio::test]
async fn r18_session_moves_to_another_relay() {
    let first = relay().await;
    let second = relay().await;
    let mut m = master(&first, Transport::Tls, Some("pw-123456")).await;
    let mut p = participant(&first, Transport::Quic, "Nia", Some("pw-123456"), 30).await;
    settle(&mut m, &mut [&mut p]).await;
    m.engine.set_locked(true);
    m.flush().await;
    m.pump(50).await;
    let (peer, epoch) = (p.engine.peer(), m.engine.epoch());
    drop(first);

    // The participant gets there first; its rejoin waits for the master.
    p.conn = connect(&second, Transport::Quic).await;
    hello(&mut p.conn, fixtures::participant_hello(&portal()))
        .await
        .unwrap();
    p.engine.resume(now()).unwrap();
    p.flush().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    m.conn = connect(&second, Transport::Tls).await;
    let cb = m.conn.channel_binding;
    hello(
        &mut m.conn,
        fixtures::master_hello(&portal(), &fixtures::identity(2), &cb),
    )
    .await
    .unwrap();
    m.engine.resume(now());
    m.flush().await;

    let deadline = tokio::time::Instant::now() + WAIT;
    while p.engine.epoch() <= Some(epoch) {
        assert!(tokio::time::Instant::now() < deadline, "no fresh epoch");
        m.pump(20).await;
        p.pump(20).await;
    }
    assert_eq!(p.engine.peer(), peer);
    assert_eq!(p.engine.session_code(), Some(m.engine.session_code()));
    m.engine.send_chat("on the second relay").unwrap();
    m.flush().await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        p.pump(20).await;
        if std::iter::from_fn(|| p.engine.poll_event()).any(
            |e| matches!(e, ParticipantEvent::Chat { ref text, .. } if text == "on the second relay"),
        ) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "chat lost");
    }
    assert_eq!(
        join_refused(&second, SESSION).await.code,
        RefusalCode::SessionLocked
    );
    let mut c = connect(&second, Transport::Tls).await;
    hello(&mut c, fixtures::participant_hello(&portal()))
        .await
        .unwrap();
    send(
        &c,
        to_relay(
            SessionId(0),
            PeerId::RELAY,
            &ToRelay::Rejoin {
                session: SESSION,
                peer,
            },
        ),
    )
    .await;
    assert!(
        matches!(recv_relay(&mut c).await, Some(FromRelay::Refused(r)) if r.code == RefusalCode::Malformed)
    );
}
