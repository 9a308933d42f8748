//! Replays rule groups over history, as Prometheus's rule manager would have evaluated them.
//!
//! Each rule's expression is evaluated as range queries (at most 11,001 steps each) whose
//! steps are the group's evaluation times (shifted back by `query_offset`); the step vectors
//! then drive recording (into an overlay that later rules read) or the alert state machine
//! ([`tsq::exec::alert::AlertMachine`]).

use std::collections::{BTreeMap, HashMap};

use anyhow::Result;
use tsq::exec::alert::{AlertEvent, AlertMachine};
use tsq::exec::{Engine, MemStorage, Queryable, SharedSubexpressions, Value};
use tsq::parser::{DurationExpr, Expr};
use tsq::storage::{Labels, Matcher, SeriesData};

use super::rules::{Rule, RuleFile, RuleKind, TextTemplate};

/// Most steps one range query may have (the engine's limit is 11,000 intervals).
const MAX_STEPS: i64 = 11_001;

/// The database plus the series recorded by recording rules so far (recorded samples win
/// over stored ones at equal timestamps).
pub struct Overlay<'a> {
    base: &'a (dyn Queryable + Sync),
    recorded: std::sync::RwLock<MemStorage>,
}

impl<'a> Overlay<'a> {
    /// An overlay over `base` with nothing recorded.
    pub fn new(base: &'a (dyn Queryable + Sync)) -> Self {
        Overlay {
            base,
            recorded: std::sync::RwLock::new(MemStorage::new()),
        }
    }

    /// Records samples.
    pub fn extend(&self, samples: Vec<(Labels, i64, f64)>) {
        let mut rec = self
            .recorded
            .write()
            .expect("no panics while holding the lock");
        for (labels, t, v) in samples {
            rec.add(labels, t, v);
        }
    }
}

impl Queryable for Overlay<'_> {
    fn select(
        &self,
        matchers: &[Matcher],
        mint_ms: i64,
        maxt_ms: i64,
    ) -> tsq::storage::Result<Vec<SeriesData>> {
        let mut base = self.base.select(matchers, mint_ms, maxt_ms)?;
        let rec = {
            let recorded = self
                .recorded
                .read()
                .expect("no panics while holding the lock");
            if recorded.num_series() == 0 {
                return Ok(base);
            }
            recorded.select(matchers, mint_ms, maxt_ms)?
        };
        if rec.is_empty() {
            return Ok(base);
        }
        let index: HashMap<Labels, usize> = base
            .iter()
            .enumerate()
            .map(|(i, s)| (s.labels.clone(), i))
            .collect();
        for r in rec {
            match index.get(&r.labels) {
                None => base.push(r),
                Some(&i) => {
                    let b = &mut base[i];
                    let mut merged: BTreeMap<i64, f64> = b
                        .timestamps
                        .iter()
                        .copied()
                        .zip(b.values.iter().copied())
                        .collect();
                    merged.extend(r.timestamps.iter().copied().zip(r.values.iter().copied()));
                    b.timestamps = merged.keys().copied().collect();
                    b.values = merged.values().copied().collect();
                }
            }
        }
        base.sort_by(|a, b| a.labels.cmp(&b.labels));
        Ok(base)
    }
}

/// What the replay needs besides the rules.
pub struct ReplayOptions {
    /// First time of interest (ms).
    pub from: i64,
    /// Last time of interest (ms).
    pub to: i64,
    /// Interval of groups that set none (ms).
    pub default_interval: i64,
    /// The engine (profile, lookback).
    pub engine: Engine,
}

/// One firing episode of one alert.
#[derive(Debug, Clone)]
pub struct Episode {
    /// When the alert became pending (ms).
    pub active_at: i64,
    /// When it started firing (ms).
    pub fired_at: i64,
    /// The evaluation at which it was seen resolved (ms); `None` while ongoing.
    pub end: Option<i64>,
    /// `resolved`, `limit` (the rule exceeded its limit and its alerts were reset) or
    /// `ongoing`.
    pub end_reason: &'static str,
    /// Already pending or firing at the first replayed evaluation: may have begun earlier.
    pub truncated: bool,
    /// The largest value seen since `active_at`.
    pub peak: f64,
    /// The value at the firing evaluation.
    pub value: f64,
    /// Annotations expanded at the firing evaluation.
    pub annotations: Vec<(String, String)>,
}

