//! Relay choice (R18) with real relays on loopback: the master measures the
//! relays in its build and opens the session on the best one it can reach,
//! the session ID it draws puts that relay first, and a participant with
//! the same list finds the session from the ID alone.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::time::Duration;

use common::{entry, next, relay, who};
use conclave_client::connect::Attempts;
use conclave_client::events::Event;
use conclave_client::relays::relay_order;
use conclave_client::session::{join, start_master, JoinOptions, MasterOptions, Running};
use conclave_protocol::artefact::{RelayEntry, Role};
use conclave_protocol::fixtures;
use conclave_protocol::stage1::SessionKind;
use conclave_relay::Relay;
use zeroize::Zeroizing;

const PASSWORD: &str = "choice-horse-42";

/// A relay in the list that nothing answers for: its key, ports whose
/// sockets are held but never answer (UDP) or refuse (TCP, once closed).
fn dead(name: &str, relay: &Relay, held: &std::net::UdpSocket) -> RelayEntry {
    let mut e = entry(name, relay, 0);
    e.quic_port = held.local_addr().unwrap().port();
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    e.tls_port = tcp.local_addr().unwrap().port();
    e
}

fn attempts() -> Attempts {
    Attempts {
        quic: Duration::from_millis(300),
        tls: Duration::from_millis(300),
        websocket: Duration::from_millis(300),
        hello: Duration::from_secs(5),
    }
}

fn build(role: Role, relays: Vec<RelayEntry>) -> conclave_protocol::trailer::VerifiedBuild {
    fixtures::verified_build(role, relays, |p| p.password_required = true)
}

async fn connected_to(r: &mut Running) -> String {
    match next(r, |e| matches!(e, Event::Connected { .. })).await {
        Event::Connected { relay, .. } => relay,
        other => panic!("{other:?}"),
    }
}

/// Opens a session on `relays` and returns it with the relay it chose.
async fn open(relays: &[RelayEntry]) -> (Running, String) {
    let options = MasterOptions {
        kind: SessionKind::Meeting,
        moderator: "Host".into(),
        password: Some(Zeroizing::new(PASSWORD.into())),
        who: who("tester"),
        attempts: attempts(),
        media: Default::default(),
    };
    let mut m = start_master(build(Role::Master, relays.to_vec()), options)
        .await
        .unwrap();
    let relay = connected_to(&mut m).await;
    next(&mut m, |e| matches!(e, Event::SessionOpened { .. })).await;
    (m, relay)
}

/// R18: of two relays, the one that is down is passed over; the ID's order
/// starts with the chosen one; a participant finds it from the ID alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r18_master_opens_on_a_relay_that_answers_and_participants_follow_the_id() {
    let (a, b) = (relay().await, relay().await);
    let hole = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let relays = vec![dead("A", &a, &hole), entry("B", &b, 0)];
    let (m, chosen) = open(&relays).await;
    assert_eq!(chosen, "B");
    let session = m.handle.session;
    assert_eq!(relay_order(session, &relays)[0], 1, "the ID names B first");

    let options = JoinOptions {
        session,
        password: Some(Zeroizing::new(PASSWORD.into())),
        name: "Guest".into(),
        who: who("tester"),
        attempts: attempts(),
        media: Default::default(),
    };
    let mut p = join(build(Role::Participant, relays.clone()), options)
        .await
        .unwrap();
    assert_eq!(connected_to(&mut p).await, "B");
    next(&mut p, |e| matches!(e, Event::Admitted { .. })).await;
}

/// R18: of two relays that answer, the measured score decides; here the
/// list's priority (10 ms a step) outweighs loopback's round trips.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r18_master_picks_the_better_scoring_relay() {
    let (a, b) = (relay().await, relay().await);
    for (preferred, relays) in [
        ("B", vec![entry("A", &a, 5), entry("B", &b, 0)]),
        ("A", vec![entry("A", &a, 0), entry("B", &b, 5)]),
    ] {
        let (_m, chosen) = open(&relays).await;
        assert_eq!(chosen, preferred);
    }
}
