//! Glass to glass: a scripted 1920×1080 workload drawn on a real X display
//! (Xvfb) → captured by the participant (MIT-SHM) → encoded → sealed → a
//! relay on loopback (QUIC) → opened → decoded at the master. Prints a table
//! with the tile codec (as shipped: video regions as H.264) next to the
//! naive baseline measured in the same run: the same pipeline sending every
//! whole frame compressed with zstd. For the video workload it also measures
//! the tile codec lossless everywhere (video regions off).
//!
//! ```text
//! cargo run --release -p conclave-benches --bin screen_table [-- --seconds 10]
//! cargo run --release -p conclave-benches --bin screen_table -- --uplink-kbit 5000   # as root
//! ```
//!
//! With `--uplink-kbit N` the relay runs in a network namespace of its own
//! (a child process), reached over a veth pair whose egress on this side
//! (what the participant and the master send) is shaped by the kernel's
//! token bucket filter to N kbit/s with at most 100 ms of queue: a slow
//! uplink on the customer's side, where the frame rate and the video's
//! bitrate must follow the link. The namespace and the pair are removed
//! afterwards. CPU is then this process's without the relay.
//!
//! - A child process (this binary, `--draw`) animates the synthetic
//!   workload (`conclave_media::synthetic`) at 60 frames a second, putting
//!   only the changed rectangles on the display, and prints when each frame
//!   was on the display (after a round trip to the server). Every frame
//!   carries its number in a marker of black and white blocks.
//! - The master's viewer reads the marker of every frame it shows. The
//!   latency of drawn frame *n* is from its drawing to the first frame shown
//!   whose marker is *n* or later (a frame the pipeline skipped, latest
//!   frame winning, is seen with a later one). Clocks: both processes read
//!   the same system clock.
//! - Frames per second: distinct frames shown at the master per second.
//!   Bytes: screen bytes received by the master per second, and per frame
//!   shown; the comparison with the baseline is per frame, since the
//!   baseline cannot keep the frame rate (its bytes per second are capped
//!   by the frames it manages). CPU per frame:
//!   this process (participant, relay and master, with every thread) per
//!   frame shown, from `/proc/self/stat`; the X server's own CPU (drawing
//!   and capture requests) in its own column. Drawing costs are the
//!   drawer's and not counted.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command as Process, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use conclave_client::collab::MediaOptions;
use conclave_client::connect::{Attempts, Who};
use conclave_client::events::Event;
use conclave_client::screen::{unix_micros, FrameSink, ShareOptions, SourceSpec};
use conclave_client::session::{join, start_master, JoinOptions, MasterOptions, Running};
use conclave_desktop::xvfb::Xvfb;
use conclave_media::stream::Codec;
use conclave_media::synthetic::read_marker;
use conclave_media::{Frame, Rect, ScreenSize, SyntheticScreen, Workload};
use conclave_protocol::artefact::{RelayEntry, Role};
use conclave_protocol::fixtures;
use conclave_protocol::sign::PublicKey;
use conclave_protocol::stage1::SessionKind;
use conclave_relay::config::Settings;
use conclave_relay::Relay;
use x11rb::connection::Connection;
use x11rb::protocol::xproto::{ConnectionExt as _, CreateGCAux, ImageFormat};
use zeroize::Zeroizing;

const WIDTH: u32 = 1920;
const HEIGHT: u32 = 1080;
const DRAW_FPS: u32 = 60;
const PASSWORD: &str = "glass-horse-42";

#[derive(Debug, Parser)]
struct Args {
    /// Seconds measured per workload and codec.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Seconds before measuring: the first (key)frame and, for a playing
    /// video, finding its region (14 frames sent lossless) take this long
    /// on a slow uplink.
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// Only these workloads (typing, scrolling, dragging, video).
    #[arg(long, value_delimiter = ',')]
    workloads: Vec<String>,
    /// Only the tile codec as shipped, without the baseline or the
    /// lossless run (for profiling).
    #[arg(long)]
    tiles_only: bool,
    /// Send through an uplink shaped to this many kbit/s (needs root: a
    /// network namespace, a veth pair and tc).
    #[arg(long)]
    uplink_kbit: Option<u32>,
    /// Internal: run a relay on ADDR and print its ports and key.
    #[arg(long, value_name = "ADDR")]
    relay_at: Option<String>,
    /// Internal: draw WORKLOAD on DISPLAY and print frame times.
    #[arg(long, num_args = 2, value_names = ["DISPLAY", "WORKLOAD"])]
    draw: Option<Vec<String>>,
}

