//! The relay's in-memory state: sessions, their members and queues, the join
//! delays, and the rules the relay enforces on what it can see.
//!
//! Nothing here is ever written to disk, and a session's entry (with its
//! announce, member list and queues) is dropped the moment it ends (R1).
//! Locks are `std::sync::Mutex`es held only for map updates, never across an
//! `.await`: callers take the outboxes they need out of the lock and send after.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use conclave_protocol::artefact::{
    PolicyProfile, RevocationList, Role, Version, MIN_SESSION_ID_DIGITS,
};
use conclave_protocol::codec::Message;
use conclave_protocol::frame::{plain_frame, FrameClass, PeerId, RoutingHeader, SessionId};
use conclave_protocol::shared::{SharedReply, SharedRequest};
use conclave_protocol::sign::Signed;
use conclave_protocol::stage1::{
    check_hello, AdmissionPolicy, Admitted, FromRelay, Hello, LeaveReason, Refusal, RefusalCode,
    SessionKind,
};
use conclave_protocol::stage2::Announce;
use conclave_protocol::time::UnixTime;
use tokio::time::Instant;

use crate::audit::{AuditEvent, AuditLog, AuditRecord};
use crate::delay::JoinDelays;
use crate::metrics::{DropReason, Metrics};
use crate::outbox::Outbox;
use crate::revocation::Revocations;
use crate::shared::{SharedLimits, SharedStore};

/// Limits the relay enforces.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Most sessions at once.
    pub max_sessions: usize,
    /// Most connected peers at once (the capacity the load figure is measured against).
    pub max_peers: usize,
    /// Most participants in one session, whatever the profile allows.
    pub max_participants: u16,
    /// Largest frame payload accepted.
    pub max_payload: usize,
    /// Time from connection to a completed Hello and create/join.
    pub handshake_timeout: Duration,
    /// A peer that sends nothing for this long is disconnected.
    pub idle_timeout: Duration,
    /// Sustained frames per second per peer (bursts of twice that pass).
    pub frames_per_sec: u32,
    /// Sustained bytes per second per peer (bursts of twice that pass).
    pub bytes_per_sec: u64,
    /// The first failed join's wait (R12).
    pub join_delay_base: Duration,
    /// The longest wait.
    pub join_delay_max: Duration,
    /// Shared files (R24): sealed bytes one session may keep.
    pub shared_per_session: u64,
    /// Shared files one session may keep.
    pub shared_files_per_session: usize,
    /// Shared files' sealed bytes all sessions together may keep (memory).
    pub shared_total: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_sessions: 10_000,
            max_peers: 50_000,
            max_participants: 1_000,
            max_payload: conclave_protocol::frame::MAX_PAYLOAD,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            frames_per_sec: 2_000,
            bytes_per_sec: 50 * 1024 * 1024,
            join_delay_base: Duration::from_secs(1),
            join_delay_max: Duration::from_secs(24 * 3600),
            shared_per_session: 256 << 20,
            shared_files_per_session: 64,
            shared_total: 1 << 30,
        }
    }
}

/// What the audit log records of a client.
#[derive(Debug, Clone, Default)]
pub struct ClientInfo {
    /// Licensee, for a master.
    pub login: String,
    /// License number, for a master.
    pub license: String,
    /// App version.
    pub version: String,
    /// OS user from the Hello.
    pub os_user: String,
    /// Host from the Hello.
    pub host: String,
    /// Source address.
    pub ip: String,
}

impl ClientInfo {
    /// The audit fields of an admitted client.
    pub fn new(hello: &Hello, admitted: &Admitted, ip: IpAddr) -> Self {
        ClientInfo {
            login: admitted
                .license
                .as_ref()
                .map(|l| l.licensee.to_string())
                .unwrap_or_default(),
            license: admitted
                .license
                .as_ref()
                .map(|l| l.number.to_string())
                .unwrap_or_default(),
            version: admitted.build.version.to_string(),
            os_user: hello.os_user.to_string(),
            host: hello.host.to_string(),
            ip: ip.to_string(),
        }
    }
}

