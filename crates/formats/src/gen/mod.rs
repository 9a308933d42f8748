//! The deterministic benchmark datasets of `tsq gen` and `tsq bench` (see docs/formats.md
//! and the spec's datasets.md).
//!
//! A [`Dataset`] knows its series up front ([`Dataset::series`]) and produces samples on
//! demand, in O(series) memory:
//!
//! * [`Dataset::for_each_sample`]: globally time-ordered (every series at `t`, then
//!   `t + step`), what an embedder or benchmark appends;
//! * [`Dataset::for_each_sample_of`]: one series, in time order (each series has its own
//!   random stream, so both orders give the same samples);
//! * [`Dataset::write_openmetrics`] (one block per metric family, as OpenMetrics requires)
//!   and [`Dataset::write_influx`];
//! * [`Dataset::sidecar_json`]: the ground truth of injected anomalies, restarts and deploys.
//!
//! Same parameters and seed, same bytes.
//!
//! ```
//! use tsq_formats::gen::{devops, DevopsParams};
//! let ds = devops(&DevopsParams { hosts: 2, days: 1, ..DevopsParams::default() });
//! assert_eq!(ds.series().len(), 20);
//! let mut n = 0u64;
//! ds.for_each_sample(|_series, _ts, v| {
//!     assert!((0.0..=100.0).contains(&v));
//!     n += 1;
//!     Ok::<(), ()>(())
//! })
//! .unwrap();
//! assert_eq!(n, 20 * 8640);
//! ```

mod devops;
pub mod rng;
mod workload;

use crate::num::format_rfc3339_ms;
use crate::{InfluxWriter, OpenMetricsWriter};
use rng::Rng;
use serde_json::{json, Map, Value};
use std::io::{self, Write};
use tsq_storage::{Labels, MetricMeta};

pub use devops::{devops, CPU_FIELDS};
pub use workload::{workload, CODES};

/// Default start of the datasets: 2026-01-01T00:00:00Z (a fixed time, so files are
/// reproducible).
pub const DEFAULT_START_MS: i64 = 1_767_225_600_000;
/// Default seed.
pub const DEFAULT_SEED: u64 = 42;

/// Parameters of the `devops` dataset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevopsParams {
    /// Number of hosts (default 100).
    pub hosts: usize,
    /// Days of data (default 1).
    pub days: u32,
    /// Timestamp of the first sample, ms (default [`DEFAULT_START_MS`]).
    pub start_ms: i64,
    /// Sample interval, ms (default 10 000).
    pub step_ms: i64,
    /// Seed (default [`DEFAULT_SEED`]).
    pub seed: u64,
}

impl Default for DevopsParams {
    fn default() -> Self {
        DevopsParams {
            hosts: 100,
            days: 1,
            start_ms: DEFAULT_START_MS,
            step_ms: 10_000,
            seed: DEFAULT_SEED,
        }
    }
}

/// Parameters of the `workload` dataset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadParams {
    /// Number of services (default 6).
    pub services: usize,
    /// Instances per service (default 5).
    pub instances: usize,
    /// Days of data (default 7).
    pub days: u32,
    /// Timestamp of the first sample, ms (default [`DEFAULT_START_MS`]).
    pub start_ms: i64,
    /// Scrape interval, ms (default 15 000).
    pub step_ms: i64,
    /// Seed (default [`DEFAULT_SEED`]).
    pub seed: u64,
}

impl Default for WorkloadParams {
    fn default() -> Self {
        WorkloadParams {
            services: 6,
            instances: 5,
            days: 7,
            start_ms: DEFAULT_START_MS,
            step_ms: 15_000,
            seed: DEFAULT_SEED,
        }
    }
}

/// One series of a dataset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesInfo {
    /// Its labels (with `__name__`).
    pub labels: Labels,
    /// Its metric name.
    pub metric: String,
    /// Its key as the parsers report it (`name{a="b",...}`), see [`crate::series_key`].
    pub key: String,
    /// Influx measurement (`cpu` for devops, the metric name for workload).
    pub influx_measurement: String,
    /// Influx field (`usage_user` ... for devops, `value` for workload).
    pub influx_field: String,
    /// Influx tags, in the order they are written.
    pub influx_tags: Vec<(String, String)>,
    /// Series with the same group and timestamp share one Influx line (devops: the host).
    pub influx_line_group: usize,
}

