//! Stage 2 end to end through the simulated relay: honest sessions, and a
//! hostile relay in every mode (tamper, replay, reorder, drop, inject,
//! substitute keys in the announce or a join, replay an old roster or key
//! wrap, forge a rights change), and failover to a new relay. Requirements R6,
//! R7, R11, R12, R18, R26.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs
)]

mod sim;

use conclave_protocol::codec::Message;
use conclave_protocol::frame::{plain_frame, FrameClass, FrameRef, PeerId, HEADER_LEN};
use conclave_protocol::sframe::SframeError;
use conclave_protocol::stage1::{FromRelay, SessionKind, ToRelay};
use conclave_protocol::stage2::{
    Announce, Handshake, MasterEvent, ParticipantEvent, Rights, Stage2Error, LIVENESS_TIMEOUT_MS,
};
use sim::{class_of, sender_of, Delivery, Sim, SESSION};

const PASSWORD: &str = "correct-horse-42";

fn safety_codes(sim: &Sim, i: usize) -> (String, String) {
    let master = sim
        .master_events
        .iter()
        .find_map(|e| match e {
            MasterEvent::AdmissionRequested {
                peer, safety_code, ..
            } if *peer == sim.peer_of(i) => Some(safety_code.to_string()),
            _ => None,
        })
        .expect("master shows a safety code");
    let participant = sim.participants[i]
        .events
        .iter()
        .find_map(|e| match e {
            ParticipantEvent::SafetyCode(c) => Some(c.to_string()),
            _ => None,
        })
        .expect("participant shows a safety code");
    (master, participant)
}

fn joined_with_password() -> Sim {
    let mut sim = Sim::new(SessionKind::Support, Some(PASSWORD));
    sim.join("Carol", Some(PASSWORD));
    sim.run_until(50, |s| s.is_member(0));
    sim
}

/// R6, R7: a password session: PAKE join, admitted automatically, chat both
/// ways; the relay never saw the password or any chat text.
#[test]
fn r6_password_session_joins_and_chats_end_to_end() {
    let mut sim = joined_with_password();
    assert!(sim.master_events.iter().any(|e| matches!(
        e,
        MasterEvent::Admitted {
            password_verified: true,
            ..
        }
    )));
    sim.master.send_chat("hello from the agent").unwrap();
    sim.p(0)
        .engine
        .send_chat("hello from the customer")
        .unwrap();
    sim.run(3);
    assert_eq!(sim.chats(0), ["hello from the agent"]);
    assert_eq!(sim.master_chats(), ["hello from the customer"]);
    assert!(
        !sim.relay_saw_bytes(PASSWORD.as_bytes()),
        "the relay saw the password"
    );
    assert!(
        !sim.relay_saw_bytes(b"hello from"),
        "the relay saw chat plaintext"
    );
    // Both show the same session code.
    assert_eq!(
        sim.p(0).engine.session_code(),
        Some(sim.master.session_code())
    );
}

/// R6: without a password the master admits explicitly, and both sides show
/// the same safety code; a meeting with several participants shares one
/// session code, and broadcasts reach everyone.
#[test]
fn r6_meeting_without_password_needs_admission_and_shows_equal_codes() {
    let mut sim = Sim::new(SessionKind::Meeting, None);
    for name in ["Dan", "Erin", "Frank"] {
        sim.join(name, None);
    }
    sim.run(10);
    assert!(
        !(0..3).any(|i| sim.is_member(i)),
        "nobody is in before admission"
    );
    for i in 0..3 {
        let (m, p) = safety_codes(&sim, i);
        assert_eq!(m, p);
    }
    sim.admit_all();
    sim.run_until(200, |s| (0..3).all(|i| s.is_member(i)));
    sim.run(150); // the batched rekey settles
    let code = sim.master.session_code();
    for i in 0..3 {
        assert_eq!(sim.p(i).engine.session_code(), Some(code));
        assert_eq!(sim.p(i).engine.epoch(), Some(sim.master.epoch()));
    }
    sim.p(1).engine.send_chat("hi all").unwrap();
    sim.master
        .send_group(FrameClass::Screen, b"frame-1")
        .unwrap();
    sim.run(3);
    assert_eq!(sim.chats(0), ["hi all"]);
    assert_eq!(sim.chats(2), ["hi all"]);
    assert_eq!(sim.master_chats(), ["hi all"]);
    assert!(sim.participants[2].events.iter().any(|e| matches!(e, ParticipantEvent::Received { class: FrameClass::Screen, data, .. } if data == b"frame-1")));
}