struct Member {
    outbox: Outbox,
    ip: IpAddr,
}

struct SessionState {
    peers: BTreeMap<PeerId, Member>,
    next_peer: u32,
    locked: bool,
    /// Addresses of the last participants to leave, so that a failed join
    /// the master reports after the joiner hung up still counts (R12): a
    /// client that sees its password fail and disconnects at once must not
    /// escape the wait.
    departed: VecDeque<(PeerId, IpAddr)>,
}

/// How many departed participants' addresses a session keeps.
const DEPARTED_KEPT: usize = 64;

/// A session as the relay holds it.
pub struct Session {
    /// Its ID.
    pub id: SessionId,
    /// Support or meeting.
    pub kind: SessionKind,
    /// The master's profile, enforced on frame classes (R13).
    pub policy: PolicyProfile,
    announce: Signed<Announce>,
    state: Mutex<SessionState>,
    /// Shared files (R24), dropped when the session ends.
    shared: Mutex<SharedStore>,
}

impl core::fmt::Debug for Session {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Session({})", self.id)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks would be a bug; the data (maps
    // of queues) stays consistent, so go on with it rather than cascade.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Frames the caller must queue after a hub operation: (receiver, frame).
pub type Sends = Vec<(Outbox, Bytes)>;

fn relay_frame(session: SessionId, to: PeerId, msg: &FromRelay) -> Bytes {
    Bytes::from(
        plain_frame(FrameClass::Relay, session, PeerId::RELAY, to, &msg.encode())
            .unwrap_or_default(),
    )
}

/// The relay's state.
pub struct Hub {
    /// The relay's name, in Welcome.
    pub name: String,
    /// The relay's version, in Welcome.
    pub version: Version,
    /// Limits.
    pub limits: Limits,
    admission: AdmissionPolicy,
    revocations: Arc<Revocations>,
    audit: Option<Mutex<AuditLog>>,
    sessions: Mutex<HashMap<SessionId, Arc<Session>>>,
    delays: Mutex<JoinDelays>,
    /// Counters for /metrics.
    pub metrics: Metrics,
    accepting: AtomicBool,
    /// Woken whenever a session opens, for rejoins waiting for their master.
    opened: tokio::sync::Notify,
}

impl core::fmt::Debug for Hub {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Hub({})", self.name)
    }
}

impl Hub {
    /// A hub with no sessions.
    pub fn new(
        name: String,
        limits: Limits,
        admission: AdmissionPolicy,
        revocations: Arc<Revocations>,
        audit: Option<AuditLog>,
    ) -> Self {
        let delays = JoinDelays::new(limits.join_delay_base, limits.join_delay_max);
        Hub {
            name,
            version: crate::version(),
            limits,
            admission,
            revocations,
            audit: audit.map(Mutex::new),
            sessions: Mutex::new(HashMap::new()),
            delays: Mutex::new(delays),
            metrics: Metrics::default(),
            accepting: AtomicBool::new(true),
            opened: tokio::sync::Notify::new(),
        }
    }

    /// The revocation list in force.
    pub fn revocations(&self) -> Arc<RevocationList> {
        self.revocations.current()
    }

    /// Whether new connections are accepted (false while draining).
    pub fn is_accepting(&self) -> bool {
        self.accepting.load(Ordering::Relaxed)
    }

    /// Stops accepting new connections and sessions.
    pub fn stop_accepting(&self) {
        self.accepting.store(false, Ordering::Relaxed);
    }

    /// Connected peers in thousandths of capacity.
    pub fn load_permille(&self) -> u16 {
        let peers = self.metrics.peers.load(Ordering::Relaxed);
        let cap = self.limits.max_peers.max(1) as u64;
        (peers.saturating_mul(1000) / cap).min(1000) as u16
    }