fn workload(name: &str) -> Result<Workload> {
    Workload::ALL
        .into_iter()
        .find(|w| w.name() == name)
        .with_context(|| format!("unknown workload {name}"))
}

/// The drawer: puts each frame's changed rectangles on the display, in
/// requests of at most 256 KiB, and prints "frame unix-µs" once the server
/// has them.
fn draw(display: &str, workload: Workload) -> Result<()> {
    let (conn, screen) = x11rb::connect(Some(display))?;
    let root = conn.setup().roots[screen].root;
    let gc = conn.generate_id()?;
    conn.create_gc(gc, root, &CreateGCAux::new())?;
    let mut source = SyntheticScreen::new(workload, ScreenSize::new(WIDTH, HEIGHT)?);
    let period = Duration::from_secs(1) / DRAW_FPS;
    let mut next = Instant::now();
    let mut out = std::io::stdout().lock();
    loop {
        source.next_frame();
        let number = source.frame_number().unwrap_or(0);
        for rect in source.changed() {
            put(&conn, root, gc, source.frame(), *rect)?;
        }
        conn.get_input_focus()?.reply()?;
        writeln!(out, "{number} {}", unix_micros())?;
        out.flush()?;
        next += period;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        } else {
            next = now;
        }
    }
}

fn put(conn: &impl Connection, root: u32, gc: u32, frame: &Frame, rect: Rect) -> Result<()> {
    let rows_per = ((256 * 1024) / (rect.width as usize * 4)).max(1) as u32;
    let mut y = rect.y;
    while y < rect.bottom() {
        let h = rows_per.min(rect.bottom() - y);
        let strip = Rect::new(rect.x, y, rect.width, h);
        let bytes = frame.read_rect(strip).context("rectangle off the screen")?;
        conn.put_image(
            ImageFormat::Z_PIXMAP,
            root,
            gc,
            strip.width as u16,
            h as u16,
            strip.x as i16,
            y as i16,
            0,
            24,
            &bytes,
        )?;
        y += h;
    }
    Ok(())
}

/// CPU seconds (user + system) of a process, from /proc.
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which is in parentheses).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 here.
    (ticks(11) + ticks(12)) / 100.0
}

/// Frames the master showed: (marker, unix µs).
#[derive(Clone, Default)]
struct Probe(Arc<Mutex<Vec<(u32, u64)>>>);

impl FrameSink for Probe {
    fn show(&mut self, frame: &Frame, _captured_us: u64) {
        if let Some(n) = read_marker(frame) {
            let now = unix_micros();
            let mut shown = self.0.lock().unwrap();
            if shown.last().is_none_or(|(last, _)| *last != n) {
                shown.push((n, now));
            }
        }
    }
}

struct Measured {
    fps: f64,
    bytes_per_s: f64,
    cpu_ms_per_frame: f64,
    x_cpu_ms_per_frame: f64,
    p50: f64,
    p95: f64,
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let i = ((v.len() - 1) as f64 * p).round() as usize;
    v[i.min(v.len() - 1)]
}

async fn next(r: &mut Running, pick: impl Fn(&Event) -> bool) -> Result<Event> {
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let e = r.events.recv().await.context("events ended")?;
            if pick(&e) {
                return Ok(e);
            }
        }
    })
    .await
    .context("timed out")?
}

/// What one row sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    /// Whole frames, zstd.
    Baseline,
    /// The tile codec with video regions off.
    Lossless,
    /// The tile codec as shipped: video regions as H.264.
    Tiles,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::Baseline => "baseline: whole frames, zstd",
            Variant::Lossless => "Conclave tiles, lossless",
            Variant::Tiles => "Conclave tiles + H.264 video",
        }
    }

    fn codec(self) -> Codec {
        match self {
            Variant::Baseline => Codec::WholeFrame,
            Variant::Lossless | Variant::Tiles => Codec::Tiles,
        }
    }
}

/// Settings for a relay on `host` trusting the fixtures' portal.
fn relay_settings(host: &str) -> Settings {
    Settings {
        quic: Some(format!("{host}:0")),
        tls: Some(format!("{host}:0")),
        websocket: Some("off".into()),
        admin: Some("off".into()),
        portal_keys: Some(vec![hex::encode(fixtures::identity(1).public_key().0)]),
        ..Settings::default()
    }
}