/// R11, R12: a wrong password fails key confirmation on both sides; the
/// master reports the failure to the relay; the relay never saw either password.
#[test]
fn r12_wrong_password_is_refused_and_reported_to_the_relay() {
    let mut sim = Sim::new(SessionKind::Support, Some(PASSWORD));
    sim.join("Mallory", Some("guess-1234"));
    sim.run(20);
    assert!(!sim.is_member(0));
    assert!(sim.participants[0]
        .events
        .iter()
        .any(|e| matches!(e, ParticipantEvent::JoinFailed(_))));
    assert!(sim.master_events.iter().any(|e| matches!(
        e,
        MasterEvent::JoinFailed {
            error: Stage2Error::Confirmation,
            ..
        }
    )));
    assert_eq!(sim.join_failures.get(&1), Some(&1));
    assert!(!sim.relay_saw_bytes(PASSWORD.as_bytes()));
    assert!(!sim.relay_saw_bytes(b"guess-1234"));
    // A password-less join into a password session is refused too.
    sim.join("NoPass", None);
    sim.run(20);
    assert!(!sim.is_member(1));
}

/// R6: removal starts a new epoch at once; the removed participant can open
/// nothing sent afterwards, even if the relay keeps feeding it.
#[test]
fn r6_removed_participant_reads_nothing_afterwards() {
    let mut sim = Sim::new(SessionKind::Meeting, Some(PASSWORD));
    sim.join("Gina", Some(PASSWORD));
    sim.join("Hal", Some(PASSWORD));
    sim.run_until(300, |s| s.is_member(0) && s.is_member(1));
    sim.run(150);
    let before = sim.master.epoch();
    let hal = sim.peer_of(1);
    sim.master.remove(hal, sim.now).unwrap();
    sim.run(3);
    assert!(sim.master.epoch() > before);
    // Told by the master and by the relay, reported once.
    let ends: Vec<_> = sim.participants[1]
        .events
        .iter()
        .filter(|e| matches!(e, ParticipantEvent::Removed | ParticipantEvent::Ended))
        .collect();
    assert_eq!(ends, [&ParticipantEvent::Removed]);
    let seen = sim.relay_saw.len();
    sim.master.send_chat("after removal").unwrap();
    sim.run(3);
    assert_eq!(sim.chats(0), ["after removal"]);
    // A colluding relay hands Hal every frame sent since.
    let frames: Vec<Vec<u8>> = sim.relay_saw[seen..].to_vec();
    for mut f in frames {
        let _ = sim.participants[1].engine.handle_frame(sim.now, &mut f);
    }
    while let Some(e) = sim.participants[1].engine.poll_event() {
        assert!(
            !matches!(e, ParticipantEvent::Chat { .. }),
            "removed participant read {e:?}"
        );
    }
}

/// R6: a participant that goes silent is removed after the liveness timeout,
/// and a participant that stops hearing the master reports it.
#[test]
fn r6_liveness_removes_the_silent_and_reports_a_lost_master() {
    let mut sim = Sim::new(SessionKind::Meeting, Some(PASSWORD));
    sim.join("Ivy", Some(PASSWORD));
    sim.join("Jon", Some(PASSWORD));
    sim.run_until(300, |s| s.is_member(0) && s.is_member(1));
    let epoch = sim.master.epoch();
    sim.cut(0);
    sim.advance(LIVENESS_TIMEOUT_MS + 6_000);
    assert!(sim.master_events.iter().any(
        |e| matches!(e, MasterEvent::ParticipantLeft { peer, .. } if *peer == sim.peer_of(0))
    ));
    assert!(sim.master.epoch() > epoch);
    assert!(sim.is_member(1), "the live participant stays");

    // The relay now drops everything the master sends to Jon.
    let jon = 2;
    sim.hook = Some(Box::new(
        move |_, d: Delivery| if d.to == jon { vec![] } else { vec![d] },
    ));
    sim.advance(LIVENESS_TIMEOUT_MS + 1_000);
    assert!(sim.participants[1]
        .events
        .contains(&ParticipantEvent::MasterLost));
}