    /// Open sessions.
    pub fn session_count(&self) -> usize {
        lock(&self.sessions).len()
    }

    /// Writes an audit record (and logs a failure to write it).
    pub fn audit(
        &self,
        event: AuditEvent,
        info: &ClientInfo,
        session: Option<SessionId>,
        participants: u32,
        text: &str,
    ) {
        let Some(log) = &self.audit else { return };
        let record = AuditRecord {
            time: now_unix().0,
            event,
            login: info.login.clone(),
            license: info.license.clone(),
            session: session.map(|s| s.0),
            participants,
            client_version: info.version.clone(),
            os_user: info.os_user.clone(),
            host: info.host.clone(),
            ip: info.ip.clone(),
            text: text.to_string(),
        };
        if let Err(e) = lock(log).append(&record) {
            tracing::error!(error = %e, "could not write the audit log");
        }
    }

    /// Counts and logs a refusal.
    pub fn refuse(&self, refusal: &Refusal, info: &ClientInfo, session: Option<SessionId>) {
        self.metrics.refused(refusal.code);
        tracing::info!(code = ?refusal.code, ip = %info.ip, "refused: {}", refusal.message);
        self.audit(AuditEvent::Refused, info, session, 0, &refusal.message);
    }

    /// Stage 1: checks a Hello against the admission policy and the
    /// revocation list in force.
    pub fn check_hello(
        &self,
        hello: &Hello,
        channel_binding: &[u8; 32],
    ) -> Result<Admitted, Refusal> {
        if !self.is_accepting() {
            return Err(Refusal::new(
                RefusalCode::ShuttingDown,
                "this relay is shutting down: connect to another relay",
            ));
        }
        let revoked = self.revocations.current();
        check_hello(
            hello,
            &self.admission,
            &revoked,
            channel_binding,
            now_unix(),
        )
    }

    /// Opens a session for an admitted master.
    pub fn create_session(
        &self,
        admitted: &Admitted,
        session: SessionId,
        kind: SessionKind,
        announce: Signed<Announce>,
        outbox: Outbox,
        ip: IpAddr,
    ) -> Result<Arc<Session>, Refusal> {
        let license = admitted
            .license
            .as_ref()
            .filter(|_| admitted.role == Role::Master)
            .ok_or_else(|| {
                Refusal::new(
                    RefusalCode::LicenseMissing,
                    "only a licensed master can open a session",
                )
            })?;
        // The announce must be this master's own, for this session.
        let a = announce.verify_with(&license.master_key).map_err(|_| {
            Refusal::new(
                RefusalCode::Malformed,
                "the session announce is not signed by this master's license key",
            )
        })?;
        if a.session != session {
            return Err(Refusal::new(
                RefusalCode::Malformed,
                "the announce names another session",
            ));
        }
        let digits = admitted
            .build
            .profile
            .session_id_digits
            .max(MIN_SESSION_ID_DIGITS);
        if session.0.to_string().len() < usize::from(digits) {
            return Err(Refusal::new(
                RefusalCode::PolicyForbids,
                format!("session IDs must have at least {digits} digits"),
            ));
        }
        if !self.is_accepting() {
            return Err(Refusal::new(
                RefusalCode::ShuttingDown,
                "this relay is shutting down: connect to another relay",
            ));
        }
        let mut sessions = lock(&self.sessions);
        if sessions.contains_key(&session) {
            return Err(Refusal::new(
                RefusalCode::SessionIdTaken,
                "this session ID is in use: draw another",
            ));
        }
        if sessions.len() >= self.limits.max_sessions {
            return Err(Refusal::new(
                RefusalCode::RetryLater,
                "this relay has its maximum of sessions: try another relay",
            ));
        }
        let mut peers = BTreeMap::new();
        peers.insert(PeerId::MASTER, Member { outbox, ip });
        let s = Arc::new(Session {
            id: session,
            kind,
            policy: admitted.build.profile.clone(),
            announce,
            state: Mutex::new(SessionState {
                peers,
                next_peer: PeerId::FIRST_PARTICIPANT.0,
                locked: false,
                departed: VecDeque::new(),
            }),
            shared: Mutex::new(SharedStore::new(
                SharedLimits {
                    per_session: self.limits.shared_per_session,
                    files_per_session: self.limits.shared_files_per_session,
                    total: self.limits.shared_total,
                },
                self.metrics.shared_bytes.clone(),
            )),
        });
        sessions.insert(session, s.clone());
        self.metrics
            .sessions
            .store(sessions.len() as u64, Ordering::Relaxed);
        drop(sessions);
        self.opened.notify_waiters();
        Ok(s)
    }

