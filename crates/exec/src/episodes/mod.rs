//! Episodes: when something held, as time ranges per label set (docs/patterns.md).
//!
//! * `episodes(cond[range:step], min_duration, max_gap)`, `held_for(cond[range:step], d)`;
//! * `pattern(...)` and `sequence(...)`: row pattern recognition over a step grid, matched by
//!   the NFA of [`nfa`];
//! * `followed_by(a, b, within)`, and `and`/`or`/`unless` on episodes as intersection, union
//!   and difference of time ranges;
//! * `episodes_to_series`, `count_episodes`, `sum_duration`, `max_duration`;
//! * `alert_state` / `alert_episodes`: Prometheus's alerting state machine
//!   ([`crate::alert::AlertMachine`]) replayed over the steps.
//!
//! A condition is evaluated once over the aligned grid covering every output step; each
//! output step then reads its own window `(t - range, t]` of that grid, so the answer at `t`
//! depends only on `t` and the data (step invariance).
//!
//! An episodes value belongs to one evaluation time: it is the result of an instant query,
//! and range queries use the helpers that turn episodes into numbers per step.

mod nfa;

use std::collections::{BTreeMap, HashMap};

use tsq_parser::{
    BinaryExpr, BinaryOp, Call, DurationExpr, Expr, PatternExpr, PatternNode, SequenceExpr,
};
use tsq_storage::{Label, Labels};

use crate::alert::{AlertEvent, AlertMachine, AlertState};
use crate::eval::{err, unparen, Evaluator, Range, SeriesV, Val};
use crate::value::Episode;
use crate::{Error, Result};

/// The functions this module evaluates.
pub(crate) const FUNCTIONS: &[&str] = &[
    "episodes",
    "held_for",
    "followed_by",
    "episodes_to_series",
    "count_episodes",
    "sum_duration",
    "max_duration",
    "alert_state",
    "alert_episodes",
];

/// Range of a `pattern`/`sequence` written without `[range:step]`.
const DEFAULT_PATTERN_RANGE_MS: i64 = 3_600_000;

fn at(t: i64) -> Range {
    Range {
        start: t,
        end: t,
        step: 0,
    }
}

