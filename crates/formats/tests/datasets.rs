//! The benchmark datasets: determinism, counts, orders, file formats, ground truth.

use std::collections::{BTreeSet, HashMap};
use std::convert::Infallible;
use tsq_formats::gen::rng::fnv1a;
use tsq_formats::gen::{devops, workload, Dataset, DevopsParams, WorkloadParams};
use tsq_formats::{parse, parse_series_key, Event, Format, ParseOptions};

fn small_workload(seed: u64) -> Dataset {
    workload(&WorkloadParams {
        services: 3,
        instances: 2,
        days: 3,
        seed,
        ..WorkloadParams::default()
    })
}

fn small_devops(seed: u64) -> Dataset {
    devops(&DevopsParams {
        hosts: 3,
        days: 1,
        seed,
        ..DevopsParams::default()
    })
}

fn om_hash(ds: &Dataset) -> u64 {
    fnv1a(&ds.write_openmetrics(Vec::new()).unwrap())
}

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    for make in [small_workload as fn(u64) -> Dataset, small_devops] {
        let a = make(42);
        let b = make(42);
        let c = make(7);
        assert_eq!(om_hash(&a), om_hash(&b));
        assert_eq!(
            fnv1a(&a.write_influx(Vec::new()).unwrap()),
            fnv1a(&b.write_influx(Vec::new()).unwrap())
        );
        assert_eq!(a.sidecar_json(), b.sidecar_json());
        assert_ne!(om_hash(&a), om_hash(&c));
    }
}

/// Pins the default devops bytes: a change here changes published benchmark inputs.
#[test]
fn devops_first_values_are_pinned() {
    let ds = devops(&DevopsParams {
        hosts: 1,
        days: 1,
        ..DevopsParams::default()
    });
    let text = String::from_utf8(ds.write_influx(Vec::new()).unwrap()).unwrap();
    let first = text.lines().next().unwrap();
    assert!(first.starts_with("cpu,hostname=host_0,region="), "{first}");
    assert!(first.ends_with(" 1767225600000000000"), "{first}");
    assert_eq!(text.lines().count(), 8640);
}

#[test]
fn default_sizes() {
    let d = devops(&DevopsParams::default());
    assert_eq!(d.series().len(), 1000);
    assert_eq!(d.steps(), 8640);
    assert_eq!(d.count_samples(), 8_640_000);

    let w = workload(&WorkloadParams::default());
    assert_eq!(w.steps(), 7 * 5760);
    // 240 series are active at any step when no instance is down: per instance 4 code
    // counters, latency, memory, up, and the running build_info.
    let mut per_step: Vec<u32> = vec![0; w.steps()];
    let mut up_zero: Vec<bool> = vec![false; w.steps()];
    w.for_each_sample(|i, t, v| {
        let k = ((t - w.start_ms()) / w.step_ms()) as usize;
        per_step[k] += 1;
        if w.series()[i].metric == "up" && v == 0.0 {
            up_zero[k] = true;
        }
        Ok::<(), Infallible>(())
    })
    .unwrap();
    for (k, n) in per_step.iter().enumerate() {
        if up_zero[k] {
            assert!(*n < 240 && *n >= 30, "step {k}: {n}");
        } else {
            assert_eq!(*n, 240, "step {k}");
        }
    }
    let down_steps = up_zero.iter().filter(|&&d| d).count();
    assert!(down_steps > 10 && down_steps < 500, "{down_steps}");
    // Every build_info version is its own series; all the others are 210.
    let non_build = w
        .series()
        .iter()
        .filter(|s| s.metric != "build_info")
        .count();
    assert_eq!(non_build, 210);
    assert!(w.series().len() > 240);
}

#[test]
fn time_order_and_series_order_agree() {
    for ds in [small_workload(1), small_devops(1)] {
        let mut by_series: Vec<Vec<(i64, u64)>> = vec![Vec::new(); ds.series().len()];
        let mut last_t = i64::MIN;
        ds.for_each_sample(|i, t, v| {
            assert!(t >= last_t);
            last_t = t;
            by_series[i].push((t, v.to_bits()));
            Ok::<(), Infallible>(())
        })
        .unwrap();
        for (i, want) in by_series.iter().enumerate() {
            let mut got = Vec::new();
            ds.for_each_sample_of(i, |t, v| {
                got.push((t, v.to_bits()));
                Ok::<(), Infallible>(())
            })
            .unwrap();
            assert_eq!(&got, want, "series {}", ds.series()[i].key);
            assert!(!got.is_empty());
        }
    }
}

type Samples = HashMap<String, Vec<(i64, u64)>>;