    /// How long a join from `ip` to `session` must still wait (R12).
    pub fn join_wait(&self, ip: IpAddr, session: SessionId) -> Option<Duration> {
        lock(&self.delays).wait(ip, session, Instant::now())
    }

    /// Records a failed join (R12): an unknown session, or a failure the master reported.
    pub fn join_failed(&self, ip: IpAddr, session: Option<SessionId>) -> Duration {
        let mut d = lock(&self.delays);
        let now = Instant::now();
        d.sweep(now);
        d.fail(ip, session, now)
    }

    /// Joins a participant: returns the session, its ID, and the frames to
    /// send (Joined to it, PeerJoined to the master).
    pub fn join(
        &self,
        session: SessionId,
        outbox: Outbox,
        ip: IpAddr,
    ) -> Result<(Arc<Session>, PeerId, Sends), Refusal> {
        self.enter(session, None, outbox, ip)
    }

    /// Waits up to `limit` for `session` to open; whether it is open. After a
    /// failover, members may reach the new relay before their master does.
    pub async fn wait_for_session(&self, session: SessionId, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            let opened = self.opened.notified();
            tokio::pin!(opened);
            opened.as_mut().enable();
            if lock(&self.sessions).contains_key(&session) {
                return true;
            }
            if tokio::time::timeout_at(deadline, opened).await.is_err() {
                return false;
            }
        }
    }

    /// Takes a participant back under the ID it had, after the relay that
    /// carried the session was lost (R18): like [`Hub::join`], with the same
    /// delays and limits, but past the lock, since the master admitted it
    /// before. The claim cannot be checked here; the master removes an ID
    /// that is not its member, and a stranger holds no keys.
    pub fn rejoin(
        &self,
        session: SessionId,
        peer: PeerId,
        outbox: Outbox,
        ip: IpAddr,
    ) -> Result<(Arc<Session>, PeerId, Sends), Refusal> {
        if !peer.is_participant() {
            return Err(Refusal::new(
                RefusalCode::Malformed,
                "a rejoin must name a participant ID",
            ));
        }
        self.enter(session, Some(peer), outbox, ip)
    }

    fn enter(
        &self,
        session: SessionId,
        claim: Option<PeerId>,
        outbox: Outbox,
        ip: IpAddr,
    ) -> Result<(Arc<Session>, PeerId, Sends), Refusal> {
        if let Some(wait) = self.join_wait(ip, session) {
            let mut r = Refusal::new(
                RefusalCode::RetryLater,
                format!(
                    "too many failed attempts: wait {} s before trying again",
                    wait.as_secs().max(1)
                ),
            );
            r.retry_after_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
            return Err(r);
        }
        let found = lock(&self.sessions).get(&session).cloned();
        let Some(s) = found else {
            let wait = self.join_failed(ip, None);
            let mut r = Refusal::new(
                RefusalCode::SessionNotFound,
                "there is no session with this ID: check the number",
            );
            r.retry_after_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
            return Err(r);
        };
        let mut st = lock(&s.state);
        let participants = st.peers.len().saturating_sub(1);
        let locked =
            st.locked || (s.kind == SessionKind::Support && s.policy.autolock && participants >= 1);
        if locked && claim.is_none() {
            return Err(Refusal::new(
                RefusalCode::SessionLocked,
                "the session is locked: ask the moderator to unlock it",
            ));
        }
        let max = self.limits.max_participants.min(s.policy.max_participants);
        if participants >= usize::from(max) {
            return Err(Refusal::new(
                RefusalCode::SessionFull,
                format!("the session has its maximum of {max} participants"),
            ));
        }
        let peer = match claim {
            Some(peer) if st.peers.contains_key(&peer) => {
                return Err(Refusal::new(
                    RefusalCode::Malformed,
                    format!("{peer} is already in the session"),
                ))
            }
            Some(peer) => peer,
            None => PeerId(st.next_peer),
        };
        st.next_peer = peer
            .0
            .max(st.next_peer.saturating_sub(1))
            .checked_add(1)
            .filter(|n| *n != PeerId::BROADCAST.0)
            .ok_or_else(|| {
                Refusal::new(
                    RefusalCode::SessionFull,
                    "the session has used every participant number",
                )
            })?;
        st.peers.insert(
            peer,
            Member {
                outbox: outbox.clone(),
                ip,
            },
        );
        let mut sends = vec![(
            outbox,
            relay_frame(
                session,
                peer,
                &FromRelay::Joined {
                    session,
                    peer,
                    announce: s.announce.clone(),
                },
            ),
        )];
        if let Some(m) = st.peers.get(&PeerId::MASTER) {
            let notice = match claim {
                Some(_) => FromRelay::PeerRejoined { peer },
                None => FromRelay::PeerJoined { peer },
            };
            sends.push((
                m.outbox.clone(),
                relay_frame(session, PeerId::MASTER, &notice),
            ));
        }
        drop(st);
        Ok((s, peer, sends))
    }

    /// Whether `peer` is still in the session.
    pub fn is_member(&self, session: &Session, peer: PeerId) -> bool {
        lock(&session.state).peers.contains_key(&peer)
    }

    /// Members of a session, master included.
    pub fn members(&self, session: &Session) -> usize {
        lock(&session.state).peers.len()
    }

    /// A peer is gone (left, removed or disconnected). A master's going ends
    /// the session: everyone is told and closed, and the session is dropped.
    pub fn leave(&self, session: &Arc<Session>, peer: PeerId, reason: LeaveReason) -> Sends {
        let mut sends = Vec::new();
        let mut st = lock(&session.state);
        let Some(member) = st.peers.remove(&peer) else {
            return sends;
        };
        if peer == PeerId::MASTER {
            // Queue the notice before closing, so the writer sends it first.
            for (p, m) in std::mem::take(&mut st.peers) {
                let why = if reason == LeaveReason::Left {
                    LeaveReason::SessionEnded
                } else {
                    reason
                };
                m.outbox.offer(
                    FrameClass::Relay,
                    relay_frame(
                        session.id,
                        p,
                        &FromRelay::PeerLeft {
                            peer: PeerId::MASTER,
                            reason: why,
                        },
                    ),
                );
                m.outbox.close();
            }
            drop(st);
            lock(&session.shared).clear();
            let mut sessions = lock(&self.sessions);
            sessions.remove(&session.id);
            self.metrics
                .sessions
                .store(sessions.len() as u64, Ordering::Relaxed);
        } else {
            if st.departed.len() == DEPARTED_KEPT {
                st.departed.pop_front();
            }
            st.departed.push_back((peer, member.ip));
            lock(&session.shared).left(peer);
            if reason == LeaveReason::Removed {
                member.outbox.offer(
                    FrameClass::Relay,
                    relay_frame(session.id, peer, &FromRelay::PeerLeft { peer, reason }),
                );
                member.outbox.close();
            }
            if let Some(m) = st.peers.get(&PeerId::MASTER) {
                sends.push((
                    m.outbox.clone(),
                    relay_frame(
                        session.id,
                        PeerId::MASTER,
                        &FromRelay::PeerLeft { peer, reason },
                    ),
                ));
            }
        }
        sends
    }

    /// The master reports that `peer` failed key confirmation (R12).
    pub fn report_failure(&self, session: &Session, peer: PeerId) {
        let ip = {
            let st = lock(&session.state);
            st.peers.get(&peer).map(|m| m.ip).or_else(|| {
                st.departed
                    .iter()
                    .rev()
                    .find(|(p, _)| *p == peer)
                    .map(|(_, ip)| *ip)
            })
        };
        if let Some(ip) = ip {
            let wait = self.join_failed(ip, Some(session.id));
            tracing::info!(session = %session.id, %ip, wait_secs = wait.as_secs(), "failed join reported by the master");
        }
    }

    /// A member's request about shared files (R24), and the answer to send
    /// it, if any.
    pub fn shared(
        &self,
        session: &Session,
        peer: PeerId,
        request: SharedRequest,
    ) -> Option<SharedReply> {
        if !self.is_member(session, peer) {
            return None;
        }
        lock(&session.shared).handle(peer, session.policy.shared_files, request)
    }

    /// Locks or unlocks a session (R26).
    pub fn set_lock(&self, session: &Session, locked: bool) {
        lock(&session.state).locked = locked;
    }

    /// Where a frame goes, after the relay's rules. `Err` says why it was
    /// dropped (and counted).
    pub fn route(
        &self,
        session: &Session,
        header: &RoutingHeader,
    ) -> Result<Vec<Outbox>, DropReason> {
        let from = header.sender;
        let to = header.destination;
        let class = header.class;
        let from_master = from == PeerId::MASTER;
        // Participants talk to the master or to everyone; only the master
        // sends rekeys; handshakes go between the master and one participant.
        let allowed = match class {
            FrameClass::Relay => false,
            FrameClass::Roster => from_master && to == PeerId::BROADCAST,
            FrameClass::Handshake => {
                (from_master && to.is_participant()) || (!from_master && to == PeerId::MASTER)
            }
            _ => from_master || to == PeerId::MASTER || to == PeerId::BROADCAST,
        };
        if !allowed || to == PeerId::RELAY || to == from {
            return Err(DropReason::Unroutable);
        }
        if !policy_allows(&session.policy, class) {
            return Err(DropReason::Policy);
        }
        let st = lock(&session.state);
        if to == PeerId::BROADCAST {
            Ok(st
                .peers
                .iter()
                .filter(|(p, _)| **p != from)
                .map(|(_, m)| m.outbox.clone())
                .collect())
        } else {
            st.peers
                .get(&to)
                .map(|m| vec![m.outbox.clone()])
                .ok_or(DropReason::Unroutable)
        }
    }

    /// Closes every peer of every session (end of a drain).
    pub fn close_all(&self) {
        let sessions: Vec<Arc<Session>> = lock(&self.sessions).values().cloned().collect();
        for s in sessions {
            for m in lock(&s.state).peers.values() {
                m.outbox.close();
            }
        }
    }
}

/// Whether the session's profile allows frames of `class` (R13).
pub fn policy_allows(policy: &PolicyProfile, class: FrameClass) -> bool {
    match class {
        // Shared files (R24) travel in relay messages, not File frames.
        FrameClass::File => policy.file_transfer,
        FrameClass::Screen => policy.screen_sharing,
        FrameClass::Input => policy.remote_control,
        _ => true,
    }
}

/// The message a sender gets when policy drops its frame class.
pub fn policy_message(class: FrameClass) -> &'static str {
    match class {
        FrameClass::File => "file transfer is disabled by this session's policy",
        FrameClass::Screen => "screen sharing is disabled by this session's policy",
        FrameClass::Input => "remote control is disabled by this session's policy",
        _ => "this session's policy forbids these frames",
    }
}

/// Wall-clock time now.
pub fn now_unix() -> UnixTime {
    UnixTime::from_system(std::time::SystemTime::now())
}
