//! Prints the session benchmark table for the README, as Markdown:
//! `cargo run --release -p conclave-benches --bin session_table` (as root,
//! about two minutes on 2 cores; `--quick` for less; `--no-link` where no
//! network namespace can be made).
//!
//! Everything uses the real parts: relays are this binary re-run as a child
//! process around `conclave_relay::Relay` (so that one can be killed like a
//! crashed server), the master is the client library's runtime
//! (`conclave_client::session::start_master`) in this process, and
//! participants are the same runtime (`session::join`), in child processes
//! for the join rows and in this process for the rekey row.
//!
//! - **Join**: from calling `join` (before connecting) to the participant's
//!   `Admitted` event, i.e. keys for the first epoch in place; a password
//!   session, so the master admits at once. On loopback, and from a network
//!   namespace this binary makes (veth pair 10.231.0.1/.2, removed after)
//!   across a link with 50 ms round trip, without loss and with 1 % loss in
//!   each direction.
//!   This machine's kernel has no `netem` qdisc, so the link is emulated in
//!   user space: a UDP forwarder on the host side of the veth delays every
//!   datagram by 25 ms each way and drops the given share (seeded), and the namespaced
//!   participant's build lists only that forwarder's QUIC port. The
//!   baseline, measured in the same run and the same way, is a bare QUIC
//!   handshake over that path (one round trip plus crypto); the join is also
//!   given in round trips: (join over the link − join on loopback) ÷
//!   (handshake over the link − handshake on loopback), the link's own round
//!   trip with the computation taken out of both.
//! - **Rekey**: a meeting with 100 participants (in this process, on
//!   loopback); the master removes one, and the time until all the others
//!   hold the new epoch is taken; baseline: one chat line from the master
//!   until all have it.
//! - **Failover gap**: master and participant on loopback, two relays; the
//!   relay carrying the session is killed (SIGKILL); the time from the kill
//!   until the participant holds a fresh epoch through the other relay, and
//!   the gap the participant reports (from its last frame through the dead
//!   relay). Over QUIC (the loss is noticed by silence, 1.2 s) and over TLS
//!   only (noticed at once). Baseline: connecting to a relay and passing
//!   stage 1 alone.
//!
//! Progress goes to stderr, the table to stdout. No figure is asserted on.

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;
use conclave_client::connect::{open, Attempts, Who};
use conclave_client::events::{Command as AppCommand, Event};
use conclave_client::session::{join, start_master, JoinOptions, MasterOptions, Running};
use conclave_protocol::artefact::{RelayEntry, Role};
use conclave_protocol::fixtures;
use conclave_protocol::frame::{PeerId, SessionId};
use conclave_protocol::sign::PublicKey;
use conclave_protocol::stage1::SessionKind;
use conclave_protocol::trailer::VerifiedBuild;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use zeroize::Zeroizing;

const PASSWORD: &str = "bench-horse-42";
const NS: &str = "cvbench";
const HOST_IF: &str = "cvbench-h";
const NS_IF: &str = "cvbench-p";
const HOST_IP: Ipv4Addr = Ipv4Addr::new(10, 231, 0, 1);
const NS_IP: Ipv4Addr = Ipv4Addr::new(10, 231, 0, 2);
/// One way of the emulated link.
const LINK_DELAY: Duration = Duration::from_millis(25);
/// The longest any one step may take before the benchmark gives up.
const STEP: Duration = Duration::from_secs(60);

#[derive(Debug, Parser)]
#[command(about = "Conclave session benchmarks (join, rekey, failover)")]
struct Args {
    /// Fewer samples (6 joins, 20 rekey members, 2 failovers).
    #[arg(long)]
    quick: bool,
    /// Skip the emulated link (needs root for the network namespace).
    #[arg(long)]
    no_link: bool,
    /// Internal: this process is a "relay" or a "join".
    #[arg(long, hide = true)]
    role: Option<String>,
    #[arg(long, hide = true)]
    tls_only: bool,
    #[arg(long, hide = true)]
    relay_key: Option<String>,
    #[arg(long, hide = true)]
    host: Option<String>,
    #[arg(long, hide = true)]
    quic_port: Option<u16>,
    #[arg(long, hide = true)]
    tls_port: Option<u16>,
    #[arg(long, hide = true)]
    session: Option<u64>,
}

