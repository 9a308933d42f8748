//! Criterion benchmark: PromQL evaluation in-process, over in-memory data:
//!
//! * a devops-shaped dataset (100 hosts x 10 `cpu_*` gauges, one sample every 10 s for one
//!   day: 8.64 M samples) for the executor issue's Q1-Q5;
//! * the workload dataset (`tsq::formats::gen::workload`, 8 days, its
//!   `request_latency_seconds` and `http_requests_total` series: 210 series, 9.7 M samples)
//!   for Q6-Q9, over its last day as in benches/queries.sh.

// criterion_group! generates undocumented public functions.
#![allow(missing_docs)]

mod common;

use criterion::{criterion_group, criterion_main, Criterion};
use tsq::exec::{Engine, EngineOptions, MemStorage};
use tsq::storage::Labels;

const HOSTS: usize = 100;
const STEP_MS: i64 = 10_000;
const DAY_MS: i64 = 86_400_000;
const METRICS: [&str; 10] = [
    "cpu_usage_user",
    "cpu_usage_system",
    "cpu_usage_idle",
    "cpu_usage_nice",
    "cpu_usage_iowait",
    "cpu_usage_irq",
    "cpu_usage_softirq",
    "cpu_usage_steal",
    "cpu_usage_guest",
    "cpu_usage_guest_nice",
];

fn dataset() -> MemStorage {
    let mut db = MemStorage::new();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for h in 0..HOSTS {
        let region = ["us-east-1", "eu-west-1", "ap-south-1"][h % 3];
        for m in METRICS {
            let labels = Labels::new([
                ("__name__", m.to_string()),
                ("hostname", format!("host_{h}")),
                ("region", region.to_string()),
                ("datacenter", format!("{region}a")),
                ("os", "Ubuntu16.04LTS".to_string()),
            ]);
            let mut v = 50.0f64;
            let mut t = 0;
            while t < DAY_MS {
                // xorshift random walk in [0, 100]
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                v = (v + ((x % 2001) as f64 / 100.0 - 10.0)).clamp(0.0, 100.0);
                db.add(labels.clone(), t, v);
                t += STEP_MS;
            }
        }
    }
    db
}

/// The workload dataset's latency and request counters, and its last timestamp.
fn workload_dataset() -> (MemStorage, i64) {
    common::workload_in_memory(&["request_latency_seconds", "http_requests_total"])
}

fn bench_workload(c: &mut Criterion) {
    let (db, last) = workload_dataset();
    let engine = Engine::new(EngineOptions::default());
    // benches/queries.sh's day: the last whole day of the data.
    let end = last - last % DAY_MS;
    let start = end - DAY_MS;
    let mut g = c.benchmark_group("query-workload");
    g.sample_size(10);
    let queries: [(&str, &str, i64); 6] = [
        (
            "Q6 avg_over_time 1d, last day at 5m",
            "avg_over_time(request_latency_seconds[1d])",
            300_000,
        ),
        (
            "Q6 stddev_over_time 1d, last day at 5m",
            "stddev_over_time(request_latency_seconds[1d])",
            300_000,
        ),
        (
            "Q7 sum by service of rate 5m, last day at 1m",
            "sum by (service) (rate(http_requests_total[5m]))",
            60_000,
        ),
        (
            "Q8 quantile_over_time 0.99 1h, last day at 1h",
            "quantile_over_time(0.99, request_latency_seconds[1h])",
            3_600_000,
        ),
        (
            "Q9 latency minus last week's hourly mean, last day at 5m",
            "request_latency_seconds - avg_over_time(request_latency_seconds[1h] offset 7d)",
            300_000,
        ),
        (
            "stddev band 1d (baselines), last day at 5m",
            r#"band_over_time(request_latency_seconds[1d], 3, "stddev")"#,
            300_000,
        ),
    ];
    for (name, q, step) in queries {
        g.bench_function(name, |b| {
            b.iter(|| engine.range_query(&db, q, start, end, step).unwrap())
        });
    }
    g.finish();
}

fn bench(c: &mut Criterion) {
    let db = dataset();
    let engine = Engine::new(EngineOptions::default());
    let end = DAY_MS - STEP_MS;
    let mut g = c.benchmark_group("query");
    g.sample_size(10);
    g.bench_function("max_over_time 1m, one host, 1h at 1m", |b| {
        b.iter(|| {
            engine
                .range_query(
                    &db,
                    r#"max_over_time(cpu_usage_user{hostname="host_0"}[1m])"#,
                    end - 3_600_000,
                    end,
                    60_000,
                )
                .unwrap()
        })
    });
    g.bench_function("avg by host of avg_over_time 1h, 12h at 1h", |b| {
        b.iter(|| {
            engine
                .range_query(
                    &db,
                    "avg by (hostname) (avg_over_time(cpu_usage_user[1h]))",
                    end - 12 * 3_600_000,
                    end,
                    3_600_000,
                )
                .unwrap()
        })
    });
    g.bench_function("max_over_time 12h > 90, instant", |b| {
        b.iter(|| {
            engine
                .instant_query(&db, "max_over_time(cpu_usage_user[12h]) > 90", end)
                .unwrap()
        })
    });
    g.bench_function("cpu_usage_user, instant", |b| {
        b.iter(|| engine.instant_query(&db, "cpu_usage_user", end).unwrap())
    });
    g.bench_function("sum by region of rate 5m, 1d at 5m", |b| {
        b.iter(|| {
            engine
                .range_query(
                    &db,
                    "sum by (region) (rate(cpu_usage_user[5m]))",
                    0,
                    end,
                    300_000,
                )
                .unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, bench, bench_workload);
criterion_main!(benches);
