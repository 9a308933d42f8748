//! The `workload` dataset: service metrics with daily and weekly rhythm, restarts, deploys
//! and injected anomalies.

use super::rng::Rng;
use super::{make_series, steps_for, Dataset, GroundTruth, Spec, State, Timeline, WorkloadParams};
use serde_json::{json, Map, Value};
use tsq_storage::{Labels, MetricKind, MetricMeta, MetricType};

/// Status classes of `http_requests_total`.
pub const CODES: [&str; 4] = ["2xx", "3xx", "4xx", "5xx"];
const CODE_SHARE: [f64; 4] = [0.93, 0.02, 0.045, 0.005];
const SERVICES: [&str; 6] = ["api", "checkout", "search", "auth", "catalog", "payments"];

/// The plan of one instance: its constants and timelines.
#[derive(Debug, Clone)]
pub(crate) struct Instance {
    /// Requests per second at load 1.
    base_rate: f64,
    code_share: [f64; 4],
    /// Latency at load 0.5, seconds.
    lat_base: f64,
    pub(crate) mem_base: f64,
    /// Memory growth per step, as a fraction of `mem_base`.
    mem_drift: f64,
    /// 1 while the instance is down (only `up` has samples, 0).
    down: Timeline,
    /// Latency multiplier.
    lat: Timeline,
    /// Share of requests moved to 5xx.
    err: Timeline,
    /// Index of the running version.
    version: Timeline,
}

/// Cosine from `+ - * /` and `round` only (a Taylor series after range reduction, error
/// below 1e-12), so that the datasets are bit-identical on every platform: `f64::cos` comes
/// from the platform's libm.
fn cos(x: f64) -> f64 {
    let tau = std::f64::consts::TAU;
    let x = x - tau * (x / tau).round(); // [-pi, pi]
    let x2 = x * x;
    let mut term = 1.0;
    let mut sum = 1.0;
    for k in 1..=14 {
        term *= -x2 / f64::from((2 * k - 1) * (2 * k));
        sum += term;
    }
    sum
}

/// Traffic level at `t`: a daily cycle (peak 15:00 UTC, trough 03:00 at 20 % of the peak)
/// times a weekly one (weekends at 55 %, ramping over the first 3 hours of a day).
#[inline]
pub(crate) fn load(t: i64) -> f64 {
    let day = t.div_euclid(86_400_000);
    let h = t.rem_euclid(86_400_000) as f64 / 3_600_000.0;
    let daily = 0.6 + 0.4 * cos((h - 15.0) * (std::f64::consts::PI / 12.0));
    let wf = |d: i64| {
        let dow = (d + 4).rem_euclid(7); // 0 = Sunday; 1970-01-01 was a Thursday
        if dow == 0 || dow == 6 {
            0.55
        } else {
            1.0
        }
    };
    let weekly = if h < 3.0 {
        let a = h / 3.0;
        wf(day - 1) * (1.0 - a) + wf(day) * a
    } else {
        wf(day)
    };
    daily * weekly
}

pub(crate) fn initial_counter(ins: &Instance, code: usize, rng: &mut Rng) -> f64 {
    // The instance has been up for up to a day before the data starts.
    (ins.base_rate * ins.code_share[code] * rng.range(0.0, 86_400.0) * 0.6).round()
}

#[inline]
pub(crate) fn step(
    instances: &[Instance],
    spec: &Spec,
    st: &mut State,
    k: usize,
    load: f64,
    step_ms: i64,
) -> Option<f64> {
    let inst = match *spec {
        Spec::Requests { inst, .. }
        | Spec::Latency { inst }
        | Spec::Memory { inst }
        | Spec::Up { inst }
        | Spec::BuildInfo { inst, .. } => inst,
        Spec::Cpu => return None,
    };
    let ins = &instances[inst];
    let down = ins.down.at(&mut st.cur[0], k) > 0.5;
    if let Spec::Up { .. } = spec {
        return Some(if down { 0.0 } else { 1.0 });
    }
    if down {
        st.was_down = true;
        return None;
    }
    let restarted = std::mem::replace(&mut st.was_down, false);
    match *spec {
        Spec::Requests { code, .. } => {
            if restarted {
                st.v = 0.0;
            }
            let extra = ins.err.at(&mut st.cur[1], k);
            let share = if code == 3 {
                ins.code_share[3] + extra
            } else {
                ins.code_share[code] * (1.0 - extra)
            };
            let mean = ins.base_rate * load * share * (step_ms as f64 / 1000.0);
            let inc = (mean + mean.sqrt() * st.rng.normal()).round().max(0.0);
            st.v += inc;
            Some(st.v)
        }
        Spec::Latency { .. } => {
            let f = ins.lat.at(&mut st.cur[1], k);
            let v = ins.lat_base * (0.8 + 0.4 * load) * (1.0 + 0.06 * st.rng.normal()) * f;
            // An exporter's precision: whole microseconds.
            Some(((v * 1e6).round() / 1e6).max(1e-6))
        }
        Spec::Memory { .. } => {
            if restarted {
                st.v = ins.mem_base * st.rng.range(0.97, 1.0);
            } else {
                st.v += ins.mem_base * (ins.mem_drift + 0.002 * st.rng.normal());
                st.v = st.v.max(0.5 * ins.mem_base);
            }
            Some((st.v / 4096.0).round() * 4096.0)
        }
        Spec::BuildInfo { version, .. } => {
            (ins.version.at(&mut st.cur[2], k) as u32 == version).then_some(1.0)
        }
        Spec::Up { .. } | Spec::Cpu => None,
    }
}

