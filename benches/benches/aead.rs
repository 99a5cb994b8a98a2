//! AES-256-GCM sealing in place, ring (`LessSafeKey::seal_in_place_separate_tag`)
//! against RustCrypto's `aes-gcm` (`Aes256Gcm::encrypt_in_place_detached`), on
//! 1 KiB, 64 KiB and 1 MiB buffers: the measurement behind the choice of ring
//! for frame encryption.
#![allow(missing_docs)]

use std::hint::black_box;

use conclave_benches::{AesGcmSeal, RingSeal, KIB, MIB};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

fn aead(c: &mut Criterion) {
    let mut group = c.benchmark_group("aes256gcm_seal");
    for (label, len) in [("1KiB", KIB), ("64KiB", 64 * KIB), ("1MiB", MIB)] {
        group.throughput(Throughput::Bytes(len as u64));
        let mut ring = RingSeal::new(len);
        group.bench_function(BenchmarkId::new("ring", label), |b| {
            b.iter(|| black_box(ring.seal()));
        });
        let mut rc = AesGcmSeal::new(len);
        group.bench_function(BenchmarkId::new("aes-gcm", label), |b| {
            b.iter(|| black_box(rc.seal()));
        });
    }
    group.finish();
}

criterion_group!(benches, aead);
criterion_main!(benches);