/// Hostile relay, tamper: a flipped bit in any end-to-end frame is detected
/// and nothing of it is accepted.
#[test]
fn hostile_relay_tampering_is_detected() {
    let mut sim = joined_with_password();
    sim.hook = Some(Box::new(|_, mut d: Delivery| {
        if class_of(&d.frame) == Some(FrameClass::Chat) {
            let last = d.frame.len() - 1;
            d.frame[last - 20] ^= 0x40;
        }
        vec![d]
    }));
    sim.master.send_chat("tampered").unwrap();
    sim.run(3);
    assert!(sim.chats(0).is_empty());
    assert!(matches!(
        sim.participants[0].errors.last(),
        Some(Stage2Error::Sframe(SframeError::Authentication))
    ));
}

/// Hostile relay, header tamper: the routing header is authenticated too.
#[test]
fn hostile_relay_header_tampering_is_detected() {
    let mut sim = Sim::new(SessionKind::Meeting, Some(PASSWORD));
    sim.join("Kim", Some(PASSWORD));
    sim.join("Lee", Some(PASSWORD));
    sim.run_until(300, |s| s.is_member(0) && s.is_member(1));
    sim.run(150);
    // The relay turns a chat frame into a screen frame.
    sim.hook = Some(Box::new(|_, mut d: Delivery| {
        if class_of(&d.frame) == Some(FrameClass::Chat) {
            d.frame[1] = FrameClass::Screen as u8;
        }
        vec![d]
    }));
    sim.master.send_chat("x").unwrap();
    sim.run(3);
    for i in 0..2 {
        assert!(!sim.participants[i].events.iter().any(|e| matches!(
            e,
            ParticipantEvent::Received { .. } | ParticipantEvent::Chat { .. }
        )));
        assert!(matches!(
            sim.participants[i].errors.last(),
            Some(Stage2Error::Sframe(SframeError::Authentication))
        ));
    }
}

/// Hostile relay, replay: a frame delivered twice is accepted once.
#[test]
fn hostile_relay_replay_is_detected() {
    let mut sim = joined_with_password();
    sim.hook = Some(Box::new(|_, d: Delivery| {
        if class_of(&d.frame) == Some(FrameClass::Chat) {
            vec![d.clone(), d]
        } else {
            vec![d]
        }
    }));
    sim.master.send_chat("once").unwrap();
    sim.run(3);
    assert_eq!(sim.chats(0), ["once"]);
    assert!(matches!(
        sim.participants[0].errors.last(),
        Some(Stage2Error::Sframe(SframeError::Replay(_)))
    ));
}

/// Hostile relay, reorder: frames delivered out of order are each accepted
/// once (within the replay window), none twice.
#[test]
fn hostile_relay_reordering_loses_nothing_and_duplicates_nothing() {
    let mut sim = joined_with_password();
    let mut flip = false;
    let mut held: Option<Delivery> = None;
    sim.hook = Some(Box::new(move |_, d: Delivery| {
        if class_of(&d.frame) != Some(FrameClass::Chat) {
            return vec![d];
        }
        flip = !flip;
        match (flip, held.take()) {
            (true, _) => {
                held = Some(d);
                vec![]
            }
            (false, Some(h)) => vec![d, h],
            (false, None) => vec![d],
        }
    }));
    for n in 0..10 {
        sim.master.send_chat(&format!("m{n}")).unwrap();
    }
    sim.run(3);
    let mut got = sim.chats(0);
    assert_eq!(got[0], "m1", "delivered out of order");
    got.sort();
    let mut want: Vec<String> = (0..10).map(|n| format!("m{n}")).collect();
    want.sort();
    assert_eq!(got, want);
}

