//! Prints the benchmark table for the README, as Markdown:
//! `cargo run --release -p conclave-benches --bin protocol_table`.
//!
//! It times the same workloads as the criterion benches (`aead`, `frame`,
//! `stage2`) with `std::time::Instant`: each measurement is five runs of a
//! calibrated number of iterations (about 100 ms a run, at least one
//! iteration), and the table shows the median run's time per iteration. The
//! two sides of every ratio are measured alternately in the same process, so
//! the ratio holds even when the machine is shared.

use std::hint::black_box;
use std::time::{Duration, Instant};

use conclave_benches::{
    join, master_with_members, new_master, portal_keys, rekey, AesGcmSeal, BareAead, FramePath,
    RingSeal, CREATED, JOIN_AT, KIB, PASSWORD,
};
use conclave_protocol::fixtures;
use conclave_protocol::frame::PeerId;

const RUNS: usize = 5;
const RUN_TARGET: Duration = Duration::from_millis(100);

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Nanoseconds per call of `f` over `iters` calls.
fn time<R>(iters: u64, f: &mut impl FnMut() -> R) -> f64 {
    let start = Instant::now();
    for _ in 0..iters {
        black_box(f());
    }
    start.elapsed().as_nanos() as f64 / iters as f64
}

/// Iterations of `f` that take about [`RUN_TARGET`], after a warm-up.
fn calibrate<R>(f: &mut impl FnMut() -> R) -> u64 {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < RUN_TARGET / 2 {
        black_box(f());
        n += 1;
    }
    let per = start.elapsed().as_nanos() as f64 / n as f64;
    ((RUN_TARGET.as_nanos() as f64 / per) as u64).max(1)
}

/// Median nanoseconds per call of `a` and of `b`, timed in alternating runs.
fn pair<A, B>(mut a: impl FnMut() -> A, mut b: impl FnMut() -> B) -> (f64, f64) {
    let (na, nb) = (calibrate(&mut a), calibrate(&mut b));
    let (mut ta, mut tb) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        ta.push(time(na, &mut a));
        tb.push(time(nb, &mut b));
    }
    (median(ta), median(tb))
}

/// Median nanoseconds per call of `f`.
fn single<R>(mut f: impl FnMut() -> R) -> f64 {
    let n = calibrate(&mut f);
    median((0..RUNS).map(|_| time(n, &mut f)).collect())
}

/// Median nanoseconds per complete join, each with a master built untimed.
fn join_ns(password: Option<&str>, joins_per_run: u64) -> f64 {
    let keys = portal_keys();
    let mut rng = fixtures::rng(100);
    let mut seed = 0;
    let mut runs = Vec::new();
    for run in 0..=RUNS {
        let mut masters: Vec<_> = (0..joins_per_run)
            .map(|_| {
                seed += 1;
                new_master(password, seed)
            })
            .collect();
        let start = Instant::now();
        for master in &mut masters {
            let p = join(master, PeerId(2), password, keys.clone(), &mut rng, JOIN_AT);
            assert!(p.is_member(), "join completes");
            black_box(p);
        }
        let per = start.elapsed().as_nanos() as f64 / joins_per_run as f64;
        // Run 0 is the warm-up.
        if run > 0 {
            runs.push(per);
        }
    }
    median(runs)
}

fn cpu_model() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = info
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown CPU", |(_, m)| m.trim())
        .to_string();
    let threads = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{model}, {threads} logical CPUs")
}

fn main() {
    let mut frame_rows = Vec::new();
    for (label, len) in [("1 KiB", KIB), ("64 KiB", 64 * KIB)] {
        let mut bare = BareAead::new(len);
        let mut path = FramePath::new(len);
        let (b, c) = pair(|| bare.seal_open(), || path.seal_open());
        frame_rows.push(format!(
            "| {label} frame seal+open | {b:.0} | {c:.0} | {:.2}× |",
            c / b
        ));
    }

    let len = 64 * KIB;
    let mut ring = RingSeal::new(len);
    let mut rc = AesGcmSeal::new(len);
    let (r, a) = pair(|| ring.seal(), || rc.seal());
    let (r_gbs, a_gbs) = (len as f64 / r, len as f64 / a);

    let join_plain = join_ns(None, 100);
    let join_password = join_ns(Some(PASSWORD), 100);

    let mut rekey_rows = Vec::new();
    for n in [10, 100, 1000] {
        let start = Instant::now();
        let mut master = master_with_members(n);
        let built = start.elapsed();
        let mut now = CREATED;
        let ns = single(|| {
            now = now.plus(1);
            rekey(&mut master, now)
        });
        rekey_rows.push(format!(
            "| rekey, {n} members | {:.2} ms | master only; setup: {n} real joins in {:.0} ms, untimed |",
            ns / 1e6,
            built.as_secs_f64() * 1e3
        ));
    }

    println!("Measured on {}; median of {RUNS} runs.", cpu_model());
    println!();
    println!("| frame path | bare AES-256-GCM (ns) | Conclave frame (ns) | ratio |");
    println!("|---|---:|---:|---:|");
    for row in &frame_rows {
        println!("{row}");
    }
    println!();
    println!("| AES-256-GCM seal, 64 KiB | ring (GB/s) | aes-gcm (GB/s) | ratio |");
    println!("|---|---:|---:|---:|");
    println!(
        "| ring vs aes-gcm seal, 64 KiB | {r_gbs:.2} | {a_gbs:.2} | {:.2}× |",
        r_gbs / a_gbs
    );
    println!();
    println!("| stage 2 (in memory, no network) | time | note |");
    println!("|---|---:|---|");
    println!(
        "| join, no password | {:.0} µs CPU | master + participant together |",
        join_plain / 1e3
    );
    println!(
        "| join, password | {:.0} µs CPU | master + participant together, SPAKE2 |",
        join_password / 1e3
    );
    for row in &rekey_rows {
        println!("{row}");
    }
}