/// A relay as the apps' list names it.
fn entry(name: &str, key: PublicKey, host: &str, quic: u16, tls: u16) -> RelayEntry {
    RelayEntry {
        name: fixtures::s(name),
        host: fixtures::s(host),
        quic_port: quic,
        tls_port: tls,
        websocket_port: 0,
        public_key: key,
        region: fixtures::s("bench"),
        priority: 0,
    }
}

/// A build for `role` listing `relays`, signed by the fixtures' portal, for
/// password meetings of up to 500.
fn build(role: Role, relays: Vec<RelayEntry>) -> VerifiedBuild {
    fixtures::verified_build(role, relays, |p| {
        p.max_participants = 500;
        p.password_required = true;
        p.autolock = false;
    })
}

fn who() -> Who {
    Who {
        os_user: fixtures::s("bench"),
        host: fixtures::s("bench"),
    }
}

/// A relay child process; killed when dropped.
struct RelayProc {
    child: Child,
    key: PublicKey,
    quic: u16,
    tls: u16,
}

impl RelayProc {
    fn start(name: &str, tls_only: bool) -> Result<RelayProc> {
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.args(["--role", "relay", "--host", name]);
        if tls_only {
            cmd.arg("--tls-only");
        }
        let mut child = cmd.stdout(Stdio::piped()).spawn()?;
        let out = child.stdout.take().context("relay stdout")?;
        let mut line = String::new();
        BufReader::new(out).read_line(&mut line)?;
        let mut words = line.split_whitespace();
        let (Some("ready"), Some(key), Some(quic), Some(tls)) =
            (words.next(), words.next(), words.next(), words.next())
        else {
            bail!("relay child said {line:?}");
        };
        let key = conclave_relay::config::parse_public_key(key).context("relay key")?;
        Ok(RelayProc {
            child,
            key,
            quic: quic.parse()?,
            tls: tls.parse()?,
        })
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RelayProc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The relay role: serve until killed.
async fn run_relay(name: String, tls_only: bool) -> Result<()> {
    let settings = conclave_relay::config::Settings {
        name: Some(name),
        quic: Some(if tls_only {
            "off".into()
        } else {
            "0.0.0.0:0".into()
        }),
        tls: Some("0.0.0.0:0".into()),
        websocket: Some("off".into()),
        admin: Some("off".into()),
        portal_keys: Some(vec![hex::encode(fixtures::identity(1).public_key().0)]),
        max_participants: Some(1_000),
        ..Default::default()
    };
    let relay = conclave_relay::Relay::start(settings.resolve(true)?).await?;
    println!(
        "ready {} {} {}",
        hex::encode(relay.public_key.0),
        relay.quic.map_or(0, |a| a.port()),
        relay.tls.map_or(0, |a| a.port())
    );
    std::future::pending::<()>().await;
    Ok(())
}

/// Waits for the first event that `pick` accepts.
async fn wait_for<T>(
    running: &mut Running,
    mut pick: impl FnMut(&Event) -> Option<T>,
) -> Result<T> {
    tokio::time::timeout(STEP, async {
        while let Some(e) = running.events.recv().await {
            if let Some(t) = pick(&e) {
                return Ok(t);
            }
            if let Event::Ended { reason } = e {
                bail!("session ended: {reason}");
            }
        }
        bail!("events ended")
    })
    .await
    .map_err(|_| anyhow!("timed out"))?
}

/// The join role: a bare QUIC handshake (the baseline), then one join;
/// prints both in milliseconds.
async fn run_join(args: &Args) -> Result<()> {
    let key = conclave_relay::config::parse_public_key(args.relay_key.as_deref().unwrap_or(""))
        .context("relay key")?;
    let host = args.host.clone().unwrap_or_default();
    let relay = entry(
        "r",
        key,
        &host,
        args.quic_port.unwrap_or(0),
        args.tls_port.unwrap_or(0),
    );
    let addr = SocketAddr::new(host.parse()?, relay.quic_port);
    let t = Instant::now();
    let bare = conclave_transport::conn::connect_quic(addr, key).await?;
    let handshake = t.elapsed();
    bare.close();
    let options = JoinOptions {
        session: SessionId(args.session.unwrap_or(0)),
        password: Some(Zeroizing::new(PASSWORD.into())),
        name: "bench".into(),
        who: who(),
        attempts: Attempts::default(),
        media: Default::default(),
    };
    let t = Instant::now();
    let mut running = join(build(Role::Participant, vec![relay]), options).await?;
    wait_for(&mut running, |e| {
        matches!(e, Event::Admitted { .. }).then_some(())
    })
    .await?;
    let joined = t.elapsed();
    println!(
        "{} {}",
        handshake.as_secs_f64() * 1e3,
        joined.as_secs_f64() * 1e3
    );
    running.handle.send(AppCommand::Leave).await;
    let _ = wait_for(&mut running, |e| {
        matches!(e, Event::Ended { .. }).then_some(())
    })
    .await;
    Ok(())
}

/// A master session on `relays` (loopback); events go to the returned channel.
async fn master(relays: Vec<RelayEntry>) -> Result<(SessionId, Running)> {
    let options = MasterOptions {
        kind: SessionKind::Meeting,
        moderator: "Bench".into(),
        password: Some(Zeroizing::new(PASSWORD.into())),
        who: who(),
        attempts: Attempts::default(),
        media: Default::default(),
    };
    let mut running = start_master(build(Role::Master, relays), options).await?;
    let session = running.handle.session;
    wait_for(&mut running, |e| {
        matches!(e, Event::SessionOpened { .. }).then_some(())
    })
    .await?;
    Ok((session, running))
}

/// One direction of the emulated link: datagrams leave in the order they
/// came, each [`LINK_DELAY`] after it came (a FIFO, as netem's is).
fn delay_line(
    send: impl Fn(Vec<u8>) -> tokio::task::JoinHandle<()> + Send + 'static,
) -> mpsc::UnboundedSender<(tokio::time::Instant, Vec<u8>)> {
    let (tx, mut rx) = mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
    tokio::spawn(async move {
        while let Some((due, d)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            let _ = send(d).await;
        }
    });
    tx
}

/// The emulated link: a UDP forwarder that delays and drops.
async fn impair(listen: UdpSocket, upstream: SocketAddr, loss_percent: u32) -> Result<()> {
    let listen = Arc::new(listen);
    let rng = Arc::new(Mutex::new(rand_chacha::ChaCha20Rng::seed_from_u64(7)));
    let lose = move |rng: &Mutex<rand_chacha::ChaCha20Rng>| {
        rng.lock()
            .map(|mut r| r.next_u32() % 100 < loss_percent)
            .unwrap_or(false)
    };
    type Line = mpsc::UnboundedSender<(tokio::time::Instant, Vec<u8>)>;
    let mut clients: std::collections::HashMap<SocketAddr, Line> = Default::default();
    let mut buf = vec![0u8; 65_536];
    loop {
        let (n, from) = listen.recv_from(&mut buf).await?;
        let now = tokio::time::Instant::now();
        let line = match clients.get(&from) {
            Some(line) => line.clone(),
            None => {
                // Each client gets its own upstream socket, as NAT would.
                let up = Arc::new(UdpSocket::bind("127.0.0.1:0").await?);
                up.connect(upstream).await?;
                let up2 = up.clone();
                let upward = delay_line(move |d| {
                    let up = up2.clone();
                    tokio::spawn(async move {
                        let _ = up.send(&d).await;
                    })
                });
                let l = listen.clone();
                let downward = delay_line(move |d| {
                    let l = l.clone();
                    tokio::spawn(async move {
                        let _ = l.send_to(&d, from).await;
                    })
                });
                let rng2 = rng.clone();
                tokio::spawn(async move {
                    let mut b = vec![0u8; 65_536];
                    while let Ok(n) = up.recv(&mut b).await {
                        if !lose(&rng2) {
                            let d = b.get(..n).unwrap_or_default().to_vec();
                            let _ = downward.send((tokio::time::Instant::now() + LINK_DELAY, d));
                        }
                    }
                });
                clients.insert(from, upward.clone());
                upward
            }
        };
        if !lose(&rng) {
            let d = buf.get(..n).unwrap_or_default().to_vec();
            let _ = line.send((now + LINK_DELAY, d));
        }
    }
}

/// The network namespace and veth pair; removed when dropped.
struct Netns;

impl Netns {
    fn ip(args: &[&str]) -> Result<()> {
        let ok = Command::new("ip").args(args).status()?.success();
        if !ok {
            bail!("ip {} failed", args.join(" "));
        }
        Ok(())
    }

    fn make() -> Result<Netns> {
        Netns::remove();
        let (host, ns) = (format!("{HOST_IP}/24"), format!("{NS_IP}/24"));
        Netns::ip(&["netns", "add", NS])?;
        let n = Netns;
        Netns::ip(&[
            "link", "add", HOST_IF, "type", "veth", "peer", "name", NS_IF,
        ])?;
        Netns::ip(&["link", "set", NS_IF, "netns", NS])?;
        Netns::ip(&["addr", "add", &host, "dev", HOST_IF])?;
        Netns::ip(&["link", "set", HOST_IF, "up"])?;
        Netns::ip(&["-n", NS, "addr", "add", &ns, "dev", NS_IF])?;
        Netns::ip(&["-n", NS, "link", "set", NS_IF, "up"])?;
        Netns::ip(&["-n", NS, "link", "set", "lo", "up"])?;
        Ok(n)
    }

    fn remove() {
        let quiet = |args: &[&str]| {
            let _ = Command::new("ip").args(args).stderr(Stdio::null()).status();
        };
        quiet(&["netns", "del", NS]);
        quiet(&["link", "del", HOST_IF]);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        Netns::remove();
    }
}

/// Runs one join child (in the namespace if `netns`); (handshake ms, join ms).
fn join_child(
    relay: &RelayProc,
    host: &str,
    quic_port: u16,
    session: SessionId,
    netns: bool,
) -> Result<(f64, f64)> {
    let exe = std::env::current_exe()?;
    let mut cmd = if netns {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", NS]).arg(&exe);
        c
    } else {
        Command::new(&exe)
    };
    let out = cmd
        .args(["--role", "join", "--host", host])
        .args(["--relay-key", &hex::encode(relay.key.0)])
        .args(["--quic-port", &quic_port.to_string(), "--tls-port", "0"])
        .args(["--session", &session.0.to_string()])
        .stderr(Stdio::inherit())
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut w = text.split_whitespace().map(str::parse::<f64>);
    match (w.next(), w.next()) {
        (Some(Ok(h)), Some(Ok(j))) => Ok((h, j)),
        _ => bail!("join child printed {text:?}"),
    }
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    let i = ((v.len().saturating_sub(1)) as f64 * p).round() as usize;
    v.get(i).copied().unwrap_or(f64::NAN)
}

struct Row {
    what: String,
    baseline: String,
    figure: String,
    target: String,
}

/// Join samples against a fresh session, on loopback or (with `link`, the
/// loss in percent) across the emulated link; (handshake p50, join p50, join p95).
async fn joins(relay: &RelayProc, n: usize, link: Option<u32>) -> Result<(f64, f64, f64)> {
    let (session, running) = master(vec![entry(
        "r",
        relay.key,
        "127.0.0.1",
        relay.quic,
        relay.tls,
    )])
    .await?;
    let (host, port, forwarder) = if let Some(loss) = link {
        let sock = UdpSocket::bind(SocketAddr::new(IpAddr::V4(HOST_IP), 0)).await?;
        let port = sock.local_addr()?.port();
        let upstream = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), relay.quic);
        (
            HOST_IP.to_string(),
            port,
            Some(tokio::spawn(impair(sock, upstream, loss))),
        )
    } else {
        ("127.0.0.1".to_string(), relay.quic, None)
    };
    let (mut hs, mut js) = (Vec::new(), Vec::new());
    for i in 0..n {
        let (h, j) = tokio::task::block_in_place(|| {
            join_child(relay, &host, port, session, link.is_some())
        })?;
        eprintln!(
            "  join {}/{n}{}: handshake {h:.1} ms, join {j:.1} ms",
            i + 1,
            link.map(|l| format!(" (link, {l} % loss)"))
                .unwrap_or_default()
        );
        hs.push(h);
        js.push(j);
        // The master batches joins within a second of the last key change.
        tokio::time::sleep(Duration::from_millis(1_200)).await;
    }
    if let Some(f) = forwarder {
        f.abort();
    }
    running.handle.send(AppCommand::Leave).await;
    let h = percentile(&mut hs, 0.5);
    Ok((
        h,
        percentile(&mut js.clone(), 0.5),
        percentile(&mut js, 0.95),
    ))
}

