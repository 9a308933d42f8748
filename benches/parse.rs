//! Criterion benchmark: parsing typical dashboard queries (100-300 bytes). Goal: < 10 us each.
//!
//! Run with `cargo bench --bench parse`.

// criterion_group! generates undocumented public functions.
#![allow(missing_docs)]

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use tsq::parser::parse;

const QUERIES: &[(&str, &str)] = &[
    (
        "error_ratio",
        r#"sum by (service) (rate(http_requests_total{job="api", code=~"5.."}[5m])) / sum by (service) (rate(http_requests_total{job="api"}[5m]))"#,
    ),
    (
        "latency_p99",
        r#"histogram_quantile(0.99, sum by (le, service) (rate(http_request_duration_seconds_bucket{job="api", route!~"/health|/metrics"}[5m])))"#,
    ),
    (
        "cpu_usage",
        r#"100 * (1 - avg by (instance) (rate(node_cpu_seconds_total{mode="idle", instance=~"web-.*"}[2m]))) > bool 80"#,
    ),
    (
        "memory_join",
        r#"(container_memory_working_set_bytes{namespace="prod", container!=""} / on(namespace, pod, container) group_left kube_pod_container_resource_limits{resource="memory"}) * 100"#,
    ),
    (
        "topk_subquery",
        r#"topk(5, max_over_time(sum by (pod) (rate(container_cpu_usage_seconds_total{namespace="prod"}[5m]))[1h:1m] @ end() offset 1d))"#,
    ),
    (
        "baseline_zscore",
        r#"zscore(sum by (service) (rate(requests_total[5m])), sum by (service) (rate(requests_total[5m]))[1h:1m] seasons(1d, 7, "centered"), rate(requests_total[5m])[7d:5m]) ignoring(season)"#,
    ),
    (
        "pattern",
        r#"pattern("D E{5,} R", D: changes(version_info[1m]) > 0, E: err_ratio > 0.05, R: err_ratio < 0.01) by (service) [1d:1m] within 2h"#,
    ),
];

fn bench_parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse");
    for (name, q) in QUERIES {
        assert!(parse(q).is_ok(), "{name}: {:?}", parse(q));
        group.bench_function(*name, |b| b.iter(|| parse(black_box(q)).unwrap()));
    }
    group.finish();
    let e = parse(QUERIES[0].1).unwrap();
    c.bench_function("print/error_ratio", |b| {
        b.iter(|| black_box(&e).to_string())
    });
}

criterion_group!(benches, bench_parse);
criterion_main!(benches);