/// `relay` as the builds' list names it, on `host`.
fn relay_entry(relay: &Relay, host: &str) -> Result<RelayEntry> {
    let mut e = fixtures::relay_entry(&fixtures::identity(0));
    e.host = fixtures::s(host);
    e.public_key = relay.public_key;
    e.quic_port = relay.quic.context("quic")?.port();
    e.tls_port = relay.tls.context("tls")?.port();
    e.websocket_port = 0;
    Ok(e)
}

/// The relay of `--uplink-kbit`: started in its namespace, it prints its
/// QUIC port, TLS port and key (hex) and runs until its input ends.
fn serve_relay(host: &str) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let relay = Relay::start(relay_settings(host).resolve(true)?).await?;
        let e = relay_entry(&relay, host)?;
        println!(
            "{} {} {}",
            e.quic_port,
            e.tls_port,
            hex::encode(e.public_key.0)
        );
        tokio::task::spawn_blocking(|| std::io::copy(&mut std::io::stdin(), &mut std::io::sink()))
            .await??;
        relay.shutdown(Duration::ZERO).await;
        Ok(())
    })
}

/// The network namespace and veth pair of `--uplink-kbit`.
const NETNS: &str = "conclave-bench";
const LINK_HERE: &str = "cvbench0";
const LINK_THERE: &str = "cvbench1";
const RELAY_HOST: &str = "10.88.0.2";

/// A shaped uplink to a relay in its own namespace; removed when dropped.
struct Uplink {
    relay: Child,
    entry: RelayEntry,
}

fn run(program: &str, args: &[&str]) -> Result<()> {
    let status = Process::new(program).args(args).status()?;
    if !status.success() {
        bail!("{program} {} failed", args.join(" "));
    }
    Ok(())
}

fn remove_link() {
    for args in [["netns", "del", NETNS], ["link", "del", LINK_HERE]] {
        let _ = Process::new("ip").args(args).stderr(Stdio::null()).status();
    }
}

impl Uplink {
    fn start(kbit: u32) -> Result<Self> {
        remove_link();
        run("ip", &["netns", "add", NETNS])?;
        run(
            "ip",
            &[
                "link", "add", LINK_HERE, "type", "veth", "peer", "name", LINK_THERE,
            ],
        )?;
        run("ip", &["link", "set", LINK_THERE, "netns", NETNS])?;
        run("ip", &["addr", "add", "10.88.0.1/24", "dev", LINK_HERE])?;
        run("ip", &["link", "set", LINK_HERE, "up"])?;
        let there = format!("{RELAY_HOST}/24");
        run(
            "ip",
            &["-n", NETNS, "addr", "add", &there, "dev", LINK_THERE],
        )?;
        run("ip", &["-n", NETNS, "link", "set", LINK_THERE, "up"])?;
        run("ip", &["-n", NETNS, "link", "set", "lo", "up"])?;
        let rate = format!("{kbit}kbit");
        run(
            "tc",
            &[
                "qdisc", "add", "dev", LINK_HERE, "root", "tbf", "rate", &rate, "burst", "32kb",
                "latency", "100ms",
            ],
        )?;
        let exe = std::env::current_exe()?;
        let mut relay = Process::new("ip")
            .args(["netns", "exec", NETNS])
            .arg(exe)
            .args(["--relay-at", RELAY_HOST])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let mut line = String::new();
        BufReader::new(relay.stdout.take().context("relay output")?).read_line(&mut line)?;
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [quic, tls, key] = fields[..] else {
            bail!("the relay said {line:?}");
        };
        let mut entry = fixtures::relay_entry(&fixtures::identity(0));
        entry.host = fixtures::s(RELAY_HOST);
        entry.quic_port = quic.parse()?;
        entry.tls_port = tls.parse()?;
        entry.websocket_port = 0;
        entry.public_key = PublicKey(
            hex::decode(key)?
                .try_into()
                .map_err(|_| anyhow::anyhow!("a relay key of the wrong length"))?,
        );
        Ok(Uplink { relay, entry })
    }
}

impl Drop for Uplink {
    fn drop(&mut self) {
        drop(self.relay.stdin.take());
        let _ = self.relay.wait();
        remove_link();
    }
}