/// The alerts of one label set.
#[derive(Debug, Clone)]
pub struct AlertHistory {
    /// The alert labels (rule labels applied, `alertname` included).
    pub labels: Labels,
    /// Its firing episodes that overlap the replayed range, in time order.
    pub episodes: Vec<Episode>,
}

/// An evaluation that failed.
#[derive(Debug, Clone)]
pub struct EvalError {
    /// Evaluation time (ms).
    pub at: i64,
    /// Prometheus's message.
    pub message: String,
}

/// The outcome of one rule.
#[derive(Debug, Clone)]
pub struct RuleOutcome {
    /// The group name.
    pub group: String,
    /// The rule.
    pub rule: Rule,
    /// The group's interval (ms).
    pub interval_ms: i64,
    /// The group's query offset (ms).
    pub query_offset_ms: i64,
    /// The group's limit.
    pub limit: usize,
    /// Evaluations between `from` and `to`.
    pub evaluations: usize,
    /// Alerting rules: the alerts that fired.
    pub alerts: Vec<AlertHistory>,
    /// Alerting rules: alerts that became pending and were dropped without firing.
    pub pending_never_fired: usize,
    /// Recording rules: distinct series written.
    pub series: usize,
    /// Failed evaluations at or after `from`.
    pub errors: Vec<EvalError>,
}

/// The largest range or subquery window in an expression (ms), to warm recorded series up.
fn max_window(e: &Expr) -> i64 {
    fn dur(d: &DurationExpr) -> i64 {
        match d {
            DurationExpr::Literal(ms) => *ms,
            DurationExpr::Number(s) => (*s * 1000.0) as i64,
            _ => 0,
        }
    }
    match e {
        Expr::MatrixSelector(m) => dur(&m.range),
        Expr::Subquery(s) => dur(&s.range) + max_window(&s.expr),
        Expr::Paren(x) | Expr::Unary(_, x) => max_window(x),
        Expr::Binary(b) => max_window(&b.lhs).max(max_window(&b.rhs)),
        Expr::Aggregate(a) => max_window(&a.expr).max(a.param.as_deref().map_or(0, max_window)),
        Expr::Call(c) => c.args.iter().map(max_window).max().unwrap_or(0),
        _ => 0,
    }
}

/// A rough cost of evaluating `e` at many steps: the sum of its range and subquery windows
/// (ms). Rules with long windows (`predict_linear(x[1h], ...)`) are the slow ones; starting
/// them first keeps one of them from running alone at the end.
fn window_cost(e: &Expr) -> i64 {
    let mut total = 0;
    e.visit(&mut |x| {
        if matches!(x, Expr::MatrixSelector(_) | Expr::Subquery(_)) {
            total += max_window(x);
        }
    });
    total
}

/// The step vectors of one rule: for each step, `(series index, value)`.
struct Steps {
    series: Vec<Labels>,
    at: Vec<Vec<(u32, f64)>>,
    /// Steps at which the evaluation failed, with the message.
    failed: HashMap<usize, String>,
}