/// One entry of the ground truth: something injected into a dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct GroundTruth {
    /// `deploy`, `restart`, `error_burst`, `latency_shift`, `latency_spike`,
    /// `latency_level_shift`.
    pub kind: &'static str,
    /// The labels that select the affected series (a subset: e.g. `service` alone for a
    /// deploy; `__name__`, `service`, `instance` for a latency spike).
    pub labels: Vec<(String, String)>,
    /// First affected timestamp, ms.
    pub start_ms: i64,
    /// End (exclusive), ms.
    pub end_ms: i64,
    /// Details (`version`, `bad`, `cause`, `factor`, ...).
    pub details: Map<String, Value>,
}

impl GroundTruth {
    /// A PromQL selector for the affected series: `name{a="b"}` or `{service="api"}`.
    pub fn selector(&self) -> String {
        let name = self
            .labels
            .iter()
            .find(|(k, _)| k == tsq_storage::METRIC_NAME)
            .map(|(_, v)| v.as_str());
        let mut s = String::new();
        let rest: Vec<(&str, &str)> = self
            .labels
            .iter()
            .filter(|(k, _)| k != tsq_storage::METRIC_NAME)
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        if let Some(n) = name {
            crate::push_series_key(&mut s, n, rest);
        } else {
            s.push('{');
            for (i, (k, v)) in rest.iter().enumerate() {
                if i > 0 {
                    s.push(',');
                }
                s.push_str(k);
                s.push('=');
                crate::key::push_quoted(&mut s, v);
            }
            s.push('}');
        }
        s
    }

    fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("kind".into(), json!(self.kind));
        let labels: Map<String, Value> = self
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect();
        m.insert("labels".into(), Value::Object(labels));
        m.insert("selector".into(), json!(self.selector()));
        m.insert("start_ms".into(), json!(self.start_ms));
        m.insert("end_ms".into(), json!(self.end_ms));
        m.insert("start".into(), json!(format_rfc3339_ms(self.start_ms)));
        m.insert("end".into(), json!(format_rfc3339_ms(self.end_ms)));
        for (k, v) in &self.details {
            m.insert(k.clone(), v.clone());
        }
        Value::Object(m)
    }
}

/// A piecewise-constant function of the step index, read with a monotone cursor.
#[derive(Debug, Clone, Default)]
pub(crate) struct Timeline {
    /// (first step, value), sorted, the first at step 0.
    pts: Vec<(usize, f64)>,
}

impl Timeline {
    /// From intervals `[start, end)` with values; `combine` folds the values of the intervals
    /// covering a step into `default`.
    pub(crate) fn from_intervals(
        default: f64,
        iv: &[(usize, usize, f64)],
        combine: fn(f64, f64) -> f64,
    ) -> Self {
        let mut b: Vec<usize> = vec![0];
        for &(s, e, _) in iv {
            b.push(s);
            b.push(e);
        }
        b.sort_unstable();
        b.dedup();
        let mut pts: Vec<(usize, f64)> = Vec::with_capacity(b.len());
        for &x in &b {
            let v = iv
                .iter()
                .filter(|&&(s, e, _)| s <= x && x < e)
                .fold(default, |a, &(_, _, v)| combine(a, v));
            if pts
                .last()
                .is_none_or(|&(_, pv)| pv.to_bits() != v.to_bits())
            {
                pts.push((x, v));
            }
        }
        Timeline { pts }
    }

    /// From change points (step, value), sorted by step; `initial` before the first.
    pub(crate) fn from_points(initial: f64, points: &[(usize, f64)]) -> Self {
        let mut pts = vec![(0, initial)];
        for &(s, v) in points {
            if pts.last().is_some_and(|&(ps, _)| ps == s) {
                pts.pop();
            }
            pts.push((s, v));
        }
        Timeline { pts }
    }

    #[inline]
    pub(crate) fn at(&self, cur: &mut usize, k: usize) -> f64 {
        while *cur + 1 < self.pts.len() && self.pts[*cur + 1].0 <= k {
            *cur += 1;
        }
        self.pts[*cur].1
    }
}

/// How one series is generated.
#[derive(Debug, Clone)]
pub(crate) enum Spec {
    Cpu,
    Requests { inst: usize, code: usize },
    Latency { inst: usize },
    Memory { inst: usize },
    Up { inst: usize },
    BuildInfo { inst: usize, version: u32 },
}