/// Events of many participants, tagged with their index.
fn fan_in(
    list: Vec<Running>,
) -> (
    Vec<conclave_client::session::SessionHandle>,
    mpsc::UnboundedReceiver<(usize, Event)>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut handles = Vec::new();
    for (i, mut r) in list.into_iter().enumerate() {
        handles.push(r.handle.clone());
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Some(e) = r.events.recv().await {
                if tx.send((i, e)).is_err() {
                    break;
                }
            }
        });
    }
    (handles, rx)
}

/// Waits until `count` distinct participants produced an event that `pick` accepts.
async fn until_all(
    rx: &mut mpsc::UnboundedReceiver<(usize, Event)>,
    count: usize,
    pick: impl Fn(&Event) -> bool,
) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    tokio::time::timeout(STEP, async {
        while seen.len() < count {
            match rx.recv().await {
                Some((i, e)) if pick(&e) => {
                    seen.insert(i);
                }
                Some(_) => {}
                None => bail!("participants gone"),
            }
        }
        Ok(())
    })
    .await
    .map_err(|_| anyhow!("timed out with {} of {count}", seen.len()))?
}

/// Rekey after a removal with `n` participants; (chat ms, rekey ms) medians.
async fn rekey(relay: &RelayProc, n: usize, rounds: usize) -> Result<(f64, f64)> {
    let relays = vec![entry("r", relay.key, "127.0.0.1", relay.quic, relay.tls)];
    let (session, mut m) = master(relays.clone()).await?;
    let mut list = Vec::new();
    for i in 0..n {
        let options = JoinOptions {
            session,
            password: Some(Zeroizing::new(PASSWORD.into())),
            name: format!("p{i}"),
            who: who(),
            attempts: Attempts::default(),
            media: Default::default(),
        };
        list.push(join(build(Role::Participant, relays.clone()), options).await?);
    }
    let (handles, mut rx) = fan_in(list);
    until_all(&mut rx, n, |e| matches!(e, Event::Admitted { .. })).await?;
    // Let the batched key changes settle.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    while rx.try_recv().is_ok() {}
    let (mut chats, mut rekeys) = (Vec::new(), Vec::new());
    let mut left = n;
    for round in 0..rounds {
        let text = format!("line {round}");
        let t = Instant::now();
        m.handle.send(AppCommand::Chat(text.clone())).await;
        until_all(
            &mut rx,
            left,
            |e| matches!(e, Event::Chat { text: t2, .. } if *t2 == text),
        )
        .await?;
        chats.push(t.elapsed().as_secs_f64() * 1e3);

        let victim = PeerId(u32::try_from(round).unwrap_or(0) + PeerId::FIRST_PARTICIPANT.0);
        let t = Instant::now();
        m.handle.send(AppCommand::Remove(victim)).await;
        left -= 1;
        until_all(&mut rx, left, |e| {
            matches!(e, Event::Epoch { members, .. } if members.iter().all(|x| x.peer != victim.0))
        })
        .await?;
        rekeys.push(t.elapsed().as_secs_f64() * 1e3);
        tokio::time::sleep(Duration::from_millis(1_200)).await;
        while rx.try_recv().is_ok() {}
    }
    for h in &handles {
        h.send(AppCommand::Leave).await;
    }
    m.handle.send(AppCommand::Leave).await;
    let _ = wait_for(&mut m, |e| matches!(e, Event::Ended { .. }).then_some(())).await;
    Ok((percentile(&mut chats, 0.5), percentile(&mut rekeys, 0.5)))
}