/// Evaluates `expr` at `qstart + k * step` for `k < n`, in range-query chunks. A chunk that
/// fails with an evaluation error is retried step by step so that only the failing steps
/// fail (as they would in Prometheus).
fn evaluate(
    engine: &Engine,
    db: &dyn Queryable,
    shared: &SharedSubexpressions,
    expr: &Expr,
    qstart: i64,
    step: i64,
    n: usize,
) -> Result<Steps> {
    let mut out = Steps {
        series: Vec::new(),
        at: vec![Vec::new(); n],
        failed: HashMap::new(),
    };
    let mut ids: HashMap<Labels, u32> = HashMap::new();
    let mut intern = |out: &mut Steps, l: &Labels| -> u32 {
        if let Some(&i) = ids.get(l) {
            return i;
        }
        let i = out.series.len() as u32;
        out.series.push(l.clone());
        ids.insert(l.clone(), i);
        i
    };
    let mut k0 = 0usize;
    while k0 < n {
        let k1 = (k0 + MAX_STEPS as usize).min(n);
        let (s, e) = (qstart + k0 as i64 * step, qstart + (k1 as i64 - 1) * step);
        match engine.range_query_shared(db, expr, s, e, step, Some(shared)) {
            Ok(res) => {
                let Value::Matrix(m) = res.value else {
                    anyhow::bail!("range query returned a {}", res.value.type_name());
                };
                for ser in &m {
                    let id = intern(&mut out, &ser.labels);
                    for &(t, v) in &ser.samples {
                        let k = ((t - qstart) / step) as usize;
                        if k < n {
                            out.at[k].push((id, v));
                        }
                    }
                }
            }
            Err(tsq::exec::Error::Eval(_)) => {
                for k in k0..k1 {
                    let t = qstart + k as i64 * step;
                    match engine.instant_query_expr(db, expr, t) {
                        Ok(res) => match res.value {
                            Value::Vector(v) => {
                                for s in v {
                                    let id = intern(&mut out, &s.labels);
                                    out.at[k].push((id, s.v));
                                }
                            }
                            Value::Scalar { v, .. } => {
                                let id = intern(&mut out, &Labels::default());
                                out.at[k].push((id, v));
                            }
                            other => {
                                out.failed
                                    .insert(k, format!("rule result is a {}", other.type_name()));
                            }
                        },
                        Err(e) => {
                            out.failed.insert(k, e.to_string());
                        }
                    }
                }
            }
            Err(e) => return Err(anyhow::anyhow!("{e}")),
        }
        k0 = k1;
    }
    Ok(out)
}

fn apply_labels(
    sample: &Labels,
    labels: &[TextTemplate],
    v: f64,
    alertname: Option<&str>,
) -> Labels {
    let mut l = sample.clone();
    for t in labels {
        let val = t.expand(sample, v);
        l.set(&t.name, &val);
    }
    if let Some(a) = alertname {
        l.remove(tsq::storage::METRIC_NAME);
        l.set("alertname", a);
    }
    l
}

/// The metric names an expression selects; `None` when some selector has no fixed name.
fn selected_names(e: &Expr, out: &mut Vec<String>) -> bool {
    let sel = |v: &tsq::parser::VectorSelector, out: &mut Vec<String>| match v
        .matchers
        .iter()
        .find(|m| m.name == "__name__" && m.op == tsq::parser::MatchOp::Equal)
    {
        Some(m) => {
            out.push(m.value.clone());
            true
        }
        None => false,
    };
    match e {
        Expr::Number(_) | Expr::String(_) => true,
        Expr::VectorSelector(v) => sel(v, out),
        Expr::MatrixSelector(m) => sel(&m.selector, out),
        Expr::Subquery(s) => selected_names(&s.expr, out),
        Expr::Paren(x) | Expr::Unary(_, x) => selected_names(x, out),
        Expr::Binary(b) => selected_names(&b.lhs, out) && selected_names(&b.rhs, out),
        Expr::Aggregate(a) => {
            selected_names(&a.expr, out)
                && a.param.as_deref().is_none_or(|p| selected_names(p, out))
        }
        Expr::Call(c) => c.args.iter().all(|x| selected_names(x, out)),
        _ => false,
    }
}

/// The rules that must be replayed before each rule (indexes into `rules`, all smaller than
/// the rule's own): an earlier rule that records a series the rule reads, that reads a series
/// the rule records, or that records the same name. A rule whose selectors do not all name
/// their metric is ordered after every earlier recording rule and before every later one.
/// Replaying in any order that respects these edges gives the result of replaying the rules
/// one after the other in file order.
fn rule_dependencies(rules: &[&Rule]) -> Vec<Vec<usize>> {
    let reads: Vec<Option<Vec<String>>> = rules
        .iter()
        .map(|r| {
            let mut names = Vec::new();
            selected_names(&r.expr, &mut names).then_some(names)
        })
        .collect();
    let records = |r: &Rule| match &r.kind {
        RuleKind::Record(n) => Some(n.clone()),
        RuleKind::Alert(_) => None,
    };
    // Does a rule reading `reads` see what a rule recording `name` writes?
    let sees = |reads: &Option<Vec<String>>, name: &Option<String>| match (reads, name) {
        (_, None) => false,
        (None, Some(_)) => true,
        (Some(rs), Some(n)) => rs.contains(n),
    };
    (0..rules.len())
        .map(|j| {
            let rec_j = records(rules[j]);
            (0..j)
                .filter(|&i| {
                    let rec_i = records(rules[i]);
                    sees(&reads[j], &rec_i)
                        || sees(&reads[i], &rec_j)
                        || (rec_i.is_some() && rec_i == rec_j)
                })
                .collect()
        })
        .collect()
}