async fn measure(
    relays: &[RelayEntry],
    x: &Xvfb,
    workload: Workload,
    variant: Variant,
    (warmup, seconds): (u64, u64),
) -> Result<Measured> {
    let relays: Vec<RelayEntry> = relays.to_vec();
    let who = || Who {
        os_user: fixtures::s("bench"),
        host: fixtures::s("bench"),
    };
    let probe = Probe::default();
    let mut m = start_master(
        fixtures::verified_build(Role::Master, relays.clone(), |_| {}),
        MasterOptions {
            kind: SessionKind::Support,
            moderator: "Agent".into(),
            password: Some(Zeroizing::new(PASSWORD.into())),
            who: who(),
            attempts: Attempts::default(),
            media: MediaOptions {
                share: None,
                sink: Some(Box::new(probe.clone())),
                ..MediaOptions::default()
            },
        },
    )
    .await?;
    next(&mut m, |e| matches!(e, Event::SessionOpened { .. })).await?;
    let mut share = ShareOptions::new(SourceSpec::X11 {
        display: Some(x.display.clone()),
        monitor: None,
    });
    share.codec = variant.codec();
    share.video = variant != Variant::Lossless;
    let mut p = join(
        fixtures::verified_build(Role::Participant, relays, |_| {}),
        JoinOptions {
            session: m.handle.session,
            password: Some(Zeroizing::new(PASSWORD.into())),
            name: "Customer".into(),
            who: who(),
            attempts: Attempts::default(),
            media: MediaOptions {
                share: Some(share),
                ..MediaOptions::default()
            },
        },
    )
    .await?;
    next(&mut p, |e| matches!(e, Event::Sharing { active: true, .. })).await?;
    // Drain both event streams; keep the master's screen figures.
    let bytes: Arc<Mutex<Vec<(Instant, u64)>>> = Arc::default();
    let b = Arc::clone(&bytes);
    let master_events = tokio::spawn(async move {
        while let Some(e) = m.events.recv().await {
            if let Event::ScreenStats { bytes_per_s, .. } = e {
                b.lock().unwrap().push((Instant::now(), bytes_per_s));
            }
        }
        m.handle
    });
    let participant_events = tokio::spawn(async move {
        while let Some(e) = p.events.recv().await {
            // A session that loses its relay or ends measures nothing.
            if matches!(
                e,
                Event::RelayLost { .. } | Event::Resumed { .. } | Event::Ended { .. }
            ) {
                eprintln!("  participant: {}", conclave_client::cli::describe(&e));
            }
        }
    });

    let exe = std::env::current_exe()?;
    let mut drawer: Child = Process::new(exe)
        .args(["--draw", &x.display, workload.name()])
        .stdout(Stdio::piped())
        .spawn()?;
    let drawn: Arc<Mutex<BTreeMap<u32, u64>>> = Arc::default();
    let d = Arc::clone(&drawn);
    let stdout = drawer.stdout.take().context("drawer output")?;
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some((n, t)) = line.split_once(' ') {
                if let (Ok(n), Ok(t)) = (n.parse(), t.parse()) {
                    d.lock().unwrap().insert(n, t);
                }
            }
        }
    });

    tokio::time::sleep(Duration::from_secs(warmup)).await;
    let me = std::process::id().to_string();
    let xpid = x.pid().to_string();
    let (cpu0, xcpu0, t0, u0) = (
        cpu_seconds(&me),
        cpu_seconds(&xpid),
        Instant::now(),
        unix_micros(),
    );
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let (cpu1, xcpu1, elapsed, u1) = (
        cpu_seconds(&me),
        cpu_seconds(&xpid),
        t0.elapsed().as_secs_f64(),
        unix_micros(),
    );
    let _ = drawer.kill();
    let _ = drawer.wait();

    let shown: Vec<(u32, u64)> = probe.0.lock().unwrap().clone();
    let in_window: Vec<&(u32, u64)> = shown.iter().filter(|(_, t)| (u0..u1).contains(t)).collect();
    let frames = in_window.len() as f64;
    let drawn = drawn.lock().unwrap().clone();
    // Each frame drawn in the window: until the first shown frame with a
    // marker at least its number.
    let mut latencies = Vec::new();
    for (&n, &t) in drawn.range(..).filter(|(_, t)| (u0..u1).contains(*t)) {
        if let Some((_, seen)) = shown.iter().find(|(m, s)| *m >= n && *s >= t) {
            latencies.push((seen - t) as f64 / 1000.0);
        }
    }
    let rates: Vec<u64> = bytes
        .lock()
        .unwrap()
        .iter()
        .filter(|(at, _)| *at >= t0 + Duration::from_secs(1))
        .map(|(_, b)| *b)
        .collect();
    let bytes_per_s = if rates.is_empty() {
        0.0
    } else {
        rates.iter().sum::<u64>() as f64 / rates.len() as f64
    };
    // Dropping the runtimes' handles ends both sessions.
    participant_events.abort();
    master_events.abort();
    let _ = master_events.await;
    if frames == 0.0 {
        bail!("no frame arrived at the master");
    }
    Ok(Measured {
        fps: frames / elapsed,
        bytes_per_s,
        cpu_ms_per_frame: (cpu1 - cpu0) * 1000.0 / frames,
        x_cpu_ms_per_frame: (xcpu1 - xcpu0) * 1000.0 / frames,
        p50: percentile(&mut latencies.clone(), 0.5),
        p95: percentile(&mut latencies, 0.95),
    })
}

fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(d) = &args.draw {
        let (Some(display), Some(name)) = (d.first(), d.get(1)) else {
            bail!("--draw DISPLAY WORKLOAD");
        };
        return draw(display, workload(name)?);
    }
    if let Some(host) = &args.relay_at {
        return serve_relay(host);
    }
    let workloads: Vec<Workload> = if args.workloads.is_empty() {
        Workload::ALL.to_vec()
    } else {
        args.workloads
            .iter()
            .map(|w| workload(w))
            .collect::<Result<_>>()?
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let x = Xvfb::start(WIDTH as u16, HEIGHT as u16)?;
    // The relay on loopback in this process, or behind a shaped uplink.
    let uplink = args.uplink_kbit.map(Uplink::start).transpose()?;
    let local = match &uplink {
        Some(_) => None,
        None => Some(rt.block_on(async {
            Relay::start(relay_settings("127.0.0.1").resolve(true)?)
                .await
                .map_err(anyhow::Error::from)
        })?),
    };
    let relays = match (&uplink, &local) {
        (Some(u), _) => vec![u.entry.clone()],
        (None, Some(r)) => vec![relay_entry(r, "127.0.0.1")?],
        (None, None) => bail!("no relay"),
    };
    let mut rows = Vec::new();
    for w in workloads {
        let mut measured = Vec::new();
        for variant in [Variant::Baseline, Variant::Lossless, Variant::Tiles] {
            if args.tiles_only && variant != Variant::Tiles {
                continue;
            }
            // Without a video region lossless is what the codec sends anyway.
            if variant == Variant::Lossless && w != Workload::Video {
                continue;
            }
            eprintln!("{} with {}", w.name(), variant.name());
            let m = rt.block_on(measure(
                &relays,
                &x,
                w,
                variant,
                (args.warmup, args.seconds),
            ))?;
            eprintln!(
                "  {:.1} fps, {:.0} KB/s, {:.1} ms CPU/frame (+{:.1} X), latency p50 {:.1} p95 {:.1} ms",
                m.fps,
                m.bytes_per_s / 1000.0,
                m.cpu_ms_per_frame,
                m.x_cpu_ms_per_frame,
                m.p50,
                m.p95
            );
            measured.push((variant, m));
        }
        rows.push((w, measured));
    }
    if let Some(kbit) = args.uplink_kbit {
        println!(
            "Uplink shaped to {kbit} kbit/s (tc tbf, 100 ms of queue), {} s of warm-up; CPU without the relay.\n",
            args.warmup
        );
    }
    println!(
        "| workload, 1920×1080 | codec | frames/s | KB/s | KB/frame (vs baseline) | CPU ms/frame (X server) | glass-to-glass p50 / p95 |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (w, measured) in rows {
        let per_frame = |m: &Measured| m.bytes_per_s / m.fps.max(0.001);
        let Some(base) = measured
            .iter()
            .find(|(v, _)| *v == Variant::Baseline)
            .map(|(_, m)| per_frame(m).max(1.0))
        else {
            continue;
        };
        for (variant, m) in &measured {
            println!(
                "| {} | {} | {:.1} | {:.0} | {:.1} ({:.1} %) | {:.1} ({:.1}) | {:.1} / {:.1} ms |",
                w.name(),
                variant.name(),
                m.fps,
                m.bytes_per_s / 1000.0,
                per_frame(m) / 1000.0,
                100.0 * per_frame(m) / base,
                m.cpu_ms_per_frame,
                m.x_cpu_ms_per_frame,
                m.p50,
                m.p95
            );
        }
    }
    Ok(())
}
