//! The `devops` dataset: the TSBS cpu-only shape.

use super::rng::Rng;
use super::{make_series, steps_for, Dataset, DevopsParams, Spec};
use serde_json::json;
use tsq_storage::{Labels, MetricMeta, MetricType};

/// The 10 CPU fields, in TSBS order.
pub const CPU_FIELDS: [&str; 10] = [
    "usage_user",
    "usage_system",
    "usage_idle",
    "usage_nice",
    "usage_iowait",
    "usage_irq",
    "usage_softirq",
    "usage_steal",
    "usage_guest",
    "usage_guest_nice",
];

const REGIONS: [(&str, [&str; 3]); 9] = [
    ("us-east-1", ["us-east-1a", "us-east-1b", "us-east-1c"]),
    ("us-west-1", ["us-west-1a", "us-west-1b", "us-west-1c"]),
    ("us-west-2", ["us-west-2a", "us-west-2b", "us-west-2c"]),
    ("eu-west-1", ["eu-west-1a", "eu-west-1b", "eu-west-1c"]),
    (
        "eu-central-1",
        ["eu-central-1a", "eu-central-1b", "eu-central-1b"],
    ),
    (
        "ap-southeast-1",
        ["ap-southeast-1a", "ap-southeast-1b", "ap-southeast-1b"],
    ),
    (
        "ap-southeast-2",
        ["ap-southeast-2a", "ap-southeast-2b", "ap-southeast-2b"],
    ),
    (
        "ap-northeast-1",
        ["ap-northeast-1a", "ap-northeast-1c", "ap-northeast-1c"],
    ),
    ("sa-east-1", ["sa-east-1a", "sa-east-1b", "sa-east-1c"]),
];
const OS: [&str; 3] = ["Ubuntu16.10", "Ubuntu16.04LTS", "Ubuntu15.10"];
const ARCH: [&str; 2] = ["x64", "x86"];
const TEAM: [&str; 4] = ["SF", "NYC", "LON", "CHI"];
const ENV: [&str; 3] = ["production", "staging", "test"];

fn pick<'a>(rng: &mut Rng, xs: &[&'a str]) -> &'a str {
    xs[rng.below(xs.len() as u64) as usize]
}

/// Builds the `devops` dataset: `hosts` x 10 gauges `cpu_usage_*` with the 10 TSBS host
/// tags, one sample per `step_ms`, values a random walk (normal steps, σ = 1) clamped to
/// 0..100 at full f64 precision.
pub fn devops(p: &DevopsParams) -> Dataset {
    let mut series = Vec::with_capacity(p.hosts * 10);
    let mut specs = Vec::with_capacity(p.hosts * 10);
    for h in 0..p.hosts {
        let mut rng = Rng::stream(p.seed, &format!("devops/host/{h}"));
        let (region, dcs) = REGIONS[rng.below(REGIONS.len() as u64) as usize];
        let tags: Vec<(String, String)> = vec![
            ("hostname".into(), format!("host_{h}")),
            ("region".into(), region.into()),
            ("datacenter".into(), pick(&mut rng, &dcs).into()),
            ("rack".into(), rng.below(100).to_string()),
            ("os".into(), pick(&mut rng, &OS).into()),
            ("arch".into(), pick(&mut rng, &ARCH).into()),
            ("team".into(), pick(&mut rng, &TEAM).into()),
            ("service".into(), rng.below(20).to_string()),
            ("service_version".into(), rng.below(2).to_string()),
            ("service_environment".into(), pick(&mut rng, &ENV).into()),
        ];
        for field in CPU_FIELDS {
            let name = format!("cpu_{field}");
            let labels = Labels::new(
                std::iter::once(("__name__".to_string(), name.clone())).chain(tags.iter().cloned()),
            );
            series.push(make_series(labels, "cpu", field, tags.clone(), h));
            specs.push(Spec::Cpu);
        }
    }
    let metadata = CPU_FIELDS
        .iter()
        .map(|f| {
            let mode = f.strip_prefix("usage_").unwrap_or(f);
            (
                format!("cpu_{f}"),
                MetricMeta {
                    metric_type: MetricType::Gauge,
                    help: format!("Percentage of CPU time spent in {mode} mode."),
                    ..MetricMeta::default()
                },
            )
        })
        .collect();
    Dataset {
        name: "devops",
        seed: p.seed,
        start_ms: p.start_ms,
        step_ms: p.step_ms.max(1),
        steps: steps_for(p.days, p.step_ms),
        series,
        specs,
        metadata,
        events: Vec::new(),
        instances: Vec::new(),
        params: json!({
            "hosts": p.hosts,
            "days": p.days,
            "start_ms": p.start_ms,
            "step_ms": p.step_ms,
            "seed": p.seed,
        }),
    }
}
