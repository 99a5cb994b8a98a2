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
use conclave_protocol::shared::{SharedRefusalCode, SharedReply};
use conclave_protocol::stage1::{FromRelay, LeaveReason, Refusal, RefusalCode, ToRelay, Welcome};
use conclave_transport::conn::{ConnError, FrameStream, Transport};
use tokio::time::Instant;

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

async fn next(incoming: &mut impl FrameStream, timeout: Duration, outbox: &Outbox) -> Next {
    tokio::select! {
        () = outbox.closed().cancelled() => Next::Stop,
        r = tokio::time::timeout(timeout, incoming.next_frame()) => match r {
            Err(_) => Next::Idle,
            Ok(None) => Next::Closed(None),
            Ok(Some(Err(e))) => Next::Closed(Some(e)),
            Ok(Some(Ok(f))) => Next::Frame(f),
        },
    }
}

/// Decodes a relay-class message from a frame.
/// Takes the frame, so that its caller keeps no room for it.
fn relay_message(frame: Bytes) -> Result<(RoutingHeader, ToRelay), Refusal> {
    let f =
        FrameRef::parse(&frame).map_err(|e| Refusal::new(RefusalCode::Malformed, e.to_string()))?;
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

/// Refuses a client: records why, and tells it.
fn refuse<T>(
    hub: &Hub,
    outbox: &Outbox,
    r: Refusal,
    info: &ClientInfo,
    session: Option<SessionId>,
) -> Option<T> {
    hub.refuse(&r, info, session);
    let frame = reply(
        session.unwrap_or(SessionId(0)),
        PeerId::RELAY,
        &FromRelay::Refused(r),
    );
    let _ = outbox.offer(FrameClass::Relay, frame);
    None
}

/// The session a client entered, its ID there, and who it is (for the audit log).
type Admission = (Arc<Session>, PeerId, ClientInfo);

/// What a client asked for to enter a session.
enum Entry {
    /// The session it opened, as a master.
    Created(Arc<Session>),
    /// To join.
    Join,
    /// To rejoin under the ID it had, after a relay failover.
    Rejoin(PeerId),
}

/// Serves one connection until it ends or the peer is closed (as every peer
/// is at the end of the relay's drain).
///
/// Arguments are borrowed where they can be: an async function keeps room
/// for its own copy of each for as long as it runs.
pub(crate) async fn serve(
    hub: Arc<Hub>,
    incoming: &mut impl FrameStream,
    outbox: Outbox,
    binding: &[u8; 32],
    addr: &SocketAddr,
    transport: Transport,
) {
    hub.metrics.peers.fetch_add(1, Ordering::Relaxed);
    let _gauge = PeerGauge(&hub);
    // Setup and membership are futures of their own, which share their room
    // in this task: what only setup needs (the verified build, the license)
    // is gone once forwarding starts, and the other way round.
    let Some(admission) = admit(&hub, incoming, &outbox, binding, addr, transport).await else {
        return outbox.close();
    };
    member(&hub, incoming, &outbox, &admission).await;
    outbox.close();
}

/// A member's time in its session: forwarding, then leaving.
async fn member(
    hub: &Hub,
    incoming: &mut impl FrameStream,
    outbox: &Outbox,
    (session, peer, info): &Admission,
) {
    let peer = *peer;
    let reason = forward(hub, incoming, outbox, session, peer).await;
    // A peer the master removed is already out of the session.
    let removed = !hub.is_member(session, peer);
    let sends = hub.leave(session, peer, reason);
    deliver(hub, sends).await;
    let event = if peer == PeerId::MASTER {
        AuditEvent::SessionEnded
    } else if removed {
        AuditEvent::Removed
    } else {
        AuditEvent::Left
    };
    hub.audit(
        event,
        info,
        Some(session.id),
        hub.members(session).saturating_sub(1) as u32,
        "",
    );
}

/// Stage 1, then create or join; `None` if the client was refused or left.
async fn admit(
    hub: &Hub,
    incoming: &mut impl FrameStream,
    outbox: &Outbox,
    binding: &[u8; 32],
    addr: &SocketAddr,
    transport: Transport,
) -> Option<Admission> {
    // Stage 1: Hello. Neither the Hello nor its frame is kept.
    let (admitted, info) = {
        let Next::Frame(frame) = next(incoming, hub.limits.handshake_timeout, outbox).await else {
            return None;
        };
        let unknown = ClientInfo {
            ip: addr.ip().to_string(),
            ..ClientInfo::default()
        };
        let hello = match relay_message(frame) {
            Ok((_, ToRelay::Hello(h))) => h,
            Ok(_) => {
                return refuse(
                    hub,
                    outbox,
                    Refusal::new(RefusalCode::HelloRequired, "send Hello first"),
                    &unknown,
                    None,
                )
            }
            Err(r) => return refuse(hub, outbox, r, &unknown, None),
        };
        match hub.check_hello(&hello, binding) {
            Ok(admitted) => {
                let info = ClientInfo::new(&hello, &admitted, addr.ip());
                (admitted, info)
            }
            Err(r) => return refuse(hub, outbox, r, &unknown, None),
        }
    };
    let welcome = Welcome {
        relay_version: hub.version,
        relay_name: BoundedString::new(hub.name.chars().take(64).collect::<String>())
            .unwrap_or_default(),
    };
    let welcome = reply(SessionId(0), PeerId::RELAY, &FromRelay::Welcome(welcome));
    let _ = outbox.offer(FrameClass::Relay, welcome);
    tracing::debug!(%addr, %transport, role = %admitted.role, "admitted");

    // Create or join. A master may retry a taken session ID a few times;
    // anything beyond that within the handshake time is abuse.
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        if attempts > MAX_SETUP_MESSAGES {
            return refuse(
                hub,
                outbox,
                Refusal::new(
                    RefusalCode::Malformed,
                    "too many requests before joining a session",
                ),
                &info,
                None,
            );
        }
        let Next::Frame(frame) = next(incoming, hub.limits.handshake_timeout, outbox).await else {
            return None;
        };
        // Answered once the message is gone: the task keeps no room for it.
        let (session, entry) = match relay_message(frame) {
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
                let ip = addr.ip();
                match hub.create_session(&admitted, session, kind, announce, outbox.clone(), ip) {
                    Ok(s) => (session, Entry::Created(s)),
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
                (session, Entry::Join)
            }
            Ok((_, ToRelay::Rejoin { session, peer })) if admitted.role == Role::Participant => {
                (session, Entry::Rejoin(peer))
            }
            Ok(_) => {
                return refuse(
                    hub,
                    outbox,
                    Refusal::new(
                        RefusalCode::Malformed,
                        "expected CreateSession (master) or Join (participant)",
                    ),
                    &info,
                    None,
                )
            }
            Err(r) => return refuse(hub, outbox, r, &info, None),
        };
        let rejoin = matches!(entry, Entry::Rejoin(_));
        let entered = match entry {
            Entry::Created(s) => {
                let created = reply(
                    session,
                    PeerId::MASTER,
                    &FromRelay::SessionCreated { session },
                );
                deliver(hub, vec![(outbox.clone(), created)]).await;
                hub.audit(AuditEvent::SessionCreated, &info, Some(session), 0, "");
                return Some((s, PeerId::MASTER, info));
            }
            Entry::Join => hub.join(session, outbox.clone(), addr.ip()),
            Entry::Rejoin(peer) => {
                // Not yet there is no failure while the master may be on its way.
                hub.wait_for_session(session, REJOIN_WAIT).await;
                hub.rejoin(session, peer, outbox.clone(), addr.ip())
            }
        };
        match entered {
            Ok((s, peer, sends)) => {
                deliver(hub, sends).await;
                let note = if rejoin {
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
                return Some((s, peer, info));
            }
            Err(r) => return refuse(hub, outbox, r, &info, Some(session)),
        }
    }
}

/// The forwarding loop; returns why the peer left.
async fn forward(
    hub: &Hub,
    incoming: &mut impl FrameStream,
    outbox: &Outbox,
    session: &Arc<Session>,
    peer: PeerId,
) -> LeaveReason {
    let mut bucket = Bucket::new(hub);
    let mut reported: u32 = 0;
    loop {
        let frame = match next(incoming, hub.limits.idle_timeout, outbox).await {
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
                (ToRelay::Shared(request), _) => {
                    if let Some(answer) = hub.shared(session, peer, request) {
                        let blob = answer.blob();
                        let mut frame = reply(session.id, peer, &FromRelay::Shared(answer));
                        // A request of a few bytes can fetch a 128 KiB part:
                        // the answer counts against the asker's rate too.
                        if !bucket.take(hub, frame.len()) {
                            hub.metrics.dropped(DropReason::Rate);
                            let slow = SharedReply::refused(
                                blob,
                                SharedRefusalCode::Refused,
                                "fetching shared files faster than this relay allows: ask again shortly",
                            );
                            frame = reply(session.id, peer, &FromRelay::Shared(slow));
                        }
                        deliver(hub, vec![(outbox.clone(), frame)]).await;
                    }
                }
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