/// The subexpressions (printed) that more than one rule computes and that read no recorded
/// series: the rules share one evaluation of each (when their groups evaluate at the same
/// times).
fn shared_subexpressions(rules: &[&Rule]) -> Vec<String> {
    let recorded: Vec<&str> = rules
        .iter()
        .filter_map(|r| match &r.kind {
            RuleKind::Record(n) => Some(n.as_str()),
            RuleKind::Alert(_) => None,
        })
        .collect();
    let mut rules_of: HashMap<String, usize> = HashMap::new();
    for r in rules {
        let mut mine: Vec<String> = Vec::new();
        r.expr.visit(&mut |e| {
            if !matches!(e, Expr::Call(_) | Expr::Aggregate(_) | Expr::Binary(_)) {
                return;
            }
            let mut names = Vec::new();
            if selected_names(e, &mut names) && !names.iter().any(|n| recorded.contains(&&**n)) {
                mine.push(e.to_string());
            }
        });
        mine.sort();
        mine.dedup();
        for k in mine {
            *rules_of.entry(k).or_default() += 1;
        }
    }
    rules_of
        .into_iter()
        .filter(|&(_, n)| n > 1)
        .map(|(k, _)| k)
        .collect()
}

/// When one group's rules are evaluated.
struct GroupPlan {
    /// Evaluation interval (ms).
    iv: i64,
    /// First replayed evaluation (before `from` by the longest `for + keep_firing_for` and
    /// the warm-up of recorded series).
    first: i64,
    /// Number of replayed evaluations.
    n: usize,
}

impl GroupPlan {
    fn new(g: &super::rules::Group, warmup: i64, opts: &ReplayOptions) -> Self {
        let iv = g.interval_ms.unwrap_or(opts.default_interval).max(1);
        let lead = g
            .rules
            .iter()
            .map(|r| r.for_ms + r.keep_firing_for_ms)
            .max()
            .unwrap_or(0)
            + warmup;
        let first = (opts.from - lead).div_euclid(iv) * iv
            + if (opts.from - lead).rem_euclid(iv) == 0 {
                0
            } else {
                iv
            };
        let last = opts.to.div_euclid(iv) * iv;
        let n = if last >= first {
            ((last - first) / iv + 1) as usize
        } else {
            0
        };
        GroupPlan { iv, first, n }
    }
}

