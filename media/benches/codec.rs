//! The screen codec on the four synthetic workloads at 1920×1080, against a
//! naive baseline: the whole frame compressed with zstd at the same level.
//!
//! First prints a table over `MEDIA_BENCH_FRAMES` frames (300 by default)
//! after the keyframe: bytes per frame for both, their ratio, and the mean
//! encode time per frame for both (and the decoder's), timed with
//! `Instant` in the same run. Set `MEDIA_BENCH_LEVELS` (e.g. `-3,1,3,6`) to
//! print a row per zstd level, which is how `DEFAULT_LEVEL` was chosen, and
//! `MEDIA_BENCH_TABLE_ONLY=1` to stop after the tables. A second table
//! has the same with video regions on (H.264 at the default 4 Mbit/s,
//! frame `n` taken as captured at `n / 60` s): bytes per frame over all
//! frames and over those once a region is sent as H.264, in how many
//! frames there was a region, and the mean PSNR of the region against the
//! captured frame, luma and RGB (pixels outside the region are checked
//! exact; typing, scrolling and dragging must make no region). Then
//! criterion times one frame's encode, `conclave` and `baseline`, per
//! workload (the next synthetic frame is drawn outside the timed part).
//!
//! ```sh
//! cargo bench -p conclave-media --bench codec
//! MEDIA_BENCH_LEVELS=-3,1,3,6 MEDIA_BENCH_TABLE_ONLY=1 cargo bench -p conclave-media --bench codec
//! ```
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use conclave_media::codec::DEFAULT_LEVEL;
use conclave_media::video::{luma_psnr, psnr, DEFAULT_BITRATE};
use conclave_media::{
    Frame, Rect, ScreenDecoder, ScreenEncoder, ScreenSize, SyntheticScreen, Workload,
};
use criterion::{BatchSize, BenchmarkId, Criterion};

const WIDTH: u32 = 1920;
const HEIGHT: u32 = 1080;

fn screen() -> ScreenSize {
    ScreenSize::new(WIDTH, HEIGHT).unwrap()
}

/// The whole frame compressed with zstd: what the codec is measured against.
struct Baseline {
    compressor: zstd::bulk::Compressor<'static>,
    out: Vec<u8>,
}

impl Baseline {
    fn new(level: i32) -> Self {
        Self {
            compressor: zstd::bulk::Compressor::new(level).unwrap(),
            out: Vec::with_capacity(zstd::compress_bound(screen().byte_len())),
        }
    }

    fn encode(&mut self, frame: &Frame) -> usize {
        self.compressor
            .compress_to_buffer(frame.as_bytes(), &mut self.out)
            .unwrap()
    }
}

fn env_list(name: &str) -> Option<Vec<i32>> {
    let v = std::env::var(name).ok()?;
    Some(v.split(',').filter_map(|s| s.trim().parse().ok()).collect())
}

fn ms(d: Duration, n: usize) -> f64 {
    d.as_secs_f64() * 1e3 / n as f64
}

fn table() {
    let frames = env_list("MEDIA_BENCH_FRAMES")
        .and_then(|v| v.first().copied())
        .map_or(300, |n| n.max(1) as usize);
    let levels = env_list("MEDIA_BENCH_LEVELS").unwrap_or_else(|| vec![DEFAULT_LEVEL]);
    println!("screen codec, {WIDTH}x{HEIGHT}, {frames} frames after the keyframe, mean per frame");
    println!(
        "{:<10} {:>5} {:>12} {:>12} {:>8} {:>11} {:>11} {:>10} {:>11}",
        "workload",
        "level",
        "bytes",
        "baseline",
        "ratio",
        "encode ms",
        "baseline ms",
        "decode ms",
        "keyframe"
    );
    for level in levels {
        for workload in Workload::ALL {
            let mut source = SyntheticScreen::new(workload, screen());
            let mut encoder = ScreenEncoder::with_level(level).unwrap();
            let mut decoder = ScreenDecoder::new();
            let mut baseline = Baseline::new(level);
            let first = encoder.encode(source.next_frame()).unwrap();
            for m in &first.messages {
                decoder.apply(m).unwrap();
            }
            let (mut ours, mut theirs) = (0usize, 0usize);
            let (mut t_ours, mut t_theirs, mut t_decode) =
                (Duration::ZERO, Duration::ZERO, Duration::ZERO);
            for _ in 0..frames {
                let frame = source.next_frame();
                let t = Instant::now();
                let encoded = encoder.encode(frame).unwrap();
                t_ours += t.elapsed();
                let t = Instant::now();
                theirs += baseline.encode(frame);
                t_theirs += t.elapsed();
                ours += encoded.total_bytes();
                let t = Instant::now();
                for m in &encoded.messages {
                    decoder.apply(m).unwrap();
                }
                t_decode += t.elapsed();
                assert!(decoder.canvas().unwrap() == frame, "decoded frame differs");
            }
            println!(
                "{:<10} {:>5} {:>12.0} {:>12.0} {:>8.4} {:>11.2} {:>11.2} {:>10.2} {:>11}",
                workload.name(),
                level,
                ours as f64 / frames as f64,
                theirs as f64 / frames as f64,
                ours as f64 / theirs as f64,
                ms(t_ours, frames),
                ms(t_theirs, frames),
                ms(t_decode, frames),
                first.total_bytes(),
            );
        }
    }
    println!();
    video_table(frames);
}

