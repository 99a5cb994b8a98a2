//! Prints the relay's benchmark tables for the README, as Markdown:
//! `cargo run --release -p conclave-benches --bin relay_table` (about four
//! minutes on 2 cores; `--quick` for under one, `--help` for every size and
//! its environment variable).
//!
//! Everything runs on loopback. The relay is the real one
//! (`conclave_relay::Relay::start`), in this process, next to baselines
//! started in the same process and measured in the same run:
//!
//! - **bare TCP splice**: a server that pairs a sender's and a receiver's TCP
//!   connection and copies bytes between them (`copy_bidirectional`, 16 KiB
//!   buffers, the relay's read size);
//! - **bare TLS splice**: the same with TLS 1.3 on both legs, terminated with
//!   the relay's own `RelayIdentity::server_config` (AES-256-GCM), copying the
//!   plaintext: the least any encrypted relay must do;
//! - **bare quinn forwarder**: a server that accepts a QUIC connection from the
//!   sender and one from the receiver, with the relay's
//!   `conclave_transport::quic::server_config`, and moves the stream's chunks
//!   across without a copy (`read_chunks` / `write_all_chunks`);
//! - **bare TLS fan-out**: one TLS sender whose plaintext goes, 64 KiB reads
//!   at a time, to N TLS receivers (decrypt once, encrypt N times).
//!
//! Every client, for the relay and the baselines alike, is the transport
//! crate's client code (`connect_tls`, `connect_quic`, or `spawn_stream` on a
//! bare TCP stream), writing and reading whole frames. Senders send `File`
//! frames (a reliable class); a window of frames in flight per session keeps
//! queues short and memory bounded, the same window for relay and baselines.
//!
//! The systems being compared are set up side by side and measured in
//! alternating rounds (the order rotating each round), so that load from
//! elsewhere on a shared machine falls on all of them alike. Throughput is
//! the median round, shown with the process's CPU seconds per GB moved (from
//! /proc/self/stat), which other processes' load disturbs far less than the
//! wall clock; latency p50 and p99 are the medians over the rounds of each
//! round's percentiles. Relay and clients share the 2 cores, so a ratio here
//! understates the relay's own overhead: the clients' work is in both sides.
//!
//! Idle memory is measured in fresh processes: this binary re-runs itself as a
//! host (the relay, or a bare TLS/QUIC server, reading its own VmRSS from
//! `/proc/self/status`) and as a client process holding the connections, so
//! the clients' memory is not counted. 10,000 connections need an open-file
//! limit above 10,000 in each process: it is raised with `rlimit` where the
//! hard limit allows; elsewhere run under `ulimit -n 65536`.
//!
//! Progress goes to stderr; the tables, and nothing else, to stdout. No
//! figure here is asserted on: the targets are printed next to the figures.

use std::collections::HashMap;
use std::future::Future;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use bytes::{Bytes, BytesMut};
use clap::{Parser, ValueEnum};
use conclave_protocol::artefact::BuildConfig;
use conclave_protocol::codec::Message;
use conclave_protocol::fixtures;
use conclave_protocol::frame::{
    plain_frame, FrameClass, FrameRef, PeerId, RoutingHeader, SessionId, HEADER_LEN, MAX_PAYLOAD,
};
use conclave_protocol::sign::{PublicKey, Signed, SigningIdentity};
use conclave_protocol::stage1::{FromRelay, SessionKind, ToRelay};
use conclave_protocol::stage2::MasterSession;
use conclave_protocol::time::Millis;
use conclave_relay::config::{parse_public_key, Settings};
use conclave_relay::Relay;
use conclave_transport::conn::{
    connect_quic, connect_tls, spawn_stream, ClientConnection, Drained, Incoming, INCOMING_FRAMES,
};
use conclave_transport::tls::RelayIdentity;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

/// Payload of a throughput or fan-out frame.
const PAYLOAD: usize = 64 * 1024;
/// Payload of a latency frame.
const LAT_PAYLOAD: usize = 1024;
/// Copy buffer of the splices: the relay's own read size.
const CHUNK: usize = 16 * 1024;
/// Read size of the bare fan-out's source: a whole frame's worth, so that each
/// receiver gets few, large writes (cheaper than 16 KiB ones, measured).
const FAN_READ: usize = 64 * 1024;
/// Marks a latency frame's payload: magic, sequence number, send time.
const MAGIC_LAT: [u8; 4] = *b"LAT1";
/// Marks a fan-out frame's payload.
const MAGIC_FAN: [u8; 4] = *b"FAN1";
/// Fan-out frames in flight (sent but not yet at every receiver).
const FAN_WINDOW: usize = 2;
/// Slots for counting fan-out arrivals; more than the window.
const FAN_RING: usize = 64;
/// Connections being set up at once.
const SETUP_PARALLEL: usize = 48;
/// Longest wait for any one step (a connection, a drain).
const WAIT: Duration = Duration::from_secs(60);
/// First session ID (seven digits: the profile asks for at least six).
const SESSION_BASE: u64 = 1_000_000;
/// Per-session latency interval the issue asks for.
const LAT_INTERVAL: Duration = Duration::from_millis(10);
/// Fewest latency frames a second over all sessions.
const LAT_MIN_RATE: f64 = 1_000.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Section {
    Throughput,
    Latency,
    Fanout,
    Memory,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum SystemArg {
    TcpSplice,
    TlsSplice,
    QuicForwarder,
    Relay,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Tp {
    Tls,
    Quic,
}

impl Tp {
    fn label(self) -> &'static str {
        match self {
            Tp::Tls => "TLS/TCP",
            Tp::Quic => "QUIC",
        }
    }
}

/// The relay's forwarding throughput, latency, fan-out and idle memory,
/// each next to a baseline measured in the same run, as Markdown tables.
#[derive(Debug, Parser)]
struct Args {
    /// A short run: one round of 0.5 s, 1 and 100 sessions, 10 and 100
    /// receivers, 1,000 idle connections.
    #[arg(long, env = "RELAY_TABLE_QUICK")]
    quick: bool,
    /// Concurrent sessions for throughput and latency [default: 1,100,1000].
    #[arg(long, env = "RELAY_TABLE_SESSIONS", value_delimiter = ',')]
    sessions: Option<Vec<usize>>,
    /// Receivers for fan-out [default: 10,100,500].
    #[arg(long, env = "RELAY_TABLE_FANOUT", value_delimiter = ',')]
    fanout: Option<Vec<usize>>,
    /// Idle connections for the memory figure [default: 10000].
    #[arg(long, env = "RELAY_TABLE_IDLE")]
    idle: Option<usize>,
    /// Alternating rounds per measurement [default: 5].
    #[arg(long, env = "RELAY_TABLE_ROUNDS")]
    rounds: Option<usize>,
    /// Measured seconds per round, after 0.2 s of warm-up [default: 0.6].
    #[arg(long, env = "RELAY_TABLE_SECONDS")]
    seconds: Option<f64>,
    /// Most latency frames per second over all sessions together; sessions
    /// send less often than every 10 ms when they would exceed it.
    #[arg(long, env = "RELAY_TABLE_LATENCY_RATE", default_value_t = 10_000)]
    latency_rate: u64,
    /// Sections to run [default: all].
    #[arg(long, value_delimiter = ',')]
    only: Option<Vec<Section>>,
    /// Transports for throughput, latency and memory [default: tls,quic].
    #[arg(long, value_delimiter = ',')]
    transports: Option<Vec<Tp>>,
    /// Systems for throughput and latency, e.g. only `relay` under a
    /// profiler [default: all].
    #[arg(long, value_delimiter = ',')]
    systems: Option<Vec<SystemArg>>,
    /// Internal: this process is a memory-test host ("relay" or "bare") or "clients".
    #[arg(long, hide = true)]
    child: Option<String>,
    /// Internal: clients' transport.
    #[arg(long, hide = true)]
    target: Option<Tp>,
    /// Internal: clients' server address.
    #[arg(long, hide = true)]
    addr: Option<SocketAddr>,
    /// Internal: clients' pinned key, hex.
    #[arg(long, hide = true)]
    key: Option<String>,
    /// Internal: clients' connection count.
    #[arg(long, hide = true)]
    count: Option<usize>,
    /// Internal: clients speak to a bare server, not the relay.
    #[arg(long, hide = true)]
    bare: bool,
}

/// What a run measures, after defaults.
#[derive(Debug, Clone)]
struct Plan {
    sessions: Vec<usize>,
    fanout: Vec<usize>,
    idle: usize,
    rounds: usize,
    measure: Duration,
    warm: Duration,
    latency_rate: u64,
    sections: Vec<Section>,
    transports: Vec<Tp>,
    systems: Vec<SystemArg>,
}

impl Plan {
    fn new(a: &Args) -> Self {
        let q = a.quick;
        Plan {
            sessions: a.sessions.clone().unwrap_or_else(|| {
                if q {
                    vec![1, 100]
                } else {
                    vec![1, 100, 1000]
                }
            }),
            fanout: a.fanout.clone().unwrap_or_else(|| {
                if q {
                    vec![10, 100]
                } else {
                    vec![10, 100, 500]
                }
            }),
            idle: a.idle.unwrap_or(if q { 1_000 } else { 10_000 }),
            rounds: a.rounds.unwrap_or(if q { 1 } else { 5 }).max(1),
            measure: Duration::from_secs_f64(a.seconds.unwrap_or(if q { 0.5 } else { 0.6 })),
            warm: Duration::from_millis(200),
            latency_rate: a.latency_rate.max(1),
            sections: a.only.clone().unwrap_or_else(|| {
                vec![
                    Section::Throughput,
                    Section::Latency,
                    Section::Fanout,
                    Section::Memory,
                ]
            }),
            transports: a
                .transports
                .clone()
                .unwrap_or_else(|| vec![Tp::Tls, Tp::Quic]),
            systems: a.systems.clone().unwrap_or_else(|| {
                vec![
                    SystemArg::TcpSplice,
                    SystemArg::TlsSplice,
                    SystemArg::QuicForwarder,
                    SystemArg::Relay,
                ]
            }),
        }
    }

    fn has(&self, s: Section) -> bool {
        self.sections.contains(&s)
    }
}

// ---------------------------------------------------------------------------
// Small helpers.

/// Nanoseconds since the first call, on one clock for senders and receivers.
fn now_ns() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// The `q` quantile (0..1) of sorted samples, nearest rank.
fn quantile(sorted: &[u64], q: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted.get(rank - 1).copied()
}

/// p50 and p99 of latency samples, in nanoseconds.
fn p50_p99(samples: &Mutex<Vec<u64>>) -> Option<(u64, u64)> {
    let mut v = samples.lock().ok()?.clone();
    v.sort_unstable();
    Some((quantile(&v, 0.50)?, quantile(&v, 0.99)?))
}

/// CPU time (user and system, all threads) this process has used, in
/// seconds, from /proc/self/stat (in USER_HZ = 100 ticks a second). On a
/// shared machine this is the steadier figure: other processes' load slows
/// the wall clock, not the work done per byte.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return f64::NAN;
    };
    // The fields after the command name, which is in parentheses; utime and
    // stime are fields 14 and 15, so the 12th and 13th after it.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return f64::NAN;
    };
    let mut fields = rest.split_whitespace().skip(11);
    let mut tick = || {
        fields
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .map_or(f64::NAN, |t| t as f64 / 100.0)
    };
    tick() + tick()
}