/// The generation state of one series.
#[derive(Debug, Clone)]
pub(crate) struct State {
    pub(crate) rng: Rng,
    pub(crate) v: f64,
    pub(crate) was_down: bool,
    pub(crate) cur: [usize; 3],
}

/// A generated dataset: its series, metadata, ground truth and a sample stream.
#[derive(Debug, Clone)]
pub struct Dataset {
    name: &'static str,
    seed: u64,
    start_ms: i64,
    step_ms: i64,
    steps: usize,
    series: Vec<SeriesInfo>,
    specs: Vec<Spec>,
    metadata: Vec<(String, MetricMeta)>,
    events: Vec<GroundTruth>,
    instances: Vec<workload::Instance>,
    params: Value,
}

impl Dataset {
    /// `devops` or `workload`.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Every series that has at least one sample (for `workload`, each `build_info` version
    /// is its own series).
    pub fn series(&self) -> &[SeriesInfo] {
        &self.series
    }

    /// Metadata of every metric, in the order the OpenMetrics file writes the families.
    /// `kind` marks the outcome metrics (`http_requests_total`, `request_latency_seconds`)
    /// as KPIs; the text formats do not carry the kind.
    pub fn metadata(&self) -> &[(String, MetricMeta)] {
        &self.metadata
    }

    /// What was injected (empty for `devops`), sorted by start.
    pub fn ground_truth(&self) -> &[GroundTruth] {
        &self.events
    }

    /// Timestamp of the first step, ms.
    pub fn start_ms(&self) -> i64 {
        self.start_ms
    }

    /// Interval between samples, ms.
    pub fn step_ms(&self) -> i64 {
        self.step_ms
    }

    /// Number of steps (timestamps).
    pub fn steps(&self) -> usize {
        self.steps
    }

    /// End of the data (exclusive): `start_ms + steps * step_ms`.
    pub fn end_ms(&self) -> i64 {
        self.start_ms + self.steps as i64 * self.step_ms
    }

    fn init_state(&self, idx: usize) -> State {
        let mut rng = Rng::stream(self.seed, &self.series[idx].key);
        let v = match &self.specs[idx] {
            Spec::Cpu => rng.range(0.0, 100.0),
            Spec::Requests { inst, code } => {
                workload::initial_counter(&self.instances[*inst], *code, &mut rng)
            }
            Spec::Memory { inst } => self.instances[*inst].mem_base * rng.range(1.0, 1.2),
            _ => 0.0,
        };
        State {
            rng,
            v,
            was_down: false,
            cur: [0; 3],
        }
    }

    #[inline]
    fn step(&self, idx: usize, st: &mut State, k: usize, load: f64) -> Option<f64> {
        match &self.specs[idx] {
            Spec::Cpu => {
                let v = st.v;
                st.v = (st.v + st.rng.normal()).clamp(0.0, 100.0);
                Some(v)
            }
            spec => workload::step(&self.instances, spec, st, k, load, self.step_ms),
        }
    }

    #[inline]
    fn load_at(&self, t: i64) -> f64 {
        if self.instances.is_empty() {
            0.0
        } else {
            workload::load(t)
        }
    }

    /// Calls `f(series index, timestamp ms, value)` for every sample, time-ordered: all
    /// series at the first step (in [`series`](Self::series) order), then the next step...
    pub fn for_each_sample<E>(
        &self,
        mut f: impl FnMut(usize, i64, f64) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut states: Vec<State> = (0..self.series.len()).map(|i| self.init_state(i)).collect();
        for k in 0..self.steps {
            let t = self.start_ms + k as i64 * self.step_ms;
            let load = self.load_at(t);
            for (i, st) in states.iter_mut().enumerate() {
                if let Some(v) = self.step(i, st, k, load) {
                    f(i, t, v)?;
                }
            }
        }
        Ok(())
    }

    /// Calls `f(timestamp ms, value)` for every sample of one series, in time order. The
    /// samples are the ones [`for_each_sample`](Self::for_each_sample) gives for it.
    pub fn for_each_sample_of<E>(
        &self,
        series: usize,
        mut f: impl FnMut(i64, f64) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut st = self.init_state(series);
        for k in 0..self.steps {
            let t = self.start_ms + k as i64 * self.step_ms;
            if let Some(v) = self.step(series, &mut st, k, self.load_at(t)) {
                f(t, v)?;
            }
        }
        Ok(())
    }

