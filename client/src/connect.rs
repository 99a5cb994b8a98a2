//! Reaching a relay: QUIC, then TLS over TCP, then WebSocket (R19), each
//! attempt short and bounded; stage 1 (Hello, proof of the license key);
//! and measuring relays to choose one (R18).
//!
//! QUIC gets [`Attempts::quic`] (1.5 s by default): a network that drops UDP
//! answers nothing, so the wait is spent in full before TLS is tried, and
//! that is the whole cost of a blocked UDP path. A refused TCP port fails at
//! once. The relay is authenticated by the key pinned in the baked list on
//! every transport (`conclave_transport::tls`).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use conclave_protocol::artefact::{RelayEntry, Role};
use conclave_protocol::bounded::BoundedString;
use conclave_protocol::codec::Message;
use conclave_protocol::frame::{plain_frame, FrameClass, FrameRef, PeerId, SessionId};
use conclave_protocol::stage1::{FromRelay, Hello, Refusal, ToRelay, Welcome, HELLO_PROOF_DOMAIN};
use conclave_protocol::trailer::VerifiedBuild;
use conclave_transport::conn::{
    connect_quic, connect_tls, connect_websocket, ClientConnection, ConnError, Transport,
};

/// How long each transport may take to connect.
#[derive(Debug, Clone, Copy)]
pub struct Attempts {
    /// QUIC handshake.
    pub quic: Duration,
    /// TCP connect and TLS handshake.
    pub tls: Duration,
    /// TCP, TLS and the WebSocket upgrade.
    pub websocket: Duration,
    /// Hello to Welcome.
    pub hello: Duration,
}

impl Default for Attempts {
    fn default() -> Self {
        Attempts {
            quic: Duration::from_millis(1_500),
            tls: Duration::from_secs(3),
            websocket: Duration::from_secs(3),
            hello: Duration::from_secs(5),
        }
    }
}

/// Why a relay could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// No transport reached the relay.
    #[error("cannot reach relay {relay}: {}", tried.iter().map(|(t, e)| format!("{t}: {e}")).collect::<Vec<_>>().join("; "))]
    Unreachable {
        /// The relay's name.
        relay: String,
        /// Each transport tried, with its failure.
        tried: Vec<(Transport, String)>,
    },
    /// The relay refused the Hello (R8, R9, R10).
    #[error("relay {relay} refused: {refusal}")]
    Refused {
        /// The relay's name.
        relay: String,
        /// Its refusal.
        refusal: Refusal,
    },
    /// The relay closed or broke the connection during stage 1.
    #[error("relay {relay} closed the connection during setup: {reason}")]
    Closed {
        /// The relay's name.
        relay: String,
        /// Why.
        reason: String,
    },
}

/// Who is connecting, for the relay's audit log (R17).
#[derive(Debug, Clone)]
pub struct Who {
    /// The operating-system user.
    pub os_user: BoundedString<64>,
    /// The host name.
    pub host: BoundedString<64>,
}

/// Cuts `text` to at most `N` bytes at a character boundary.
pub fn bounded<const N: usize>(text: &str) -> BoundedString<N> {
    BoundedString::new(conclave_protocol::bounded::prefix(text, N)).unwrap_or_default()
}

impl Who {
    /// This process's user and host, as the system reports them.
    pub fn this_process() -> Who {
        let user = std::env::var("USER")
            .or_else(|_| std::env::var("LOGNAME"))
            .unwrap_or_else(|_| "unknown".into());
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "unknown".into());
        Who {
            os_user: bounded(&user),
            host: bounded(&host),
        }
    }
}

/// A connection that passed stage 1.
#[derive(Debug)]
pub struct RelayLink {
    /// The connection.
    pub conn: ClientConnection,
    /// The relay's entry in the baked list.
    pub relay: RelayEntry,
    /// The relay's welcome.
    pub welcome: Welcome,
}

impl RelayLink {
    /// The relay's name and the transport, for notices.
    pub fn describe(&self) -> String {
        format!("{} over {}", self.relay.name, self.conn.transport)
    }
}

async fn resolve(host: &str, port: u16) -> Result<SocketAddr, String> {
    tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host} has no address"))
}

