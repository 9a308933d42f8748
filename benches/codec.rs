//! Criterion benchmark of the chunk codecs (`tsq::storage::codec`).
//!
//! Before timing, prints the bytes per sample (timestamps + values, whole chunks) of synthetic
//! series shaped like the `workload` and `devops` datasets (docs/format/codecs.md says how),
//! then measures encode and decode throughput in samples per second for four shapes.
//!
//! `cargo bench --bench codec` runs everything; `cargo bench --bench codec -- --sizes-only`
//! only prints the sizes.

// criterion_group! generates undocumented public functions.
#![allow(missing_docs)]

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput};
use tsq::storage::codec::{chunk_info, decode_chunk, encode_chunk};

/// Small deterministic generator (xorshift64*), so every run measures the same data.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform in [0, 1).
    fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Standard normal (Box-Muller).
    fn normal(&mut self) -> f64 {
        let u = self.f64().max(1e-300);
        let v = self.f64();
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
    /// Poisson-like count with mean `m` (normal approximation above 30).
    fn count(&mut self, m: f64) -> f64 {
        if m < 30.0 {
            let l = (-m).exp();
            let (mut k, mut p) = (0.0, 1.0);
            loop {
                p *= self.f64();
                if p <= l {
                    return k;
                }
                k += 1.0;
            }
        }
        (m + self.normal() * m.sqrt()).round().max(0.0)
    }
}

/// One series: timestamps and values.
type Series = (Vec<i64>, Vec<f64>);

const DAY_MS: i64 = 86_400_000;
const T0: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

fn regular_ts(n: usize, step: i64) -> Vec<i64> {
    (0..n as i64).map(|i| T0 + i * step).collect()
}

/// Real scrapes: 15 s +/- a few ms of jitter, and now and then a late scrape.
fn jittered_ts(rng: &mut Rng, n: usize) -> Vec<i64> {
    (0..n as i64)
        .map(|i| {
            let j = (rng.normal() * 2.0).round() as i64;
            let late = if rng.next_u64() % 500 == 0 { 40 } else { 0 };
            T0 + i * 15_000 + j + late
        })
        .collect()
}

fn daily(t: i64) -> f64 {
    let d = (t % DAY_MS) as f64 / DAY_MS as f64;
    let week = ((t / DAY_MS) % 7) as f64;
    (1.0 + 0.6 * (std::f64::consts::TAU * d).sin()) * if week >= 5.0 { 0.6 } else { 1.0 }
}

/// `http_requests_total`: integer counter, Poisson increments around a daily rhythm,
/// reset to 0 about every 3 days (a restart).
fn counter(rng: &mut Rng, ts: &[i64], rate: f64) -> Vec<f64> {
    let mut c = 0.0;
    ts.iter()
        .map(|&t| {
            if rng.next_u64() % (3 * 5760) == 0 {
                c = 0.0;
            }
            c += rng.count(rate * 15.0 * daily(t));
            c
        })
        .collect()
}

/// `request_latency_seconds`: daily pattern plus noise; `decimals: None` keeps full float64
/// precision (e.g. a mean computed in the exporter), `Some(d)` rounds to `d` decimals.
fn latency(rng: &mut Rng, ts: &[i64], decimals: Option<i32>) -> Vec<f64> {
    ts.iter()
        .map(|&t| {
            let v = 0.05 + 0.04 * daily(t) + 0.01 * rng.normal().abs();
            match decimals {
                None => v,
                Some(d) => {
                    let p = 10f64.powi(d);
                    (v * p).round() / p
                }
            }
        })
        .collect()
}

/// `process_resident_memory_bytes`: integer gauge near 1e8, drifting by pages.
fn memory(rng: &mut Rng, ts: &[i64]) -> Vec<f64> {
    let mut m = 100_000_000.0 + (rng.next_u64() % 1000) as f64 * 4096.0;
    ts.iter()
        .map(|_| {
            m += ((rng.normal() * 8.0).round() * 4096.0).max(-m / 2.0);
            m
        })
        .collect()
}

/// `up`: 1, with a 0 now and then.
fn up(rng: &mut Rng, ts: &[i64]) -> Vec<f64> {
    ts.iter()
        .map(|_| if rng.next_u64() % 5760 == 0 { 0.0 } else { 1.0 })
        .collect()
}