/// Replays every rule of `file`. Recorded series of earlier rules (and earlier groups) are
/// visible to later ones, as when the rules run one after the other in file order; rules that
/// do not depend on each other ([`rule_dependencies`]) are replayed on two threads.
pub fn replay(
    db: &(dyn Queryable + Sync),
    file: &RuleFile,
    opts: &ReplayOptions,
) -> Result<Vec<RuleOutcome>> {
    let has_recording = file
        .groups
        .iter()
        .flat_map(|g| &g.rules)
        .any(|r| matches!(r.kind, RuleKind::Record(_)));
    let warmup = if has_recording {
        opts.engine.options().lookback_delta_ms
            + file
                .groups
                .iter()
                .flat_map(|g| &g.rules)
                .map(|r| max_window(&r.expr))
                .max()
                .unwrap_or(0)
    } else {
        0
    };
    let plans: Vec<GroupPlan> = file
        .groups
        .iter()
        .map(|g| GroupPlan::new(g, warmup, opts))
        .collect();
    let tasks: Vec<(usize, &Rule)> = file
        .groups
        .iter()
        .enumerate()
        .flat_map(|(gi, g)| g.rules.iter().map(move |r| (gi, r)))
        .collect();
    let rules: Vec<&Rule> = tasks.iter().map(|&(_, r)| r).collect();
    let deps = rule_dependencies(&rules);
    let cost: Vec<i64> = rules.iter().map(|r| window_cost(&r.expr)).collect();
    let overlay = Overlay::new(db);
    let shared = SharedSubexpressions::new(shared_subexpressions(&rules));
    let run = |i: usize| {
        let (gi, rule) = tasks[i];
        replay_rule(&overlay, &shared, &file.groups[gi], &plans[gi], rule, opts)
    };

    struct Sched {
        started: Vec<bool>,
        done: Vec<bool>,
        failed: bool,
        results: Vec<Option<Result<RuleOutcome>>>,
    }
    let sched = std::sync::Mutex::new(Sched {
        started: vec![false; tasks.len()],
        done: vec![false; tasks.len()],
        failed: false,
        results: tasks.iter().map(|_| None).collect(),
    });
    let wake = std::sync::Condvar::new();
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 2);
    let worker = || {
        let mut s = sched.lock().expect("no panics while holding the lock");
        loop {
            if s.failed || s.started.iter().all(|&b| b) {
                return;
            }
            // The costliest ready rule first (file order among equals).
            let ready = (0..tasks.len())
                .filter(|&i| !s.started[i] && deps[i].iter().all(|&d| s.done[d]))
                .max_by_key(|&i| (cost[i], std::cmp::Reverse(i)));
            let Some(i) = ready else {
                s = wake.wait(s).expect("no panics while holding the lock");
                continue;
            };
            s.started[i] = true;
            drop(s);
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(i)));
            s = sched.lock().expect("no panics while holding the lock");
            let r = match r {
                Ok(r) => r,
                Err(panic) => {
                    // Wake the other worker (it may wait for this rule) before unwinding.
                    s.failed = true;
                    wake.notify_all();
                    drop(s);
                    std::panic::resume_unwind(panic);
                }
            };
            s.failed |= r.is_err();
            s.results[i] = Some(r);
            s.done[i] = true;
            wake.notify_all();
        }
    };
    std::thread::scope(|sc| {
        for _ in 1..threads {
            sc.spawn(worker);
        }
        worker();
    });
    let results = sched
        .into_inner()
        .expect("no panics while holding the lock")
        .results;
    // After a failure, rules not yet started are skipped: report the first failure in file
    // order.
    if let Some(e) = results.iter().position(|r| matches!(r, Some(Err(_)))) {
        return Err(results
            .into_iter()
            .nth(e)
            .flatten()
            .expect("found above")
            .unwrap_err());
    }
    Ok(results
        .into_iter()
        .map(|r| r.expect("every rule ran").expect("no rule failed"))
        .collect())
}

fn replay_rule(
    overlay: &Overlay<'_>,
    shared: &SharedSubexpressions,
    g: &super::rules::Group,
    plan: &GroupPlan,
    rule: &Rule,
    opts: &ReplayOptions,
) -> Result<RuleOutcome> {
    let &GroupPlan { iv, first, n } = plan;
    let mut o = RuleOutcome {
        group: g.name.clone(),
        rule: rule.clone(),
        interval_ms: iv,
        query_offset_ms: g.query_offset_ms,
        limit: g.limit,
        evaluations: (0..n)
            .filter(|k| first + *k as i64 * iv >= opts.from)
            .count(),
        alerts: Vec::new(),
        pending_never_fired: 0,
        series: 0,
        errors: Vec::new(),
    };
    if n > 0 {
        let qstart = first - g.query_offset_ms;
        let steps = evaluate(&opts.engine, overlay, shared, &rule.expr, qstart, iv, n)?;
        match &rule.kind {
            RuleKind::Record(name) => {
                let samples = record(name, rule, g.limit, &steps, qstart, iv, first, opts, &mut o);
                overlay.extend(samples);
            }
            RuleKind::Alert(name) => alert(name, rule, g.limit, &steps, first, iv, opts, &mut o),
        }
    }
    Ok(o)
}