fn secs(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

/// The single evaluation time of `r`, or the error for episodes in a range query.
fn single_time(r: &Range) -> Result<i64> {
    if r.n() != 1 {
        return err(
            "an episodes value belongs to one evaluation time: use an instant query, or \
             episodes_to_series(...), count_episodes(...), sum_duration(...) or max_duration(...) \
             in a range query",
        );
    }
    Ok(r.start)
}

/// Evaluates the function calls of this module; `None` for other functions.
pub(crate) fn call(ev: &mut Evaluator, c: &Call, r: &Range) -> Result<Option<Val>> {
    let v = match c.func.as_str() {
        "episodes" | "held_for" | "followed_by" | "alert_episodes" => {
            let t = single_time(r)?;
            let mut out = call_at(ev, c, t)?;
            sort(&mut out);
            Val::Episodes(out)
        }
        "episodes_to_series" | "count_episodes" | "sum_duration" | "max_duration" => {
            summary(ev, c, r)?
        }
        "alert_state" => alert_state(ev, c, r)?,
        _ => return Ok(None),
    };
    Ok(Some(v))
}

/// Evaluates an episodes-typed `pattern`, `sequence` or set operation (from `Evaluator::eval`).
pub(crate) fn eval(ev: &mut Evaluator, e: &Expr, r: &Range) -> Result<Val> {
    let t = single_time(r)?;
    Ok(Val::Episodes(eval_at(ev, e, t)?))
}

/// The episodes of an episodes-typed expression at time `t`, sorted by labels then start.
pub(crate) fn eval_at(ev: &mut Evaluator, e: &Expr, t: i64) -> Result<Vec<Episode>> {
    let mut out = match unparen(e) {
        Expr::Call(c) => call_at(ev, c, t)?,
        Expr::Binary(b) => set_op(ev, b, t)?,
        Expr::Pattern(p) => pattern(ev, p, t)?,
        Expr::Sequence(s) => sequence(ev, s, t)?,
        _ => return err("expected an episodes expression"),
    };
    sort(&mut out);
    Ok(out)
}

fn sort(v: &mut [Episode]) {
    v.sort_by(|a, b| {
        a.labels
            .cmp(&b.labels)
            .then(a.start.cmp(&b.start))
            .then(a.end.cmp(&b.end))
    });
}

use crate::funcs::arg_at as arg;

/// Output series by labels, as an instant-vector value.
fn to_vector(out: BTreeMap<Labels, Vec<(i64, f64)>>) -> Val {
    Val::Vector(
        out.into_iter()
            .map(|(labels, pts)| SeriesV {
                labels,
                drop_name: false,
                pts,
            })
            .collect(),
    )
}

/// A scalar argument read as a duration in seconds, returned in ms.
fn duration_arg(ev: &mut Evaluator, e: &Expr, r: &Range, what: &str) -> Result<Vec<i64>> {
    let v = ev.eval_scalar(e, r)?;
    v.into_iter()
        .map(|s| {
            if !(s.is_finite() && s >= 0.0) {
                return err(format!(
                    "{what} must be a non-negative duration in seconds, got {s}"
                ));
            }
            Ok((s * 1000.0).round() as i64)
        })
        .collect()
}

fn opt_duration_arg(ev: &mut Evaluator, c: &Call, i: usize, t: i64, what: &str) -> Result<i64> {
    match c.args.get(i) {
        Some(e) => Ok(duration_arg(ev, e, &at(t), what)?[0]),
        None => Ok(0),
    }
}

fn call_at(ev: &mut Evaluator, c: &Call, t: i64) -> Result<Vec<Episode>> {
    match c.func.as_str() {
        "episodes" => {
            let min = opt_duration_arg(ev, c, 1, t, "min_duration")?;
            let gap = opt_duration_arg(ev, c, 2, t, "max_gap")?;
            let cond = Cond::eval(ev, arg(c, 0)?, &at(t), 0)?;
            Ok(cond.episodes(0, min, gap, false))
        }
        "held_for" => {
            let d = opt_duration_arg(ev, c, 1, t, "held_for duration")?;
            let cond = Cond::eval(ev, arg(c, 0)?, &at(t), 0)?;
            Ok(cond.episodes(0, d, 0, true))
        }
        "followed_by" => followed_by(ev, c, t),
        "alert_episodes" => {
            let f = opt_duration_arg(ev, c, 1, t, "for")?;
            let k = opt_duration_arg(ev, c, 2, t, "keep_firing_for")?;
            let cond = Cond::eval(ev, arg(c, 0)?, &at(t), f.max(k))?;
            Ok(cond.alert_episodes(0, f, k))
        }
        other => err(format!("function {other:?} does not return episodes")),
    }
}

// ------------------------------------------------------------------ conditions on a grid

/// A condition evaluated on the aligned step grid that covers the windows of every output
/// step: a series is true at a step iff it is present there.
struct Cond {
    step: i64,
    /// Window length, replay lead-in included.
    span: i64,
    /// The `range` of the argument alone.
    range: i64,
    /// Evaluation time of each output step (after `@` and `offset`).
    et: Vec<i64>,
    /// Timestamp of grid index 0.
    first: i64,
    /// Labels (no `__name__`) and the present grid indices with their values.
    series: Vec<(Labels, Vec<(usize, f64)>)>,
}

impl Cond {
    /// Evaluates `arg` (a subquery `cond[range:step]`) for the steps of `r`, with windows
    /// reaching `early` ms further back than the range.
    fn eval(ev: &mut Evaluator, arg: &Expr, r: &Range, early: i64) -> Result<Cond> {
        let Expr::Subquery(sq) = unparen(arg) else {
            return err("expected a subquery `condition[range:step]` as the first argument");
        };
        if sq.seasons.is_some() {
            return err("seasons() is not allowed on the condition of an episodes function");
        }
        let range = ev.duration_ms(&sq.range)?;
        let step = match &sq.step {
            Some(d) => ev.duration_ms(d)?,
            None => ev.opts.default_subquery_step_ms,
        };
        if step <= 0 {
            return err("subquery step must be positive");
        }
        let et = ev.eval_times(r, &sq.at, &sq.offset)?;
        let span = range.saturating_add(early);
        let min = *et.iter().min().unwrap_or(&0);
        let max = *et.iter().max().unwrap_or(&0);
        let first = (min - span).div_euclid(step) * step + step;
        let last = max.div_euclid(step) * step;
        let mut cond = Cond {
            step,
            span,
            range,
            et,
            first,
            series: Vec::new(),
        };
        if last < first {
            return Ok(cond);
        }
        let grid = Range {
            start: first,
            end: last,
            step,
        };
        if grid.n() > 11_000_000 {
            return Err(Error::Limit("condition has too many steps".into()));
        }
        let val = ev.eval(&sq.expr, &grid)?;
        let series = match val {
            Val::Vector(v) => v,
            Val::Scalar(v) => vec![SeriesV {
                labels: Labels::default(),
                drop_name: false,
                pts: (0..grid.n()).map(|i| (grid.ts(i), v[i])).collect(),
            }],
            _ => return err("the condition of an episodes function must be an instant vector"),
        };
        let mut index: HashMap<Labels, usize> = HashMap::new();
        for s in series {
            let labels = s.labels.without_metric_name();
            let pts: Vec<(usize, f64)> = s
                .pts
                .iter()
                .map(|&(t, v)| (((t - first) / step) as usize, v))
                .collect();
            match index.get(&labels) {
                Some(&k) => {
                    // Same labels once the name is gone: present if either is.
                    let mut merged = std::mem::take(&mut cond.series[k].1);
                    merged.extend(pts);
                    merged.sort_by_key(|p| p.0);
                    merged.dedup_by_key(|p| p.0);
                    cond.series[k].1 = merged;
                }
                None => {
                    index.insert(labels.clone(), cond.series.len());
                    cond.series.push((labels, pts));
                }
            }
        }
        cond.series.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(cond)
    }

    fn ts(&self, idx: usize) -> i64 {
        self.first + idx as i64 * self.step
    }

    /// Grid indices `[lo, hi)` of output step `i`'s window `(t - span, t]`.
    fn window(&self, i: usize) -> (usize, usize) {
        self.window_span(i, self.span)
    }

    /// `window` with another lead-in (at most `self.span`).
    fn window_span(&self, i: usize, span: i64) -> (usize, usize) {
        let t = self.et[i];
        let lo_t = (t - span).div_euclid(self.step) * self.step + self.step;
        let hi_t = t.div_euclid(self.step) * self.step;
        if hi_t < lo_t || hi_t < self.first {
            return (0, 0);
        }
        let lo = ((lo_t - self.first) / self.step) as usize;
        let hi = ((hi_t - self.first) / self.step) as usize + 1;
        (lo, hi)
    }

    /// Maximal runs of present steps per series in output step `i`'s window, gaps of at most
    /// `max_gap` bridged, kept when `last - first >= min`. With `held`, only the part from
    /// `held_since` on.
    fn episodes(&self, i: usize, min: i64, max_gap: i64, held: bool) -> Vec<Episode> {
        let (lo, hi) = self.window(i);
        let t = self.et[i];
        let step = self.step;
        let need = (min + step - 1).div_euclid(step) * step; // ceil(min/step)*step
        let mut out = Vec::new();
        for (labels, pts) in &self.series {
            let a = pts.partition_point(|p| p.0 < lo);
            let b = pts.partition_point(|p| p.0 < hi);
            let mut runs: Vec<(usize, usize)> = Vec::new();
            for &(idx, _) in &pts[a..b] {
                match runs.last_mut() {
                    Some(run) if ((idx - run.1 - 1) as i64) * step <= max_gap => run.1 = idx,
                    _ => runs.push((idx, idx)),
                }
            }
            for (f, l) in runs {
                let (first_t, last_t) = (self.ts(f), self.ts(l));
                if last_t - first_t < min {
                    continue;
                }
                let ongoing = l + 1 == hi;
                let held_since = first_t + need;
                let (start, measures) = if held {
                    (
                        held_since,
                        vec![("active_since".to_string(), secs(first_t))],
                    )
                } else {
                    (first_t, vec![("held_since".to_string(), secs(held_since))])
                };
                out.push(Episode {
                    labels: labels.clone(),
                    start,
                    end: if ongoing { t } else { last_t + step },
                    ongoing,
                    truncated_start: f == lo,
                    measures,
                });
            }
        }
        out
    }

    /// The alert results per grid step of `[lo, hi)`: (series index, value).
    fn per_step(&self, lo: usize, hi: usize) -> Vec<Vec<(usize, f64)>> {
        let mut steps = vec![Vec::new(); hi.saturating_sub(lo)];
        for (k, (_, pts)) in self.series.iter().enumerate() {
            let a = pts.partition_point(|p| p.0 < lo);
            for &(idx, v) in &pts[a..] {
                if idx >= hi {
                    break;
                }
                steps[idx - lo].push((k, v));
            }
        }
        steps
    }

    /// Replays the alerting state machine over output step `i`'s window; calls `each` with
    /// every event. Returns the machine after the last step.
    fn replay(
        &self,
        i: usize,
        span: i64,
        for_ms: i64,
        kff_ms: i64,
        mut each: impl FnMut(&AlertEvent),
    ) -> AlertMachine {
        let (lo, hi) = self.window_span(i, span);
        let mut m = AlertMachine::new(for_ms, kff_ms);
        let mut events = Vec::new();
        let mut result = Vec::new();
        for (off, step) in self.per_step(lo, hi).into_iter().enumerate() {
            result.clear();
            result.extend(step.into_iter().map(|(k, v)| (self.series[k].0.clone(), v)));
            m.eval(self.ts(lo + off), &result, &mut events);
            for e in events.drain(..) {
                each(&e);
            }
        }
        m
    }

    /// `alert_episodes` at output step `i`: the firing episodes that overlap `(t - range, t]`.
    fn alert_episodes(&self, i: usize, for_ms: i64, kff_ms: i64) -> Vec<Episode> {
        let (lo, _) = self.window(i);
        let first_t = self.ts(lo);
        let t = self.et[i];
        let mut open: HashMap<Labels, (i64, i64)> = HashMap::new();
        let mut out = Vec::new();
        let make =
            |labels: Labels, active_at: i64, fired_at: i64, end: i64, ongoing, peak| Episode {
                labels,
                start: fired_at,
                end,
                ongoing,
                truncated_start: active_at == first_t,
                measures: vec![
                    ("active_at".to_string(), secs(active_at)),
                    ("pending_duration".to_string(), secs(fired_at - active_at)),
                    ("peak_value".to_string(), peak),
                ],
            };
        let m = self.replay(i, self.span, for_ms, kff_ms, |e| match e {
            AlertEvent::Fired {
                labels,
                active_at,
                at,
            } => {
                open.insert(labels.clone(), (*active_at, *at));
            }
            AlertEvent::Resolved {
                labels,
                active_at,
                fired_at,
                at,
                peak,
            } => {
                open.remove(labels);
                out.push(make(
                    labels.clone(),
                    *active_at,
                    *fired_at,
                    *at,
                    false,
                    *peak,
                ));
            }
            _ => {}
        });
        for a in m.alerts() {
            if a.state == AlertState::Firing {
                let fired = a.fired_at.unwrap_or(a.active_at);
                out.push(make(a.labels.clone(), a.active_at, fired, t, true, a.peak));
            }
        }
        let from = t - self.range;
        out.retain(|e| e.end > from || e.ongoing);
        out
    }
}

// ------------------------------------------------------------------ alert_state

fn alert_state(ev: &mut Evaluator, c: &Call, r: &Range) -> Result<Val> {
    let f = match c.args.get(1) {
        Some(e) => duration_arg(ev, e, r, "for")?,
        None => vec![0; r.n()],
    };
    let k = match c.args.get(2) {
        Some(e) => duration_arg(ev, e, r, "keep_firing_for")?,
        None => vec![0; r.n()],
    };
    let early = f.iter().chain(&k).copied().max().unwrap_or(0);
    let cond = Cond::eval(ev, arg(c, 0)?, r, early)?;
    let mut out: BTreeMap<Labels, Vec<(i64, f64)>> = BTreeMap::new();
    for i in 0..r.n() {
        // Each step replays from its own lead-in max(for, keep_firing_for), so a step's
        // answer does not depend on the other steps' arguments.
        let span = cond.range + f[i].max(k[i]);
        let m = cond.replay(i, span, f[i], k[i], |_| {});
        for a in m.alerts() {
            let mut labels = a.labels.clone();
            labels.set("alertstate", a.state.as_str());
            out.entry(labels).or_default().push((r.ts(i), 1.0));
        }
    }
    Ok(to_vector(out))
}

// ------------------------------------------------------------------ summaries

fn summary(ev: &mut Evaluator, c: &Call, r: &Range) -> Result<Val> {
    let e = arg(c, 0)?;
    let by: Option<&Vec<String>> = c.matching.as_ref().map(|m| &m.1);
    let name = c.func.as_str();
    let mut out: BTreeMap<Labels, Vec<(i64, f64)>> = BTreeMap::new();
    for i in 0..r.n() {
        let t = r.ts(i);
        let eps = eval_at(ev, e, t)?;
        if name == "episodes_to_series" {
            let mut last: Option<&Labels> = None;
            for ep in &eps {
                let inside = ep.start <= t && (t < ep.end || ep.ongoing);
                if inside && last != Some(&ep.labels) {
                    out.entry(ep.labels.clone()).or_default().push((t, 1.0));
                    last = Some(&ep.labels);
                }
            }
            continue;
        }
        let mut groups: BTreeMap<Labels, f64> = BTreeMap::new();
        if by.is_none() && eps.is_empty() && name == "count_episodes" {
            groups.insert(Labels::default(), 0.0);
        }
        for ep in &eps {
            let key = match by {
                Some(names) => Labels::from_sorted(
                    ep.labels
                        .iter()
                        .filter(|l| names.contains(&l.name))
                        .cloned()
                        .collect::<Vec<Label>>(),
                ),
                None => Labels::default(),
            };
            let d = secs(ep.duration_ms());
            let acc = groups.entry(key).or_insert(match name {
                "max_duration" => f64::NEG_INFINITY,
                _ => 0.0,
            });
            match name {
                "count_episodes" => *acc += 1.0,
                "sum_duration" => *acc += d,
                _ => *acc = acc.max(d),
            }
        }
        for (labels, v) in groups {
            out.entry(labels).or_default().push((t, v));
        }
    }
    Ok(to_vector(out))
}

// ------------------------------------------------------------------ followed_by, set operations

fn followed_by(ev: &mut Evaluator, c: &Call, t: i64) -> Result<Vec<Episode>> {
    let a = eval_at(ev, arg(c, 0)?, t)?;
    let b = eval_at(ev, arg(c, 1)?, t)?;
    let within = opt_duration_arg(ev, c, 2, t, "within")?;
    let (on, names) = match &c.matching {
        Some((on, l)) => (*on, l.clone()),
        None => (false, Vec::new()),
    };
    let mut by_sig: HashMap<String, Vec<usize>> = HashMap::new();
    for (k, e) in b.iter().enumerate() {
        by_sig
            .entry(ev.signature(&e.labels, on, &names))
            .or_default()
            .push(k);
    }
    for v in by_sig.values_mut() {
        v.sort_by_key(|&k| (b[k].start, k));
    }
    let mut order: Vec<usize> = (0..a.len()).collect();
    order.sort_by_key(|&k| (a[k].start, k));
    let mut used = vec![false; b.len()];
    let mut out = Vec::new();
    for k in order {
        let x = &a[k];
        let Some(cands) = by_sig.get(&ev.signature(&x.labels, on, &names)) else {
            continue;
        };
        let hi = x.end.saturating_add(within);
        let pick = cands
            .iter()
            .copied()
            .find(|&j| !used[j] && b[j].start >= x.start && b[j].start <= hi);
        if let Some(j) = pick {
            used[j] = true;
            let y = &b[j];
            out.push(Episode {
                labels: x.labels.clone(),
                start: x.start,
                end: y.end.max(x.end),
                ongoing: y.ongoing,
                truncated_start: x.truncated_start,
                measures: vec![
                    ("a_start".into(), secs(x.start)),
                    ("a_end".into(), secs(x.end)),
                    ("b_start".into(), secs(y.start)),
                    ("b_end".into(), secs(y.end)),
                    ("gap".into(), secs(y.start - x.end)),
                ],
            });
        }
    }
    Ok(out)
}

/// Merged, sorted time ranges with their flags.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Span {
    start: i64,
    end: i64,
    ongoing: bool,
    truncated: bool,
}