/// Connects to `relay` over the first transport that works, in the order
/// QUIC, TLS/TCP, WebSocket (with `prefer`, the one that worked before,
/// first), skipping ports the list leaves at 0.
pub async fn connect_relay(
    relay: &RelayEntry,
    attempts: &Attempts,
    prefer: Option<Transport>,
) -> Result<ClientConnection, ConnectError> {
    let mut plan = [
        (Transport::Quic, relay.quic_port, attempts.quic),
        (Transport::Tls, relay.tls_port, attempts.tls),
        (
            Transport::WebSocket,
            relay.websocket_port,
            attempts.websocket,
        ),
    ];
    plan.sort_by_key(|(t, _, _)| Some(*t) != prefer);
    let mut tried = Vec::new();
    for (transport, port, limit) in plan.into_iter().filter(|(_, port, _)| *port != 0) {
        let attempt = async {
            let addr = resolve(relay.host.as_str(), port).await?;
            let key = relay.public_key;
            let r: Result<ClientConnection, ConnError> = match transport {
                Transport::Quic => connect_quic(addr, key).await,
                Transport::Tls => connect_tls(addr, key).await,
                Transport::WebSocket => connect_websocket(addr, key).await,
            };
            r.map_err(|e| e.to_string())
        };
        match tokio::time::timeout(limit, attempt).await {
            Ok(Ok(conn)) => return Ok(conn),
            Ok(Err(e)) => tried.push((transport, e)),
            Err(_) => tried.push((
                transport,
                format!("no answer within {} ms", limit.as_millis()),
            )),
        }
    }
    Err(ConnectError::Unreachable {
        relay: relay.name.to_string(),
        tried,
    })
}

/// A frame with a message for the relay.
pub fn relay_frame(session: SessionId, sender: PeerId, msg: &ToRelay) -> Bytes {
    // Our own messages are within MAX_PAYLOAD by the type's MAX_SIZE.
    Bytes::from(
        plain_frame(
            FrameClass::Relay,
            session,
            sender,
            PeerId::RELAY,
            &msg.encode(),
        )
        .unwrap_or_default(),
    )
}

/// The next message from the relay, skipping other frames; `Err` with the
/// reason when the connection ends.
async fn next_relay_message(conn: &mut ClientConnection) -> Result<FromRelay, String> {
    loop {
        let frame = match conn.incoming.recv().await {
            Some(Ok(f)) => f,
            Some(Err(e)) => return Err(e.to_string()),
            None => return Err("connection closed".into()),
        };
        let Ok(f) = FrameRef::parse(&frame) else {
            continue;
        };
        if f.header.class == FrameClass::Relay && f.header.sender == PeerId::RELAY {
            return FromRelay::decode(f.payload).map_err(|e| e.to_string());
        }
    }
}

/// Connects to `relay` and passes stage 1 with the app's own build; a master
/// proves its license key over the channel binding. `early` frames (a Join,
/// a Rejoin, a CreateSession) go right behind the Hello without waiting for
/// the Welcome, which saves a round trip: the relay handles them in order,
/// and drops them with the connection if it refuses the Hello.
pub async fn open(
    relay: &RelayEntry,
    build: &VerifiedBuild,
    who: &Who,
    attempts: &Attempts,
    prefer: Option<Transport>,
    early: &[Bytes],
) -> Result<RelayLink, ConnectError> {
    let mut conn = connect_relay(relay, attempts, prefer).await?;
    let closed = |reason: String| ConnectError::Closed {
        relay: relay.name.to_string(),
        reason,
    };
    let proof = build
        .master
        .as_ref()
        .filter(|_| build.config.role == Role::Master)
        .map(|(_, identity)| identity.sign_raw(HELLO_PROOF_DOMAIN, &conn.channel_binding));
    let hello = Hello {
        role: build.config.role,
        build: build.signed.clone(),
        proof,
        os_user: who.os_user.clone(),
        host: who.host.clone(),
    };
    let frame = relay_frame(SessionId(0), PeerId::RELAY, &ToRelay::Hello(hello));
    for f in std::iter::once(frame).chain(early.iter().cloned()) {
        conn.outgoing
            .send(f)
            .await
            .map_err(|_| closed("connection closed".into()))?;
    }
    let answer = tokio::time::timeout(attempts.hello, next_relay_message(&mut conn))
        .await
        .map_err(|_| closed(format!("no answer to Hello within {:?}", attempts.hello)))?
        .map_err(closed)?;
    match answer {
        FromRelay::Welcome(welcome) => Ok(RelayLink {
            conn,
            relay: relay.clone(),
            welcome,
        }),
        FromRelay::Refused(refusal) => Err(ConnectError::Refused {
            relay: relay.name.to_string(),
            refusal,
        }),
        other => Err(closed(format!("unexpected answer to Hello: {other:?}"))),
    }
}