#[allow(clippy::too_many_arguments)]
fn record(
    name: &str,
    rule: &Rule,
    limit: usize,
    steps: &Steps,
    qstart: i64,
    iv: i64,
    first: i64,
    opts: &ReplayOptions,
    o: &mut RuleOutcome,
) -> Vec<(Labels, i64, f64)> {
    let mut samples = Vec::new();
    let mut out_ids: HashMap<Labels, u32> = HashMap::new();
    let mut out_labels: Vec<Labels> = Vec::new();
    let series_out: Vec<u32> = steps
        .series
        .iter()
        .map(|l| {
            let mut ol = apply_labels(l, &rule.labels, 0.0, None);
            ol.set(tsq::storage::METRIC_NAME, name);
            let next = out_labels.len() as u32;
            *out_ids.entry(ol.clone()).or_insert_with(|| {
                out_labels.push(ol);
                next
            })
        })
        .collect();
    let mut seen_at: Vec<usize> = vec![usize::MAX; out_labels.len()];
    let mut prev: Vec<u32> = Vec::new();
    let mut written = vec![false; out_labels.len()];
    for (k, entries) in steps.at.iter().enumerate() {
        let t = first + k as i64 * iv;
        let tq = qstart + k as i64 * iv;
        let mut fail = |msg: String| {
            if t >= opts.from {
                o.errors.push(EvalError {
                    at: t,
                    message: msg,
                });
            }
        };
        if let Some(msg) = steps.failed.get(&k) {
            fail(msg.clone());
            continue;
        }
        let mut dup = false;
        for &(s, _) in entries {
            let id = series_out[s as usize] as usize;
            if seen_at[id] == k {
                dup = true;
            }
            seen_at[id] = k;
        }
        if dup {
            fail(
                "vector contains metrics with the same labelset after applying rule labels".into(),
            );
            continue;
        }
        if limit > 0 && entries.len() > limit {
            fail(format!(
                "exceeded limit of {limit} with {} series",
                entries.len()
            ));
            continue;
        }
        for &(s, v) in entries {
            let id = series_out[s as usize];
            written[id as usize] = true;
            samples.push((out_labels[id as usize].clone(), tq, v));
        }
        // Series that disappeared get a staleness marker, as Prometheus writes.
        for &p in &prev {
            if seen_at[p as usize] != k {
                samples.push((
                    out_labels[p as usize].clone(),
                    tq,
                    f64::from_bits(tsq::storage::STALE_NAN_BITS),
                ));
            }
        }
        prev.clear();
        prev.extend(entries.iter().map(|&(s, _)| series_out[s as usize]));
    }
    o.series = written.iter().filter(|w| **w).count();
    samples
}

struct Open {
    history: usize,
    episode: usize,
}