fn union(mut v: Vec<Span>) -> Vec<Span> {
    v.sort_by_key(|s| (s.start, s.end));
    let mut out: Vec<Span> = Vec::with_capacity(v.len());
    for s in v {
        match out.last_mut() {
            Some(l) if s.start <= l.end => {
                if s.end >= l.end {
                    l.ongoing = s.ongoing || (l.ongoing && s.end == l.end);
                    l.end = s.end;
                }
            }
            _ => out.push(s),
        }
    }
    out
}

fn set_op(ev: &mut Evaluator, b: &BinaryExpr, t: i64) -> Result<Vec<Episode>> {
    if !matches!(b.op, BinaryOp::And | BinaryOp::Or | BinaryOp::Unless) {
        return err("only and, or and unless apply to episodes");
    }
    let lhs = eval_at(ev, &b.lhs, t)?;
    let rhs = eval_at(ev, &b.rhs, t)?;
    let (on, names) = match &b.matching {
        Some(m) => (m.on, m.labels.clone()),
        None => (false, Vec::new()),
    };
    let span = |e: &Episode| Span {
        start: e.start,
        end: e.end,
        ongoing: e.ongoing,
        truncated: e.truncated_start,
    };
    let mut rsig: HashMap<String, Vec<Span>> = HashMap::new();
    for e in &rhs {
        rsig.entry(ev.signature(&e.labels, on, &names))
            .or_default()
            .push(span(e));
    }
    let rsig: HashMap<String, Vec<Span>> = rsig.into_iter().map(|(k, v)| (k, union(v))).collect();
    let mut out = Vec::new();
    match b.op {
        BinaryOp::And | BinaryOp::Unless => {
            let and = b.op == BinaryOp::And;
            for e in lhs {
                let empty = Vec::new();
                let other = rsig
                    .get(&ev.signature(&e.labels, on, &names))
                    .unwrap_or(&empty);
                let pieces = if and {
                    intersect(span(&e), other)
                } else {
                    subtract(span(&e), other)
                };
                let whole = pieces.len() == 1 && pieces[0] == span(&e);
                for p in pieces {
                    out.push(Episode {
                        labels: e.labels.clone(),
                        start: p.start,
                        end: p.end,
                        ongoing: p.ongoing,
                        truncated_start: p.truncated,
                        measures: if whole {
                            e.measures.clone()
                        } else {
                            Vec::new()
                        },
                    });
                }
            }
        }
        _ => {
            // Union per label set; a label set only on the right is taken as it is.
            let mut groups: BTreeMap<Labels, Vec<Span>> = BTreeMap::new();
            let mut lhs_by_sig: HashMap<String, Labels> = HashMap::new();
            for e in &lhs {
                lhs_by_sig
                    .entry(ev.signature(&e.labels, on, &names))
                    .or_insert_with(|| e.labels.clone());
                groups.entry(e.labels.clone()).or_default().push(span(e));
            }
            for e in &rhs {
                let sig = ev.signature(&e.labels, on, &names);
                let labels = lhs_by_sig.get(&sig).unwrap_or(&e.labels).clone();
                groups.entry(labels).or_default().push(span(e));
            }
            for (labels, spans) in groups {
                for p in union(spans) {
                    out.push(Episode {
                        labels: labels.clone(),
                        start: p.start,
                        end: p.end,
                        ongoing: p.ongoing,
                        truncated_start: p.truncated,
                        measures: Vec::new(),
                    });
                }
            }
        }
    }
    Ok(out)
}

