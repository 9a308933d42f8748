//! Criterion benchmark: baselines over days at a fine step (docs/baselines.md).
//!
//! The workload dataset (6 services x 5 instances, one sample every 15 s, 8 days) in memory;
//! `request_latency_seconds` has 30 series, 5 760 samples per series and day. Two queries
//! over the last day, each evaluated with the incremental windows (the engine's path) and
//! with every window recomputed from scratch (`with_naive_windows`, the test oracle):
//!
//! * `band_over_time(request_latency_seconds[1d], 3, "mad")` at a 1 m step (1 441 steps of
//!   a 5 760-sample window: median and MAD per window);
//! * `quantile without(season) (0.5, avg_over_time(request_latency_seconds[1h]
//!   seasons(1d, 7, "by_season")))` at a 5 m step (289 steps x 7 seasons of 240 samples);
//! * `band_over_time(request_latency_seconds[1d], 3, "stddev")` at a 5 m step (the issue
//!   compares it with VictoriaMetrics's `stddev_over_time` of the same window and step).
//!
//! The naive band takes about 20 s per run, so the naive benchmarks are registered only when
//! benchmarking (`cargo bench --bench baseline`), not in the quick test mode that
//! `cargo test --all-targets` runs; there the two paths are only checked to agree on the
//! last two hours.

// criterion_group! generates undocumented public functions.
#![allow(missing_docs)]

use std::time::Duration;

mod common;

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode};
use tsq::exec::baseline::with_naive_windows;
use tsq::exec::{Engine, EngineOptions, MemStorage, QueryResult, Value};

const DAY_MS: i64 = 86_400_000;

fn dataset() -> (MemStorage, i64) {
    common::workload_in_memory(&["request_latency_seconds"])
}

const BAND: &str = r#"band_over_time(request_latency_seconds[1d], 3, "mad")"#;
const BAND_SD: &str = r#"band_over_time(request_latency_seconds[1d], 3, "stddev")"#;
const SEASONAL: &str = r#"quantile without(season) (0.5, avg_over_time(request_latency_seconds[1h] seasons(1d, 7, "by_season")))"#;

const LOAD_FLOOR: &str = "count_over_time(request_latency_seconds[7d1h])";

fn points(r: &QueryResult) -> usize {
    match &r.value {
        Value::Matrix(m) => m.iter().map(|s| s.samples.len()).sum(),
        _ => 0,
    }
}

fn bench(c: &mut Criterion) {
    let (db, end) = dataset();
    let engine = Engine::new(EngineOptions {
        threads: 1,
        ..EngineOptions::default()
    });
    let start = end - DAY_MS;
    let run = |q: &str, step: i64| engine.range_query(&db, q, start, end, step).unwrap();
    // Same answers both ways (the oracle of the property tests, here on real data).
    for (q, step) in [(BAND, 60_000), (SEASONAL, 300_000), (BAND_SD, 300_000)] {
        let from = end - 2 * 3_600_000;
        let a = engine.range_query(&db, q, from, end, step).unwrap();
        let b = with_naive_windows(|| engine.range_query(&db, q, from, end, step).unwrap());
        assert_eq!(a.value.type_name(), b.value.type_name());
        let (Value::Matrix(a), Value::Matrix(b)) = (&a.value, &b.value) else {
            panic!("range queries return matrices");
        };
        assert!(!a.is_empty(), "{q}");
        assert_eq!(a.len(), b.len(), "{q}");
        for (x, y) in a.iter().zip(b) {
            assert_eq!(x.labels, y.labels);
            for (p, q) in x.samples.iter().zip(&y.samples) {
                assert!(
                    (p.1 - q.1).abs() <= 1e-9 * p.1.abs().max(1e-9),
                    "{p:?} {q:?}"
                );
            }
        }
    }
    let benching = std::env::args().any(|a| a == "--bench");
    let mut g = c.benchmark_group("baseline");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(10));
    g.bench_function("band mad 1d, last day at 1m: incremental", |b| {
        b.iter(|| points(&run(BAND, 60_000)))
    });
    g.bench_function(
        "seasonal median of 7 x 1h, last day at 5m: incremental",
        |b| b.iter(|| points(&run(SEASONAL, 300_000))),
    );
    g.bench_function("band stddev 1d, last day at 5m: incremental", |b| {
        b.iter(|| points(&run(BAND_SD, 300_000)))
    });
    // The floor both seasonal paths share: selecting the same 7 days and 1 hour of raw samples
    // (copying 1.4 M samples out of the store) with a trivial window function.
    g.bench_function("load floor: count_over_time([7d1h]), last day at 5m", |b| {
        b.iter(|| points(&run(LOAD_FLOOR, 300_000)))
    });
    g.bench_function(
        "seasonal median of 7 x 1h, last day at 5m: naive recompute",
        |b| b.iter(|| with_naive_windows(|| points(&run(SEASONAL, 300_000)))),
    );
    if benching {
        g.bench_function("band stddev 1d, last day at 5m: naive recompute", |b| {
            b.iter(|| with_naive_windows(|| points(&run(BAND_SD, 300_000))))
        });
        g.sampling_mode(SamplingMode::Flat);
        g.bench_function("band mad 1d, last day at 1m: naive recompute", |b| {
            b.iter(|| with_naive_windows(|| points(&run(BAND, 60_000))))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