/// One failover; (kill → fresh epoch at the participant, reported gap) in ms.
async fn failover(tls_only: bool) -> Result<(f64, f64, f64)> {
    let mut a = RelayProc::start("A", tls_only)?;
    let mut b = RelayProc::start("B", tls_only)?;
    let q = |r: &RelayProc| if tls_only { 0 } else { r.quic };
    let relays = vec![
        entry("A", a.key, "127.0.0.1", q(&a), a.tls),
        entry("B", b.key, "127.0.0.1", q(&b), b.tls),
    ];
    // Baseline: a fresh connection and stage 1, to the relay that stays.
    let t = Instant::now();
    let stays = relays.get(1).context("two relays")?;
    let link = open(
        stays,
        &build(Role::Participant, relays.clone()),
        &who(),
        &Attempts::default(),
        None,
        &[],
    )
    .await?;
    let reconnect = t.elapsed().as_secs_f64() * 1e3;
    link.conn.close();

    let (session, mut m) = master(relays.clone()).await?;
    let options = JoinOptions {
        session,
        password: Some(Zeroizing::new(PASSWORD.into())),
        name: "p".into(),
        who: who(),
        attempts: Attempts::default(),
        media: Default::default(),
    };
    let mut p = join(build(Role::Participant, relays.clone()), options).await?;
    let relay = wait_for(&mut p, |e| match e {
        Event::Connected { relay, .. } => Some(relay.clone()),
        _ => None,
    })
    .await?;
    let epoch = wait_for(&mut p, |e| match e {
        Event::Epoch { epoch, .. } => Some(*epoch),
        _ => None,
    })
    .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t = Instant::now();
    if relay == "A" {
        a.kill();
    } else {
        b.kill();
    }
    let gap = wait_for(&mut p, |e| match e {
        Event::Resumed { gap_ms, .. } => Some(*gap_ms),
        _ => None,
    })
    .await?;
    wait_for(&mut p, |e| {
        matches!(e, Event::Epoch { epoch: n, .. } if *n > epoch).then_some(())
    })
    .await?;
    let back = t.elapsed().as_secs_f64() * 1e3;
    p.handle.send(AppCommand::Leave).await;
    m.handle.send(AppCommand::Leave).await;
    let _ = wait_for(&mut m, |e| matches!(e, Event::Ended { .. }).then_some(())).await;
    Ok((reconnect, back, gap as f64))
}