/// TSBS devops: random walk with N(0,1) steps clamped to 0..100, full float64 precision.
fn devops_walk(rng: &mut Rng, n: usize) -> Vec<f64> {
    let mut x = rng.f64() * 100.0;
    (0..n)
        .map(|_| {
            x = (x + rng.normal()).clamp(0.0, 100.0);
            x
        })
        .collect()
}

/// A decimal gauge with 3 decimals (random walk in thousandths).
fn decimal_gauge(rng: &mut Rng, n: usize) -> Vec<f64> {
    let mut k: i64 = 50_000;
    (0..n)
        .map(|_| {
            k = (k + (rng.normal() * 200.0) as i64).clamp(0, 100_000);
            k as f64 / 1000.0
        })
        .collect()
}

/// Encodes `series` in chunks of `chunk` samples; returns (bytes, samples, codec histogram).
fn encoded_size(series: &[Series], chunk: usize) -> (usize, usize, BTreeMap<String, usize>) {
    let (mut bytes, mut samples) = (0, 0);
    let mut codecs = BTreeMap::new();
    let mut buf = Vec::new();
    for (ts, vals) in series {
        for (t, v) in ts.chunks(chunk).zip(vals.chunks(chunk)) {
            buf.clear();
            encode_chunk(t, v, &mut buf);
            let info = chunk_info(&buf).expect("own chunk");
            *codecs
                .entry(format!("{}/{}", info.ts_codec, info.value_codec))
                .or_insert(0) += 1;
            bytes += buf.len();
            samples += t.len();
        }
    }
    (bytes, samples, codecs)
}

fn report(name: &str, series: &[Series], chunk: usize) -> (usize, usize) {
    let (bytes, samples, codecs) = encoded_size(series, chunk);
    println!(
        "{name:<44} {:>6.3} bytes/sample  ({samples} samples, chunks of {chunk})  {codecs:?}",
        bytes as f64 / samples as f64
    );
    (bytes, samples)
}

/// Bytes/sample of the real benchmark datasets, as `tsq gen` makes them (default seed),
/// cut into chunks of `chunk` samples per series, per metric and overall.
fn report_dataset(label: &str, ds: &tsq::formats::gen::Dataset, chunk: usize) {
    let mut per_metric: BTreeMap<String, Vec<Series>> = BTreeMap::new();
    let mut all = Vec::new();
    for (i, info) in ds.series().iter().enumerate() {
        let (mut ts, mut vals) = (Vec::new(), Vec::new());
        let _ = ds.for_each_sample_of::<()>(i, |t, v| {
            ts.push(t);
            vals.push(v);
            Ok(())
        });
        per_metric
            .entry(info.metric.clone())
            .or_default()
            .push((ts, vals));
    }
    println!("{label} ({} series):", ds.series().len());
    for (metric, series) in per_metric {
        report(&format!("  {metric}"), &series, chunk);
        all.extend(series);
    }
    report("  overall", &all, chunk);
}

/// Prints bytes/sample for workload-shaped and devops-shaped data.
fn print_sizes() {
    use tsq::formats::gen::{devops, workload, DevopsParams, WorkloadParams};
    let w = WorkloadParams {
        days: 8,
        ..WorkloadParams::default()
    };
    report_dataset(
        "tsq gen workload --days 8 (regular 15 s)",
        &workload(&w),
        480,
    );
    report_dataset(
        "tsq gen devops (1 day, 10 s)",
        &devops(&DevopsParams::default()),
        720,
    );
    println!("synthetic shapes made here (see the generators above):");
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let n = 8 * 5760; // 8 days at 15 s
    let chunk = 480; // a 2 h block at 15 s
    let instances = 30; // 6 services x 5 instances
    let codes = [("2xx", 40.0), ("3xx", 4.0), ("4xx", 1.0), ("5xx", 0.1)];
    println!("bytes per sample (timestamps + values, whole encoded chunks):");
    for (label, jitter, lat_decimals) in [
        ("workload, regular ts, latency full precision", false, None),
        ("workload, regular ts, latency 7 decimals", false, Some(7)),
        ("workload, jittered ts, latency full precision", true, None),
    ] {
        let mut all: Vec<Series> = Vec::new();
        let mut per_metric: BTreeMap<&str, Vec<Series>> = BTreeMap::new();
        for _ in 0..instances {
            let ts = if jitter {
                jittered_ts(&mut rng, n)
            } else {
                regular_ts(n, 15_000)
            };
            for (_, rate) in codes {
                let v = counter(&mut rng, &ts, rate);
                per_metric
                    .entry("http_requests_total")
                    .or_default()
                    .push((ts.clone(), v));
            }
            let v = latency(&mut rng, &ts, lat_decimals);
            per_metric
                .entry("request_latency_seconds")
                .or_default()
                .push((ts.clone(), v));
            let v = memory(&mut rng, &ts);
            per_metric
                .entry("process_resident_memory_bytes")
                .or_default()
                .push((ts.clone(), v));
            let v = up(&mut rng, &ts);
            per_metric.entry("up").or_default().push((ts.clone(), v));
            per_metric
                .entry("build_info")
                .or_default()
                .push((ts.clone(), vec![1.0; n]));
        }
        println!(
            "{label} ({} series):",
            per_metric.values().map(Vec::len).sum::<usize>()
        );
        for (metric, series) in per_metric {
            report(&format!("  {metric}"), &series, chunk);
            all.extend(series);
        }
        report("  overall", &all, chunk);
    }
    let devops: Vec<Series> = (0..100)
        .map(|_| (regular_ts(8640, 10_000), devops_walk(&mut rng, 8640)))
        .collect();
    report("devops (100 walks, 1 day at 10 s)", &devops, 720);
}

