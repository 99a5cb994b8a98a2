//! One task per connection: stage 1, then create or join, then forwarding.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use conclave_protocol::artefact::Role;
use conclave_protocol::bounded::BoundedString;
use conclave_protocol::codec::Message;
use conclave_protocol::frame::{
    plain_frame, FrameClass, FrameRef, PeerId, RoutingHeader, SessionId,
};
use conclave_protocol::stage1::{FromRelay, LeaveReason, Refusal, RefusalCode, ToRelay, Welcome};
use conclave_transport::conn::{ConnError, Incoming, Transport};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::audit::AuditEvent;
use crate::hub::{policy_message, ClientInfo, Hub, Sends, Session};
use crate::metrics::DropReason;
use crate::outbox::{Offer, Outbox};

/// Messages a client may send between Welcome and a session.
const MAX_SETUP_MESSAGES: u32 = 8;

/// How long a rejoin waits for its session to open on this relay (R18):
/// after a failover, members may arrive before their master. Only then does
/// an unknown session count as a failed join.
const REJOIN_WAIT: Duration = Duration::from_secs(3);

/// Decrements the peer gauge when the connection ends.
struct PeerGauge<'a>(&'a Hub);

impl Drop for PeerGauge<'_> {
    fn drop(&mut self) {
        self.0.metrics.peers.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A token bucket for frames and bytes.
struct Bucket {
    frames: f64,
    bytes: f64,
    last: Instant,
}

impl Bucket {
    /// A full bucket: a new peer may burst at once.
    fn new(hub: &Hub) -> Self {
        Bucket {
            frames: 2.0 * f64::from(hub.limits.frames_per_sec),
            bytes: 2.0 * hub.limits.bytes_per_sec as f64,
            last: Instant::now(),
        }
    }

    /// Whether a frame of `len` bytes fits; bursts of two seconds' worth pass.
    fn take(&mut self, hub: &Hub, len: usize) -> bool {
        let now = Instant::now();
        let dt = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        let fps = f64::from(hub.limits.frames_per_sec);
        let bps = hub.limits.bytes_per_sec as f64;
        self.frames = (self.frames + dt * fps).min(2.0 * fps);
        self.bytes = (self.bytes + dt * bps).min(2.0 * bps);
        if self.frames < 1.0 || self.bytes < len as f64 {
            return false;
        }
        self.frames -= 1.0;
        self.bytes -= len as f64;
        true
    }
}

fn reply(session: SessionId, to: PeerId, msg: &FromRelay) -> Bytes {
    Bytes::from(
        plain_frame(FrameClass::Relay, session, PeerId::RELAY, to, &msg.encode())
            .unwrap_or_default(),
    )
}

async fn deliver(hub: &Hub, sends: Sends) {
    for (outbox, frame) in sends {
        let len = frame.len() as u64;
        if outbox.send(FrameClass::Relay, frame).await == Offer::Queued {
            hub.metrics.frames_out.fetch_add(1, Ordering::Relaxed);
            hub.metrics.bytes_out.fetch_add(len, Ordering::Relaxed);
        }
    }
}

enum Next {
    Frame(Bytes),
    Closed(Option<ConnError>),
    Idle,
    Stop,
}

async fn next(
    incoming: &mut Incoming,
    timeout: Duration,
    stop: &CancellationToken,
    outbox: &Outbox,
) -> Next {
    tokio::select! {
        () = stop.cancelled() => Next::Stop,
        () = outbox.closed().cancelled() => Next::Stop,
        r = tokio::time::timeout(timeout, incoming.recv()) => match r {
            Err(_) => Next::Idle,
            Ok(None) => Next::Closed(None),
            Ok(Some(Err(e))) => Next::Closed(Some(e)),
            Ok(Some(Ok(f))) => Next::Frame(f),
        },
    }
}

/// Decodes a relay-class message from a frame.
fn relay_message(frame: &[u8]) -> Result<(RoutingHeader, ToRelay), Refusal> {
    let f =
        FrameRef::parse(frame).map_err(|e| Refusal::new(RefusalCode::Malformed, e.to_string()))?;
    if f.header.class != FrameClass::Relay || f.header.destination != PeerId::RELAY {
        return Err(Refusal::new(
            RefusalCode::HelloRequired,
            "send Hello to the relay first",
        ));
    }
    let msg = ToRelay::decode(f.payload)
        .map_err(|e| Refusal::new(RefusalCode::Malformed, e.to_string()))?;
    Ok((f.header, msg))
}

/// Serves one connection until it ends, the peer is closed, or `stop` fires.
pub(crate) async fn serve(
    hub: Arc<Hub>,
    mut incoming: Incoming,
    outbox: Outbox,
    binding: [u8; 32],
    addr: SocketAddr,
    transport: Transport,
    stop: CancellationToken,
) {
    hub.metrics.peers.fetch_add(1, Ordering::Relaxed);
    let _gauge = PeerGauge(&hub);
    let ip = addr.ip();
    let mut info = ClientInfo {
        ip: ip.to_string(),
        ..ClientInfo::default()
    };
    let deadline = hub.limits.handshake_timeout;
    let refuse = |hub: &Hub, r: Refusal, info: &ClientInfo, session: Option<SessionId>| {
        hub.refuse(&r, info, session);
        let frame = reply(
            session.unwrap_or(SessionId(0)),
            PeerId::RELAY,
            &FromRelay::Refused(r),
        );
        let _ = outbox.offer(FrameClass::Relay, frame);
        outbox.close();
    };

    // Stage 1: Hello.
    let frame = match next(&mut incoming, deadline, &stop, &outbox).await {
        Next::Frame(f) => f,
        _ => return outbox.close(),
    };
    let hello = match relay_message(&frame) {
        Ok((_, ToRelay::Hello(h))) => h,
        Ok(_) => {
            return refuse(
                &hub,
                Refusal::new(RefusalCode::HelloRequired, "send Hello first"),
                &info,
                None,
            )
        }
        Err(r) => return refuse(&hub, r, &info, None),
    };
    let admitted = match hub.check_hello(&hello, &binding) {
        Ok(a) => a,
        Err(r) => return refuse(&hub, r, &info, None),
    };
    info = ClientInfo::new(&hello, &admitted, ip);
    let welcome = FromRelay::Welcome(Welcome {
        relay_version: hub.version,
        relay_name: BoundedString::new(hub.name.chars().take(64).collect::<String>())
            .unwrap_or_default(),
    });
    let _ = outbox.offer(
        FrameClass::Relay,
        reply(SessionId(0), PeerId::RELAY, &welcome),
    );
    tracing::debug!(%addr, %transport, role = %admitted.role, "admitted");

    // Create or join. A master may retry a taken session ID a few times;
    // anything beyond that within the handshake time is abuse.
    let mut attempts = 0u32;
    let (session, peer) = loop {
        attempts += 1;
        if attempts > MAX_SETUP_MESSAGES {
            return refuse(
                &hub,
                Refusal::new(
                    RefusalCode::Malformed,
                    "too many requests before joining a session",
                ),
                &info,
                None,
            );
        }
        let frame = match next(&mut incoming, deadline, &stop, &outbox).await {
            Next::Frame(f) => f,
            _ => return outbox.close(),
        };
        let (session, claim) = match relay_message(&frame) {
            Ok((_, ToRelay::Ping { nonce })) => {
                let _ = outbox.offer(
                    FrameClass::Relay,
                    reply(
                        SessionId(0),
                        PeerId::RELAY,
                        &FromRelay::Pong {
                            nonce,
                            load_permille: hub.load_permille(),
                        },
                    ),
                );
                continue;
            }
            Ok((
                _,
                ToRelay::CreateSession {
                    session,
                    kind,
                    announce,
                },
            )) => {
                match hub.create_session(&admitted, session, kind, announce, outbox.clone(), ip) {
                    Ok(s) => {
                        deliver(
                            &hub,
                            vec![(
                                outbox.clone(),
                                reply(
                                    session,
                                    PeerId::MASTER,
                                    &FromRelay::SessionCreated { session },
                                ),
                            )],
                        )
                        .await;
                        hub.audit(AuditEvent::SessionCreated, &info, Some(session), 0, "");
                        break (s, PeerId::MASTER);
                    }
                    Err(r) => {
                        hub.refuse(&r, &info, Some(session));
                        // Not fatal: a master may draw another ID.
                        let _ = outbox.offer(
                            FrameClass::Relay,
                            reply(session, PeerId::RELAY, &FromRelay::Refused(r)),
                        );
                        continue;
                    }
                }
            }
            Ok((_, ToRelay::Join { session })) if admitted.role == Role::Participant => {
                (session, None)
            }
            Ok((_, ToRelay::Rejoin { session, peer })) if admitted.role == Role::Participant => {
                (session, Some(peer))
            }
            Ok(_) => {
                return refuse(
                    &hub,
                    Refusal::new(
                        RefusalCode::Malformed,
                        "expected CreateSession (master) or Join (participant)",
                    ),
                    &info,
                    None,
                )
            }
            Err(r) => return refuse(&hub, r, &info, None),
        };
        let entered = match claim {
            Some(peer) => {
                // Not yet there is no failure while the master may be on its way.
                hub.wait_for_session(session, REJOIN_WAIT).await;
                hub.rejoin(session, peer, outbox.clone(), ip)
            }
            None => hub.join(session, outbox.clone(), ip),
        };
        match entered {
            Ok((s, peer, sends)) => {
                deliver(&hub, sends).await;
                let note = if claim.is_some() {
                    "rejoined after a relay failover"
                } else {
                    ""
                };
                hub.audit(
                    AuditEvent::Joined,
                    &info,
                    Some(session),
                    hub.members(&s).saturating_sub(1) as u32,
                    note,
                );
                break (s, peer);
            }
            Err(r) => return refuse(&hub, r, &info, Some(session)),
        }
    };

    let reason = forward(&hub, &mut incoming, &outbox, &session, peer, &stop).await;
    // A peer the master removed is already out of the session.
    let removed = !hub.is_member(&session, peer);
    let sends = hub.leave(&session, peer, reason);
    deliver(&hub, sends).await;
    let event = if peer == PeerId::MASTER {
        AuditEvent::SessionEnded
    } else if removed {
        AuditEvent::Removed
    } else {
        AuditEvent::Left
    };
    hub.audit(
        event,
        &info,
        Some(session.id),
        hub.members(&session).saturating_sub(1) as u32,
        "",
    );
    outbox.close();
}

/// The forwarding loop; returns why the peer left.
async fn forward(
    hub: &Hub,
    incoming: &mut Incoming,
    outbox: &Outbox,
    session: &Arc<Session>,
    peer: PeerId,
    stop: &CancellationToken,
) -> LeaveReason {
    let mut bucket = Bucket::new(hub);
    let mut reported: u32 = 0;
    loop {
        let frame = match next(incoming, hub.limits.idle_timeout, stop, outbox).await {
            Next::Frame(f) => f,
            Next::Closed(Some(e)) => {
                tracing::debug!(session = %session.id, %peer, error = %e, "connection failed");
                return LeaveReason::ConnectionLost;
            }
            Next::Closed(None) | Next::Idle => return LeaveReason::ConnectionLost,
            Next::Stop => return LeaveReason::ConnectionLost,
        };
        hub.metrics.frames_in.fetch_add(1, Ordering::Relaxed);
        hub.metrics
            .bytes_in
            .fetch_add(frame.len() as u64, Ordering::Relaxed);
        let Ok(parsed) = FrameRef::parse(&frame) else {
            return LeaveReason::ConnectionLost;
        };
        let header = parsed.header;
        if header.session != session.id || header.sender != peer {
            hub.metrics.dropped(DropReason::Spoofed);
            continue;
        }
        if !bucket.take(hub, frame.len()) {
            hub.metrics.dropped(DropReason::Rate);
            continue;
        }
        if header.class == FrameClass::Relay {
            let Ok(msg) = ToRelay::decode(parsed.payload) else {
                hub.metrics.refused(RefusalCode::Malformed);
                continue;
            };
            match (msg, peer == PeerId::MASTER) {
                (ToRelay::Ping { nonce }, _) => {
                    let _ = outbox.offer(
                        FrameClass::Relay,
                        reply(
                            session.id,
                            peer,
                            &FromRelay::Pong {
                                nonce,
                                load_permille: hub.load_permille(),
                            },
                        ),
                    );
                }
                (ToRelay::Leave, _) => return LeaveReason::Left,
                (ToRelay::JoinFailed { peer: p }, true) => hub.report_failure(session, p),
                (ToRelay::Remove { peer: p }, true) if p != PeerId::MASTER => {
                    let sends = hub.leave(session, p, LeaveReason::Removed);
                    deliver(hub, sends).await;
                }
                (ToRelay::SetLock { locked }, true) => hub.set_lock(session, locked),
                _ => hub.metrics.dropped(DropReason::Unroutable),
            }
            continue;
        }
        match hub.route(session, &header) {
            Ok(targets) => {
                for t in targets {
                    let len = frame.len() as u64;
                    let offer = if header.destination == PeerId::BROADCAST {
                        t.offer(header.class, frame.clone())
                    } else {
                        t.send(header.class, frame.clone()).await
                    };
                    match offer {
                        Offer::Queued | Offer::ReplacedOldest => {
                            hub.metrics.frames_out.fetch_add(1, Ordering::Relaxed);
                            hub.metrics.bytes_out.fetch_add(len, Ordering::Relaxed);
                            if offer == Offer::ReplacedOldest {
                                hub.metrics.dropped(DropReason::LossyOverflow);
                            }
                        }
                        Offer::TooSlow => {
                            hub.metrics.slow_peers.fetch_add(1, Ordering::Relaxed);
                        }
                        Offer::Gone => {}
                    }
                }
            }
            Err(reason) => {
                hub.metrics.dropped(reason);
                let bit = 1u32 << (header.class as u8);
                if reason == DropReason::Policy && reported & bit == 0 {
                    reported |= bit;
                    let msg = FromRelay::Dropped {
                        class: header.class,
                        message: BoundedString::new(policy_message(header.class))
                            .unwrap_or_default(),
                    };
                    let _ = outbox.offer(FrameClass::Relay, reply(session.id, peer, &msg));
                }
            }
        }
    }
}