fn stream(ds: &Dataset) -> Samples {
    let mut m: Samples = HashMap::new();
    ds.for_each_sample(|i, t, v| {
        m.entry(ds.series()[i].key.clone())
            .or_default()
            .push((t, v.to_bits()));
        Ok::<(), Infallible>(())
    })
    .unwrap();
    m
}

fn parsed(format: Format, text: &[u8]) -> Samples {
    let mut m: Samples = HashMap::new();
    let mut keys: HashMap<String, String> = HashMap::new();
    parse(text, &ParseOptions::new(format), |ev| {
        if let Event::Sample(r) = ev {
            let k = keys
                .entry(r.series_key.to_string())
                .or_insert_with(|| {
                    tsq_formats::series_key(&parse_series_key(r.series_key).unwrap())
                })
                .clone();
            m.entry(k)
                .or_default()
                .push((r.timestamp_ms, r.value.to_bits()));
        }
        Ok::<(), Infallible>(())
    })
    .unwrap();
    m
}

#[test]
fn files_parse_back_to_the_stream() {
    for ds in [small_workload(3), small_devops(3)] {
        let want = stream(&ds);
        let om = ds.write_openmetrics(Vec::new()).unwrap();
        assert!(om.ends_with(b"# EOF\n"));
        assert_eq!(
            parsed(Format::OpenMetrics, &om),
            want,
            "{} openmetrics",
            ds.name()
        );
        let lp = ds.write_influx(Vec::new()).unwrap();
        assert_eq!(parsed(Format::Influx, &lp), want, "{} influx", ds.name());
        // Metadata comes back too.
        let mut metas = Vec::new();
        parse(&om, &ParseOptions::new(Format::OpenMetrics), |ev| {
            if let Event::Metadata { metric, meta } = ev {
                metas.push((
                    metric.to_string(),
                    meta.metric_type,
                    meta.unit.clone(),
                    meta.help.clone(),
                ));
            }
            Ok::<(), Infallible>(())
        })
        .unwrap();
        let want_meta: Vec<_> = ds
            .metadata()
            .iter()
            .map(|(m, x)| (m.clone(), x.metric_type, x.unit.clone(), x.help.clone()))
            .collect();
        assert_eq!(metas, want_meta);
    }
}

#[test]
fn devops_shape() {
    let ds = small_devops(42);
    let s = &ds.series()[0];
    assert_eq!(s.metric, "cpu_usage_user");
    for tag in [
        "hostname",
        "region",
        "datacenter",
        "rack",
        "os",
        "arch",
        "team",
        "service",
        "service_version",
        "service_environment",
    ] {
        assert!(s.labels.get(tag).is_some(), "{tag}");
    }
    let mut distinct = BTreeSet::new();
    ds.for_each_sample(|_, _, v| {
        assert!((0.0..=100.0).contains(&v));
        distinct.insert(v.to_bits());
        Ok::<(), Infallible>(())
    })
    .unwrap();
    // Full-precision random walks: nearly every value distinct.
    assert!(distinct.len() > 3 * 10 * 8640 * 9 / 10);
}

#[test]
fn workload_values_look_like_an_exporter() {
    let ds = small_workload(5);
    let mut prev: HashMap<usize, f64> = HashMap::new();
    let mut resets = 0;
    ds.for_each_sample(|i, _, v| {
        let m = ds.series()[i].metric.as_str();
        match m {
            "http_requests_total" => {
                assert_eq!(v, v.round());
                if let Some(&p) = prev.get(&i) {
                    if v < p {
                        resets += 1;
                    }
                }
                prev.insert(i, v);
            }
            "request_latency_seconds" => {
                assert!(v > 0.0 && v < 10.0);
                assert_eq!(
                    ((v * 1e6).round() / 1e6).to_bits(),
                    v.to_bits(),
                    "microsecond precision"
                );
            }
            "process_resident_memory_bytes" => assert_eq!(v % 4096.0, 0.0),
            "up" | "build_info" => assert!(v == 0.0 || v == 1.0),
            other => panic!("unexpected metric {other}"),
        }
        Ok::<(), Infallible>(())
    })
    .unwrap();
    assert!(resets > 0, "restarts reset counters");
}