/// One benchmark shape: many chunks of 720 samples.
struct Shape {
    name: &'static str,
    chunks: Vec<Series>,
}

fn shapes() -> Vec<Shape> {
    let mut rng = Rng(0x0bad_cafe_f00d_0001);
    let n = 720;
    let k = 64;
    let regular = regular_ts(n, 15_000);
    let make = |f: &mut dyn FnMut(&mut Rng) -> Series, rng: &mut Rng| {
        (0..k).map(|_| f(rng)).collect::<Vec<_>>()
    };
    vec![
        Shape {
            name: "regular_ts+decimal_gauge_3dp",
            chunks: make(&mut |r| (regular.clone(), decimal_gauge(r, n)), &mut rng),
        },
        Shape {
            name: "regular_ts+counter",
            chunks: make(
                &mut |r| (regular.clone(), counter(r, &regular, 20.0)),
                &mut rng,
            ),
        },
        Shape {
            name: "regular_ts+random_walk_f64",
            chunks: make(
                &mut |r| (regular_ts(n, 10_000), devops_walk(r, n)),
                &mut rng,
            ),
        },
        Shape {
            name: "jittered_ts+counter",
            chunks: make(
                &mut |r| {
                    let ts = jittered_ts(r, n);
                    let v = counter(r, &ts, 20.0);
                    (ts, v)
                },
                &mut rng,
            ),
        },
    ]
}

fn bench_codecs(c: &mut Criterion) {
    for shape in shapes() {
        let samples: usize = shape.chunks.iter().map(|(t, _)| t.len()).sum();
        let encoded: Vec<Vec<u8>> = shape
            .chunks
            .iter()
            .map(|(t, v)| {
                let mut b = Vec::new();
                encode_chunk(t, v, &mut b);
                b
            })
            .collect();
        let bytes: usize = encoded.iter().map(Vec::len).sum();
        let info = chunk_info(&encoded[0]).expect("own chunk");
        println!(
            "{}: {:.3} bytes/sample, codecs {}/{}",
            shape.name,
            bytes as f64 / samples as f64,
            info.ts_codec,
            info.value_codec
        );
        let mut g = c.benchmark_group("codec");
        g.throughput(Throughput::Elements(samples as u64));
        g.bench_function(BenchmarkId::new("encode", shape.name), |b| {
            let mut out = Vec::with_capacity(bytes * 2);
            b.iter(|| {
                out.clear();
                for (t, v) in &shape.chunks {
                    encode_chunk(t, v, &mut out);
                }
                black_box(out.len())
            })
        });
        g.bench_function(BenchmarkId::new("decode", shape.name), |b| {
            let (mut ts, mut vals) = (Vec::with_capacity(1024), Vec::with_capacity(1024));
            b.iter(|| {
                for chunk in &encoded {
                    ts.clear();
                    vals.clear();
                    decode_chunk(chunk, &mut ts, &mut vals).expect("decodes");
                    black_box((&ts, &vals));
                }
            })
        });
        g.finish();
    }
}

fn main() {
    print_sizes();
    if std::env::args().any(|a| a == "--sizes-only") {
        return;
    }
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20)
        .configure_from_args();
    bench_codecs(&mut c);
    c.final_summary();
}
