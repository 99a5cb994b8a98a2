//! One end-to-end frame sealed and opened again, 1 KiB and 64 KiB payloads:
//! `bare` is ring AES-256-GCM seal then open on one buffer; `conclave` is
//! `FrameSealer::seal` into a reused `SealBuf`, `SealedFrame::parse` and
//! `FrameOpener::open_in_place` (headers, KID, replay window). Both in one
//! group with byte throughput, so the frame path's overhead is their ratio.
#![allow(missing_docs)]

use std::hint::black_box;

use conclave_benches::{BareAead, FramePath, KIB};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

fn frame(c: &mut Criterion) {
    let mut group = c.benchmark_group("frame_seal_open");
    for (label, len) in [("1KiB", KIB), ("64KiB", 64 * KIB)] {
        group.throughput(Throughput::Bytes(len as u64));
        let mut bare = BareAead::new(len);
        group.bench_function(BenchmarkId::new("bare", label), |b| {
            b.iter(|| black_box(bare.seal_open()));
        });
        let mut path = FramePath::new(len);
        group.bench_function(BenchmarkId::new("conclave", label), |b| {
            b.iter(|| black_box(path.seal_open()));
        });
    }
    group.finish();
}

criterion_group!(benches, frame);
criterion_main!(benches);