#[test]
fn sidecar_lists_the_ground_truth() {
    let ds = workload(&WorkloadParams {
        days: 7,
        ..WorkloadParams::default()
    });
    let j = ds.sidecar_json();
    assert_eq!(j["dataset"], "workload");
    assert_eq!(j["seed"], 42);
    assert_eq!(j["start"], "2026-01-01T00:00:00.000Z");
    assert_eq!(j["step_ms"], 15000);
    let events = j["events"].as_array().unwrap();
    let kinds: BTreeSet<&str> = events.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    for k in [
        "deploy",
        "restart",
        "error_burst",
        "latency_shift",
        "latency_spike",
        "latency_level_shift",
    ] {
        assert!(kinds.contains(k), "{k} in {kinds:?}");
    }
    for e in events {
        let (s, en) = (
            e["start_ms"].as_i64().unwrap(),
            e["end_ms"].as_i64().unwrap(),
        );
        assert!(s < en && s >= ds.start_ms() && en <= ds.end_ms(), "{e}");
        assert!(e["labels"].is_object());
        assert!(e["selector"].is_string());
        assert!(e["start"].is_string() && e["end"].is_string());
    }
    let bad = events
        .iter()
        .filter(|e| e["kind"] == "deploy" && e["bad"] == true)
        .count();
    let good = events
        .iter()
        .filter(|e| e["kind"] == "deploy" && e["bad"] == false)
        .count();
    assert!(bad > 0 && good > 0);
    assert!(events
        .iter()
        .any(|e| e["kind"] == "restart" && e["cause"] == "crash"));
}

/// The ground truth is true: latency is high during spikes, 5xx counters grow fast during
/// error bursts.
#[test]
fn ground_truth_matches_the_data() {
    let ds = workload(&WorkloadParams {
        days: 7,
        ..WorkloadParams::default()
    });
    let idx: HashMap<String, usize> = ds
        .series()
        .iter()
        .enumerate()
        .map(|(i, s)| (s.key.clone(), i))
        .collect();
    let series_of = |i: usize| {
        let mut v = Vec::new();
        ds.for_each_sample_of(i, |t, x| {
            v.push((t, x));
            Ok::<(), Infallible>(())
        })
        .unwrap();
        v
    };
    let mean = |v: &[(i64, f64)], a: i64, b: i64| {
        let xs: Vec<f64> = v
            .iter()
            .filter(|(t, _)| *t >= a && *t < b)
            .map(|x| x.1)
            .collect();
        (!xs.is_empty()).then(|| xs.iter().sum::<f64>() / xs.len() as f64)
    };
    let mut checked = 0;
    for e in ds.ground_truth() {
        let labels: Vec<(&str, &str)> = e
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        if e.kind == "latency_spike" {
            let key = tsq_formats::series_key(&tsq_storage::Labels::new(labels.clone()));
            let s = series_of(idx[&key]);
            let (Some(during), Some(before)) = (
                mean(&s, e.start_ms, e.end_ms),
                mean(&s, e.start_ms - 1_800_000, e.start_ms),
            ) else {
                continue;
            };
            assert!(
                during > 2.0 * before,
                "{key} {during} vs {before} at {}",
                e.start_ms
            );
            checked += 1;
        }
        if e.kind == "error_burst" {
            let key = tsq_formats::series_key(&tsq_storage::Labels::new(labels));
            let s = series_of(idx[&key]);
            let rate = |a: i64, b: i64| {
                let w: Vec<f64> = s
                    .iter()
                    .filter(|(t, _)| *t >= a && *t < b)
                    .map(|x| x.1)
                    .collect();
                let inc: f64 = w
                    .windows(2)
                    .map(|p| if p[1] >= p[0] { p[1] - p[0] } else { p[1] })
                    .sum();
                inc / (b - a) as f64
            };
            let len = e.end_ms - e.start_ms;
            let before = rate(e.start_ms - len - 3_600_000, e.start_ms - 3_600_000);
            assert!(
                rate(e.start_ms, e.end_ms) > 3.0 * before,
                "{key} at {}",
                e.start_ms
            );
            checked += 1;
        }
    }
    assert!(checked > 20, "{checked}");
}

#[test]
fn every_listed_series_has_samples() {
    for seed in 0..6 {
        let ds = workload(&WorkloadParams {
            days: 2,
            seed,
            start_ms: tsq_formats::gen::DEFAULT_START_MS + 9 * 3_600_000 + 1_234,
            ..WorkloadParams::default()
        });
        let mut n = vec![0u32; ds.series().len()];
        ds.for_each_sample(|i, _, _| {
            n[i] += 1;
            Ok::<(), Infallible>(())
        })
        .unwrap();
        for (i, c) in n.iter().enumerate() {
            assert!(*c > 0, "seed {seed}: {} has no sample", ds.series()[i].key);
        }
    }
}

/// Pins the bytes of small datasets: a change here changes the published benchmark inputs,
/// so it must be deliberate (and BENCHMARKS.md figures re-measured).
#[test]
fn dataset_bytes_are_pinned() {
    let got = (om_hash(&small_devops(42)), om_hash(&small_workload(42)));
    assert_eq!(
        got,
        (0x4ddf_60d8_e463_2440, 0x7600_666b_7611_7e21),
        "{got:#x?}"
    );
}