/// `a` ∩ the union `others` (sorted, disjoint).
fn intersect(a: Span, others: &[Span]) -> Vec<Span> {
    others
        .iter()
        .filter(|o| o.start < a.end && a.start < o.end)
        .map(|o| {
            let end = a.end.min(o.end);
            Span {
                start: a.start.max(o.start),
                end,
                ongoing: a.ongoing && o.ongoing && end == a.end,
                truncated: a.truncated && o.truncated && a.start.max(o.start) == a.start,
            }
        })
        .collect()
}

/// `a` minus the union `others` (sorted, disjoint).
fn subtract(a: Span, others: &[Span]) -> Vec<Span> {
    let mut out = Vec::new();
    let mut cur = a.start;
    for o in others {
        if o.end <= cur || o.start >= a.end {
            continue;
        }
        if o.start > cur {
            out.push(Span {
                start: cur,
                end: o.start,
                ongoing: false,
                truncated: a.truncated && cur == a.start,
            });
        }
        cur = cur.max(o.end);
    }
    if cur < a.end {
        out.push(Span {
            start: cur,
            end: a.end,
            ongoing: a.ongoing,
            truncated: a.truncated && cur == a.start,
        });
    }
    out
}

// ------------------------------------------------------------------ pattern and sequence

/// The step grid `(t - range, t]` of a pattern.
fn pattern_grid(
    ev: &mut Evaluator,
    range: &Option<(DurationExpr, Option<DurationExpr>)>,
    t: i64,
) -> Result<(Range, i64)> {
    let (range_ms, step) = match range {
        Some((r, s)) => (
            ev.duration_ms(r)?,
            match s {
                Some(s) => ev.duration_ms(s)?,
                None => ev.opts.default_subquery_step_ms,
            },
        ),
        None => (DEFAULT_PATTERN_RANGE_MS, ev.opts.default_subquery_step_ms),
    };
    if step <= 0 {
        return err("pattern step must be positive");
    }
    let first = (t - range_ms).div_euclid(step) * step + step;
    let last = t.div_euclid(step) * step;
    let grid = Range {
        start: first,
        end: last.max(first - step),
        step,
    };
    if last >= first && grid.n() > 11_000_000 {
        return Err(Error::Limit("pattern has too many steps".into()));
    }
    Ok((grid, step))
}