/// Hostile relay, drop: dropping the rekey leaves a participant unable to
/// read the new epoch, never able to read something wrong.
#[test]
fn hostile_relay_dropping_a_rekey_leaves_the_member_behind_not_misled() {
    let mut sim = Sim::new(SessionKind::Meeting, Some(PASSWORD));
    sim.join("Max", Some(PASSWORD));
    sim.join("Ned", Some(PASSWORD));
    sim.run_until(300, |s| s.is_member(0) && s.is_member(1));
    sim.run(150);
    let epoch = sim.p(0).engine.epoch();
    sim.hook = Some(Box::new(|_, d: Delivery| {
        if d.to == 1 && class_of(&d.frame) == Some(FrameClass::Roster) {
            vec![]
        } else {
            vec![d]
        }
    }));
    sim.master.rekey(sim.now);
    sim.master.send_chat("new epoch").unwrap();
    sim.run(3);
    assert_eq!(sim.p(0).engine.epoch(), epoch);
    assert!(sim.chats(0).is_empty());
    assert_eq!(sim.chats(1), ["new epoch"]);
    assert!(matches!(
        sim.participants[0].errors.last(),
        Some(Stage2Error::UnknownPeer(PeerId::MASTER))
    ));
}

/// Hostile relay, inject: frames the relay makes up are refused — a chat
/// under the master's key ID, and a forged join response.
#[test]
fn hostile_relay_injection_is_detected() {
    let mut sim = joined_with_password();
    // Copy a genuine chat frame's headers, fill the body with the relay's own bytes.
    let mut template: Option<Vec<u8>> = None;
    sim.hook = Some(Box::new(move |_, d: Delivery| {
        if class_of(&d.frame) == Some(FrameClass::Chat) && template.is_none() {
            template = Some(d.frame.clone());
            let mut forged = d.frame.clone();
            let n = forged.len();
            for b in &mut forged[HEADER_LEN + 9..n] {
                *b = 0x5a;
            }
            // Counter moved on so the replay window does not catch it first.
            forged[HEADER_LEN + 8] ^= 0x01;
            vec![
                d,
                Delivery {
                    to: d_to(&forged),
                    frame: forged,
                },
            ]
        } else {
            vec![d]
        }
    }));
    sim.master.send_chat("genuine").unwrap();
    sim.run(3);
    assert_eq!(sim.chats(0), ["genuine"]);
    assert!(sim.participants[0]
        .errors
        .iter()
        .any(|e| matches!(e, Stage2Error::Sframe(_))));

    // A made-up join response for a participant that is joining.
    let mut sim = Sim::new(SessionKind::Support, Some(PASSWORD));
    sim.hook = Some(Box::new(|_, d: Delivery| {
        let Ok(f) = FrameRef::parse(&d.frame) else {
            return vec![d];
        };
        if f.header.class == FrameClass::Handshake {
            if let Ok(Handshake::Response(mut r)) = Handshake::decode(f.payload) {
                r.confirm = [0x11; 32];
                let h = f.header;
                let frame = plain_frame(
                    h.class,
                    h.session,
                    h.sender,
                    h.destination,
                    &Handshake::Response(r).encode(),
                )
                .unwrap();
                return vec![Delivery { to: d.to, frame }];
            }
        }
        vec![d]
    }));
    sim.join("Olga", Some(PASSWORD));
    sim.run(20);
    assert!(!sim.is_member(0));
    assert!(sim.participants[0]
        .errors
        .contains(&Stage2Error::Confirmation));
}

fn d_to(_frame: &[u8]) -> usize {
    1
}