    /// Counts the samples (by generating them).
    pub fn count_samples(&self) -> u64 {
        let mut n = 0u64;
        let _ = self.for_each_sample(|_, _, _| {
            n += 1;
            Ok::<(), ()>(())
        });
        n
    }

    /// Writes the dataset as OpenMetrics text: one family per metric (`# TYPE`, `# UNIT`,
    /// `# HELP`), its series one after the other, each in time order, then `# EOF`.
    pub fn write_openmetrics<W: Write>(&self, w: W) -> io::Result<W> {
        let mut w = OpenMetricsWriter::new(w);
        for (metric, meta) in &self.metadata {
            w.family(metric, Some(meta))?;
            for (i, s) in self.series.iter().enumerate() {
                if &s.metric == metric {
                    self.for_each_sample_of(i, |t, v| w.sample_key(&s.key, t, v))?;
                }
            }
        }
        w.finish()
    }

    /// Writes the dataset as Influx line protocol (nanosecond timestamps), time-ordered;
    /// devops writes one line per host and time with the 10 `usage_*` fields.
    pub fn write_influx<W: Write>(&self, w: W) -> io::Result<W> {
        let mut w = InfluxWriter::new(w);
        let tags: Vec<Vec<(&str, &str)>> = self
            .series
            .iter()
            .map(|s| {
                s.influx_tags
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect()
            })
            .collect();
        let mut fields: Vec<(&str, f64)> = Vec::with_capacity(16);
        let mut cur: Option<(usize, usize, i64)> = None; // (group, first series, ts)
        self.for_each_sample(|i, t, v| {
            let s = &self.series[i];
            if let Some((g, first, ct)) = cur {
                if g != s.influx_line_group || ct != t {
                    w.line(
                        &self.series[first].influx_measurement,
                        &tags[first],
                        &fields,
                        ct,
                    )?;
                    fields.clear();
                    cur = None;
                }
            }
            if cur.is_none() {
                cur = Some((s.influx_line_group, i, t));
            }
            fields.push((s.influx_field.as_str(), v));
            Ok::<(), io::Error>(())
        })?;
        if let Some((_, first, ct)) = cur {
            w.line(
                &self.series[first].influx_measurement,
                &tags[first],
                &fields,
                ct,
            )?;
        }
        w.finish()
    }

    /// Writes the dataset in `format`: OpenMetrics or Influx line protocol (Prometheus text
    /// and CSV are refused with `InvalidInput`).
    pub fn write<W: Write>(&self, format: crate::Format, w: W) -> io::Result<W> {
        match format {
            crate::Format::OpenMetrics => self.write_openmetrics(w),
            crate::Format::Influx => self.write_influx(w),
            other => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("datasets are written as openmetrics or influx, not {other}"),
            )),
        }
    }

    /// The sidecar: parameters, series counts and every injected event with its labels,
    /// selector, start and end (ms and RFC 3339), kind and details.
    pub fn sidecar_json(&self) -> Value {
        json!({
            "dataset": self.name,
            "seed": self.seed,
            "params": self.params,
            "start_ms": self.start_ms,
            "end_ms": self.end_ms(),
            "start": format_rfc3339_ms(self.start_ms),
            "end": format_rfc3339_ms(self.end_ms()),
            "step_ms": self.step_ms,
            "steps": self.steps,
            "series_total": self.series.len(),
            "metrics": self.metadata.iter().map(|(m, meta)| json!({
                "name": m,
                "type": meta.metric_type.as_str(),
                "unit": meta.unit,
                "help": meta.help,
                "kind": meta.kind.as_str(),
            })).collect::<Vec<_>>(),
            "events": self.events.iter().map(GroundTruth::to_json).collect::<Vec<_>>(),
        })
    }
}

pub(crate) fn make_series(
    labels: Labels,
    influx_measurement: &str,
    influx_field: &str,
    influx_tags: Vec<(String, String)>,
    influx_line_group: usize,
) -> SeriesInfo {
    let key = crate::series_key(&labels);
    SeriesInfo {
        metric: labels.metric_name().unwrap_or("").to_string(),
        labels,
        key,
        influx_measurement: influx_measurement.to_string(),
        influx_field: influx_field.to_string(),
        influx_tags,
        influx_line_group,
    }
}

fn steps_for(days: u32, step_ms: i64) -> usize {
    let step = step_ms.max(1);
    usize::try_from(i64::from(days) * 86_400_000 / step).unwrap_or(0)
}