/// Whether `a` and `b` are equal outside `region`.
fn equal_outside(a: &Frame, b: &Frame, region: Rect) -> bool {
    (0..a.height()).all(|y| {
        if (region.y..region.bottom()).contains(&y) {
            let right = a.width() - region.right();
            a.row_span(0, y, region.x) == b.row_span(0, y, region.x)
                && a.row_span(region.right(), y, right) == b.row_span(region.right(), y, right)
        } else {
            a.row_span(0, y, a.width()) == b.row_span(0, y, b.width())
        }
    })
}

fn video_table(frames: usize) {
    println!(
        "with video regions (H.264 at {} Mbit/s), {WIDTH}x{HEIGHT}, {frames} frames after the keyframe, mean per frame",
        DEFAULT_BITRATE / 1_000_000
    );
    println!(
        "{:<10} {:>12} {:>12} {:>12} {:>8} {:>11} {:>11} {:>10} {:>7} {:>9} {:>9}",
        "workload",
        "bytes",
        "once H.264",
        "baseline",
        "ratio",
        "encode ms",
        "baseline ms",
        "decode ms",
        "region",
        "luma dB",
        "RGB dB"
    );
    for workload in Workload::ALL {
        let mut source = SyntheticScreen::new(workload, screen());
        let mut encoder = ScreenEncoder::with_video(DEFAULT_BITRATE).unwrap();
        let mut decoder = ScreenDecoder::new();
        let mut baseline = Baseline::new(DEFAULT_LEVEL);
        for m in &encoder.encode(source.next_frame()).unwrap().messages {
            decoder.apply(m).unwrap();
        }
        let (mut ours, mut theirs, mut steady, mut steady_frames) =
            (0usize, 0usize, 0usize, 0usize);
        let (mut t_ours, mut t_theirs, mut t_decode) =
            (Duration::ZERO, Duration::ZERO, Duration::ZERO);
        let (mut video_frames, mut luma, mut rgb) = (0usize, 0f64, 0f64);
        for _ in 0..frames {
            let frame = source.next_frame();
            let t = Instant::now();
            let encoded = encoder.encode(frame).unwrap();
            t_ours += t.elapsed();
            let t = Instant::now();
            theirs += baseline.encode(frame);
            t_theirs += t.elapsed();
            ours += encoded.total_bytes();
            let t = Instant::now();
            for m in &encoded.messages {
                decoder.apply(m).unwrap();
            }
            t_decode += t.elapsed();
            let canvas = decoder.canvas().unwrap();
            match encoder.video_region() {
                Some(region) => {
                    assert!(
                        equal_outside(canvas, frame, region),
                        "outside the region differs"
                    );
                    video_frames += 1;
                    steady += encoded.total_bytes();
                    steady_frames += 1;
                    luma += luma_psnr(frame, canvas, region).unwrap();
                    rgb += psnr(frame, canvas, region).unwrap();
                }
                None => assert!(canvas == frame, "decoded frame differs"),
            }
        }
        if workload != Workload::Video {
            assert_eq!(video_frames, 0, "{} made a video region", workload.name());
        }
        let per = |n: f64, d: usize| if d == 0 { f64::NAN } else { n / d as f64 };
        println!(
            "{:<10} {:>12.0} {:>12.0} {:>12.0} {:>8.4} {:>11.2} {:>11.2} {:>10.2} {:>7} {:>9.1} {:>9.1}",
            workload.name(),
            per(ours as f64, frames),
            per(steady as f64, steady_frames),
            per(theirs as f64, frames),
            ours as f64 / theirs as f64,
            ms(t_ours, frames),
            ms(t_theirs, frames),
            ms(t_decode, frames),
            video_frames,
            per(luma, video_frames),
            per(rgb, video_frames),
        );
    }
    println!();
}

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("screen_encode_1080p");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    for workload in Workload::ALL {
        let mut source = SyntheticScreen::new(workload, screen());
        let mut encoder = ScreenEncoder::new().unwrap();
        encoder.encode(source.next_frame()).unwrap();
        group.bench_function(BenchmarkId::new("conclave", workload.name()), |b| {
            b.iter_batched_ref(
                || source.next_frame().clone(),
                |frame| black_box(encoder.encode(frame).unwrap()),
                BatchSize::PerIteration,
            );
        });
        let mut source = SyntheticScreen::new(workload, screen());
        let mut baseline = Baseline::new(DEFAULT_LEVEL);
        group.bench_function(BenchmarkId::new("baseline", workload.name()), |b| {
            b.iter_batched_ref(
                || source.next_frame().clone(),
                |frame| black_box(baseline.encode(frame)),
                BatchSize::PerIteration,
            );
        });
    }
    group.finish();
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    // `cargo bench -- --list` and `cargo test --benches` skip the table.
    let args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|a| a == "--list" || a == "--test") {
        table();
        if std::env::var_os("MEDIA_BENCH_TABLE_ONLY").is_some() {
            return;
        }
    }
    encode(&mut criterion);
    criterion.final_summary();
}
