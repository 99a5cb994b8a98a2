//! Test support: a relay on loopback, clients that speak to it over real
//! sockets, and drivers that run the real stage-2 engines over them.
#![allow(
    dead_code,
    unreachable_pub,
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use conclave_protocol::codec::Message;
use conclave_protocol::fixtures;
use conclave_protocol::frame::{plain_frame, FrameClass, FrameRef, PeerId, SessionId};
use conclave_protocol::sign::SigningIdentity;
use conclave_protocol::stage1::{FromRelay, Hello, Refusal, ToRelay};
use conclave_protocol::stage2::{Engine, MasterEvent, MasterSession, ParticipantSession};
use conclave_protocol::time::Millis;
use conclave_relay::config::Settings;
use conclave_relay::Relay;
use conclave_transport::conn::{
    connect_quic, connect_tls, connect_websocket, ClientConnection, Transport,
};
use rand_chacha::ChaCha20Rng;

/// Bound on any single wait, so a broken test fails instead of hanging.
pub const WAIT: Duration = Duration::from_secs(10);

pub fn portal() -> SigningIdentity {
    fixtures::identity(1)
}

/// Settings for a loopback relay trusting the fixtures' portal.
pub fn settings() -> Settings {
    Settings {
        quic: Some("127.0.0.1:0".into()),
        tls: Some("127.0.0.1:0".into()),
        websocket: Some("127.0.0.1:0".into()),
        admin: Some("127.0.0.1:0".into()),
        portal_keys: Some(vec![hex::encode(portal().public_key().0)]),
        join_delay_base_ms: Some(200),
        ..Settings::default()
    }
}

pub async fn relay_with(s: Settings) -> Relay {
    Relay::start(s.resolve(true).unwrap()).await.unwrap()
}

pub async fn relay() -> Relay {
    relay_with(settings()).await
}

pub async fn connect(relay: &Relay, t: Transport) -> ClientConnection {
    let key = relay.public_key;
    match t {
        Transport::Tls => connect_tls(relay.tls.unwrap(), key).await,
        Transport::Quic => connect_quic(relay.quic.unwrap(), key).await,
        Transport::WebSocket => connect_websocket(relay.websocket.unwrap(), key).await,
    }
    .unwrap()
}

pub fn to_relay(session: SessionId, sender: PeerId, msg: &ToRelay) -> Bytes {
    Bytes::from(
        plain_frame(
            FrameClass::Relay,
            session,
            sender,
            PeerId::RELAY,
            &msg.encode(),
        )
        .unwrap(),
    )
}

pub async fn send(c: &ClientConnection, frame: Bytes) {
    c.outgoing.send(frame).await.unwrap();
}

/// The next frame, or None if the connection closed.
pub async fn recv(c: &mut ClientConnection) -> Option<Bytes> {
    match tokio::time::timeout(WAIT, c.incoming.recv())
        .await
        .expect("no frame within the wait")
    {
        Some(Ok(f)) => Some(f),
        _ => None,
    }
}

/// The next relay message.
pub async fn recv_relay(c: &mut ClientConnection) -> Option<FromRelay> {
    loop {
        let f = recv(c).await?;
        let f = FrameRef::parse(&f).unwrap();
        if f.header.class == FrameClass::Relay {
            return Some(FromRelay::decode(f.payload).unwrap());
        }
    }
}

/// Sends a Hello; Ok on Welcome, Err with the refusal.
pub async fn hello(c: &mut ClientConnection, h: Hello) -> Result<(), Refusal> {
    send(c, to_relay(SessionId(0), PeerId::RELAY, &ToRelay::Hello(h))).await;
    match recv_relay(c).await {
        Some(FromRelay::Welcome(_)) => Ok(()),
        Some(FromRelay::Refused(r)) => Err(r),
        other => panic!("unexpected answer to Hello: {other:?}"),
    }
}

pub const SESSION: SessionId = SessionId(314_159);

/// An engine on its own connection, after Hello.
pub struct Client<E> {
    pub conn: ClientConnection,
    pub engine: E,
}