/// A relay's measured round trip and published load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Measurement {
    /// Best of the pings.
    pub rtt: Duration,
    /// Connected peers as a share of capacity, in thousandths.
    pub load_permille: u16,
}

impl Measurement {
    /// Lower is better: the round trip, stretched by load (a full relay
    /// counts as five times as far) and by the list's priority (each step
    /// as 10 ms).
    pub fn score(&self, priority: u8) -> u64 {
        let rtt_us = u64::try_from(self.rtt.as_micros()).unwrap_or(u64::MAX);
        rtt_us
            .saturating_mul(1_000 + 4 * u64::from(self.load_permille))
            .saturating_div(1_000)
            .saturating_add(u64::from(priority) * 10_000)
    }
}

/// Pings the relay `count` times over an open link.
pub async fn ping(link: &mut RelayLink, count: u32) -> Result<Measurement, String> {
    let mut best: Option<Duration> = None;
    let mut load = 0;
    for nonce in 0..u64::from(count) {
        let sent = Instant::now();
        link.conn
            .outgoing
            .send(relay_frame(
                SessionId(0),
                PeerId::RELAY,
                &ToRelay::Ping { nonce },
            ))
            .await
            .map_err(|_| "connection closed".to_string())?;
        loop {
            match next_relay_message(&mut link.conn).await? {
                FromRelay::Pong {
                    nonce: n,
                    load_permille,
                } if n == nonce => {
                    let rtt = sent.elapsed();
                    best = Some(best.map_or(rtt, |b| b.min(rtt)));
                    load = load_permille;
                    break;
                }
                _ => continue,
            }
        }
    }
    best.map(|rtt| Measurement {
        rtt,
        load_permille: load,
    })
    .ok_or_else(|| "no pings".into())
}

/// Opens and measures every relay in `relays` at once (R18); returns the
/// best link (by [`Measurement::score`]) with its index, and what each
/// relay that failed said. The other links are closed.
pub async fn measure(
    relays: &[RelayEntry],
    build: &VerifiedBuild,
    who: &Who,
    attempts: &Attempts,
) -> (Option<(usize, RelayLink, Measurement)>, Vec<ConnectError>) {
    let tries = relays.iter().enumerate().map(|(i, r)| async move {
        let mut link = open(r, build, who, attempts, None, &[]).await?;
        let m = tokio::time::timeout(attempts.hello, ping(&mut link, 3))
            .await
            .map_err(|_| "no answer to pings".to_string())
            .and_then(|r| r)
            .map_err(|reason| ConnectError::Closed {
                relay: r.name.to_string(),
                reason,
            })?;
        Ok::<_, ConnectError>((i, link, m))
    });
    let results = futures_util::future::join_all(tries).await;
    let mut best: Option<(usize, RelayLink, Measurement)> = None;
    let mut failures = Vec::new();
    for r in results {
        match r {
            Ok((i, link, m)) => {
                let better = best.as_ref().is_none_or(|(_, b, bm)| {
                    m.score(link.relay.priority) < bm.score(b.relay.priority)
                });
                if better {
                    if let Some((_, old, _)) = best.take() {
                        old.conn.close();
                    }
                    best = Some((i, link, m));
                } else {
                    link.conn.close();
                }
            }
            Err(e) => failures.push(e),
        }
    }
    (best, failures)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// R18: load and priority weigh against the round trip.
    #[test]
    fn r18_score_weighs_round_trip_load_and_priority() {
        let m = |ms, load| Measurement {
            rtt: Duration::from_millis(ms),
            load_permille: load,
        };
        assert!(m(10, 0).score(0) < m(20, 0).score(0));
        assert!(m(20, 0).score(0) < m(10, 1000).score(0));
        assert!(m(10, 0).score(1) > m(15, 0).score(0));
    }

    #[test]
    fn bounded_cuts_at_a_character_boundary() {
        let b: BoundedString<4> = bounded("aéé");
        assert_eq!(b.as_str(), "aé");
    }
}