fn run_pattern(
    ev: &mut Evaluator,
    tree: &PatternNode,
    symbols: &[(String, &Expr)],
    by: &Option<Vec<String>>,
    range: &Option<(DurationExpr, Option<DurationExpr>)>,
    within: &Option<DurationExpr>,
    t: i64,
) -> Result<Vec<Episode>> {
    let names: Vec<String> = symbols.iter().map(|s| s.0.clone()).collect();
    let prog = nfa::Program::compile(tree, &names).map_err(Error::Eval)?;
    let (grid, step) = pattern_grid(ev, range, t)?;
    if grid.end < grid.start {
        return Ok(Vec::new());
    }
    let n = grid.n();
    let max_len = match within {
        Some(w) => Some((ev.duration_ms(w)?.max(0) / step) as usize),
        None => None,
    };
    let mut groups: BTreeMap<Labels, Vec<u64>> = BTreeMap::new();
    if by.is_none() {
        groups.insert(Labels::default(), vec![0; n]);
    }
    for (k, (_, e)) in symbols.iter().enumerate() {
        let series = match ev.eval(e, &grid)? {
            Val::Vector(v) => v,
            _ => return err("a pattern symbol's condition must be an instant vector"),
        };
        for s in series {
            let key = match by {
                Some(b) => Labels::from_sorted(
                    s.labels
                        .iter()
                        .filter(|l| b.contains(&l.name) && !l.value.is_empty())
                        .cloned()
                        .collect(),
                ),
                None => Labels::default(),
            };
            let bits = groups.entry(key).or_insert_with(|| vec![0; n]);
            for &(pt, _) in &s.pts {
                bits[grid.idx(pt)] |= 1u64 << k;
            }
        }
    }
    let mut out = Vec::new();
    for (labels, bits) in groups {
        for m in prog.find_all(&bits, max_len) {
            let mut measures = Vec::with_capacity(names.len() * 3);
            for (k, name) in names.iter().enumerate() {
                let s = m.stats[k];
                if s.count > 0 {
                    measures.push((format!("first_{name}"), secs(grid.ts(s.first))));
                    measures.push((format!("last_{name}"), secs(grid.ts(s.last))));
                }
                measures.push((format!("count_{name}"), f64::from(s.count)));
            }
            let ongoing = m.end == n;
            out.push(Episode {
                labels: labels.clone(),
                start: grid.ts(m.start),
                end: if ongoing { t } else { grid.ts(m.end) },
                ongoing,
                truncated_start: m.start == 0,
                measures,
            });
        }
    }
    Ok(out)
}

