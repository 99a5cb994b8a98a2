//! Stage 2, driven in memory with the bench standing in for the relay:
//!
//! - `join/no_password`, `join/password`: one participant's complete join,
//!   from `ParticipantSession::join` until it is a member (announce check,
//!   X25519, SPAKE2 with a password, signatures, MACs, admission, the first
//!   epoch's rekey), master and participant CPU together. A fresh master per
//!   join is built outside the timing.
//! - `rekey/N`: `MasterSession::rekey` with N admitted participants, plus
//!   draining the broadcast `Rekey` frame. The masters are built once, with N
//!   real joins, outside the timing.
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use conclave_benches::{join, master_with_members, new_master, portal_keys, rekey, PASSWORD};
use conclave_benches::{CREATED, JOIN_AT};
use conclave_protocol::fixtures;
use conclave_protocol::frame::PeerId;
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion};

fn joins(c: &mut Criterion) {
    let mut group = c.benchmark_group("join");
    for (label, password) in [("no_password", None), ("password", Some(PASSWORD))] {
        let keys = portal_keys();
        let mut rng = fixtures::rng(100);
        let mut seed = 0;
        group.bench_function(label, |b| {
            b.iter_batched(
                || {
                    seed += 1;
                    new_master(password, seed)
                },
                |mut master| {
                    let p = join(
                        &mut master,
                        PeerId(2),
                        password,
                        keys.clone(),
                        &mut rng,
                        JOIN_AT,
                    );
                    assert!(p.is_member());
                    (master, p)
                },
                BatchSize::SmallInput,
            );
        });
    }
    group.finish();
}

fn rekeys(c: &mut Criterion) {
    let mut group = c.benchmark_group("rekey");
    group.sample_size(10);
    for n in [10, 100, 1000] {
        let start = Instant::now();
        let mut master = master_with_members(n);
        eprintln!("rekey/{n}: {n} joins built in {:.2?}", start.elapsed());
        let mut now = CREATED;
        group.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter(|| {
                now = now.plus(1);
                black_box(rekey(&mut master, now))
            });
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1));
    targets = joins, rekeys
}
criterion_main!(benches);