async fn run(args: &Args) -> Result<Vec<Row>> {
    let (n_joins, n_members, n_failovers) = if args.quick { (6, 20, 2) } else { (20, 100, 3) };
    let mut rows = Vec::new();
    let relay = RelayProc::start("R", false)?;

    eprintln!("join on loopback");
    let (h, p50, p95) = joins(&relay, n_joins, None).await?;
    let (local_handshake, local_join) = (h, p50);
    rows.push(Row {
        what: format!("join, loopback (QUIC; p50 / p95 of {n_joins})"),
        baseline: format!("{h:.1} ms"),
        figure: format!("{p50:.1} / {p95:.1} ms"),
        target: String::new(),
    });

    if !args.no_link {
        let ns = Netns::make()?;
        for loss in [0, 1] {
            eprintln!("join across the emulated link, {loss} % loss");
            let (h, p50, p95) = joins(&relay, n_joins, Some(loss)).await?;
            // The link's own round trip is the handshake's time over it
            // less its time on loopback (the crypto); the join's round
            // trips are its extra time over the link in those units.
            let rtt = h - local_handshake;
            let trips = |t: f64| (t - local_join) / rtt;
            rows.push(Row {
                what: format!(
                    "join, 50 ms RTT, {loss} % loss each way (QUIC; p50 / p95 of {n_joins})"
                ),
                baseline: format!("{h:.1} ms"),
                figure: format!(
                    "{p50:.1} / {p95:.1} ms = {:.2} / {:.2} round trips of {rtt:.1} ms",
                    trips(p50),
                    trips(p95)
                ),
                target: "≤ 4 round trips".into(),
            });
        }
        drop(ns);
    }

    eprintln!("rekey with {n_members} participants");
    let (chat, rk) = rekey(&relay, n_members, 3).await?;
    rows.push(Row {
        what: format!("rekey after a removal, {n_members} participants: until all hold the new key (median of 3)"),
        baseline: format!("{chat:.1} ms (one chat line to all)"),
        figure: format!("{rk:.1} ms"),
        target: String::new(),
    });

    for tls_only in [false, true] {
        let label = if tls_only { "TLS" } else { "QUIC" };
        let (mut base, mut back, mut gap) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..n_failovers {
            eprintln!("failover over {label} {}/{n_failovers}", i + 1);
            let (r, k, g) = failover(tls_only).await?;
            eprintln!(
                "  reconnect {r:.1} ms, kill → fresh epoch {k:.0} ms, reported gap {g:.0} ms"
            );
            base.push(r);
            back.push(k);
            gap.push(g);
        }
        rows.push(Row {
            what: format!("failover gap over {label}: relay killed → fresh epoch / reported gap (median of {n_failovers}, worst)"),
            baseline: format!("{:.1} ms (connect + stage 1)", percentile(&mut base, 0.5)),
            figure: format!(
                "{:.0} / {:.0} ms, worst {:.0} ms",
                percentile(&mut back.clone(), 0.5),
                percentile(&mut gap, 0.5),
                percentile(&mut back, 1.0)
            ),
            target: "< 3 s".into(),
        });
    }
    Ok(rows)
}

fn main() -> Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    match args.role.as_deref() {
        Some("relay") => {
            let name = args.host.clone().unwrap_or_default();
            return rt.block_on(run_relay(name, args.tls_only));
        }
        Some("join") => return rt.block_on(run_join(&args)),
        Some(other) => bail!("unknown role {other}"),
        None => {}
    }
    let rows = rt.block_on(run(&args))?;
    println!("| measurement | baseline (same run) | Conclave | target |");
    println!("|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {} | {} | {} |",
            r.what, r.baseline, r.figure, r.target
        );
    }
    // Child processes and the namespace are gone by now; do not wait for
    // the runtime's idle threads.
    std::process::exit(0)
}