fn pattern(ev: &mut Evaluator, p: &PatternExpr, t: i64) -> Result<Vec<Episode>> {
    let tree = tsq_parser::parse_pattern(&p.pattern)
        .map_err(|(i, m)| Error::Eval(format!("invalid pattern at byte {i}: {m}")))?;
    let symbols: Vec<(String, &Expr)> = p.symbols.iter().map(|(s, e)| (s.clone(), e)).collect();
    run_pattern(ev, &tree, &symbols, &p.by, &p.range, &p.within, t)
}

/// `sequence(c1 [for d1], ..., cn [for dn])`: `S1{k1,} .*? S2{k2,} .*? ... Sn{kn}` where
/// `k = ceil(d/step) + 1` steps (a condition held for `d` as an alert's `for` counts it), 1
/// without `for`; every step but the last is greedy, the last ends the match as soon as it
/// has held.
fn sequence(ev: &mut Evaluator, s: &SequenceExpr, t: i64) -> Result<Vec<Episode>> {
    let (_, step) = pattern_grid(ev, &s.range, t)?;
    let mut items = Vec::new();
    let mut symbols = Vec::new();
    let count = s.steps.len();
    for (k, (e, d)) in s.steps.iter().enumerate() {
        let name = format!("S{}", k + 1);
        let need = match d {
            Some(d) => {
                let ms = ev.duration_ms(d)?;
                if ms < 0 {
                    return err("a sequence step's `for` must not be negative");
                }
                u32::try_from((ms + step - 1) / step + 1)
                    .map_err(|_| Error::Limit("sequence `for` too long".into()))?
            }
            None => 1,
        };
        if k > 0 {
            items.push(PatternNode::Repeat {
                node: Box::new(PatternNode::Any),
                min: 0,
                max: None,
                greedy: false,
            });
        }
        let last = k + 1 == count;
        items.push(PatternNode::Repeat {
            node: Box::new(PatternNode::Sym(name.clone())),
            min: need,
            max: if last { Some(need) } else { None },
            greedy: true,
        });
        symbols.push((name, e));
    }
    let tree = PatternNode::Concat(items);
    run_pattern(ev, &tree, &symbols, &s.by, &s.range, &s.within, t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sp(start: i64, end: i64) -> Span {
        Span {
            start,
            end,
            ongoing: false,
            truncated: false,
        }
    }

    #[test]
    fn time_range_algebra() {
        let others = union(vec![sp(5, 8), sp(0, 2), sp(7, 9)]);
        assert_eq!(others, vec![sp(0, 2), sp(5, 9)]);
        assert_eq!(intersect(sp(1, 6), &others), vec![sp(1, 2), sp(5, 6)]);
        assert_eq!(subtract(sp(1, 12), &others), vec![sp(2, 5), sp(9, 12)]);
        assert_eq!(subtract(sp(5, 9), &others), vec![]);
        assert_eq!(union(vec![sp(0, 2), sp(2, 3)]), vec![sp(0, 3)]);
    }
}