/// Hostile relay, substitute the master's key in the announce: the
/// participant refuses the announce (its signature no longer verifies), and
/// an announce the relay signs itself is refused too.
#[test]
fn hostile_relay_substituting_the_announce_key_is_detected() {
    for resign in [false, true] {
        let mut sim = Sim::new(SessionKind::Support, None);
        let relay_key = conclave_protocol::fixtures::identity(666);
        sim.hook = Some(Box::new(move |_, d: Delivery| {
            let Ok(f) = FrameRef::parse(&d.frame) else {
                return vec![d];
            };
            if f.header.class != FrameClass::Relay {
                return vec![d];
            }
            let Ok(FromRelay::Joined {
                session,
                peer,
                announce,
            }) = FromRelay::decode(f.payload)
            else {
                return vec![d];
            };
            let mut a = Announce::decode(announce.body()).unwrap();
            a.master_ephemeral = [9; 32];
            let forged = if resign {
                relay_key.sign(&a)
            } else {
                // Keep the master's signature over the changed body.
                let wire = conclave_protocol::codec::encode(&announce);
                let mut w = wire.clone();
                let body = announce.body();
                let pos = w.windows(body.len()).position(|x| x == body).unwrap();
                let new_body = a.encode();
                assert_eq!(new_body.len(), body.len());
                w[pos..pos + body.len()].copy_from_slice(&new_body);
                postcard::from_bytes(&w[1..]).unwrap()
            };
            let msg = FromRelay::Joined {
                session,
                peer,
                announce: forged,
            };
            let h = f.header;
            vec![Delivery {
                to: d.to,
                frame: plain_frame(h.class, h.session, h.sender, h.destination, &msg.encode())
                    .unwrap(),
            }]
        }));
        sim.join("Pat", None);
        sim.run(20);
        assert!(!sim.is_member(0));
        assert!(
            matches!(
                sim.participants[0].errors.first(),
                Some(Stage2Error::Signature(_))
            ),
            "resign={resign}: {:?}",
            sim.participants[0].errors
        );
        assert!(sim.participants[0]
            .events
            .iter()
            .any(|e| matches!(e, ParticipantEvent::JoinFailed(_))));
    }
}

/// Hostile relay, substitute the participant's key in its join request (a
/// man in the middle): the master signs the transcript it saw, so the
/// participant detects the substitution at once; with a password the relay
/// also cannot complete the exchange.
#[test]
fn hostile_relay_substituting_the_join_key_is_detected() {
    for password in [None, Some(PASSWORD)] {
        let mut sim = Sim::new(SessionKind::Support, password);
        sim.hook = Some(Box::new(|_, d: Delivery| {
            let Ok(f) = FrameRef::parse(&d.frame) else {
                return vec![d];
            };
            if f.header.class != FrameClass::Handshake {
                return vec![d];
            }
            let Ok(Handshake::Request(mut r)) = Handshake::decode(f.payload) else {
                return vec![d];
            };
            // The relay's own X25519 key in place of the participant's.
            r.participant_ephemeral =
                x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from([7u8; 32]))
                    .to_bytes();
            let h = f.header;
            vec![Delivery {
                to: d.to,
                frame: plain_frame(
                    h.class,
                    h.session,
                    h.sender,
                    h.destination,
                    &Handshake::Request(r).encode(),
                )
                .unwrap(),
            }]
        }));
        sim.join("Quinn", password);
        sim.run(20);
        assert!(!sim.is_member(0), "password={password:?}");
        assert!(
            sim.participants[0]
                .errors
                .contains(&Stage2Error::Confirmation),
            "password={password:?}: {:?}",
            sim.participants[0].errors
        );
        assert!(!sim
            .master_events
            .iter()
            .any(|e| matches!(e, MasterEvent::Admitted { .. })));
    }
}

/// Hostile relay, replay an old roster and key wrap: refused as stale; the
/// participant stays in the current epoch.
#[test]
fn hostile_relay_replaying_an_old_roster_is_detected() {
    let mut sim = joined_with_password();
    let first_rekey = sim
        .relay_saw
        .iter()
        .find(|f| class_of(f) == Some(FrameClass::Roster))
        .cloned()
        .expect("a rekey went through the relay");
    sim.master.rekey(sim.now);
    sim.run(3);
    let epoch = sim.p(0).engine.epoch().unwrap();
    sim.deliver(Delivery {
        to: 1,
        frame: first_rekey,
    });
    assert_eq!(sim.p(0).engine.epoch(), Some(epoch));
    assert!(matches!(
        sim.participants[0].errors.last(),
        Some(Stage2Error::StaleEpoch { .. })
    ));
}