/// UDP datagrams dropped so far because a socket's receive buffer was full
/// (RcvbufErrors in /proc/net/snmp; the whole machine, so only loopback
/// traffic of this run in practice).
fn udp_drops() -> u64 {
    let Ok(snmp) = std::fs::read_to_string("/proc/net/snmp") else {
        return 0;
    };
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let (Some(names), Some(values)) = (udp.next(), udp.next()) else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "RcvbufErrors")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn raise_nofile() -> u64 {
    use rlimit::Resource;
    // As root the hard limit may be raised too; otherwise up to the hard limit.
    if Resource::NOFILE.set(65_536, 65_536).is_err() {
        let _ = rlimit::increase_nofile_limit(65_536);
    }
    Resource::NOFILE.get().map(|(soft, _)| soft).unwrap_or(0)
}

async fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) -> Result<()> {
    let start = Instant::now();
    while !done() {
        if start.elapsed() > limit {
            bail!("{what}: not done within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

/// Runs `f(0..n)` with at most `par` at once; results in order.
async fn setup_many<T, F, Fut>(n: usize, par: usize, f: F) -> Result<Vec<T>>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Result<T>> + Send + 'static,
{
    let mut out: Vec<Option<T>> = (0..n).map(|_| None).collect();
    let mut set = JoinSet::new();
    let mut next = 0;
    while next < n || !set.is_empty() {
        while next < n && set.len() < par {
            let fut = f(next);
            let i = next;
            set.spawn(async move { (i, fut.await) });
            next += 1;
        }
        if let Some(r) = set.join_next().await {
            let (i, v) = r?;
            if let Some(slot) = out.get_mut(i) {
                *slot = Some(v?);
            }
        }
    }
    out.into_iter()
        .map(|o| o.ok_or_else(|| anyhow!("a setup task gave no result")))
        .collect()
}

// ---------------------------------------------------------------------------
// Frames.

#[derive(Debug, Clone, Copy)]
struct Route {
    session: SessionId,
    from: PeerId,
    to: PeerId,
}

fn file_frame(r: Route, payload: &[u8]) -> Result<Bytes> {
    Ok(Bytes::from(plain_frame(
        FrameClass::File,
        r.session,
        r.from,
        r.to,
        payload,
    )?))
}

/// A frame whose payload carries `magic`, `seq` and the send time.
fn stamped(r: Route, magic: [u8; 4], seq: u64, len: usize) -> Result<Bytes> {
    let mut p = Vec::with_capacity(len);
    p.extend_from_slice(&magic);
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&now_ns().to_be_bytes());
    p.resize(len.max(20), 0);
    file_frame(r, &p)
}

/// (magic, seq, send time) of a stamped payload.
fn stamp(payload: &[u8]) -> Option<([u8; 4], u64, u64)> {
    let magic: [u8; 4] = payload.get(0..4)?.try_into().ok()?;
    let seq = u64::from_be_bytes(payload.get(4..12)?.try_into().ok()?);
    let ts = u64::from_be_bytes(payload.get(12..20)?.try_into().ok()?);
    Some((magic, seq, ts))
}

/// A baseline server's pairing message: the pair's key and the client's role.
fn pair_frame(key: u64, role: PeerId) -> Result<Bytes> {
    Ok(Bytes::from(plain_frame(
        FrameClass::Relay,
        SessionId(key),
        role,
        PeerId::RELAY,
        &[],
    )?))
}

fn to_relay(msg: &ToRelay) -> Result<Bytes> {
    Ok(Bytes::from(plain_frame(
        FrameClass::Relay,
        SessionId(0),
        PeerId::RELAY,
        PeerId::RELAY,
        &msg.encode(),
    )?))
}

/// Reads one frame's worth of header (and its short payload) off a stream.
async fn read_pairing<R: AsyncRead + Unpin>(r: &mut R) -> Result<RoutingHeader> {
    let mut h = [0u8; HEADER_LEN];
    r.read_exact(&mut h).await?;
    let header = RoutingHeader::decode(&h)?;
    let len = header.payload_len as usize;
    if len > 64 * 1024 {
        bail!("pairing frame too long");
    }
    let mut rest = vec![0u8; len];
    r.read_exact(&mut rest).await?;
    Ok(header)
}

// ---------------------------------------------------------------------------
// Clients.

/// Keeps whatever holds a client connection open.
#[allow(dead_code)]
enum Keep {
    Client(Box<ClientConnection>),
    Quic(quinn::Connection),
    Nothing,
}

/// A client connection as two channels of frames.
struct Conn {
    tx: mpsc::Sender<Bytes>,
    rx: Incoming,
    binding: [u8; 32],
    _keep: Keep,
}

impl Conn {
    fn from_client(mut c: ClientConnection) -> Self {
        let (_unused, dummy) = mpsc::channel(1);
        let rx = std::mem::replace(&mut c.incoming, dummy);
        Conn {
            tx: c.outgoing.clone(),
            rx,
            binding: c.channel_binding,
            _keep: Keep::Client(Box::new(c)),
        }
    }

    async fn send(&self, frame: Bytes) -> Result<()> {
        self.tx
            .send(frame)
            .await
            .map_err(|_| anyhow!("connection closed"))
    }

    /// The next frame from the server.
    async fn recv(&mut self) -> Result<Bytes> {
        match tokio::time::timeout(WAIT, self.rx.recv()).await {
            Err(_) => bail!("no frame within {WAIT:?}"),
            Ok(None) => bail!("connection closed"),
            Ok(Some(Err(e))) => Err(e.into()),
            Ok(Some(Ok(f))) => Ok(f),
        }
    }

    /// The next message from the relay, skipping other frames.
    async fn relay_message(&mut self) -> Result<FromRelay> {
        loop {
            let f = self.recv().await?;
            let f = FrameRef::parse(&f)?;
            if f.header.class == FrameClass::Relay {
                return Ok(FromRelay::decode(f.payload)?);
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Dial {
    Tcp,
    Tls,
    Quic,
}

impl From<Tp> for Dial {
    fn from(t: Tp) -> Self {
        match t {
            Tp::Tls => Dial::Tls,
            Tp::Quic => Dial::Quic,
        }
    }
}

/// Connects with the transport crate's client code.
async fn dial(how: Dial, addr: SocketAddr, key: PublicKey) -> Result<Conn> {
    Ok(match how {
        Dial::Tcp => {
            let s = TcpStream::connect(addr).await?;
            s.set_nodelay(true)?;
            let (r, w) = s.into_split();
            let (tx, source) = mpsc::channel(INCOMING_FRAMES);
            let rx = spawn_stream(r, w, source, MAX_PAYLOAD, Drained::default());
            Conn {
                tx,
                rx,
                binding: [0; 32],
                _keep: Keep::Nothing,
            }
        }
        Dial::Tls => Conn::from_client(connect_tls(addr, key).await?),
        Dial::Quic => Conn::from_client(connect_quic(addr, key).await?),
    })
}

/// Like `connect_quic`, but on a shared client endpoint (for 10,000
/// connections from one process without 10,000 UDP sockets).
async fn dial_quic_shared(endpoint: &quinn::Endpoint, addr: SocketAddr) -> Result<Conn> {
    let conn = endpoint.connect(addr, "conclave-relay")?.await?;
    let mut binding = [0u8; 32];
    conn.export_keying_material(
        &mut binding,
        conclave_protocol::stage1::CHANNEL_BINDING_LABEL,
        b"",
    )
    .map_err(|_| anyhow!("no channel binding"))?;
    let (send, recv) = conn.open_bi().await?;
    let (tx, source) = mpsc::channel(INCOMING_FRAMES);
    let rx = spawn_stream(recv, send, source, MAX_PAYLOAD, Drained::default());
    Ok(Conn {
        tx,
        rx,
        binding,
        _keep: Keep::Quic(conn),
    })
}

// ---------------------------------------------------------------------------
// The relay and its clients.

/// Keys, builds and hellos shared by every relay client.
struct Fx {
    portal: SigningIdentity,
    master: SigningIdentity,
    /// The fixtures' master build with room for 1,000 participants.
    master_build: Signed<BuildConfig>,
}

impl Fx {
    fn new() -> Result<Self> {
        let portal = fixtures::identity(1);
        let master = fixtures::identity(2);
        let h = fixtures::master_hello(&portal, &master, &[0; 32]);
        let mut cfg = h
            .build
            .verify(&[portal.public_key()])
            .map_err(|e| anyhow!("fixture build: {e}"))?;
        cfg.profile.max_participants = 1_000;
        let master_build = portal.sign(&cfg);
        Ok(Fx {
            portal,
            master,
            master_build,
        })
    }

    fn participant_hello(&self) -> Result<Bytes> {
        to_relay(&ToRelay::Hello(fixtures::participant_hello(&self.portal)))
    }
}

fn relay_settings() -> Settings {
    let portal = fixtures::identity(1);
    Settings {
        quic: Some("127.0.0.1:0".into()),
        tls: Some("127.0.0.1:0".into()),
        websocket: Some("off".into()),
        admin: Some("off".into()),
        portal_keys: Some(vec![hex::encode(portal.public_key().0)]),
        max_sessions: Some(1_000_000),
        max_peers: Some(1_000_000),
        max_participants: Some(1_000),
        handshake_timeout_secs: Some(3_600),
        idle_timeout_secs: Some(3_600),
        frames_per_sec: Some(1_000_000_000),
        bytes_per_sec: Some(1 << 40),
        ..Settings::default()
    }
}

async fn start_relay() -> Result<Relay> {
    Ok(Relay::start(relay_settings().resolve(true)?).await?)
}

fn relay_addr(relay: &Relay, t: Tp) -> Result<SocketAddr> {
    match t {
        Tp::Tls => relay.tls,
        Tp::Quic => relay.quic,
    }
    .ok_or_else(|| anyhow!("relay without a {} listener", t.label()))
}

async fn hello(c: &mut Conn, frame: Bytes) -> Result<()> {
    c.send(frame).await?;
    match c.relay_message().await? {
        FromRelay::Welcome(_) => Ok(()),
        other => bail!("Hello answered with {other:?}"),
    }
}

/// A master that has opened `session`.
async fn relay_master(
    fx: Arc<Fx>,
    t: Tp,
    addr: SocketAddr,
    key: PublicKey,
    session: SessionId,
) -> Result<Conn> {
    let mut c = dial(t.into(), addr, key).await?;
    let mut h = fixtures::master_hello(&fx.portal, &fx.master, &c.binding);
    h.build = fx.master_build.clone();
    hello(&mut c, to_relay(&ToRelay::Hello(h))?).await?;
    let cfg = fixtures::master_config(&fx.portal, 2, session, SessionKind::Meeting, None);
    let engine = MasterSession::new(cfg, fixtures::rng(session.0), Millis(0));
    c.send(to_relay(&ToRelay::CreateSession {
        session,
        kind: SessionKind::Meeting,
        announce: engine.announce().clone(),
    })?)
    .await?;
    match c.relay_message().await? {
        FromRelay::SessionCreated { .. } => Ok(c),
        other => bail!("CreateSession answered with {other:?}"),
    }
}

/// A participant that has joined `session`, and the ID the relay gave it.
async fn relay_participant(
    hello_frame: Bytes,
    t: Tp,
    addr: SocketAddr,
    key: PublicKey,
    session: SessionId,
) -> Result<(Conn, PeerId)> {
    let mut c = dial(t.into(), addr, key).await?;
    hello(&mut c, hello_frame).await?;
    c.send(to_relay(&ToRelay::Join { session })?).await?;
    match c.relay_message().await? {
        FromRelay::Joined { peer, .. } => Ok((c, peer)),
        other => bail!("Join answered with {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// Baseline servers.

/// Pairs a sender's and a receiver's connection by key.
struct Pairing<S> {
    waiting: Mutex<HashMap<u64, (bool, S)>>,
    paired: AtomicUsize,
}

impl<S> Pairing<S> {
    fn new() -> Arc<Self> {
        Arc::new(Pairing {
            waiting: Mutex::new(HashMap::new()),
            paired: AtomicUsize::new(0),
        })
    }

    /// `(sender, receiver)` once both sides of `key` are in.
    fn offer(&self, key: u64, is_sender: bool, s: S) -> Option<(S, S)> {
        let mut w = self.waiting.lock().ok()?;
        match w.remove(&key) {
            Some((other_is_sender, other)) if other_is_sender != is_sender => {
                self.paired.fetch_add(1, Ordering::Relaxed);
                Some(if is_sender { (s, other) } else { (other, s) })
            }
            _ => {
                w.insert(key, (is_sender, s));
                None
            }
        }
    }
}

/// In the splices and the forwarder the participant-numbered side sends.
fn is_sender(h: &RoutingHeader) -> bool {
    h.sender != PeerId::MASTER
}

async fn splice_tcp(listener: TcpListener, pairing: Arc<Pairing<TcpStream>>) {
    loop {
        let Ok((mut s, _)) = listener.accept().await else {
            continue;
        };
        let _ = s.set_nodelay(true);
        let p = pairing.clone();
        tokio::spawn(async move {
            let Ok(h) = read_pairing(&mut s).await else {
                return;
            };
            if let Some((mut a, mut b)) = p.offer(h.session.0, is_sender(&h), s) {
                let _ =
                    tokio::io::copy_bidirectional_with_sizes(&mut a, &mut b, CHUNK, CHUNK).await;
            }
        });
    }
}

type ServerTls = tokio_rustls::server::TlsStream<TcpStream>;

async fn splice_tls(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    pairing: Arc<Pairing<ServerTls>>,
) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let (p, acceptor) = (pairing.clone(), acceptor.clone());
        tokio::spawn(async move {
            let Ok(mut s) = acceptor.accept(tcp).await else {
                return;
            };
            let Ok(h) = read_pairing(&mut s).await else {
                return;
            };
            if let Some((mut a, mut b)) = p.offer(h.session.0, is_sender(&h), s) {
                let _ =
                    tokio::io::copy_bidirectional_with_sizes(&mut a, &mut b, CHUNK, CHUNK).await;
            }
        });
    }
}

type QuicSide = (quinn::Connection, quinn::SendStream, quinn::RecvStream);

async fn forward_quic(endpoint: quinn::Endpoint, pairing: Arc<Pairing<QuicSide>>) {
    while let Some(incoming) = endpoint.accept().await {
        let p = pairing.clone();
        tokio::spawn(async move {
            let Ok(conn) = incoming.await else { return };
            let Ok((send, mut recv)) = conn.accept_bi().await else {
                return;
            };
            let Ok(h) = read_pairing(&mut recv).await else {
                return;
            };
            if let Some((a, b)) = p.offer(h.session.0, is_sender(&h), (conn, send, recv)) {
                let (_conn_a, _send_a, mut from) = a;
                let (_conn_b, mut to, _recv_b) = b;
                // Up to 32 chunks at a time, moved without a copy: the
                // cheapest of the ways tried at one session (chunk by chunk,
                // a 16 KiB copy, whole frames through a buffer).
                let mut chunks: Vec<Bytes> = vec![Bytes::new(); 32];
                while let Ok(Some(k)) = from.read_chunks(&mut chunks).await {
                    let batch = chunks.get_mut(..k).unwrap_or_default();
                    if to.write_all_chunks(batch).await.is_err() {
                        break;
                    }
                }
                let _ = to.finish();
            }
        });
    }
}

/// One TLS source whose plaintext goes to `n` TLS receivers.
async fn fanout_tls(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    n: usize,
    ready: Arc<AtomicBool>,
) -> Result<()> {
    let mut set = JoinSet::new();
    for _ in 0..=n {
        let (tcp, _) = listener.accept().await?;
        tcp.set_nodelay(true)?;
        let acceptor = acceptor.clone();
        set.spawn(async move {
            let mut s = acceptor.accept(tcp).await?;
            let h = read_pairing(&mut s).await?;
            Ok::<_, anyhow::Error>((h.sender == PeerId::MASTER, s))
        });
    }
    let mut source = None;
    let mut sinks = Vec::new();
    while let Some(r) = set.join_next().await {
        let (is_source, s) = r??;
        if is_source {
            source = Some(s);
        } else {
            sinks.push(s);
        }
    }
    let mut source = source.ok_or_else(|| anyhow!("fan-out without a source"))?;
    let mut outs = Vec::with_capacity(sinks.len());
    for mut s in sinks {
        let (tx, mut rx) = mpsc::channel::<Bytes>(64);
        outs.push(tx);
        tokio::spawn(async move {
            while let Some(b) = rx.recv().await {
                if s.write_all(&b).await.is_err() {
                    return;
                }
                if rx.is_empty() && s.flush().await.is_err() {
                    return;
                }
            }
            let _ = s.shutdown().await;
        });
    }
    ready.store(true, Ordering::Release);
    let mut buf = BytesMut::with_capacity(FAN_READ);
    loop {
        buf.reserve(FAN_READ);
        if source.read_buf(&mut buf).await? == 0 {
            return Ok(());
        }
        let chunk = buf.split().freeze();
        for tx in &outs {
            if tx.send(chunk.clone()).await.is_err() {
                return Ok(());
            }
        }
    }
}

/// The identity the baselines present (the relay makes its own).
fn baseline_identity() -> Result<RelayIdentity> {
    Ok(RelayIdentity::new(&fixtures::identity(50))?)
}

fn tls_acceptor(id: &RelayIdentity) -> Result<TlsAcceptor> {
    Ok(TlsAcceptor::from(Arc::new(id.server_config()?)))
}

/// A bare quinn server on the relay's own kind of socket (the same receive
/// buffer), so that the comparison is of what runs on it.
fn quic_server(id: &RelayIdentity) -> Result<quinn::Endpoint> {
    let cfg = conclave_transport::quic::server_config(id)?;
    let socket = conclave_relay::quic_socket("127.0.0.1:0".parse()?)?;
    Ok(quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        Some(cfg),
        socket,
        Arc::new(quinn::TokioRuntime),
    )?)
}

// ---------------------------------------------------------------------------
// Forwarding systems: N sender/receiver pairs through one server.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    TcpSplice,
    TlsSplice,
    QuicForwarder,
    Relay(Tp),
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::TcpSplice => "bare TCP splice",
            Kind::TlsSplice => "bare TLS splice",
            Kind::QuicForwarder => "bare quinn forwarder",
            Kind::Relay(_) => "relay",
        }
    }
}

#[derive(Default)]
struct Stats {
    /// Payload bytes of throughput frames received.
    bytes: AtomicU64,
    /// Latency frames received.
    lat_frames: AtomicU64,
    /// One-way latencies (ns) of latency frames sent in the recording window.
    lat: Mutex<Vec<u64>>,
    rec_from: AtomicU64,
    rec_until: AtomicU64,
}

struct Pair {
    tx: mpsc::Sender<Bytes>,
    route: Route,
    window: Arc<Semaphore>,
    frame: Bytes,
}

enum Server {
    Relay(Box<Relay>),
    Task(JoinHandle<()>),
    Quic(quinn::Endpoint, JoinHandle<()>),
}

struct System {
    kind: Kind,
    window: usize,
    pairs: Vec<Pair>,
    stats: Arc<Stats>,
    tasks: Vec<JoinHandle<()>>,
    conns: Vec<Conn>,
    server: Server,
    /// Each round's payload bytes per second and process CPU seconds per GB.
    rounds: Vec<(f64, f64)>,
    /// Each latency round's CPU use, as a share of all CPUs.
    busy: Vec<f64>,
    /// Each latency round's p50 and p99 (ns) and sample count.
    lat_rounds: Vec<(u64, u64, usize)>,
    /// UDP datagrams the kernel dropped for want of receive buffer during
    /// this system's latency and throughput rounds.
    udp_drops: (u64, u64),
}

/// Frames each session may have in flight in the throughput test: deep enough
/// to keep one session's pipeline full, shallow enough that 1,000 sessions
/// hold at most 128 MiB.
fn window_for(n: usize) -> usize {
    (1024 / n.max(1)).clamp(2, 16)
}

fn spawn_receiver(mut rx: Incoming, stats: Arc<Stats>, window: Arc<Semaphore>) -> JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(Ok(f)) = rx.recv().await {
            let Ok(f) = FrameRef::parse(&f) else { continue };
            if f.header.class != FrameClass::File {
                continue;
            }
            match stamp(f.payload) {
                Some((m, _, ts)) if m == MAGIC_LAT => {
                    let lat = now_ns().saturating_sub(ts);
                    let from = stats.rec_from.load(Ordering::Relaxed);
                    let until = stats.rec_until.load(Ordering::Relaxed);
                    if ts >= from && ts < until {
                        if let Ok(mut v) = stats.lat.lock() {
                            v.push(lat);
                        }
                    }
                    stats.lat_frames.fetch_add(1, Ordering::Relaxed);
                }
                _ => {
                    stats
                        .bytes
                        .fetch_add(f.payload.len() as u64, Ordering::Relaxed);
                    window.add_permits(1);
                }
            }
        }
    })
}

fn spawn_drain(mut rx: Incoming) -> JoinHandle<()> {
    tokio::spawn(async move { while rx.recv().await.is_some() {} })
}

impl System {
    async fn setup(kind: Kind, n: usize, fx: &Arc<Fx>) -> Result<System> {
        let window = window_for(n);
        let stats = Arc::new(Stats::default());
        // (sender, receiver, route) per pair.
        let (server, links): (Server, Vec<(Conn, Conn, Route)>) = match kind {
            Kind::Relay(t) => {
                let relay = start_relay().await?;
                let (addr, key) = (relay_addr(&relay, t)?, relay.public_key);
                let hello_frame = fx.participant_hello()?;
                let fx = fx.clone();
                let links = setup_many(n, SETUP_PARALLEL / 2, move |i| {
                    let (fx, hello_frame) = (fx.clone(), hello_frame.clone());
                    async move {
                        let session = SessionId(SESSION_BASE + i as u64);
                        let master = relay_master(fx, t, addr, key, session).await?;
                        let (part, peer) =
                            relay_participant(hello_frame, t, addr, key, session).await?;
                        let route = Route {
                            session,
                            from: peer,
                            to: PeerId::MASTER,
                        };
                        Ok((part, master, route))
                    }
                })
                .await?;
                (Server::Relay(Box::new(relay)), links)
            }
            Kind::TcpSplice | Kind::TlsSplice | Kind::QuicForwarder => {
                let id = baseline_identity()?;
                let key = id.public_key();
                let (server, addr, how, paired): (
                    Server,
                    SocketAddr,
                    Dial,
                    Arc<dyn Fn() -> usize + Send + Sync>,
                ) = match kind {
                    Kind::TcpSplice => {
                        let l = TcpListener::bind("127.0.0.1:0").await?;
                        let addr = l.local_addr()?;
                        let p = Pairing::new();
                        let p2 = p.clone();
                        let task = tokio::spawn(splice_tcp(l, p));
                        (
                            Server::Task(task),
                            addr,
                            Dial::Tcp,
                            Arc::new(move || p2.paired.load(Ordering::Relaxed)),
                        )
                    }
                    Kind::TlsSplice => {
                        let l = TcpListener::bind("127.0.0.1:0").await?;
                        let addr = l.local_addr()?;
                        let p = Pairing::new();
                        let p2 = p.clone();
                        let task = tokio::spawn(splice_tls(l, tls_acceptor(&id)?, p));
                        (
                            Server::Task(task),
                            addr,
                            Dial::Tls,
                            Arc::new(move || p2.paired.load(Ordering::Relaxed)),
                        )
                    }
                    _ => {
                        let ep = quic_server(&id)?;
                        let addr = ep.local_addr()?;
                        let p = Pairing::new();
                        let p2 = p.clone();
                        let task = tokio::spawn(forward_quic(ep.clone(), p));
                        (
                            Server::Quic(ep, task),
                            addr,
                            Dial::Quic,
                            Arc::new(move || p2.paired.load(Ordering::Relaxed)),
                        )
                    }
                };
                let links = setup_many(n, SETUP_PARALLEL / 2, move |i| async move {
                    let key_i = i as u64;
                    let receiver = dial(how, addr, key).await?;
                    receiver.send(pair_frame(key_i, PeerId::MASTER)?).await?;
                    let sender = dial(how, addr, key).await?;
                    sender
                        .send(pair_frame(key_i, PeerId::FIRST_PARTICIPANT)?)
                        .await?;
                    let route = Route {
                        session: SessionId(SESSION_BASE + key_i),
                        from: PeerId::FIRST_PARTICIPANT,
                        to: PeerId::MASTER,
                    };
                    Ok((sender, receiver, route))
                })
                .await?;
                wait_until("pairing", WAIT, || paired() >= n).await?;
                (server, links)
            }
        };
        let payload = vec![0x5a_u8; PAYLOAD];
        let mut sys = System {
            kind,
            window,
            pairs: Vec::with_capacity(n),
            stats,
            tasks: Vec::new(),
            conns: Vec::new(),
            server,
            rounds: Vec::new(),
            busy: Vec::new(),
            lat_rounds: Vec::new(),
            udp_drops: (0, 0),
        };
        for (mut sender, mut receiver, route) in links {
            let w = Arc::new(Semaphore::new(window));
            let (_a, dummy_a) = mpsc::channel(1);
            let (_b, dummy_b) = mpsc::channel(1);
            let rx = std::mem::replace(&mut receiver.rx, dummy_a);
            sys.tasks
                .push(spawn_receiver(rx, sys.stats.clone(), w.clone()));
            let srx = std::mem::replace(&mut sender.rx, dummy_b);
            sys.tasks.push(spawn_drain(srx));
            sys.pairs.push(Pair {
                tx: sender.tx.clone(),
                route,
                window: w,
                // A buffer of its own per session, as real senders have.
                frame: file_frame(route, &payload)?,
            });
            sys.conns.push(sender);
            sys.conns.push(receiver);
        }
        Ok(sys)
    }

    fn drained(&self) -> bool {
        self.pairs
            .iter()
            .all(|p| p.window.available_permits() >= self.window)
    }

    /// Every sender as fast as its window allows; payload bytes per second.
    async fn throughput_round(&mut self, warm: Duration, measure: Duration) -> Result<(f64, f64)> {
        let d0 = udp_drops();
        let stop = Arc::new(AtomicBool::new(false));
        let senders: Vec<_> = self
            .pairs
            .iter()
            .map(|p| {
                let (tx, w, frame, stop) = (
                    p.tx.clone(),
                    p.window.clone(),
                    p.frame.clone(),
                    stop.clone(),
                );
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        let Ok(permit) = w.acquire().await else { break };
                        permit.forget();
                        if tx.send(frame.clone()).await.is_err() {
                            break;
                        }
                    }
                })
            })
            .collect();
        tokio::time::sleep(warm).await;
        let (b0, c0) = (self.stats.bytes.load(Ordering::Relaxed), cpu_seconds());
        let t0 = Instant::now();
        tokio::time::sleep(measure).await;
        let (b1, c1) = (self.stats.bytes.load(Ordering::Relaxed), cpu_seconds());
        let elapsed = t0.elapsed().as_secs_f64();
        stop.store(true, Ordering::Relaxed);
        for s in senders {
            tokio::time::timeout(WAIT, s)
                .await
                .context("a sender did not stop")??;
        }
        wait_until("throughput drain", WAIT, || self.drained()).await?;
        self.udp_drops.1 += udp_drops().saturating_sub(d0);
        let bytes = (b1 - b0) as f64;
        let round = (bytes / elapsed, (c1 - c0) / (bytes / 1e9));
        self.rounds.push(round);
        Ok(round)
    }

    /// Light load: each session one 1 KiB frame per interval, staggered.
    /// Light load: each session one 1 KiB frame per `interval`, staggered.
    /// Records the share of the machine's CPUs the process used meanwhile.
    async fn latency_round(
        &mut self,
        interval: Duration,
        warm: Duration,
        measure: Duration,
    ) -> Result<(f64, u64, u64)> {
        let (c0, t0, d0) = (cpu_seconds(), Instant::now(), udp_drops());
        let n = self.pairs.len().max(1) as u64;
        let gap = (interval.as_nanos() as u64 / n).max(1);
        let start = now_ns();
        let rec_from = start + warm.as_nanos() as u64;
        let end = rec_from + measure.as_nanos() as u64;
        self.stats.rec_from.store(rec_from, Ordering::Relaxed);
        self.stats.rec_until.store(end, Ordering::Relaxed);
        let got0 = self.stats.lat_frames.load(Ordering::Relaxed);
        let mut sent = 0u64;
        let mut k = 0u64;
        loop {
            let now = now_ns();
            if now >= end {
                break;
            }
            while start + k * gap <= now {
                let i = (k % n) as usize;
                if let Some(p) = self.pairs.get(i) {
                    let f = stamped(p.route, MAGIC_LAT, k, LAT_PAYLOAD)?;
                    if p.tx.try_send(f).is_ok() {
                        sent += 1;
                    }
                }
                k += 1;
            }
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
        let busy = (cpu_seconds() - c0) / t0.elapsed().as_secs_f64() / cores() as f64;
        self.busy.push(busy);
        let stats = self.stats.clone();
        wait_until("latency drain", WAIT, || {
            stats.lat_frames.load(Ordering::Relaxed) - got0 >= sent
        })
        .await?;
        self.udp_drops.0 += udp_drops().saturating_sub(d0);
        // Percentiles per round; the table shows their medians over the
        // rounds, so that one round hit by a burst of load from elsewhere on
        // a shared machine does not decide the figure.
        let mut v = stats
            .lat
            .lock()
            .map(|mut l| std::mem::take(&mut *l))
            .unwrap_or_default();
        v.sort_unstable();
        let p50 = quantile(&v, 0.50).unwrap_or(0);
        let p99 = quantile(&v, 0.99).unwrap_or(0);
        self.lat_rounds.push((p50, p99, v.len()));
        Ok((busy, p50, p99))
    }

    /// Median bytes per second and CPU seconds per GB.
    fn throughput(&self) -> (f64, f64) {
        (
            median(self.rounds.iter().map(|r| r.0).collect()),
            median(self.rounds.iter().map(|r| r.1).collect()),
        )
    }

    /// Medians over the rounds of each round's p50 and p99, in ns.
    fn latency(&self) -> Option<(u64, u64)> {
        if self.lat_rounds.is_empty() {
            return None;
        }
        let med = |f: fn(&(u64, u64, usize)) -> u64| {
            median(self.lat_rounds.iter().map(|r| f(r) as f64).collect()) as u64
        };
        Some((med(|r| r.0), med(|r| r.1)))
    }

    /// Latency samples over all rounds.
    fn latency_samples(&self) -> usize {
        self.lat_rounds.iter().map(|r| r.2).sum()
    }

    async fn teardown(self) {
        let System {
            pairs,
            tasks,
            conns,
            server,
            ..
        } = self;
        drop(pairs);
        drop(conns);
        tokio::time::sleep(Duration::from_millis(100)).await;
        for t in tasks {
            t.abort();
        }
        match server {
            Server::Relay(r) => (*r).shutdown(Duration::from_millis(500)).await,
            Server::Task(t) => t.abort(),
            Server::Quic(ep, t) => {
                t.abort();
                ep.close(0u32.into(), b"done");
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Fan-out.

struct FanStats {
    bytes: AtomicU64,
    slots: Vec<AtomicU32>,
    lat: Mutex<Vec<u64>>,
    rec_from: AtomicU64,
    rec_until: AtomicU64,
}

struct Fan {
    relay: bool,
    n: usize,
    tx: mpsc::Sender<Bytes>,
    route: Route,
    window: Arc<Semaphore>,
    stats: Arc<FanStats>,
    seq: u64,
    tasks: Vec<JoinHandle<()>>,
    conns: Vec<Conn>,
    server: Server,
    /// Each round's delivered bytes per second and process CPU seconds per GB.
    rounds: Vec<(f64, f64)>,
}

fn spawn_fan_receiver(
    mut rx: Incoming,
    n: usize,
    stats: Arc<FanStats>,
    window: Arc<Semaphore>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(Ok(f)) = rx.recv().await {
            let Ok(f) = FrameRef::parse(&f) else { continue };
            if f.header.class != FrameClass::File {
                continue;
            }
            let Some((m, seq, ts)) = stamp(f.payload) else {
                continue;
            };
            if m != MAGIC_FAN {
                continue;
            }
            stats
                .bytes
                .fetch_add(f.payload.len() as u64, Ordering::Relaxed);
            let Some(slot) = stats.slots.get(seq as usize % FAN_RING) else {
                continue;
            };
            if slot.fetch_add(1, Ordering::AcqRel) as usize + 1 == n {
                let lat = now_ns().saturating_sub(ts);
                let from = stats.rec_from.load(Ordering::Relaxed);
                let until = stats.rec_until.load(Ordering::Relaxed);
                if ts >= from && ts < until {
                    if let Ok(mut v) = stats.lat.lock() {
                        v.push(lat);
                    }
                }
                window.add_permits(1);
            }
        }
    })
}

impl Fan {
    async fn setup(relay: bool, n: usize, fx: &Arc<Fx>) -> Result<Fan> {
        let stats = Arc::new(FanStats {
            bytes: AtomicU64::new(0),
            slots: (0..FAN_RING).map(|_| AtomicU32::new(0)).collect(),
            lat: Mutex::new(Vec::new()),
            rec_from: AtomicU64::new(0),
            rec_until: AtomicU64::new(0),
        });
        let window = Arc::new(Semaphore::new(FAN_WINDOW));
        let mut tasks = Vec::new();
        let mut conns = Vec::new();
        let (server, mut source, route, receivers) = if relay {
            let r = start_relay().await?;
            let (addr, key) = (relay_addr(&r, Tp::Tls)?, r.public_key);
            let session = SessionId(SESSION_BASE + 999_999);
            let master = relay_master(fx.clone(), Tp::Tls, addr, key, session).await?;
            let hello_frame = fx.participant_hello()?;
            let receivers = setup_many(n, SETUP_PARALLEL, move |_| {
                let hello_frame = hello_frame.clone();
                async move {
                    relay_participant(hello_frame, Tp::Tls, addr, key, session)
                        .await
                        .map(|(c, _)| c)
                }
            })
            .await?;
            let route = Route {
                session,
                from: PeerId::MASTER,
                to: PeerId::BROADCAST,
            };
            (Server::Relay(Box::new(r)), master, route, receivers)
        } else {
            let id = baseline_identity()?;
            let key = id.public_key();
            let l = TcpListener::bind("127.0.0.1:0").await?;
            let addr = l.local_addr()?;
            let ready = Arc::new(AtomicBool::new(false));
            let task = {
                let (acceptor, ready) = (tls_acceptor(&id)?, ready.clone());
                tokio::spawn(async move {
                    if let Err(e) = fanout_tls(l, acceptor, n, ready).await {
                        eprintln!("bare fan-out server: {e:#}");
                    }
                })
            };
            let receivers = setup_many(n, SETUP_PARALLEL, move |_| async move {
                let c = dial(Dial::Tls, addr, key).await?;
                c.send(pair_frame(0, PeerId::FIRST_PARTICIPANT)?).await?;
                Ok(c)
            })
            .await?;
            let source = dial(Dial::Tls, addr, key).await?;
            source.send(pair_frame(0, PeerId::MASTER)?).await?;
            wait_until("fan-out server", WAIT, || ready.load(Ordering::Acquire)).await?;
            let route = Route {
                session: SessionId(SESSION_BASE),
                from: PeerId::MASTER,
                to: PeerId::BROADCAST,
            };
            (Server::Task(task), source, route, receivers)
        };
        for mut c in receivers {
            let (_d, dummy) = mpsc::channel(1);
            let rx = std::mem::replace(&mut c.rx, dummy);
            tasks.push(spawn_fan_receiver(rx, n, stats.clone(), window.clone()));
            conns.push(c);
        }
        let (_d, dummy) = mpsc::channel(1);
        tasks.push(spawn_drain(std::mem::replace(&mut source.rx, dummy)));
        let tx = source.tx.clone();
        conns.push(source);
        Ok(Fan {
            relay,
            n,
            tx,
            route,
            window,
            stats,
            seq: 0,
            tasks,
            conns,
            server,
            rounds: Vec::new(),
        })
    }

    async fn round(&mut self, warm: Duration, measure: Duration) -> Result<()> {
        let stop = Arc::new(AtomicBool::new(false));
        let start = now_ns();
        let rec_from = start + warm.as_nanos() as u64;
        self.stats.rec_from.store(rec_from, Ordering::Relaxed);
        self.stats
            .rec_until
            .store(rec_from + measure.as_nanos() as u64, Ordering::Relaxed);
        let sender = {
            let (tx, w, stats, stop, route, first) = (
                self.tx.clone(),
                self.window.clone(),
                self.stats.clone(),
                stop.clone(),
                self.route,
                self.seq,
            );
            tokio::spawn(async move {
                let mut seq = first;
                while !stop.load(Ordering::Relaxed) {
                    let Ok(permit) = w.acquire().await else { break };
                    permit.forget();
                    if let Some(slot) = stats.slots.get(seq as usize % FAN_RING) {
                        slot.store(0, Ordering::Release);
                    }
                    let Ok(f) = stamped(route, MAGIC_FAN, seq, PAYLOAD) else {
                        break;
                    };
                    seq += 1;
                    if tx.send(f).await.is_err() {
                        break;
                    }
                }
                seq
            })
        };
        tokio::time::sleep(warm).await;
        let (b0, c0) = (self.stats.bytes.load(Ordering::Relaxed), cpu_seconds());
        let t0 = Instant::now();
        tokio::time::sleep(measure).await;
        let (b1, c1) = (self.stats.bytes.load(Ordering::Relaxed), cpu_seconds());
        let elapsed = t0.elapsed().as_secs_f64();
        stop.store(true, Ordering::Relaxed);
        self.seq = tokio::time::timeout(WAIT, sender)
            .await
            .context("the fan-out sender did not stop")??;
        let w = self.window.clone();
        wait_until("fan-out drain", WAIT, || {
            w.available_permits() >= FAN_WINDOW
        })
        .await?;
        let bytes = (b1 - b0) as f64;
        self.rounds
            .push((bytes / elapsed, (c1 - c0) / (bytes / 1e9)));
        Ok(())
    }

    async fn teardown(self) {
        let Fan {
            tasks,
            conns,
            server,
            tx,
            ..
        } = self;
        drop(tx);
        drop(conns);
        tokio::time::sleep(Duration::from_millis(100)).await;
        for t in tasks {
            t.abort();
        }
        match server {
            Server::Relay(r) => (*r).shutdown(Duration::from_millis(500)).await,
            Server::Task(t) => t.abort(),
            Server::Quic(ep, t) => {
                t.abort();
                ep.close(0u32.into(), b"done");
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Results and tables.

#[derive(Debug, Clone)]
struct FwdRow {
    transport: Tp,
    sessions: usize,
    window: usize,
    latency_rate: f64,
    /// The relay's latency rounds' median CPU use, as a share of all CPUs.
    relay_busy: f64,
    systems: Vec<SysFig>,
}

/// One system's figures in a row.
#[derive(Debug, Clone)]
struct SysFig {
    kind: Kind,
    /// Median bytes per second and CPU seconds per GB.
    tput: (f64, f64),
    /// Median p50 and p99, ns.
    lat: Option<(u64, u64)>,
    /// Latency samples over all rounds.
    samples: usize,
    /// UDP receive-buffer drops during latency and throughput rounds.
    udp: (u64, u64),
}

impl FwdRow {
    fn get(&self, k: Kind) -> Option<&SysFig> {
        self.systems.iter().find(|s| s.kind == k)
    }
}

#[derive(Debug, Clone)]
struct FanRow {
    receivers: usize,
    /// Delivered bytes per second, CPU seconds per GB, p50/p99 ns to the last receiver.
    bare: (f64, f64, Option<(u64, u64)>),
    relay: (f64, f64, Option<(u64, u64)>),
}

#[derive(Debug, Clone)]
struct MemRow {
    transport: Tp,
    bare: Option<MemFigure>,
    relay: Option<MemFigure>,
}

#[derive(Debug, Clone, Copy)]
struct MemFigure {
    connections: usize,
    before_kib: u64,
    after_kib: u64,
}

impl MemFigure {
    fn per_conn_kib(&self) -> f64 {
        self.after_kib.saturating_sub(self.before_kib) as f64 / self.connections.max(1) as f64
    }
}

fn mbps(b: f64) -> String {
    format!("{:.0}", b / 1e6)
}

fn us(ns: u64) -> String {
    format!("{:.0}", ns as f64 / 1e3)
}

fn ms(ns: u64) -> String {
    format!("{:.1}", ns as f64 / 1e6)
}

fn lat_cell(l: Option<(u64, u64)>, f: fn(u64) -> String) -> String {
    match l {
        Some((a, b)) => format!("{} / {}", f(a), f(b)),
        None => "—".into(),
    }
}

/// The rows of one transport.
fn fwd_rows(fwd: &[FwdRow], t: Tp) -> Vec<FwdRow> {
    fwd.iter().filter(|r| r.transport == t).cloned().collect()
}

/// A sentence on the UDP datagrams dropped during QUIC rounds.
fn udp_note(rows: &[FwdRow], base: Kind, which: fn((u64, u64)) -> u64) -> String {
    let parts: Vec<String> = rows
        .iter()
        .map(|r| {
            let d = |k: Kind| r.get(k).map_or(0, |s| which(s.udp));
            format!(
                "{} session{} {} / {}",
                group(r.sessions),
                if r.sessions == 1 { "" } else { "s" },
                group(d(base) as usize),
                group(d(Kind::Relay(Tp::Quic)) as usize)
            )
        })
        .collect();
    format!(
        "UDP datagrams the kernel dropped for a full receive buffer during these rounds \
         (RcvbufErrors, {} / relay): {}.",
        base.label(),
        parts.join("; ")
    )
}

/// The target verdict by throughput, and by CPU when that disagrees.
fn target_cell(ratio: f64, by_cpu: f64, target: f64) -> String {
    let verdict = ratio_target(ratio, target);
    match (ratio >= target, by_cpu >= target) {
        (true, false) => format!("{verdict}; by CPU missed"),
        (false, true) => format!("{verdict}; by CPU met"),
        _ => verdict,
    }
}

fn ratio_target(r: f64, target: f64) -> String {
    if r >= target {
        format!("met (≥ {target}×)")
    } else {
        format!(
            "**missed**: {:.0}% short of {target}×",
            (1.0 - r / target) * 100.0
        )
    }
}

fn machine_line(elapsed: Duration, plan: &Plan) -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    format!(
        "Measured on an {cpu} with {cores} logical CPUs, loopback only, relay and clients in one \
         process (tokio, {cores} worker threads); {} alternating round(s) of {:.1} s per figure; \
         whole run {:.0} s.",
        plan.rounds,
        plan.measure.as_secs_f64(),
        elapsed.as_secs_f64()
    )
}

fn print_tables(
    plan: &Plan,
    fwd: &[FwdRow],
    fan: &[FanRow],
    mem: &[MemRow],
    elapsed: Duration,
) -> String {
    let mut o = String::new();
    let mut line = |s: String| {
        o.push_str(&s);
        o.push('\n');
    };
    line(machine_line(elapsed, plan));
    line(String::new());
    if plan.has(Section::Throughput) {
        for t in [Tp::Tls, Tp::Quic] {
            let rows: Vec<_> = fwd.iter().filter(|r| r.transport == t).collect();
            if rows.is_empty() {
                continue;
            }
            let base_kind = match t {
                Tp::Tls => Kind::TlsSplice,
                Tp::Quic => Kind::QuicForwarder,
            };
            match t {
                Tp::Tls => line("| TLS/TCP throughput, 64 KiB frames | bare TCP splice (MB/s) | bare TLS splice (MB/s) | relay (MB/s) | relay ÷ TLS splice | CPU s per GB, TLS splice / relay | relay ÷ TLS splice, by CPU | target ≥ 0.8× |".into()),
                Tp::Quic => line("| QUIC throughput, 64 KiB frames | — | bare quinn forwarder (MB/s) | relay (MB/s) | relay ÷ forwarder | CPU s per GB, forwarder / relay | relay ÷ forwarder, by CPU | target ≥ 0.8× |".into()),
            }
            line("|---|---:|---:|---:|---:|---:|---:|---|".into());
            for r in rows {
                let fig = |k: Kind| r.get(k).map_or((f64::NAN, f64::NAN), |s| s.tput);
                let (relay, relay_cpu) = fig(Kind::Relay(t));
                let (base, base_cpu) = fig(base_kind);
                let ratio = relay / base;
                let tcp = match t {
                    Tp::Tls => mbps(fig(Kind::TcpSplice).0),
                    Tp::Quic => "—".into(),
                };
                line(format!(
                    "| {} session{}, {} frames in flight each | {tcp} | {} | {} | {ratio:.2}× | {base_cpu:.2} / {relay_cpu:.2} | {:.2}× | {} |",
                    r.sessions,
                    if r.sessions == 1 { "" } else { "s" },
                    r.window,
                    mbps(base),
                    mbps(relay),
                    base_cpu / relay_cpu,
                    target_cell(ratio, base_cpu / relay_cpu, 0.8)
                ));
            }
            if t == Tp::Quic {
                line(String::new());
                line(udp_note(&fwd_rows(fwd, t), base_kind, |u| u.1));
            }
            line(String::new());
        }
    }
    if plan.has(Section::Latency) {
        for t in [Tp::Tls, Tp::Quic] {
            let rows: Vec<_> = fwd.iter().filter(|r| r.transport == t).collect();
            if rows.is_empty() {
                continue;
            }
            let base_kind = match t {
                Tp::Tls => Kind::TlsSplice,
                Tp::Quic => Kind::QuicForwarder,
            };
            match t {
                Tp::Tls => line("| TLS/TCP one-way latency, 1 KiB frames | frames/s, all sessions | CPU busy, relay run | bare TCP splice p50 / p99 (µs) | bare TLS splice p50 / p99 (µs) | relay p50 / p99 (µs) | added p99 (µs) | target < 1 ms |".into()),
                Tp::Quic => line("| QUIC one-way latency, 1 KiB frames | frames/s, all sessions | CPU busy, relay run | — | bare quinn forwarder p50 / p99 (µs) | relay p50 / p99 (µs) | added p99 (µs) | target < 1 ms |".into()),
            }
            line("|---|---:|---:|---:|---:|---:|---:|---|".into());
            for r in rows {
                let relay = r.get(Kind::Relay(t)).and_then(|s| s.lat);
                let base = r.get(base_kind).and_then(|s| s.lat);
                let added = match (relay, base) {
                    (Some(a), Some(b)) => Some(a.1 as i64 - b.1 as i64),
                    _ => None,
                };
                let added_s = added.map_or("—".into(), |a| format!("{:.0}", a as f64 / 1e3));
                let target = match added {
                    Some(a) if a < 1_000_000 => "met".to_string(),
                    Some(a) => format!("**missed** by {:.2} ms", (a - 1_000_000) as f64 / 1e6),
                    None => "—".into(),
                };
                let tcp = match t {
                    Tp::Tls => lat_cell(r.get(Kind::TcpSplice).and_then(|s| s.lat), us),
                    Tp::Quic => "—".into(),
                };
                line(format!(
                    "| {} session{} | {} | {:.0}% | {tcp} | {} | {} | {added_s} | {target} |",
                    group(r.sessions),
                    if r.sessions == 1 { "" } else { "s" },
                    group(r.latency_rate.round() as usize),
                    r.relay_busy * 100.0,
                    lat_cell(base, us),
                    lat_cell(relay, us)
                ));
            }
            let rows = fwd_rows(fwd, t);
            let fewest = rows
                .iter()
                .flat_map(|r| r.systems.iter().map(|s| s.samples))
                .min()
                .unwrap_or(0);
            line(String::new());
            line(format!(
                "Each session sends a 1 KiB frame every 10 ms, but at least {} and at most {} \
                 frames a second in all; p50 and p99 are the medians over {} rounds of each \
                 round's percentiles (at least {} samples per figure).",
                group(LAT_MIN_RATE as usize),
                group(plan.latency_rate as usize),
                plan.rounds,
                group(fewest)
            ));
            if t == Tp::Quic {
                line(udp_note(&rows, base_kind, |u| u.0));
            }
            line(String::new());
        }
    }
    if plan.has(Section::Fanout) && !fan.is_empty() {
        line(format!("| TLS/TCP fan-out, one sender, 64 KiB frames, {FAN_WINDOW} in flight | bare TLS fan-out (MB/s delivered) | relay (MB/s delivered) | relay ÷ bare | CPU s per GB, bare / relay | relay ÷ bare, by CPU | bare, to last receiver p50 / p99 (ms) | relay, to last receiver p50 / p99 (ms) |"));
        line("|---|---:|---:|---:|---:|---:|---:|---:|".into());
        for r in fan {
            line(format!(
                "| {} receivers | {} | {} | {:.2}× | {:.2} / {:.2} | {:.2}× | {} | {} |",
                r.receivers,
                mbps(r.bare.0),
                mbps(r.relay.0),
                r.relay.0 / r.bare.0,
                r.bare.1,
                r.relay.1,
                r.bare.1 / r.relay.1,
                lat_cell(r.bare.2, ms),
                lat_cell(r.relay.2, ms)
            ));
        }
        line(String::new());
    }
    if plan.has(Section::Memory) && !mem.is_empty() {
        line("| idle connections (after Hello) | bare server (KiB per connection) | relay (KiB per connection) | relay RSS before → after (MiB) | target < 32 KiB |".into());
        line("|---|---:|---:|---:|---|".into());
        for r in mem {
            let n = r.relay.or(r.bare).map_or(0, |f| f.connections);
            let bare = r
                .bare
                .map_or("—".into(), |f| format!("{:.1}", f.per_conn_kib()));
            let (relay, rss, target) = match r.relay {
                Some(f) => {
                    let k = f.per_conn_kib();
                    (
                        format!("{k:.1}"),
                        format!(
                            "{:.0} → {:.0}",
                            f.before_kib as f64 / 1024.0,
                            f.after_kib as f64 / 1024.0
                        ),
                        if k < 32.0 {
                            "met".to_string()
                        } else {
                            format!("**missed** by {:.1} KiB", k - 32.0)
                        },
                    )
                }
                None => ("—".into(), "—".into(), "—".into()),
            };
            line(format!(
                "| {} × {} | {bare} | {relay} | {rss} | {target} |",
                group(n),
                r.transport.label()
            ));
        }
        line(String::new());
    }
    o
}

/// 10000 → "10,000".
fn group(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

// ---------------------------------------------------------------------------
// Running the forwarding and fan-out sections.

async fn run_forwarding(plan: &Plan, fx: &Arc<Fx>) -> Result<Vec<FwdRow>> {
    let mut rows = Vec::new();
    for &t in &plan.transports {
        for &n in &plan.sessions {
            let kinds: Vec<Kind> = match t {
                Tp::Tls => vec![Kind::TcpSplice, Kind::TlsSplice, Kind::Relay(Tp::Tls)],
                Tp::Quic => vec![Kind::QuicForwarder, Kind::Relay(Tp::Quic)],
            }
            .into_iter()
            .filter(|k| {
                plan.systems.contains(&match k {
                    Kind::TcpSplice => SystemArg::TcpSplice,
                    Kind::TlsSplice => SystemArg::TlsSplice,
                    Kind::QuicForwarder => SystemArg::QuicForwarder,
                    Kind::Relay(_) => SystemArg::Relay,
                })
            })
            .collect();
            let started = Instant::now();
            let mut systems = Vec::new();
            for &k in &kinds {
                systems.push(
                    System::setup(k, n, fx)
                        .await
                        .with_context(|| format!("setting up {} for {n} sessions", k.label()))?,
                );
            }
            eprintln!(
                "{} × {n}: set up in {:.1} s",
                t.label(),
                started.elapsed().as_secs_f64()
            );
            // Latency first, while every connection is fresh (after a
            // throughput run, QUIC connections that lost datagrams under load
            // are still recovering). Each session every 10 ms, but at least
            // LAT_MIN_RATE frames a second in all (enough samples for a p99
            // from one session) and at most the aggregate rate.
            let rate = (n as f64 / LAT_INTERVAL.as_secs_f64())
                .max(LAT_MIN_RATE)
                .min(plan.latency_rate as f64);
            let interval = Duration::from_secs_f64(n as f64 / rate);
            if plan.has(Section::Latency) {
                for round in 0..plan.rounds {
                    let len = systems.len();
                    for j in 0..len {
                        if let Some(s) = systems.get_mut((j + round) % len) {
                            let (busy, p50, p99) =
                                s.latency_round(interval, plan.warm, plan.measure).await?;
                            eprintln!(
                                "  latency round {round}: {:<22} p50 {:>6} µs p99 {:>6} µs, CPU {:.0}% busy",
                                s.kind.label(),
                                us(p50),
                                us(p99),
                                busy * 100.0
                            );
                        }
                    }
                }
            }
            if plan.has(Section::Throughput) {
                for round in 0..plan.rounds {
                    let len = systems.len();
                    for j in 0..len {
                        if let Some(s) = systems.get_mut((j + round) % len) {
                            let (rate, cpu) = s.throughput_round(plan.warm, plan.measure).await?;
                            eprintln!(
                                "  throughput round {round}: {:<22} {:>7.0} MB/s, {:>5.2} CPU s/GB",
                                s.kind.label(),
                                rate / 1e6,
                                cpu
                            );
                        }
                    }
                }
            }
            rows.push(FwdRow {
                transport: t,
                sessions: n,
                window: window_for(n),
                latency_rate: rate,
                relay_busy: systems
                    .iter()
                    .find(|s| matches!(s.kind, Kind::Relay(_)))
                    .map_or(f64::NAN, |s| median(s.busy.clone())),
                systems: systems
                    .iter()
                    .map(|s| SysFig {
                        kind: s.kind,
                        tput: s.throughput(),
                        lat: s.latency(),
                        samples: s.latency_samples(),
                        udp: s.udp_drops,
                    })
                    .collect(),
            });
            for s in systems {
                s.teardown().await;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    Ok(rows)
}

async fn run_fanout(plan: &Plan, fx: &Arc<Fx>) -> Result<Vec<FanRow>> {
    let mut rows = Vec::new();
    for &n in &plan.fanout {
        let started = Instant::now();
        let mut fans = vec![
            Fan::setup(false, n, fx)
                .await
                .with_context(|| format!("bare fan-out to {n}"))?,
            Fan::setup(true, n, fx)
                .await
                .with_context(|| format!("relay fan-out to {n}"))?,
        ];
        eprintln!(
            "fan-out × {n}: set up in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        for round in 0..plan.rounds {
            for j in 0..2 {
                if let Some(f) = fans.get_mut((j + round) % 2) {
                    f.round(plan.warm, plan.measure).await?;
                    let (rate, cpu) = f.rounds.last().copied().unwrap_or_default();
                    eprintln!(
                        "  fan-out round {round}: {:<6} {:>7.0} MB/s delivered to {}, {:.2} CPU s/GB",
                        if f.relay { "relay" } else { "bare" },
                        rate / 1e6,
                        f.n,
                        cpu
                    );
                }
            }
        }
        let fig = |f: &Fan| {
            (
                median(f.rounds.iter().map(|r| r.0).collect()),
                median(f.rounds.iter().map(|r| r.1).collect()),
                p50_p99(&f.stats.lat),
            )
        };
        let (bare, relay) = match (fans.first(), fans.get(1)) {
            (Some(b), Some(r)) => (fig(b), fig(r)),
            _ => bail!("fan-out systems missing"),
        };
        rows.push(FanRow {
            receivers: n,
            bare,
            relay,
        });
        for f in fans {
            f.teardown().await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    Ok(rows)
}

// ---------------------------------------------------------------------------
// Idle memory: host and client processes.

/// This process's resident set, KiB, from /proc/self/status.
fn vm_rss_kib() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// A bare idle server: handshake, read the first frame, answer it, then hold
/// the connection in one task awaiting a read.
async fn bare_idle_tls(listener: TcpListener, acceptor: TlsAcceptor) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let Ok(mut s) = acceptor.accept(tcp).await else {
                return;
            };
            if read_pairing(&mut s).await.is_err() {
                return;
            }
            let Ok(answer) = pair_frame(0, PeerId::RELAY) else {
                return;
            };
            if s.write_all(&answer).await.is_err() || s.flush().await.is_err() {
                return;
            }
            let mut b = [0u8; 64];
            while let Ok(k) = s.read(&mut b).await {
                if k == 0 {
                    break;
                }
            }
        });
    }
}

async fn bare_idle_quic(endpoint: quinn::Endpoint) {
    while let Some(incoming) = endpoint.accept().await {
        tokio::spawn(async move {
            let Ok(conn) = incoming.await else { return };
            let Ok((mut send, mut recv)) = conn.accept_bi().await else {
                return;
            };
            if read_pairing(&mut recv).await.is_err() {
                return;
            }
            let Ok(answer) = pair_frame(0, PeerId::RELAY) else {
                return;
            };
            if send.write_all(&answer).await.is_err() {
                return;
            }
            let mut b = [0u8; 64];
            while let Ok(Some(_)) = recv.read(&mut b).await {}
            drop(conn);
        });
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// `--child relay|bare`: serves until stdin closes; answers "rss" with VmRSS.
fn run_host(bare: bool) -> Result<()> {
    raise_nofile();
    let rt = runtime()?;
    rt.block_on(async {
        let (tls, quic, key, _relay, _tasks) = if bare {
            let id = baseline_identity()?;
            let l = TcpListener::bind("127.0.0.1:0").await?;
            let tls = l.local_addr()?;
            let ep = quic_server(&id)?;
            let quic = ep.local_addr()?;
            let tasks = vec![
                tokio::spawn(bare_idle_tls(l, tls_acceptor(&id)?)),
                tokio::spawn(bare_idle_quic(ep)),
            ];
            (tls, quic, id.public_key(), None, tasks)
        } else {
            let r = start_relay().await?;
            (
                relay_addr(&r, Tp::Tls)?,
                relay_addr(&r, Tp::Quic)?,
                r.public_key,
                Some(r),
                Vec::new(),
            )
        };
        println!("ready {tls} {quic} {}", hex::encode(key.0));
        std::io::stdout().flush()?;
        tokio::task::spawn_blocking(|| {
            let stdin = std::io::stdin();
            for line in stdin.lock().lines() {
                let Ok(line) = line else { break };
                if line.trim() == "rss" {
                    println!("rss {}", vm_rss_kib().unwrap_or(0));
                    let _ = std::io::stdout().flush();
                }
            }
        })
        .await?;
        Ok(())
    })
}

/// `--child clients`: opens `count` connections, each sending its first
/// message and waiting for the answer, reports, then holds them until stdin
/// closes.
fn run_clients(t: Tp, addr: SocketAddr, key: PublicKey, count: usize, bare: bool) -> Result<()> {
    let limit = raise_nofile();
    if (limit as usize) < count + 100 {
        bail!("open-file limit {limit} is too low for {count} connections: run under `ulimit -n 65536`");
    }
    let rt = runtime()?;
    rt.block_on(async {
        let first = if bare {
            pair_frame(0, PeerId::FIRST_PARTICIPANT)?
        } else {
            Fx::new()?.participant_hello()?
        };
        let endpoint = match t {
            Tp::Quic => {
                let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse()?)?;
                ep.set_default_client_config(conclave_transport::quic::client_config_quic(key)?);
                Some(ep)
            }
            Tp::Tls => None,
        };
        let conns = setup_many(count, SETUP_PARALLEL, move |_| {
            let (first, endpoint) = (first.clone(), endpoint.clone());
            async move {
                let mut c = match &endpoint {
                    Some(ep) => dial_quic_shared(ep, addr).await?,
                    None => dial(Dial::Tls, addr, key).await?,
                };
                c.send(first).await?;
                if bare {
                    c.recv().await?;
                } else {
                    match c.relay_message().await? {
                        FromRelay::Welcome(_) => {}
                        other => bail!("Hello answered with {other:?}"),
                    }
                }
                Ok(c)
            }
        })
        .await?;
        println!("ready {}", conns.len());
        std::io::stdout().flush()?;
        tokio::task::spawn_blocking(|| {
            let mut sink = String::new();
            let _ = std::io::Read::read_to_string(&mut std::io::stdin(), &mut sink);
        })
        .await?;
        drop(conns);
        Ok(())
    })
}

/// A child process, killed if still running when dropped.
struct ChildProc {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: std::sync::mpsc::Receiver<String>,
}

impl ChildProc {
    fn spawn(args: &[String]) -> Result<Self> {
        let exe = std::env::current_exe()?;
        let mut child = Command::new(exe)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdin = child.stdin.take();
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow!("no child stdout"))?;
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(ChildProc {
            child,
            stdin,
            lines,
        })
    }

    fn line(&self, limit: Duration) -> Result<String> {
        self.lines
            .recv_timeout(limit)
            .map_err(|_| anyhow!("the child process did not answer within {limit:?}"))
    }

    fn say(&mut self, what: &str) -> Result<()> {
        let stdin = self.stdin.as_mut().ok_or_else(|| anyhow!("stdin closed"))?;
        writeln!(stdin, "{what}")?;
        stdin.flush()?;
        Ok(())
    }

    fn rss(&mut self) -> Result<u64> {
        self.say("rss")?;
        let l = self.line(WAIT)?;
        l.strip_prefix("rss ")
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| anyhow!("unexpected answer {l:?}"))
    }

    /// Closes stdin and waits (up to 30 s) for the child to exit.
    fn finish(mut self) -> Result<()> {
        drop(self.stdin.take());
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(30) {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("child process did not exit")
    }
}

impl Drop for ChildProc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Idle memory of `n` connections over `t` to a fresh host process.
fn measure_idle(t: Tp, n: usize, bare: bool) -> Result<MemFigure> {
    let mut host =
        ChildProc::spawn(&["--child".into(), if bare { "bare" } else { "relay" }.into()])?;
    let ready = host.line(WAIT)?;
    let mut parts = ready.split_whitespace().skip(1);
    let tls: SocketAddr = parts.next().ok_or_else(|| anyhow!("{ready}"))?.parse()?;
    let quic: SocketAddr = parts.next().ok_or_else(|| anyhow!("{ready}"))?.parse()?;
    let key = parts.next().ok_or_else(|| anyhow!("{ready}"))?.to_string();
    std::thread::sleep(Duration::from_millis(500));
    let before = host.rss()?;
    let addr = match t {
        Tp::Tls => tls,
        Tp::Quic => quic,
    };
    let mut args = vec![
        "--child".to_string(),
        "clients".into(),
        "--target".into(),
        match t {
            Tp::Tls => "tls",
            Tp::Quic => "quic",
        }
        .into(),
        "--addr".into(),
        addr.to_string(),
        "--key".into(),
        key,
        "--count".into(),
        n.to_string(),
    ];
    if bare {
        args.push("--bare".into());
    }
    let started = Instant::now();
    let clients = ChildProc::spawn(&args)?;
    let ready = clients.line(Duration::from_secs(300))?;
    let connections: usize = ready
        .strip_prefix("ready ")
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| anyhow!("clients: {ready}"))?;
    let setup = started.elapsed();
    // Let handshakes' leftovers (timers, queued frames) settle.
    std::thread::sleep(Duration::from_secs(2));
    let after = host.rss()?;
    eprintln!(
        "idle {} × {}: {connections} connections in {:.1} s, RSS {before} → {after} KiB",
        if bare { "bare" } else { "relay" },
        t.label(),
        setup.as_secs_f64()
    );
    clients.finish()?;
    host.finish()?;
    Ok(MemFigure {
        connections,
        before_kib: before,
        after_kib: after,
    })
}

fn run_memory(plan: &Plan) -> Vec<MemRow> {
    let mut rows = Vec::new();
    for &t in &plan.transports {
        let fig = |bare: bool| match measure_idle(t, plan.idle, bare) {
            Ok(f) => Some(f),
            Err(e) => {
                eprintln!(
                    "idle memory, {} {}: {e:#}",
                    t.label(),
                    if bare { "bare" } else { "relay" }
                );
                None
            }
        };
        let bare = fig(true);
        let relay = fig(false);
        rows.push(MemRow {
            transport: t,
            bare,
            relay,
        });
    }
    rows
}

// ---------------------------------------------------------------------------

fn main() -> Result<()> {
    let args = Args::parse();
    now_ns();
    match args.child.as_deref() {
        Some("relay") => return run_host(false),
        Some("bare") => return run_host(true),
        Some("clients") => {
            let t = args.target.ok_or_else(|| anyhow!("--target"))?;
            let addr = args.addr.ok_or_else(|| anyhow!("--addr"))?;
            let key = args
                .key
                .as_deref()
                .and_then(parse_public_key)
                .ok_or_else(|| anyhow!("--key"))?;
            let count = args.count.ok_or_else(|| anyhow!("--count"))?;
            return run_clients(t, addr, key, count, args.bare);
        }
        Some(other) => bail!("unknown child role {other:?}"),
        None => {}
    }
    let plan = Plan::new(&args);
    let limit = raise_nofile();
    eprintln!("relay_table: {plan:?}; open-file limit {limit}");
    let started = Instant::now();
    let fx = Arc::new(Fx::new()?);
    let mut mem = Vec::new();
    // Memory first: its processes are fresh either way, but the machine is quietest now.
    if plan.has(Section::Memory) {
        mem = run_memory(&plan);
    }
    let rt = runtime()?;
    let (fwd, fan) = rt.block_on(async {
        let fwd = if plan.has(Section::Throughput) || plan.has(Section::Latency) {
            run_forwarding(&plan, &fx).await?
        } else {
            Vec::new()
        };
        let fan = if plan.has(Section::Fanout) {
            run_fanout(&plan, &fx).await?
        } else {
            Vec::new()
        };
        Ok::<_, anyhow::Error>((fwd, fan))
    })?;
    rt.shutdown_timeout(Duration::from_secs(5));
    let out = print_tables(&plan, &fwd, &fan, &mem, started.elapsed());
    print!("{out}");
    Ok(())
}