#[allow(clippy::too_many_arguments)]
fn alert(
    name: &str,
    rule: &Rule,
    limit: usize,
    steps: &Steps,
    first: i64,
    iv: i64,
    opts: &ReplayOptions,
    o: &mut RuleOutcome,
) {
    let mut machine = AlertMachine::new(rule.for_ms, rule.keep_firing_for_ms);
    let per_step = rule.labels.iter().any(TextTemplate::uses_value);
    // Alert labels per series (when they do not depend on the value).
    let mut ids: HashMap<Labels, u32> = HashMap::new();
    let mut alert_labels: Vec<Labels> = Vec::new();
    let mut intern = |l: Labels, alert_labels: &mut Vec<Labels>| -> u32 {
        let next = alert_labels.len() as u32;
        *ids.entry(l.clone()).or_insert_with(|| {
            alert_labels.push(l);
            next
        })
    };
    let series_alert: Vec<u32> = if per_step {
        Vec::new()
    } else {
        steps
            .series
            .iter()
            .map(|l| {
                intern(
                    apply_labels(l, &rule.labels, 0.0, Some(name)),
                    &mut alert_labels,
                )
            })
            .collect()
    };
    let mut seen_at: Vec<usize> = Vec::new();
    let mut cur: Vec<(Labels, f64)> = Vec::new();
    let mut cur_ids: Vec<u32> = Vec::new();
    let mut step_ids: Vec<u32> = Vec::new();
    let mut events = Vec::new();
    let mut histories: Vec<AlertHistory> = Vec::new();
    let mut history_of: HashMap<Labels, usize> = HashMap::new();
    let mut open: HashMap<Labels, Open> = HashMap::new();
    let mut pending_truncated: HashMap<Labels, bool> = HashMap::new();
    for (k, entries) in steps.at.iter().enumerate() {
        let t = first + k as i64 * iv;
        let record_err = |o: &mut RuleOutcome, msg: String| {
            if t >= opts.from {
                o.errors.push(EvalError {
                    at: t,
                    message: msg,
                });
            }
        };
        if let Some(msg) = steps.failed.get(&k) {
            record_err(o, msg.clone());
            continue;
        }
        step_ids.clear();
        for &(s, v) in entries {
            let id = if per_step {
                intern(
                    apply_labels(&steps.series[s as usize], &rule.labels, v, Some(name)),
                    &mut alert_labels,
                )
            } else {
                series_alert[s as usize]
            };
            step_ids.push(id);
        }
        seen_at.resize(alert_labels.len(), usize::MAX);
        let mut dup = false;
        for &id in &step_ids {
            if seen_at[id as usize] == k {
                dup = true;
            }
            seen_at[id as usize] = k;
        }
        if dup {
            record_err(
                o,
                "vector contains metrics with the same labelset after applying alert labels".into(),
            );
            continue;
        }
        if step_ids == cur_ids {
            for (c, &(_, v)) in cur.iter_mut().zip(entries) {
                c.1 = v;
            }
        } else {
            cur.clear();
            cur.extend(
                step_ids
                    .iter()
                    .zip(entries)
                    .map(|(&id, &(_, v))| (alert_labels[id as usize].clone(), v)),
            );
            std::mem::swap(&mut cur_ids, &mut step_ids);
            step_ids.clone_from(&cur_ids);
        }
        events.clear();
        machine.eval(t, &cur, &mut events);
        let over_limit = limit > 0 && machine.active_count() > limit;
        for ev in &events {
            match ev {
                AlertEvent::Pending { labels, .. } if !over_limit => {
                    pending_truncated.insert(labels.clone(), k == 0);
                }
                AlertEvent::Fired {
                    labels,
                    active_at,
                    at,
                } if !over_limit => {
                    let truncated = pending_truncated.remove(labels).unwrap_or(false);
                    let idx = cur.iter().position(|(l, _)| l == labels);
                    let (sample, value) = match idx {
                        Some(i) => (&steps.series[entries[i].0 as usize], entries[i].1),
                        None => (labels, f64::NAN),
                    };
                    let annotations = rule
                        .annotations
                        .iter()
                        .map(|a| (a.name.clone(), a.expand(sample, value)))
                        .collect();
                    let h = *history_of.entry(labels.clone()).or_insert_with(|| {
                        histories.push(AlertHistory {
                            labels: labels.clone(),
                            episodes: Vec::new(),
                        });
                        histories.len() - 1
                    });
                    histories[h].episodes.push(Episode {
                        active_at: *active_at,
                        fired_at: *at,
                        end: None,
                        end_reason: "ongoing",
                        truncated,
                        peak: value,
                        value,
                        annotations,
                    });
                    open.insert(
                        labels.clone(),
                        Open {
                            history: h,
                            episode: histories[h].episodes.len() - 1,
                        },
                    );
                }
                AlertEvent::Cancelled { labels, at, .. } => {
                    pending_truncated.remove(labels);
                    if *at >= opts.from {
                        o.pending_never_fired += 1;
                    }
                }
                AlertEvent::Resolved {
                    labels, at, peak, ..
                } => {
                    if let Some(op) = open.remove(labels) {
                        let e = &mut histories[op.history].episodes[op.episode];
                        e.end = Some(*at);
                        e.end_reason = "resolved";
                        e.peak = *peak;
                    }
                }
                _ => {}
            }
        }
        if over_limit {
            record_err(
                o,
                format!(
                    "exceeded limit of {limit} with {} alerts",
                    machine.active_count()
                ),
            );
            for a in machine.alerts() {
                if let Some(op) = open.remove(&a.labels) {
                    let e = &mut histories[op.history].episodes[op.episode];
                    e.end = Some(t);
                    e.end_reason = "limit";
                    e.peak = a.peak;
                } else if pending_truncated.remove(&a.labels).is_some() && t >= opts.from {
                    o.pending_never_fired += 1;
                }
            }
            pending_truncated.clear();
            machine.reset();
        }
    }
    // Peaks of the ongoing episodes.
    for a in machine.alerts() {
        if let Some(op) = open.get(&a.labels) {
            histories[op.history].episodes[op.episode].peak = a.peak;
        }
    }
    for h in &mut histories {
        h.episodes
            .retain(|e| e.fired_at <= opts.to && e.end.is_none_or(|end| end > opts.from));
    }
    histories.retain(|h| !h.episodes.is_empty());
    histories.sort_by(|a, b| a.labels.cmp(&b.labels));
    o.alerts = histories;
}