/// Hostile relay, forge a rights change: a made-up control frame fails
/// authentication, a replayed grant is refused after a revocation, and a
/// control frame under the group key is refused whoever sealed it.
#[test]
fn hostile_relay_forging_rights_is_detected() {
    let mut sim = joined_with_password();
    let carol = sim.peer_of(0);
    let seen = sim.relay_saw.len();
    sim.master
        .set_rights(carol, Rights::REMOTE_CONTROL)
        .unwrap();
    sim.run(3);
    assert_eq!(sim.p(0).engine.rights(), Rights::REMOTE_CONTROL);
    let grant_frame = sim.relay_saw[seen..]
        .iter()
        .find(|f| class_of(f) == Some(FrameClass::Control) && sender_of(f) == Some(PeerId::MASTER))
        .cloned()
        .unwrap();
    sim.master.set_rights(carol, Rights::NONE).unwrap();
    sim.run(3);
    assert_eq!(sim.p(0).engine.rights(), Rights::NONE);
    // Replay the old grant.
    sim.deliver(Delivery {
        to: 1,
        frame: grant_frame.clone(),
    });
    assert_eq!(sim.p(0).engine.rights(), Rights::NONE);
    assert!(matches!(
        sim.participants[0].errors.last(),
        Some(Stage2Error::Sframe(SframeError::Replay(_)))
    ));
    // A made-up grant frame.
    let mut forged = grant_frame;
    let n = forged.len();
    forged[n - 1] ^= 1;
    forged[HEADER_LEN + 1..HEADER_LEN + 3].copy_from_slice(&[0xff, 0xff]);
    sim.deliver(Delivery {
        to: 1,
        frame: forged,
    });
    assert_eq!(sim.p(0).engine.rights(), Rights::NONE);
    // A participant (or anyone with the group key) cannot send control frames.
    assert!(matches!(
        sim.p(0).engine.send_group(FrameClass::Control, b"grant me"),
        Err(Stage2Error::GroupKeyForControl(FrameClass::Control))
    ));
}

/// R26: autolock: once the customer is in a support session, the relay is
/// told to lock it and a second joiner is refused.
#[test]
fn r26_autolock_refuses_a_second_joiner() {
    let portal = conclave_protocol::fixtures::identity(1);
    let mut cfg = conclave_protocol::fixtures::master_config(
        &portal,
        2,
        SESSION,
        SessionKind::Support,
        Some(PASSWORD),
    );
    cfg.autolock = true;
    let mut sim = Sim::new(SessionKind::Support, Some(PASSWORD));
    sim.master = conclave_protocol::stage2::MasterSession::new(
        cfg,
        conclave_protocol::fixtures::rng(3),
        sim.now,
    );
    sim.run(3);
    sim.join("Rita", Some(PASSWORD));
    sim.run_until(50, |s| s.is_member(0));
    assert!(sim.master.is_locked());
    sim.run(2);
    sim.join("Sam", Some(PASSWORD));
    sim.run(10);
    assert!(!sim.is_member(1));
    assert!(sim.participants[1].events.iter().any(|e| matches!(e, ParticipantEvent::Refused(r) if r.code == conclave_protocol::stage1::RefusalCode::SessionLocked)));
}

/// R6: an epoch key is never used across a leave: frames sealed under the
/// epoch before the removal are refused from the removed member after it.
#[test]
fn r6_leaving_member_cannot_inject_under_the_old_epoch() {
    let mut sim = Sim::new(SessionKind::Meeting, Some(PASSWORD));
    sim.join("Tom", Some(PASSWORD));
    sim.join("Uma", Some(PASSWORD));
    sim.run_until(300, |s| s.is_member(0) && s.is_member(1));
    sim.run(150);
    // Tom prepares a chat under the current epoch but it is held back.
    sim.p(0).engine.send_chat("from the past").unwrap();
    let held = sim.p(0).engine.poll_transmit().unwrap();
    let tom = sim.peer_of(0);
    sim.master.remove(tom, sim.now).unwrap();
    sim.run(3);
    sim.deliver(Delivery { to: 0, frame: held });
    assert!(sim.master_chats().is_empty());
    assert!(matches!(
        sim.master_errors.last(),
        Some(Stage2Error::UnknownPeer(_))
    ));
}

