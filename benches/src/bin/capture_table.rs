//! Prints the screen-capture table for the README, as Markdown:
//! `cargo run --release -p conclave-benches --bin capture_table` (needs
//! Xvfb; about 15 seconds).
//!
//! A 1920×1080 Xvfb started here, with a screen full of rectangles; the
//! capture adapter (`conclave_desktop::capture::X11Capture`) through MIT-SHM,
//! next to the baseline measured in the same run, the same adapter through
//! plain `GetImage` (the pixels carried through the X socket). Rounds of one
//! second alternate between the two, five each; the figure is the median
//! round. CPU is this process's alone (`/proc/self/stat`); the X server's
//! share of the work is not in it.

use std::time::{Duration, Instant};

use anyhow::Result;
use conclave_desktop::capture::X11Capture;
use conclave_desktop::xvfb::Xvfb;
use x11rb::connection::Connection;
use x11rb::protocol::xproto::{ChangeGCAux, ConnectionExt as _, CreateGCAux, Rectangle};

const ROUND: Duration = Duration::from_secs(1);
const ROUNDS: usize = 5;

/// This process's CPU time so far, from /proc/self/stat (user + system).
fn cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or_default();
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i).and_then(|f| f.parse::<u64>().ok()))
        .sum();
    Duration::from_millis(ticks * 10)
}

/// Fills the screen with rectangles of many colours.
fn paint(display: &str) -> Result<()> {
    let (conn, screen) = x11rb::connect(Some(display))?;
    let root = conn
        .setup()
        .roots
        .get(screen)
        .map(|s| s.root)
        .ok_or_else(|| anyhow::anyhow!("no screen"))?;
    let gc = conn.generate_id()?;
    conn.create_gc(gc, root, &CreateGCAux::new())?;
    for i in 0..2_000u32 {
        let color = i.wrapping_mul(2_654_435_761) & 0x00ff_ffff;
        conn.change_gc(gc, &ChangeGCAux::new().foreground(color))?;
        let r = Rectangle {
            x: i16::try_from((i * 37) % 1900).unwrap_or(0),
            y: i16::try_from((i * 53) % 1060).unwrap_or(0),
            width: 20 + u16::try_from(i % 200).unwrap_or(0),
            height: 10 + u16::try_from(i % 100).unwrap_or(0),
        };
        conn.poly_fill_rectangle(root, gc, &[r])?;
    }
    conn.get_input_focus()?.reply()?;
    Ok(())
}

/// One round: captures and CPU time per capture.
fn round(cap: &mut X11Capture, buf: &mut Vec<u8>) -> Result<(f64, f64)> {
    let (start, cpu0) = (Instant::now(), cpu());
    let mut n = 0u32;
    while start.elapsed() < ROUND {
        cap.capture(buf)?;
        n += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu_ms = (cpu() - cpu0).as_secs_f64() * 1e3;
    Ok((f64::from(n) / secs, cpu_ms / f64::from(n.max(1))))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn main() -> Result<()> {
    let x = Xvfb::start(1920, 1080)?;
    paint(&x.display)?;
    let mut shm = X11Capture::connect(Some(&x.display))?;
    let mut plain = X11Capture::connect_without_shared_memory(Some(&x.display))?;
    anyhow::ensure!(shm.uses_shared_memory(), "Xvfb offers no MIT-SHM 1.2");
    let mut buf = Vec::new();
    for _ in 0..10 {
        shm.capture(&mut buf)?;
        plain.capture(&mut buf)?;
    }
    let (mut base, mut ours) = (Vec::new(), Vec::new());
    for i in 0..ROUNDS {
        eprintln!("round {}/{ROUNDS}", i + 1);
        base.push(round(&mut plain, &mut buf)?);
        ours.push(round(&mut shm, &mut buf)?);
    }
    let rate = |v: &[(f64, f64)]| median(v.iter().map(|r| r.0).collect());
    let ms = |v: &[(f64, f64)]| median(v.iter().map(|r| r.1).collect());
    println!(
        "| 1920×1080 capture (Xvfb) | GetImage, baseline | MIT-SHM (conclave-desktop) | ratio |"
    );
    println!("|---|---:|---:|---:|");
    println!(
        "| captures per second | {:.0} | {:.0} | {:.2}× |",
        rate(&base),
        rate(&ours),
        rate(&ours) / rate(&base)
    );
    println!(
        "| CPU ms per capture, this process | {:.2} | {:.2} | {:.2}× |",
        ms(&base),
        ms(&ours),
        ms(&ours) / ms(&base)
    );
    Ok(())
}