#[cfg(test)]
mod tests {
    use super::*;
    use tsq::exec::EngineOptions;

    fn file(yaml: &str) -> RuleFile {
        super::super::rules::parse_str("test.yml", yaml).expect("valid rule file")
    }

    #[test]
    fn dependencies_follow_recorded_names() {
        let f = file(
            r#"
groups:
  - name: g
    rules:
      - record: a
        expr: sum(x)
      - record: b
        expr: a * 2
      - alert: OnX
        expr: x > 1
      - alert: OnAnything
        expr: '{__name__=~".+"} > 1'
      - record: e
        expr: x + 1
      - alert: ReadsLater
        expr: f > 0
      - record: f
        expr: x
      - record: a
        expr: x * 3
"#,
        );
        let rules: Vec<&Rule> = f.groups.iter().flat_map(|g| &g.rules).collect();
        let deps = rule_dependencies(&rules);
        assert_eq!(deps[0], Vec::<usize>::new());
        assert_eq!(deps[1], vec![0], "b reads a");
        assert_eq!(deps[2], Vec::<usize>::new(), "x is recorded by no rule");
        assert_eq!(
            deps[3],
            vec![0, 1],
            "an unnamed selector reads every record"
        );
        assert_eq!(deps[4], vec![3], "e must wait for the unnamed reader");
        assert_eq!(deps[5], Vec::<usize>::new(), "two readers need no order");
        assert_eq!(
            deps[6],
            vec![3, 5],
            "f is read by two earlier rules: they go first"
        );
        assert_eq!(
            deps[7],
            vec![0, 1, 3],
            "a second record of a: after the first, its reader and the unnamed reader"
        );
    }

    #[test]
    fn replay_matches_file_order_semantics() {
        // `early` reads `late` before `late` is recorded: in file order it sees nothing,
        // however the two threads are scheduled. `after` reads `rec` recorded before it.
        let mut db = MemStorage::new();
        for k in 0..60 {
            let l = Labels::new([("__name__", "x"), ("job", "j")]);
            db.add(l, k * 60_000, 5.0);
        }
        let f = file(
            r#"
groups:
  - name: g
    interval: 1m
    rules:
      - alert: Early
        expr: late > 0
      - record: rec
        expr: x * 2
      - alert: After
        expr: rec > 9
      - record: late
        expr: x
"#,
        );
        let opts = ReplayOptions {
            from: 10 * 60_000,
            to: 50 * 60_000,
            default_interval: 60_000,
            engine: Engine::new(EngineOptions::default()),
        };
        for _ in 0..5 {
            let out = replay(&db, &f, &opts).expect("replays");
            let names: Vec<&str> = out.iter().map(|o| o.rule.name()).collect();
            assert_eq!(
                names,
                ["Early", "rec", "After", "late"],
                "outcomes in file order"
            );
            assert!(
                out[0].alerts.is_empty(),
                "Early must not see the later record"
            );
            assert_eq!(out[2].alerts.len(), 1, "After sees rec = 10 > 9");
            assert_eq!(out[1].series, 1);
            assert_eq!(out[3].series, 1);
        }
    }
}