#[test]
fn session_id_in_every_frame_matches() {
    let sim = joined_with_password();
    for f in &sim.relay_saw {
        assert_eq!(FrameRef::parse(f).unwrap().header.session, SESSION);
    }
}

/// R6: after a removal, no remaining participant accepts group frames the
/// removed member seals under the old epoch.
#[test]
fn r6_participants_refuse_the_removed_member_under_the_old_epoch() {
    let mut sim = Sim::new(SessionKind::Meeting, Some(PASSWORD));
    sim.join("Vic", Some(PASSWORD));
    sim.join("Wes", Some(PASSWORD));
    sim.run_until(300, |s| s.is_member(0) && s.is_member(1));
    sim.run(150);
    sim.p(0).engine.send_chat("late words").unwrap();
    let held = sim.p(0).engine.poll_transmit().unwrap();
    let vic = sim.peer_of(0);
    sim.master.remove(vic, sim.now).unwrap();
    sim.run(3);
    sim.deliver(Delivery { to: 2, frame: held });
    assert!(sim.chats(1).is_empty());
    assert!(matches!(
        sim.participants[1].errors.last(),
        Some(Stage2Error::UnknownPeer(_))
    ));
}

/// R18: when the relay is lost, master and members resume through a new one
/// under the same IDs; a fresh epoch starts and chat flows both ways, with no
/// new admission and no new join.
#[test]
fn r18_failover_keeps_members_and_starts_a_fresh_epoch() {
    let mut sim = Sim::new(SessionKind::Meeting, Some(PASSWORD));
    sim.join("Kim", Some(PASSWORD));
    sim.join("Lou", Some(PASSWORD));
    sim.run_until(300, |s| s.is_member(0) && s.is_member(1));
    sim.run(150);
    let epoch = sim.master.epoch();
    let peers = (sim.peer_of(0), sim.peer_of(1));
    let admissions = sim.master_events.len();
    sim.fail_over();
    sim.run_until(300, |s| s.master.epoch() > epoch);
    sim.run(150);
    assert_eq!((sim.peer_of(0), sim.peer_of(1)), peers);
    assert!(sim.master_events[admissions..]
        .iter()
        .all(|e| !matches!(e, MasterEvent::AdmissionRequested { .. })));
    for i in 0..2 {
        assert!(sim.is_member(i));
        assert_eq!(
            sim.participants[i].engine.epoch(),
            Some(sim.master.epoch()),
            "participant {i} holds the fresh epoch"
        );
    }
    sim.master.send_chat("still here").unwrap();
    sim.participants[1].engine.send_chat("me too").unwrap();
    sim.run(5);
    assert_eq!(sim.chats(0), ["still here", "me too"]);
    assert_eq!(sim.master_chats(), ["me too"]);
}

/// R18: a rejoin claim for an ID that is not a member is thrown out by the master.
#[test]
fn r18_rejoin_claim_for_a_stranger_is_removed() {
    let mut sim = Sim::new(SessionKind::Meeting, Some(PASSWORD));
    sim.join("Max", Some(PASSWORD));
    sim.run_until(300, |s| s.is_member(0));
    let mut f = plain_frame(
        FrameClass::Relay,
        SESSION,
        PeerId::RELAY,
        PeerId::MASTER,
        &FromRelay::PeerRejoined { peer: PeerId(77) }.encode(),
    )
    .unwrap();
    sim.master.handle_frame(sim.now, &mut f).unwrap();
    let mut removed = false;
    while let Some(f) = sim.master.poll_transmit() {
        let f = FrameRef::parse(&f).unwrap();
        if f.header.class == FrameClass::Relay {
            removed |= ToRelay::decode(f.payload).unwrap() == ToRelay::Remove { peer: PeerId(77) };
        }
    }
    assert!(removed);
}