struct Builder {
    start_ms: i64,
    step_ms: i64,
    steps: usize,
    events: Vec<GroundTruth>,
}

impl Builder {
    fn ms(&self, k: usize) -> i64 {
        self.start_ms + k as i64 * self.step_ms
    }

    /// Steps in `ms` milliseconds (at least 1).
    fn steps_in(&self, ms: f64) -> usize {
        ((ms / self.step_ms as f64).round() as usize).max(1)
    }

    fn event(
        &mut self,
        kind: &'static str,
        labels: &[(&str, &str)],
        s: usize,
        e: usize,
        details: Value,
    ) {
        let e = e.min(self.steps);
        if s >= e {
            return;
        }
        let details = match details {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        self.events.push(GroundTruth {
            kind,
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            start_ms: self.ms(s),
            end_ms: self.ms(e),
            details,
        });
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Builds the `workload` dataset (see docs/formats.md for its series and events).
pub fn workload(p: &WorkloadParams) -> Dataset {
    let step_ms = p.step_ms.max(1);
    let steps = steps_for(p.days, step_ms);
    let mut b = Builder {
        start_ms: p.start_ms,
        step_ms,
        steps,
        events: Vec::new(),
    };
    let day_steps = b.steps_in(86_400_000.0);
    let first_day = p.start_ms.div_euclid(86_400_000);
    let start_in_day = p.start_ms.rem_euclid(86_400_000);
    let stagger = b.steps_in(120_000.0);

    let mut instances = Vec::new();
    let mut series = Vec::new();
    let mut specs = Vec::new();
    for s in 0..p.services {
        let svc = SERVICES
            .get(s)
            .map_or_else(|| format!("svc{s}"), |n| (*n).to_string());
        let mut rng = Rng::stream(p.seed, &format!("workload/service/{svc}"));
        let rate = rng.range(20.0, 200.0);
        let lat = rng.range(0.02, 0.25);
        let mem = rng.range(150.0, 1500.0) * 1048576.0;
        let n = p.instances;
        // Per-instance intervals.
        let mut down: Vec<Vec<(usize, usize, f64)>> = vec![Vec::new(); n];
        let mut latm: Vec<Vec<(usize, usize, f64)>> = vec![Vec::new(); n];
        let mut err: Vec<Vec<(usize, usize, f64)>> = vec![Vec::new(); n];
        let mut vpts: Vec<Vec<(usize, f64)>> = vec![Vec::new(); n];
        let mut versions = vec![format!("{}.{}.0", 1 + s % 3, rng.below(20))];
        let inst_name = |i: usize| format!("{svc}-{i}");

        // Deploys: on weekdays, 60 % chance, between 09:00 and 17:00 UTC; a rolling restart
        // of the instances 2 minutes apart. 35 % are bad: a 5xx burst and a latency shift.
        for d in 0..=i64::from(p.days) {
            let day = first_day + d;
            let dow = (day + 4).rem_euclid(7);
            let (deploy, at, bad) = (rng.chance(0.6), rng.range(9.0, 17.0), rng.chance(0.35));
            let (burst_min, burst_share, shift_extra_min, shift_f) = (
                rng.range(10.0, 40.0),
                rng.range(0.05, 0.25),
                rng.range(0.0, 60.0),
                rng.range(1.4, 2.0),
            );
            if !(1..=5).contains(&dow) || !deploy {
                continue;
            }
            let t_ms = d * 86_400_000 + (at * 3_600_000.0) as i64 - start_in_day;
            if t_ms < 0 {
                continue;
            }
            let k0 = (t_ms / step_ms) as usize;
            if k0 >= steps {
                continue;
            }
            let prev = versions.last().cloned().unwrap_or_default();
            let mut parts: Vec<u64> = prev.split('.').map(|x| x.parse().unwrap_or(0)).collect();
            if rng.chance(0.3) {
                parts[1] += 1;
                parts[2] = 0;
            } else {
                parts[2] += 1;
            }
            let ver = format!("{}.{}.{}", parts[0], parts[1], parts[2]);
            versions.push(ver.clone());
            let vidx = (versions.len() - 1) as f64;
            let mut last_up = k0;
            let burst_end = k0 + stagger * n + b.steps_in(burst_min * 60_000.0);
            let shift_end = burst_end + b.steps_in(shift_extra_min * 60_000.0);
            for i in 0..n {
                let rs = k0 + i * stagger;
                let re = rs + 1 + rng.below(2) as usize;
                last_up = last_up.max(re);
                down[i].push((rs, re, 1.0));
                vpts[i].push((re, vidx));
                b.event(
                    "restart",
                    &[("service", &svc), ("instance", &inst_name(i))],
                    rs,
                    re,
                    json!({"cause": "deploy", "version": ver}),
                );
                if bad {
                    err[i].push((re, burst_end, burst_share));
                    latm[i].push((re, shift_end, shift_f));
                    b.event(
                        "error_burst",
                        &[("__name__", "http_requests_total"), ("service", &svc), ("instance", &inst_name(i)), ("code", "5xx")],
                        re,
                        burst_end,
                        json!({"cause": "deploy", "version": ver, "share_5xx": round3(burst_share)}),
                    );
                    b.event(
                        "latency_shift",
                        &[
                            ("__name__", "request_latency_seconds"),
                            ("service", &svc),
                            ("instance", &inst_name(i)),
                        ],
                        re,
                        shift_end,
                        json!({"cause": "deploy", "version": ver, "factor": round3(shift_f)}),
                    );
                }
            }
            b.event(
                "deploy",
                &[("service", &svc)],
                k0,
                last_up,
                json!({"version": ver, "from_version": prev, "bad": bad}),
            );
        }
        // Service-wide latency level shifts: 10 % of days, 1 to 6 hours, x1.3 to x1.8.
        for d in 0..=i64::from(p.days) {
            let (yes, at, hours, f) = (
                rng.chance(0.1),
                rng.f64(),
                rng.range(1.0, 6.0),
                rng.range(1.3, 1.8),
            );
            if !yes {
                continue;
            }
            let s0 = (d as usize * day_steps) + (at * day_steps as f64) as usize;
            let e0 = s0 + b.steps_in(hours * 3_600_000.0);
            if s0 >= steps {
                continue;
            }
            for l in latm.iter_mut() {
                l.push((s0, e0, f));
            }
            b.event(
                "latency_level_shift",
                &[("__name__", "request_latency_seconds"), ("service", &svc)],
                s0,
                e0,
                json!({"factor": round3(f)}),
            );
        }
        for i in 0..n {
            let iname = inst_name(i);
            let mut irng = Rng::stream(p.seed, &format!("workload/instance/{iname}"));
            // Crashes: 15 % of days, down 1 to 3 scrapes, not within 10 minutes of another
            // restart.
            for d in 0..=i64::from(p.days) {
                let (yes, at, len) = (irng.chance(0.15), irng.f64(), 1 + irng.below(3) as usize);
                if !yes {
                    continue;
                }
                let s0 = d as usize * day_steps + (at * day_steps as f64) as usize;
                let e0 = s0 + len;
                let margin = b.steps_in(600_000.0);
                if s0 >= steps
                    || down[i]
                        .iter()
                        .any(|&(s, e, _)| s0 < e + margin && s < e0 + margin)
                {
                    continue;
                }
                down[i].push((s0, e0, 1.0));
                b.event(
                    "restart",
                    &[("service", &svc), ("instance", &iname)],
                    s0,
                    e0,
                    json!({"cause": "crash"}),
                );
            }
            // Latency spikes: 30 % of days, 2 to 10 minutes, x3 to x8.
            for d in 0..=i64::from(p.days) {
                let (yes, at, min, f) = (
                    irng.chance(0.3),
                    irng.f64(),
                    irng.range(2.0, 10.0),
                    irng.range(3.0, 8.0),
                );
                if !yes {
                    continue;
                }
                let s0 = d as usize * day_steps + (at * day_steps as f64) as usize;
                let e0 = s0 + b.steps_in(min * 60_000.0);
                if s0 >= steps {
                    continue;
                }
                latm[i].push((s0, e0, f));
                b.event(
                    "latency_spike",
                    &[
                        ("__name__", "request_latency_seconds"),
                        ("service", &svc),
                        ("instance", &iname),
                    ],
                    s0,
                    e0,
                    json!({"factor": round3(f)}),
                );
            }
            let mut code_share = CODE_SHARE;
            for c in code_share.iter_mut() {
                *c *= irng.range(0.8, 1.2);
            }
            down[i].sort_by_key(|x| x.0);
            let inst_idx = instances.len();
            instances.push(Instance {
                base_rate: rate * irng.range(0.9, 1.1),
                code_share,
                lat_base: lat * irng.range(0.9, 1.1),
                mem_base: mem * irng.range(0.9, 1.1),
                mem_drift: irng.range(0.002, 0.02) / 240.0, // 0.2 % to 2 % an hour at 15 s
                down: Timeline::from_intervals(0.0, &down[i], |_, v| v),
                lat: Timeline::from_intervals(1.0, &latm[i], |a, v| a * v),
                err: Timeline::from_intervals(0.0, &err[i], |a, v| (a + v).min(0.9)),
                version: Timeline::from_points(0.0, &vpts[i]),
            });
            let base = [("service", svc.as_str()), ("instance", iname.as_str())];
            let mut add = |name: &str, extra: Option<(&str, &str)>, spec: Spec| {
                let labels = Labels::new(
                    base.iter()
                        .copied()
                        .chain(extra)
                        .chain([("__name__", name)]),
                );
                let tags: Vec<(String, String)> = labels
                    .iter()
                    .filter(|l| l.name != "__name__")
                    .map(|l| (l.name.clone(), l.value.clone()))
                    .collect();
                let group = series.len();
                series.push(make_series(labels, name, "value", tags, group));
                specs.push(spec);
            };
            for (c, code) in CODES.iter().enumerate() {
                add(
                    "http_requests_total",
                    Some(("code", code)),
                    Spec::Requests {
                        inst: inst_idx,
                        code: c,
                    },
                );
            }
            add(
                "request_latency_seconds",
                None,
                Spec::Latency { inst: inst_idx },
            );
            add(
                "process_resident_memory_bytes",
                None,
                Spec::Memory { inst: inst_idx },
            );
            add("up", None, Spec::Up { inst: inst_idx });
            // A version gets a series only if it runs (is up) at some step of the data.
            let ins = &instances[inst_idx];
            let mut seen = vec![false; versions.len()];
            let (mut cd, mut cv) = (0, 0);
            for k in 0..steps {
                let v = ins.version.at(&mut cv, k) as usize;
                if ins.down.at(&mut cd, k) < 0.5 {
                    seen[v] = true;
                }
            }
            for (v, ver) in versions.iter().enumerate().filter(|(v, _)| seen[*v]) {
                add(
                    "build_info",
                    Some(("version", ver)),
                    Spec::BuildInfo {
                        inst: inst_idx,
                        version: v as u32,
                    },
                );
            }
        }
    }
    let mut events = b.events;
    events.sort_by(|a, b| (a.start_ms, a.kind, &a.labels).cmp(&(b.start_ms, b.kind, &b.labels)));
    let meta = |t, unit: &str, help: &str, kind| MetricMeta {
        metric_type: t,
        unit: unit.into(),
        help: help.into(),
        kind,
    };
    let metadata = vec![
        (
            "http_requests_total".to_string(),
            meta(
                MetricType::Counter,
                "",
                "HTTP requests served, by status class.",
                MetricKind::Kpi,
            ),
        ),
        (
            "request_latency_seconds".to_string(),
            meta(
                MetricType::Gauge,
                "seconds",
                "Mean request latency over the scrape interval.",
                MetricKind::Kpi,
            ),
        ),
        (
            "process_resident_memory_bytes".to_string(),
            meta(
                MetricType::Gauge,
                "bytes",
                "Resident memory size in bytes.",
                MetricKind::Health,
            ),
        ),
        (
            "up".to_string(),
            meta(
                MetricType::Gauge,
                "",
                "1 when the scrape succeeded, 0 when the instance was down.",
                MetricKind::Health,
            ),
        ),
        (
            "build_info".to_string(),
            meta(
                MetricType::Gauge,
                "",
                "1 for the running version.",
                MetricKind::Health,
            ),
        ),
    ];
    Dataset {
        name: "workload",
        seed: p.seed,
        start_ms: p.start_ms,
        step_ms,
        steps,
        series,
        specs,
        metadata,
        events,
        instances,
        params: json!({
            "services": p.services,
            "instances": p.instances,
            "days": p.days,
            "start_ms": p.start_ms,
            "step_ms": p.step_ms,
            "seed": p.seed,
        }),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn portable_cos_is_accurate() {
        for i in -2000..2000 {
            let x = f64::from(i) * 0.01;
            assert!((super::cos(x) - x.cos()).abs() < 1e-12, "{x}");
        }
    }
}
