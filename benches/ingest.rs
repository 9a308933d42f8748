//! Criterion benchmark: ingestion through the embedded appender, WAL on, synced per batch.
//!
//! Data shaped like the devops dataset (full-precision random walks, 10 s interval) and
//! like the workload dataset's counters (integers, 15 s). Each iteration writes into a fresh
//! database in a temporary directory, in batches of 100 000 samples (100 scrapes of every
//! series), and ends with a flush so the codec cost is counted too.

// criterion_group! generates undocumented public functions.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tsq::storage::{Db, Labels, SeriesRef, SyncPolicy};

const SERIES: usize = 1000;
const SCRAPES: usize = 1000;
/// Samples per committed batch: one fsync per batch.
const BATCH: usize = 100_000;

fn walk(seed: &mut u64) -> f64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    (*seed >> 11) as f64 / (1u64 << 53) as f64
}

fn ingest(counter: bool, sync: SyncPolicy) -> u64 {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::builder().sync(sync).open(dir.path()).unwrap();
    let refs: Vec<SeriesRef> = (0..SERIES)
        .map(|i| {
            db.series_ref(&Labels::new([
                ("__name__", "cpu_usage_user".to_string()),
                ("hostname", format!("host_{}", i / 10)),
                ("cpu", format!("{}", i % 10)),
            ]))
            .unwrap()
        })
        .collect();
    let mut vals = vec![50.0f64; SERIES];
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let step = if counter { 15_000 } else { 10_000 };
    let mut app = db.appender();
    for s in 0..SCRAPES {
        let t = 1_700_000_000_000 + s as i64 * step;
        for (i, r) in refs.iter().enumerate() {
            let v = if counter {
                vals[i] += (walk(&mut seed) * 20.0).floor();
                vals[i]
            } else {
                vals[i] = (vals[i] + walk(&mut seed) - 0.5).clamp(0.0, 100.0);
                vals[i]
            };
            app.add(*r, t, v);
        }
        if app.len() >= BATCH {
            app.commit().unwrap();
        }
    }
    app.commit().unwrap();
    db.flush().unwrap();
    (SERIES * SCRAPES) as u64
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("ingest");
    g.sample_size(10);
    g.throughput(Throughput::Elements((SERIES * SCRAPES) as u64));
    for (name, counter, sync) in [
        ("devops_float_walk/sync_per_batch", false, SyncPolicy::Batch),
        ("integer_counters/sync_per_batch", true, SyncPolicy::Batch),
        ("devops_float_walk/no_sync", false, SyncPolicy::Never),
    ] {
        g.bench_with_input(
            BenchmarkId::from_parameter(name),
            &counter,
            |b, &counter| b.iter(|| ingest(counter, sync)),
        );
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