/// A master engine on its own connection.
pub type MasterClient = Client<MasterSession<ChaCha20Rng>>;
/// A participant engine on its own connection.
pub type ParticipantClient = Client<ParticipantSession>;

impl<E: Engine> Client<E> {
    /// Sends everything the engine queued.
    pub async fn flush(&mut self) {
        while let Some(f) = self.engine.poll_transmit() {
            send(&self.conn, Bytes::from(f)).await;
        }
    }

    /// Handles whatever arrives within `ms`, then the timers.
    pub async fn pump(&mut self, ms: u64) {
        let until = tokio::time::Instant::now() + Duration::from_millis(ms);
        while let Ok(Some(Ok(f))) = tokio::time::timeout_at(until, self.conn.incoming.recv()).await
        {
            let mut f = f.to_vec();
            // A frame an engine drops is the test's business, not the pump's.
            let _ = self.engine.handle_frame(now(), &mut f);
            self.flush().await;
        }
        self.engine.handle_timeout(now());
        self.flush().await;
    }
}

pub fn now() -> Millis {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    Millis(
        START
            .get_or_init(std::time::Instant::now)
            .elapsed()
            .as_millis() as u64,
    )
}

pub async fn master(relay: &Relay, t: Transport, password: Option<&str>) -> MasterClient {
    let mut conn = connect(relay, t).await;
    let p = portal();
    {
        let cb = conn.channel_binding;
        hello(
            &mut conn,
            fixtures::master_hello(&p, &fixtures::identity(2), &cb),
        )
    }
    .await
    .unwrap();
    let cfg = fixtures::master_config(
        &p,
        2,
        SESSION,
        conclave_protocol::stage1::SessionKind::Meeting,
        password,
    );
    let engine = MasterSession::new(cfg, fixtures::rng(3), now());
    let mut m = MasterClient { conn, engine };
    m.flush().await;
    m
}

pub async fn participant(
    relay: &Relay,
    t: Transport,
    name: &str,
    password: Option<&str>,
    seed: u64,
) -> ParticipantClient {
    let mut conn = connect(relay, t).await;
    hello(&mut conn, fixtures::participant_hello(&portal()))
        .await
        .unwrap();
    let engine = ParticipantSession::join(
        SESSION,
        password,
        fixtures::s(name),
        fixtures::s("pc"),
        vec![portal().public_key()],
        &mut fixtures::rng(seed),
        now(),
        fixtures::NOW,
    );
    let mut p = ParticipantClient { conn, engine };
    p.flush().await;
    p
}

/// Runs master and participants until every participant is a member,
/// admitting whoever asks (sessions without a password need it).
pub async fn settle(m: &mut MasterClient, ps: &mut [&mut ParticipantClient]) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !ps.iter().all(|p| p.engine.is_member()) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "participants were not admitted in time"
        );
        m.pump(20).await;
        while let Some(e) = m.engine.poll_event() {
            if let MasterEvent::AdmissionRequested { peer, .. } = e {
                m.engine.admit(peer, now()).unwrap();
            }
        }
        m.flush().await;
        for p in ps.iter_mut() {
            p.pump(20).await;
        }
    }
}

pub fn addr_of(a: Option<SocketAddr>) -> SocketAddr {
    a.unwrap()
}

/// A new participant connection's answer to joining `session`.
pub async fn join_answer(relay: &Relay, session: SessionId) -> Option<FromRelay> {
    let mut c = connect(relay, Transport::Tls).await;
    hello(&mut c, fixtures::participant_hello(&portal()))
        .await
        .unwrap();
    send(
        &c,
        to_relay(SessionId(0), PeerId::RELAY, &ToRelay::Join { session }),
    )
    .await;
    recv_relay(&mut c).await
}

/// A join of `session` that the relay must refuse; the refusal.
pub async fn join_refused(relay: &Relay, session: SessionId) -> Refusal {
    match join_answer(relay, session).await {
        Some(FromRelay::Refused(r)) => r,
        other => panic!("expected a refusal, got {other:?}"),
    }
}
