//! The evaluator: every node is evaluated over all steps of the query at once.
//!
//! An instant query is a range query with one step. Instant vectors are kept series-major
//! (`SeriesV`: labels + points at step timestamps); per-step operations (binary operators,
//! aggregations) regroup points by step; range functions slide a window over each series'
//! decoded samples.

use std::collections::HashMap;

use tsq_parser::{
    AggregateExpr, AtModifier, BinaryExpr, BinaryOp, Call, DurationExpr, DurationOp, Expr, Group,
    MatchOp as PMatchOp, MatrixSelector, RangeModifier, Subquery, UnaryOp, VectorSelector,
};
use tsq_storage::{is_stale_nan, Labels, MatchOp, Matcher, METRIC_NAME};

use crate::funcs;
use crate::value::{QueryResult, Sample, Series, Value};
use crate::{EngineOptions, Error, Profile, Queryable, Result, SeriesSet};

/// The steps of an evaluation: `start, start + step, ... <= end`; `step == 0` means one step.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Range {
    pub start: i64,
    pub end: i64,
    pub step: i64,
}

impl Range {
    pub fn n(&self) -> usize {
        if self.step <= 0 {
            1
        } else {
            ((self.end - self.start) / self.step + 1) as usize
        }
    }
    pub fn ts(&self, i: usize) -> i64 {
        self.start + self.step * i as i64
    }
    pub fn idx(&self, t: i64) -> usize {
        if self.step <= 0 {
            0
        } else {
            ((t - self.start) / self.step) as usize
        }
    }
}

/// The points of a set of series regrouped by step: for each step, the `(series index,
/// value)` pairs in series order. One allocation for all steps (counted, then placed).
pub(crate) struct ByStep {
    flat: Vec<(usize, f64)>,
    start: Vec<usize>,
}

impl ByStep {
    /// The points of `series[i]` for every `i` with `keep(i)`.
    pub fn new(series: &[SeriesV], r: &Range, keep: impl Fn(usize) -> bool) -> Self {
        let n = r.n();
        let mut start = vec![0usize; n + 1];
        for (i, s) in series.iter().enumerate() {
            if keep(i) {
                for &(t, _) in &s.pts {
                    start[r.idx(t) + 1] += 1;
                }
            }
        }
        for k in 0..n {
            start[k + 1] += start[k];
        }
        let mut flat = vec![(0usize, 0.0f64); start[n]];
        let mut next = start.clone();
        for (i, s) in series.iter().enumerate() {
            if keep(i) {
                for &(t, v) in &s.pts {
                    let k = r.idx(t);
                    flat[next[k]] = (i, v);
                    next[k] += 1;
                }
            }
        }
        ByStep { flat, start }
    }

    /// The pairs of step `k`.
    pub fn at(&self, k: usize) -> &[(usize, f64)] {
        &self.flat[self.start[k]..self.start[k + 1]]
    }

    /// The pairs of every step, in step order.
    pub fn steps(&self) -> impl Iterator<Item = &[(usize, f64)]> {
        self.start.windows(2).map(|w| &self.flat[w[0]..w[1]])
    }
}

/// One series of an instant vector over the steps.
#[derive(Debug, Clone)]
pub(crate) struct SeriesV {
    pub labels: Labels,
    /// 3.x delayed `__name__` removal: the name is dropped at the end.
    pub drop_name: bool,
    /// `(step timestamp, value)`, at most one per step, in step order.
    pub pts: Vec<(i64, f64)>,
}

/// A series with raw samples (range-vector input).
#[derive(Debug, Clone)]
pub(crate) struct RawSeries {
    pub labels: Labels,
    pub drop_name: bool,
    pub ts: Vec<i64>,
    pub vs: Vec<f64>,
}

/// An evaluated node.
#[derive(Debug, Clone)]
pub(crate) enum Val {
    Scalar(Vec<f64>),
    Str(String),
    Vector(Vec<SeriesV>),
    /// Only at the root of an instant query.
    Matrix(Vec<RawSeries>),
    /// Episodes at one evaluation time (instant queries only).
    Episodes(Vec<crate::value::Episode>),
}

/// A range-vector argument with its per-step windows.
pub(crate) struct RangeArg {
    pub series: Vec<RawSeries>,
    pub range_ms: i64,
    /// Evaluation time of each step (after `@` and offset).
    pub eval_t: Vec<i64>,
    pub left_open: bool,
}

impl RangeArg {
    /// `[lo, hi)` indices of the window of step `i` in `s`.
    #[inline]
    pub fn window(&self, s: &RawSeries, i: usize) -> (usize, usize) {
        let t = self.eval_t[i];
        let from = t - self.range_ms;
        let lo = if self.left_open {
            s.ts.partition_point(|&x| x <= from)
        } else {
            s.ts.partition_point(|&x| x < from)
        };
        let hi = s.ts.partition_point(|&x| x <= t);
        (lo, hi.max(lo))
    }

    /// Moves `[lo, hi)` forward to the window ending at `t` of `s`, for evaluation times
    /// that never decrease (cheaper than [`RangeArg::window`]'s searches).
    #[inline]
    pub fn advance_window(&self, s: &RawSeries, t: i64, lo: &mut usize, hi: &mut usize) {
        let from = t - self.range_ms;
        while *lo < s.ts.len() && (s.ts[*lo] < from || (self.left_open && s.ts[*lo] == from)) {
            *lo += 1;
        }
        *hi = (*hi).max(*lo);
        while *hi < s.ts.len() && s.ts[*hi] <= t {
            *hi += 1;
        }
    }
}

pub(crate) struct Evaluator<'a> {
    pub opts: &'a EngineOptions,
    pub db: &'a dyn Queryable,
    pub p3: bool,
    pub query_start: i64,
    pub query_end: i64,
    pub query_step: i64,
    pub samples_loaded: usize,
    pub warnings: Vec<String>,
    pub infos: Vec<String>,
    /// Subexpressions written more than once in the query, or kept by the shared cache (by
    /// address of the node): their printed form, the key of `memo`, and whether the query
    /// itself repeats it (only those are kept in `memo`).
    pub repeated: HashMap<usize, (String, bool)>,
    /// Values of repeated subexpressions by (printed form, start, end, step).
    pub memo: HashMap<(String, i64, i64, i64), Val>,
    /// Subexpression values shared with other queries, if the caller gave a cache.
    pub shared: Option<&'a SharedSubexpressions>,
}

/// A shared value: the subexpression's value and the annotations its evaluation produced.
struct SharedVal {
    val: Val,
    warnings: Vec<String>,
    infos: Vec<String>,
}

/// (printed form, start, end, step of its range, start and end of the query).
type SharedKey = (String, i64, i64, i64, i64, i64);

/// Subexpression values shared by several queries, such as the rules of a backtest that all
/// compute `rate(http_requests_total[5m])` over the same steps: the first query to need one
/// evaluates it, the others reuse it. Only the printed forms the cache is created with are
/// kept, and only for the same steps and query range; the caller promises that the data such
/// a subexpression reads does not change while the cache is in use. Queries may run on
/// several threads: a query that needs a value another is computing waits for it.
#[derive(Default)]
pub struct SharedSubexpressions {
    keep: std::collections::HashSet<String>,
    values: std::sync::Mutex<HashMap<SharedKey, Slot>>,
    ready: std::sync::Condvar,
}

enum Slot {
    /// A query is evaluating it.
    Pending,
    Ready(std::sync::Arc<SharedVal>),
}

/// What [`SharedSubexpressions::get_or_claim`] found.
enum Claim<'a> {
    Hit(std::sync::Arc<SharedVal>),
    /// The caller evaluates it and hands it over with [`Claimed::put`]; if the caller
    /// fails (or drops the claim), the slot is freed and a waiting query evaluates it.
    Mine(Claimed<'a>),
}

struct Claimed<'a> {
    cache: &'a SharedSubexpressions,
    key: Option<SharedKey>,
}

impl Claimed<'_> {
    fn put(mut self, v: SharedVal) {
        let key = self.key.take().expect("put once");
        let mut values = self.cache.lock();
        values.insert(key, Slot::Ready(std::sync::Arc::new(v)));
        self.cache.ready.notify_all();
    }
}

impl Drop for Claimed<'_> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.cache.lock().remove(&key);
            self.cache.ready.notify_all();
        }
    }
}

impl SharedSubexpressions {
    /// A cache for the subexpressions whose printed forms (`Expr`'s `Display`) are `keep`.
    pub fn new(keep: impl IntoIterator<Item = String>) -> Self {
        SharedSubexpressions {
            keep: keep.into_iter().collect(),
            values: Default::default(),
            ready: Default::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SharedKey, Slot>> {
        // A panic while holding the lock leaves the map consistent (one insert or remove).
        self.values.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The value of `key`, waiting while another query computes it; or the claim to compute
    /// it. Waiting cannot deadlock: a query waits only for a strict subexpression of what it
    /// is computing (every key it holds encloses the one it waits for), and containment has
    /// no cycles.
    fn get_or_claim(&self, key: &SharedKey) -> Claim<'_> {
        let mut values = self.lock();
        loop {
            match values.get(key) {
                Some(Slot::Ready(v)) => return Claim::Hit(v.clone()),
                Some(Slot::Pending) => {
                    values = self.ready.wait(values).unwrap_or_else(|e| e.into_inner());
                }
                None => {
                    values.insert(key.clone(), Slot::Pending);
                    return Claim::Mine(Claimed {
                        cache: self,
                        key: Some(key.clone()),
                    });
                }
            }
        }
    }
}

/// An `anchored`/`smoothed` range selector loaded for all steps (see
/// [`Evaluator::eval_extended_range`]): each step sees the samples of
/// `(t - range - back_ms, t + fwd_ms]`, `t` its evaluation time.
pub(crate) struct ExtendedArg {
    pub series: Vec<RawSeries>,
    pub range_ms: i64,
    pub eval_t: Vec<i64>,
    pub back_ms: i64,
    pub fwd_ms: i64,
    pub smoothed: bool,
}

impl ExtendedArg {
    /// `[lo, hi)` indices of the widened window of step `i` in `s`.
    pub fn window(&self, s: &RawSeries, i: usize) -> (usize, usize) {
        let t = self.eval_t[i];
        let lo =
            s.ts.partition_point(|&x| x <= t - self.range_ms - self.back_ms);
        let hi = s.ts.partition_point(|&x| x <= t + self.fwd_ms);
        (lo, hi.max(lo))
    }
}

/// The error of a query past `max_samples` loaded samples.
pub(crate) fn samples_limit_error(max_samples: usize) -> Error {
    Error::Limit(format!(
        "query processing would load too many samples into memory in query execution (limit {max_samples})"
    ))
}

/// Drops staleness markers (they are not samples of range vectors).
fn drop_stale(mut raw: Vec<RawSeries>) -> Vec<RawSeries> {
    for s in &mut raw {
        drop_stale_one(s);
    }
    raw
}

/// Drops one series' staleness markers, in place.
pub(crate) fn drop_stale_one(s: &mut RawSeries) {
    // Branch-free over blocks of values so that the scan vectorises: most series hold
    // no marker and this pass reads every value.
    let has_marker =
        s.vs.chunks(64)
            .any(|c| c.iter().fold(false, |a, v| a | is_stale_nan(*v)));
    if has_marker {
        let mut w = 0;
        for i in 0..s.vs.len() {
            if !is_stale_nan(s.vs[i]) {
                s.ts[w] = s.ts[i];
                s.vs[w] = s.vs[i];
                w += 1;
            }
        }
        s.ts.truncate(w);
        s.vs.truncate(w);
    }
}

/// The value at `t` on the line through `p1` and `p2` (Prometheus 3.x `interpolate`). For a
/// counter that reset between them, the line starts from 0 at `p1`.
pub(crate) fn interpolate(p1: (i64, f64), p2: (i64, f64), t: i64, is_counter: bool) -> f64 {
    let (mut y1, y2) = (p1.1, p2.1);
    if is_counter && y2 < y1 {
        y1 = 0.0;
    }
    y1 + (y2 - y1) * (t - p1.0) as f64 / (p2.0 - p1.0) as f64
}

/// Go's `sort.Search(n, f)`: the smallest `i` in `[0, n)` with `f(i)`, else `n`.
fn search(n: usize, f: impl Fn(usize) -> bool) -> usize {
    let (mut i, mut j) = (0, n);
    while i < j {
        let h = (i + j) / 2;
        if f(h) {
            j = h;
        } else {
            i = h + 1;
        }
    }
    i
}

/// Index of the last sample at or before `range_start` (0 if none), among all but the last
/// sample; `None` when no sample is after `range_start` (Prometheus's `pickFirstSampleIndex`).
fn pick_first(ts: &[i64], range_start: i64) -> Option<usize> {
    let n = ts.len();
    if n == 0 || ts[n - 1] <= range_start {
        return None;
    }
    Some(search(n - 1, |i| ts[i] > range_start).saturating_sub(1))
}

/// `[first, last]` of an extended window and whether it yields a value (shared by
/// `extendedRate` and `extendFloats`).
fn extended_bounds(ts: &[i64], start: i64, end: i64, smoothed: bool) -> Option<(usize, usize)> {
    if ts.is_empty() {
        return None;
    }
    let mut last = ts.len() - 1;
    let first = search(last, |i| ts[i] > start).saturating_sub(1);
    if smoothed {
        last = search(last, |i| ts[i] >= end);
    }
    if ts[last] <= start {
        return None;
    }
    Some((first, last))
}

/// The boundary values: the sample at/before the window start (interpolated to the start
/// for `smoothed` when it is before it) and the one at the end.
fn edges(
    ts: &[i64],
    vs: &[f64],
    (first, last): (usize, usize),
    start: i64,
    end: i64,
    smoothed: bool,
    is_counter: bool,
) -> (f64, f64) {
    let left = if smoothed && ts[first] < start {
        interpolate(
            (ts[first], vs[first]),
            (ts[first + 1], vs[first + 1]),
            start,
            is_counter,
        )
    } else {
        vs[first]
    };
    let right = if smoothed && last > 0 && ts[last] > end {
        interpolate(
            (ts[last - 1], vs[last - 1]),
            (ts[last], vs[last]),
            end,
            is_counter,
        )
    } else {
        vs[last]
    };
    (left, right)
}

/// Prometheus 3.x `extendFloats`: an anchored/smoothed window trimmed back to
/// `[start, end]`, with a point exactly at each bound (never counter-aware). Used for a range
/// selector at the root of an instant query.
pub(crate) fn extend_floats(
    ts: &[i64],
    vs: &[f64],
    start: i64,
    end: i64,
    smoothed: bool,
) -> Vec<(i64, f64)> {
    let Some((mut first, mut last)) = extended_bounds(ts, start, end, smoothed) else {
        return Vec::new();
    };
    let (left, right) = edges(ts, vs, (first, last), start, end, smoothed, false);
    if ts[first] <= start {
        first += 1;
    }
    if ts[last] >= end {
        last = last.wrapping_sub(1);
    }
    let mut out = vec![(start, left)];
    if last != usize::MAX && first <= last {
        out.extend(
            ts[first..=last]
                .iter()
                .copied()
                .zip(vs[first..=last].iter().copied()),
        );
    }
    out.push((end, right));
    out
}

/// Prometheus 3.x `extendedRate`: `rate`/`increase`/`delta` over an anchored or smoothed
/// window, without extrapolation: the value at the end minus the value at the start (the
/// boundary samples, or for `smoothed` values interpolated at the bounds, counter-aware for
/// rate/increase), plus the counter-reset correction; `rate` divides by the range.
fn extended_rate(
    ts: &[i64],
    vs: &[f64],
    start: i64,
    end: i64,
    smoothed: bool,
    is_counter: bool,
) -> Option<f64> {
    let (mut first, mut last) = extended_bounds(ts, start, end, smoothed)?;
    if smoothed && ts[first] > end {
        return None;
    }
    let (left, right) = edges(ts, vs, (first, last), start, end, smoothed, is_counter);
    let mut result = right - left;
    if is_counter {
        // Only the samples strictly inside the window: the boundary ones are in left/right.
        if ts[first] <= start {
            first += 1;
        }
        if ts[last] >= end {
            last = last.wrapping_sub(1);
        }
        let inner = if last != usize::MAX && first <= last {
            &vs[first..=last]
        } else {
            &vs[0..0]
        };
        let mut prev = left;
        for &v in inner {
            if v < prev {
                result += prev;
            }
            prev = v;
        }
        if right < prev {
            result += prev;
        }
    }
    Some(result)
}

/// `changes`, `delta`, `increase`, `rate`, `resets` over an `anchored`/`smoothed` range
/// selector (the parser allows these modifiers nowhere else).
pub(crate) fn extended_call(
    ev: &mut Evaluator,
    ms: &MatrixSelector,
    m: RangeModifier,
    r: &Range,
    name: &str,
) -> Result<Val> {
    let mut arg = ev.eval_extended_range(ms, m, r)?;
    let range_s = arg.range_ms as f64 / 1000.0;
    let mut out = Vec::new();
    for s in std::mem::take(&mut arg.series) {
        let mut pts = Vec::new();
        for i in 0..r.n() {
            let (lo, hi) = arg.window(&s, i);
            let (ts, vs) = (&s.ts[lo..hi], &s.vs[lo..hi]);
            let t = arg.eval_t[i];
            let start = t - arg.range_ms;
            let v = match name {
                "rate" => extended_rate(ts, vs, start, t, arg.smoothed, true).map(|v| v / range_s),
                "increase" => extended_rate(ts, vs, start, t, arg.smoothed, true),
                "delta" => extended_rate(ts, vs, start, t, arg.smoothed, false),
                "changes" | "resets" => pick_first(ts, start).map(|first| {
                    let w = &vs[first..];
                    let n = if name == "changes" {
                        w.windows(2)
                            .filter(|p| p[1] != p[0] && !(p[1].is_nan() && p[0].is_nan()))
                            .count()
                    } else {
                        w.windows(2).filter(|p| p[1] < p[0]).count()
                    };
                    n as f64
                }),
                _ => {
                    return err(format!(
                        "anchored/smoothed modifiers cannot be used with {name}"
                    ))
                }
            };
            if let Some(v) = v {
                pts.push((r.ts(i), v));
            }
        }
        if pts.is_empty() {
            continue;
        }
        crate::funcs::counter_name_info(ev, name, &s.labels);
        let mut sv = SeriesV {
            labels: s.labels,
            drop_name: s.drop_name,
            pts,
        };
        ev.drop_name(&mut sv);
        out.push(sv);
    }
    Ok(Val::Vector(out))
}

/// The address of a node, stable while the query's tree lives.
fn node_id(e: &Expr) -> usize {
    e as *const Expr as usize
}

/// Finds the function calls, aggregations and binary operations that occur more than once
/// in `root` (the same text), e.g. an error ratio used by two pattern symbols, and those the
/// shared cache keeps (flagged false when the query has them once).
fn repeated_subexpressions(
    root: &Expr,
    shared: Option<&SharedSubexpressions>,
) -> HashMap<usize, (String, bool)> {
    let mut seen: Vec<(&Expr, String)> = Vec::new();
    root.visit(&mut |e| {
        if matches!(e, Expr::Call(_) | Expr::Aggregate(_) | Expr::Binary(_)) {
            seen.push((e, e.to_string()));
        }
    });
    let mut count: HashMap<&str, usize> = HashMap::new();
    for (_, k) in &seen {
        *count.entry(k.as_str()).or_default() += 1;
    }
    let keep: std::collections::HashSet<String> = count
        .into_iter()
        .filter(|&(_, n)| n > 1)
        .map(|(k, _)| k.to_string())
        .collect();
    seen.into_iter()
        .filter_map(|(e, k)| {
            let here = keep.contains(&k);
            (here || shared.is_some_and(|sh| sh.keep.contains(&k))).then(|| (node_id(e), (k, here)))
        })
        .collect()
}

pub(crate) fn err<T>(msg: impl Into<String>) -> Result<T> {
    Err(Error::Eval(msg.into()))
}

/// Entry point of both query kinds.
pub(crate) fn run(
    opts: &EngineOptions,
    db: &dyn Queryable,
    expr: &Expr,
    r: Range,
    instant: bool,
    shared: Option<&SharedSubexpressions>,
) -> Result<QueryResult> {
    let Range { start, end, step } = r;
    let mut ev = Evaluator {
        opts,
        db,
        p3: opts.profile == Profile::Promql3,
        query_start: start,
        query_end: end,
        query_step: step,
        samples_loaded: 0,
        warnings: Vec::new(),
        infos: Vec::new(),
        repeated: repeated_subexpressions(expr, shared),
        memo: HashMap::new(),
        shared,
    };
    let root = unparen(expr);
    let val = if instant {
        match root {
            Expr::MatrixSelector(_) | Expr::Subquery(_) if crate::baseline::has_seasons(root) => {
                Val::Matrix(
                    crate::baseline::seasonal_matrix(&mut ev, root, &r)?.unwrap_or_default(),
                )
            }
            Expr::MatrixSelector(ms) if ms.modifier.is_some() => {
                let m = ms.modifier.unwrap_or(tsq_parser::RangeModifier::Anchored);
                let arg = ev.eval_extended_range(ms, m, &r)?;
                let mut out = Vec::new();
                for s in &arg.series {
                    let (lo, hi) = arg.window(s, 0);
                    let t = arg.eval_t[0];
                    let pts = extend_floats(
                        &s.ts[lo..hi],
                        &s.vs[lo..hi],
                        t - arg.range_ms,
                        t,
                        arg.smoothed,
                    );
                    if !pts.is_empty() {
                        let (ts, vs) = pts.into_iter().unzip();
                        out.push(RawSeries {
                            labels: s.labels.clone(),
                            drop_name: s.drop_name,
                            ts,
                            vs,
                        });
                    }
                }
                Val::Matrix(out)
            }
            Expr::MatrixSelector(_) | Expr::Subquery(_) => {
                let mut arg = ev.eval_range_arg(root, &r)?;
                let mut out = Vec::new();
                let series = std::mem::take(&mut arg.series);
                for s in series {
                    let (lo, hi) = arg.window(&s, 0);
                    if lo < hi {
                        out.push(RawSeries {
                            labels: s.labels,
                            drop_name: s.drop_name,
                            ts: s.ts[lo..hi].to_vec(),
                            vs: s.vs[lo..hi].to_vec(),
                        });
                    }
                }
                Val::Matrix(out)
            }
            _ => ev.eval(root, &r)?,
        }
    } else {
        match root {
            Expr::MatrixSelector(_) | Expr::Subquery(_) => {
                return err("invalid expression type \"range vector\" for range query, must be Scalar or instant Vector")
            }
            Expr::String(_) => {
                return err("invalid expression type \"string\" for range query, must be Scalar or instant Vector")
            }
            _ => ev.eval(root, &r)?,
        }
    };
    let value = match val {
        Val::Scalar(v) => {
            if instant {
                Value::Scalar { t: start, v: v[0] }
            } else {
                Value::Matrix(vec![Series {
                    labels: Labels::default(),
                    samples: (0..r.n()).map(|i| (r.ts(i), v[i])).collect(),
                }])
            }
        }
        Val::Str(s) => Value::String { t: start, s },
        Val::Vector(series) => {
            let series = cleanup_names(series)?;
            if instant {
                Value::Vector(
                    series
                        .into_iter()
                        .filter_map(|s| {
                            s.pts.first().map(|&(t, v)| Sample {
                                labels: s.labels,
                                t,
                                v,
                            })
                        })
                        .collect(),
                )
            } else {
                let mut m: Vec<Series> = series
                    .into_iter()
                    .filter(|s| !s.pts.is_empty())
                    .map(|s| Series {
                        labels: s.labels,
                        samples: s.pts,
                    })
                    .collect();
                m.sort_by(|a, b| a.labels.cmp(&b.labels));
                Value::Matrix(m)
            }
        }
        Val::Matrix(series) => {
            let mut out = Vec::with_capacity(series.len());
            for s in series {
                let labels = if s.drop_name {
                    s.labels.without_metric_name()
                } else {
                    s.labels
                };
                out.push(Series {
                    labels,
                    samples: s.ts.into_iter().zip(s.vs).collect(),
                });
            }
            check_unique(out.iter().map(|s| &s.labels))?;
            Value::Matrix(out)
        }
        Val::Episodes(e) => {
            if !instant {
                return err("invalid expression type \"episodes\" for range query, must be Scalar or instant Vector (use episodes_to_series(...))");
            }
            Value::Episodes(e)
        }
    };
    Ok(QueryResult {
        value,
        warnings: ev.warnings,
        infos: ev.infos,
    })
}

fn check_unique<'a>(it: impl Iterator<Item = &'a Labels>) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    for l in it {
        if !seen.insert(l) {
            return err("vector cannot contain metrics with the same labelset");
        }
    }
    Ok(())
}

/// Applies delayed `__name__` removal and checks that the labelsets stay unique.
fn cleanup_names(mut series: Vec<SeriesV>) -> Result<Vec<SeriesV>> {
    let mut any = false;
    for s in &mut series {
        if s.drop_name {
            s.labels = s.labels.without_metric_name();
            s.drop_name = false;
            any = true;
        }
    }
    if any {
        // Two series that now share a labelset conflict if they have a point at the same step.
        let mut seen: HashMap<&Labels, usize> = HashMap::new();
        for (i, s) in series.iter().enumerate() {
            if let Some(&j) = seen.get(&s.labels) {
                let a = &series[j].pts;
                let b = &s.pts;
                let (mut x, mut y) = (0, 0);
                while x < a.len() && y < b.len() {
                    match a[x].0.cmp(&b[y].0) {
                        std::cmp::Ordering::Less => x += 1,
                        std::cmp::Ordering::Greater => y += 1,
                        std::cmp::Ordering::Equal => {
                            return err("vector cannot contain metrics with the same labelset")
                        }
                    }
                }
            } else {
                seen.insert(&s.labels, i);
            }
        }
        // Merge series with equal labels (disjoint in time).
        let mut idx: HashMap<Labels, usize> = HashMap::new();
        let mut out: Vec<SeriesV> = Vec::with_capacity(series.len());
        for s in series {
            if let Some(&i) = idx.get(&s.labels) {
                let o: &mut SeriesV = &mut out[i];
                o.pts.extend(s.pts);
                o.pts.sort_by_key(|p| p.0);
            } else {
                idx.insert(s.labels.clone(), out.len());
                out.push(s);
            }
        }
        return Ok(out);
    }
    Ok(series)
}

pub(crate) fn unparen(mut e: &Expr) -> &Expr {
    while let Expr::Paren(inner) = e {
        e = inner;
    }
    e
}

/// Go's `math.Max`.
pub(crate) fn go_max(a: f64, b: f64) -> f64 {
    if a.is_infinite() && a > 0.0 || b.is_infinite() && b > 0.0 {
        return f64::INFINITY;
    }
    if a.is_nan() || b.is_nan() {
        return f64::NAN;
    }
    if a == 0.0 && b == 0.0 {
        return if a.is_sign_negative() { b } else { a };
    }
    if a > b {
        a
    } else {
        b
    }
}

/// Go's `math.Min`.
pub(crate) fn go_min(a: f64, b: f64) -> f64 {
    if a.is_infinite() && a < 0.0 || b.is_infinite() && b < 0.0 {
        return f64::NEG_INFINITY;
    }
    if a.is_nan() || b.is_nan() {
        return f64::NAN;
    }
    if a == 0.0 && b == 0.0 {
        return if a.is_sign_negative() { a } else { b };
    }
    if a < b {
        a
    } else {
        b
    }
}

/// Prometheus's `kahanSumInc` (Neumaier's variant).
#[inline]
pub(crate) fn kahan_inc(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    let c = if t.is_infinite() {
        0.0
    } else if sum.abs() >= inc.abs() {
        c + ((sum - t) + inc)
    } else {
        c + ((inc - t) + sum)
    };
    (t, c)
}

/// Go's `labels.String()`: `{__name__="x", a="b"}`.
pub(crate) fn go_labels(l: &Labels) -> String {
    let mut s = String::from("{");
    for (i, p) in l.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        s.push_str(&p.name);
        s.push('=');
        let _ = tsq_storage::labels::write_escaped(&mut s, &p.value);
    }
    s.push('}');
    s
}

/// Annotation helpers.
impl Evaluator<'_> {
    pub fn warn(&mut self, msg: String) {
        if self.p3 && !self.warnings.contains(&msg) {
            self.warnings.push(msg);
        }
    }
    pub fn info(&mut self, msg: String) {
        if self.p3 && !self.infos.contains(&msg) {
            self.infos.push(msg);
        }
    }

    /// Does the operator drop the metric name? (`atan2` did not in 2.42.)
    pub fn op_drops_name(&self, op: BinaryOp) -> bool {
        match op {
            BinaryOp::Add
            | BinaryOp::Sub
            | BinaryOp::Mul
            | BinaryOp::Div
            | BinaryOp::Mod
            | BinaryOp::Pow => true,
            BinaryOp::Atan2 => self.p3,
            _ => false,
        }
    }

    /// Marks (3.x) or drops (2.42) the metric name.
    pub fn drop_name(&self, s: &mut SeriesV) {
        if self.p3 {
            s.drop_name = true;
        } else {
            s.labels = s.labels.without_metric_name();
        }
    }
}

impl<'a> Evaluator<'a> {
    pub fn duration_ms(&self, d: &DurationExpr) -> Result<i64> {
        Ok(self.duration_f(d)?.round() as i64)
    }

    fn duration_f(&self, d: &DurationExpr) -> Result<f64> {
        Ok(match d {
            DurationExpr::Literal(ms) => *ms as f64,
            DurationExpr::Number(s) => s * 1000.0,
            DurationExpr::Step => self.query_step as f64,
            DurationExpr::Range => (self.query_end - self.query_start) as f64,
            DurationExpr::Neg(x) => -self.duration_f(x)?,
            DurationExpr::Paren(x) => self.duration_f(x)?,
            DurationExpr::MinOf(a, b) => self.duration_f(a)?.min(self.duration_f(b)?),
            DurationExpr::MaxOf(a, b) => self.duration_f(a)?.max(self.duration_f(b)?),
            DurationExpr::Binary(op, a, b) => {
                let (a, b) = (self.duration_f(a)?, self.duration_f(b)?);
                match op {
                    DurationOp::Add => a + b,
                    DurationOp::Sub => a - b,
                    // Durations are in ms: scale products and quotients back.
                    DurationOp::Mul => a * b / 1000.0,
                    DurationOp::Div => {
                        if b == 0.0 {
                            return err("division by zero in duration expression");
                        }
                        a / b * 1000.0
                    }
                    DurationOp::Mod => {
                        if b == 0.0 {
                            return err("modulo by zero in duration expression");
                        }
                        a % b
                    }
                    DurationOp::Pow => (a / 1000.0).powf(b / 1000.0) * 1000.0,
                }
            }
        })
    }

    fn at_ms(&self, at: &Option<AtModifier>) -> Option<i64> {
        at.as_ref().map(|a| match a {
            AtModifier::Time(s) => (s * 1000.0).round() as i64,
            AtModifier::Start => self.query_start,
            AtModifier::End => self.query_end,
        })
    }

    /// Evaluation time of each step for a selector/subquery with these modifiers.
    pub(crate) fn eval_times(
        &self,
        r: &Range,
        at: &Option<AtModifier>,
        offset: &Option<DurationExpr>,
    ) -> Result<Vec<i64>> {
        let off = match offset {
            Some(d) => self.duration_ms(d)?,
            None => 0,
        };
        let at = self.at_ms(at);
        Ok((0..r.n()).map(|i| at.unwrap_or(r.ts(i)) - off).collect())
    }

    fn storage_matchers(&self, vs: &VectorSelector) -> Result<Vec<Matcher>> {
        vs.matchers
            .iter()
            .map(|m| {
                let op = match m.op {
                    PMatchOp::Equal => MatchOp::Equal,
                    PMatchOp::NotEqual => MatchOp::NotEqual,
                    PMatchOp::Regex => MatchOp::Regex,
                    PMatchOp::NotRegex => MatchOp::NotRegex,
                };
                Matcher::new(op, m.name.clone(), m.value.clone(), self.p3).map_err(|e| {
                    Error::Eval(format!("invalid regular expression {:?}: {e}", m.value))
                })
            })
            .collect()
    }

    fn select(&mut self, vs: &VectorSelector, mint: i64, maxt: i64) -> Result<Vec<RawSeries>> {
        let matchers = self.storage_matchers(vs)?;
        let data = self.db.select(&matchers, mint, maxt)?;
        self.check_series_limit(data.len())?;
        let n: usize = data.iter().map(|d| d.timestamps.len()).sum();
        self.samples_loaded += n;
        if self.samples_loaded > self.opts.max_samples {
            return Err(self.samples_limit_error());
        }
        Ok(data
            .into_iter()
            .map(|d| RawSeries {
                labels: d.labels,
                drop_name: false,
                ts: d.timestamps,
                vs: d.values,
            })
            .collect())
    }

    /// Like [`Evaluator::select`], but each series may hold only a suffix of its samples
    /// that includes the last one in `[mint, maxt]`.
    fn select_last(&mut self, vs: &VectorSelector, mint: i64, maxt: i64) -> Result<Vec<RawSeries>> {
        let matchers = self.storage_matchers(vs)?;
        let db: &'a dyn Queryable = self.db;
        let set = db.select_lazy(&matchers, mint, maxt)?;
        self.check_series_limit(set.len())?;
        let mut out = Vec::with_capacity(set.len());
        for i in 0..set.len() {
            let (mut ts, mut vals) = (Vec::new(), Vec::new());
            set.read_last(i, &mut ts, &mut vals)?;
            self.samples_loaded += ts.len();
            if self.samples_loaded > self.opts.max_samples {
                return Err(self.samples_limit_error());
            }
            if !ts.is_empty() {
                out.push(RawSeries {
                    labels: set.labels(i).clone(),
                    drop_name: false,
                    ts,
                    vs: vals,
                });
            }
        }
        Ok(out)
    }

    /// Evaluates an expression to a scalar, vector or string over `r`; a subexpression that
    /// the query repeats is evaluated once per range.
    pub fn eval(&mut self, e: &Expr, r: &Range) -> Result<Val> {
        if self.repeated.is_empty() {
            return self.eval_node(e, r);
        }
        let Some((key, here)) = self.repeated.get(&node_id(e)) else {
            return self.eval_node(e, r);
        };
        let here = *here;
        let key = (key.clone(), r.start, r.end, r.step);
        if let Some(v) = self.memo.get(&key) {
            return Ok(v.clone());
        }
        let shared = self.shared.filter(|sh| sh.keep.contains(&key.0));
        let Some(sh) = shared else {
            let v = self.eval_node(e, r)?;
            self.memo.insert(key, v.clone());
            return Ok(v);
        };
        let skey = (
            key.0.clone(),
            key.1,
            key.2,
            key.3,
            self.query_start,
            self.query_end,
        );
        let claim = match sh.get_or_claim(&skey) {
            Claim::Hit(hit) => {
                for w in &hit.warnings {
                    self.warn(w.clone());
                }
                for i in &hit.infos {
                    self.info(i.clone());
                }
                if here {
                    self.memo.insert(key, hit.val.clone());
                }
                return Ok(hit.val.clone());
            }
            Claim::Mine(c) => c,
        };
        let (w0, i0) = (self.warnings.len(), self.infos.len());
        let v = self.eval_node(e, r)?;
        claim.put(SharedVal {
            val: v.clone(),
            warnings: self.warnings[w0..].to_vec(),
            infos: self.infos[i0..].to_vec(),
        });
        if here {
            self.memo.insert(key, v.clone());
        }
        Ok(v)
    }

    fn eval_node(&mut self, e: &Expr, r: &Range) -> Result<Val> {
        match e {
            Expr::Number(n) => Ok(Val::Scalar(vec![*n; r.n()])),
            Expr::String(s) => Ok(Val::Str(s.clone())),
            Expr::Paren(inner) => self.eval(inner, r),
            Expr::VectorSelector(vs) => self.eval_vector_selector(vs, r),
            Expr::MatrixSelector(_) | Expr::Subquery(_) => err(
                "range vector cannot be used here: expected an instant vector or scalar expression",
            ),
            Expr::Unary(op, inner) => {
                let v = self.eval(inner, r)?;
                match (op, v) {
                    (UnaryOp::Pos, v) => Ok(v),
                    (UnaryOp::Neg, Val::Scalar(mut s)) => {
                        s.iter_mut().for_each(|x| *x = -*x);
                        Ok(Val::Scalar(s))
                    }
                    (UnaryOp::Neg, Val::Vector(mut vs)) => {
                        for s in &mut vs {
                            s.pts.iter_mut().for_each(|p| p.1 = -p.1);
                            self.drop_name(s);
                        }
                        if !self.p3 {
                            check_unique(vs.iter().map(|s| &s.labels))?;
                        }
                        Ok(Val::Vector(vs))
                    }
                    _ => err("unary expression only allowed on expressions of type scalar or instant vector"),
                }
            }
            Expr::Binary(b) if b.lhs.value_type() == tsq_parser::ValueType::Episodes => {
                crate::episodes::eval(self, e, r)
            }
            Expr::Binary(b) => self.eval_binary(b, r),
            Expr::Aggregate(a) => self.eval_aggregate(a, r),
            Expr::Call(c) => self.eval_call(c, r),
            Expr::Pattern(_) | Expr::Sequence(_) => crate::episodes::eval(self, e, r),
        }
    }

    pub fn eval_vector(&mut self, e: &Expr, r: &Range) -> Result<Vec<SeriesV>> {
        match self.eval(e, r)? {
            Val::Vector(v) => Ok(v),
            _ => err("expected an instant vector"),
        }
    }

    pub fn eval_scalar(&mut self, e: &Expr, r: &Range) -> Result<Vec<f64>> {
        match self.eval(e, r)? {
            Val::Scalar(v) => Ok(v),
            _ => err("expected a scalar"),
        }
    }

    pub fn eval_string(&mut self, e: &Expr, r: &Range) -> Result<String> {
        match self.eval(e, r)? {
            Val::Str(v) => Ok(v),
            _ => err("expected a string"),
        }
    }

    fn eval_vector_selector(&mut self, vs: &VectorSelector, r: &Range) -> Result<Val> {
        Ok(Val::Vector(self.select_instant(vs, r, false)?))
    }

    /// `timestamp(selector)`: the timestamps of the selected samples, in seconds.
    pub fn eval_selector_timestamps(
        &mut self,
        vs: &VectorSelector,
        r: &Range,
    ) -> Result<Vec<SeriesV>> {
        self.select_instant(vs, r, true)
    }

    fn select_instant(
        &mut self,
        vs: &VectorSelector,
        r: &Range,
        want_ts: bool,
    ) -> Result<Vec<SeriesV>> {
        if let Some(m) = vs.modifier {
            self.check_extended(m)?;
            if m == RangeModifier::Smoothed {
                return self.select_smoothed(vs, r, want_ts);
            }
            // `anchored` on an instant selector: the last sample at or before `t` within
            // the lookback delta, which is what a plain selector gives.
        }
        let et = self.eval_times(r, &vs.at, &vs.offset)?;
        let lb = self.opts.lookback_delta_ms;
        let min = *et.iter().min().unwrap_or(&0);
        let max = *et.iter().max().unwrap_or(&0);
        let raw = if min == max {
            // One evaluation time: only each series' last sample matters, which the store
            // may give without decoding (from a chunk's statistics).
            self.select_last(vs, min - lb, max)?
        } else {
            self.select(vs, min - lb, max)?
        };
        let p3 = self.p3;
        let mut out = Vec::with_capacity(raw.len());
        // Evaluation times usually ascend: then a cursor replaces the binary searches.
        let ascending = et.windows(2).all(|w| w[0] <= w[1]);
        for s in raw {
            let mut pts = Vec::new();
            let mut cursor = 0;
            for (i, &t) in et.iter().enumerate() {
                let idx = if ascending {
                    while cursor < s.ts.len() && s.ts[cursor] <= t {
                        cursor += 1;
                    }
                    cursor
                } else {
                    s.ts.partition_point(|&x| x <= t)
                };
                if idx == 0 {
                    continue;
                }
                let j = idx - 1;
                let st = s.ts[j];
                let inside = if p3 { st > t - lb } else { st >= t - lb };
                if !inside || is_stale_nan(s.vs[j]) {
                    continue;
                }
                let v = if want_ts { st as f64 / 1000.0 } else { s.vs[j] };
                pts.push((r.ts(i), v));
            }
            if !pts.is_empty() {
                out.push(SeriesV {
                    labels: s.labels,
                    drop_name: false,
                    pts,
                });
            }
        }
        Ok(out)
    }

    /// The `anchored`/`smoothed` modifiers exist in Prometheus 3.x only.
    fn check_extended(&self, m: RangeModifier) -> Result<()> {
        if self.p3 {
            return Ok(());
        }
        let word = match m {
            RangeModifier::Anchored => "anchored",
            RangeModifier::Smoothed => "smoothed",
        };
        err(format!(
            "the {word} modifier is a Prometheus 3.x feature: not available in the prometheus-2.42 profile"
        ))
    }

    /// `metric smoothed` (Prometheus 3.x `smoothSeries`): at each evaluation time `t` (after
    /// `@` and offset) the samples of `(t - lookback, t + lookback]`, staleness markers
    /// dropped, give the sample at `t` if there is one, else the linear interpolation between
    /// the last sample before `t` and the first after it, else (nothing after `t`) the last
    /// sample before `t`; nothing when no sample precedes `t`. Never counter-aware.
    fn select_smoothed(
        &mut self,
        vs: &VectorSelector,
        r: &Range,
        want_ts: bool,
    ) -> Result<Vec<SeriesV>> {
        let et = self.eval_times(r, &vs.at, &vs.offset)?;
        let lb = self.opts.lookback_delta_ms;
        let min = *et.iter().min().unwrap_or(&0);
        let max = *et.iter().max().unwrap_or(&0);
        let raw = drop_stale(self.select(vs, min - lb, max + lb)?);
        let mut out = Vec::with_capacity(raw.len());
        for s in raw {
            let mut pts = Vec::new();
            for (i, &t) in et.iter().enumerate() {
                let lo = s.ts.partition_point(|&x| x <= t - lb);
                let hi = s.ts.partition_point(|&x| x <= t + lb);
                let at = s.ts.partition_point(|&x| x < t).clamp(lo, hi);
                let v = if at < hi && s.ts[at] == t {
                    s.vs[at]
                } else if at > lo && at < hi {
                    interpolate((s.ts[at - 1], s.vs[at - 1]), (s.ts[at], s.vs[at]), t, false)
                } else if at > lo {
                    s.vs[at - 1]
                } else {
                    continue;
                };
                pts.push((r.ts(i), if want_ts { t as f64 / 1000.0 } else { v }));
            }
            if !pts.is_empty() {
                out.push(SeriesV {
                    labels: s.labels,
                    drop_name: false,
                    pts,
                });
            }
        }
        Ok(out)
    }

    /// Loads an `anchored`/`smoothed` range selector: the read window is widened back by
    /// one lookback delta (and, for `smoothed`, forward by one too), as Prometheus 3.x does;
    /// staleness markers are dropped.
    pub(crate) fn eval_extended_range(
        &mut self,
        ms: &MatrixSelector,
        m: RangeModifier,
        r: &Range,
    ) -> Result<ExtendedArg> {
        self.check_extended(m)?;
        if ms.seasons.is_some() {
            return Err(Error::Unsupported(
                "the anchored/smoothed modifiers combined with seasons()".into(),
            ));
        }
        let range_ms = self.duration_ms(&ms.range)?;
        let vs = &ms.selector;
        let eval_t = self.eval_times(r, &vs.at, &vs.offset)?;
        let lb = self.opts.lookback_delta_ms;
        let smoothed = m == RangeModifier::Smoothed;
        let fwd_ms = if smoothed { lb } else { 0 };
        let min = *eval_t.iter().min().unwrap_or(&0);
        let max = *eval_t.iter().max().unwrap_or(&0);
        let mut series = drop_stale(self.select(vs, min - range_ms - lb, max + fwd_ms)?);
        series.retain(|s| !s.ts.is_empty());
        Ok(ExtendedArg {
            series,
            range_ms,
            eval_t,
            back_ms: lb,
            fwd_ms,
            smoothed,
        })
    }

    /// The series of a plain matrix selector (no seasons, no anchored/smoothed modifier)
    /// to be read one at a time, and the windows of the steps of `r` over them (the
    /// returned [`RangeArg`] has no series). The series limit is checked here; the sample
    /// limit as the series are read.
    pub fn select_range_lazy(
        &mut self,
        ms: &MatrixSelector,
        r: &Range,
    ) -> Result<(Box<dyn SeriesSet + 'a>, RangeArg)> {
        let range_ms = self.duration_ms(&ms.range)?;
        let vs = &ms.selector;
        let et = self.eval_times(r, &vs.at, &vs.offset)?;
        let min = *et.iter().min().unwrap_or(&0);
        let max = *et.iter().max().unwrap_or(&0);
        let matchers = self.storage_matchers(vs)?;
        let db: &'a dyn Queryable = self.db;
        let set = db.select_lazy(&matchers, min - range_ms, max)?;
        self.check_series_limit(set.len())?;
        Ok((
            set,
            RangeArg {
                series: Vec::new(),
                range_ms,
                eval_t: et,
                left_open: self.p3,
            },
        ))
    }

    fn check_series_limit(&self, n: usize) -> Result<()> {
        if n > self.opts.max_series {
            return Err(Error::Limit(format!(
                "query would select too many series ({} > limit {})",
                n, self.opts.max_series
            )));
        }
        Ok(())
    }

    fn samples_limit_error(&self) -> Error {
        samples_limit_error(self.opts.max_samples)
    }

    /// Evaluates a matrix selector or subquery (possibly parenthesised) for the steps of `r`.
    pub fn eval_range_arg(&mut self, e: &Expr, r: &Range) -> Result<RangeArg> {
        match unparen(e) {
            Expr::MatrixSelector(ms) => {
                if let Some(m) = ms.modifier {
                    // The parser lets these modifiers reach only changes, delta, increase,
                    // rate, resets (see `extended_call`) and the query root.
                    self.check_extended(m)?;
                    return err("anchored/smoothed modifiers can only be used with: changes, delta, increase, rate, resets");
                }
                if ms.seasons.is_some() {
                    return Err(Error::Unsupported(
                        "the seasons() range modifier is not implemented yet".into(),
                    ));
                }
                let range_ms = self.duration_ms(&ms.range)?;
                let vs = &ms.selector;
                let et = self.eval_times(r, &vs.at, &vs.offset)?;
                let min = *et.iter().min().unwrap_or(&0);
                let max = *et.iter().max().unwrap_or(&0);
                let mut raw = drop_stale(self.select(vs, min - range_ms, max)?);
                raw.retain(|s| !s.ts.is_empty());
                Ok(RangeArg {
                    series: raw,
                    range_ms,
                    eval_t: et,
                    left_open: self.p3,
                })
            }
            Expr::Subquery(sq) => self.eval_subquery(sq, r),
            _ => err("expected a range vector"),
        }
    }

    fn eval_subquery(&mut self, sq: &Subquery, r: &Range) -> Result<RangeArg> {
        if sq.seasons.is_some() {
            return Err(Error::Unsupported(
                "the seasons() range modifier is not implemented yet".into(),
            ));
        }
        let range_ms = self.duration_ms(&sq.range)?;
        let step = match &sq.step {
            Some(d) => self.duration_ms(d)?,
            None => self.opts.default_subquery_step_ms,
        };
        if step <= 0 {
            return err("subquery step must be positive");
        }
        let et = self.eval_times(r, &sq.at, &sq.offset)?;
        let min = *et.iter().min().unwrap_or(&0);
        let max = *et.iter().max().unwrap_or(&0);
        let lower = min - range_ms;
        let start = if self.p3 || lower.rem_euclid(step) != 0 {
            (lower.div_euclid(step) + 1) * step
        } else {
            lower
        };
        let inner = Range {
            start,
            end: max,
            step,
        };
        let series = if start > max {
            Vec::new()
        } else {
            if inner.n() > 11_000_000 {
                return Err(Error::Limit("subquery has too many steps".into()));
            }
            match self.eval(&sq.expr, &inner)? {
                Val::Vector(v) => v
                    .into_iter()
                    .map(|s| {
                        let (ts, vs) = s.pts.into_iter().unzip();
                        RawSeries {
                            labels: s.labels,
                            drop_name: s.drop_name,
                            ts,
                            vs,
                        }
                    })
                    .collect(),
                Val::Scalar(v) => vec![RawSeries {
                    labels: Labels::default(),
                    drop_name: false,
                    ts: (0..inner.n()).map(|i| inner.ts(i)).collect(),
                    vs: v,
                }],
                _ => return err("subquery is only allowed on instant vector"),
            }
        };
        Ok(RangeArg {
            series,
            range_ms,
            eval_t: et,
            left_open: self.p3,
        })
    }

    // ---------------------------------------------------------------- binary operators

    fn eval_binary(&mut self, b: &BinaryExpr, r: &Range) -> Result<Val> {
        let lhs = self.eval(&b.lhs, r)?;
        let rhs = self.eval(&b.rhs, r)?;
        let op = b.op;
        let is_cmp = matches!(
            op,
            BinaryOp::Eq | BinaryOp::Ne | BinaryOp::Gt | BinaryOp::Lt | BinaryOp::Ge | BinaryOp::Le
        );
        if matches!(op, BinaryOp::TrimUpper | BinaryOp::TrimLower) {
            // Defined on native histograms only: float samples give no result.
            let sym = if op == BinaryOp::TrimUpper {
                "</"
            } else {
                ">/"
            };
            return match (lhs, rhs) {
                (Val::Scalar(_), Val::Scalar(_)) => {
                    err(format!("operator {sym:?} not allowed for scalar operands"))
                }
                (l, _) => {
                    if matches!(&l, Val::Vector(v) if !v.is_empty()) {
                        self.info(format!(
                            "PromQL info: incompatible sample types encountered for binary operator {sym:?}: float {sym} float"
                        ));
                    }
                    Ok(Val::Vector(Vec::new()))
                }
            };
        }
        match (lhs, rhs) {
            (Val::Scalar(l), Val::Scalar(rv)) => {
                let v = l
                    .iter()
                    .zip(&rv)
                    .map(|(&a, &c)| {
                        let (v, keep) = elem_binop(op, a, c);
                        if is_cmp {
                            if keep {
                                1.0
                            } else {
                                0.0
                            }
                        } else {
                            v
                        }
                    })
                    .collect();
                Ok(Val::Scalar(v))
            }
            (Val::Vector(v), Val::Scalar(s)) => {
                self.vector_scalar(op, v, &s, false, b.return_bool, r)
            }
            (Val::Scalar(s), Val::Vector(v)) => {
                self.vector_scalar(op, v, &s, true, b.return_bool, r)
            }
            (Val::Vector(l), Val::Vector(rv)) => {
                let res = match op {
                    BinaryOp::And | BinaryOp::Or | BinaryOp::Unless => self.set_op(b, l, rv, r)?,
                    _ => self.vector_vector(b, l, rv, r)?,
                };
                Ok(Val::Vector(res))
            }
            _ => err("binary operator applied to invalid operand types"),
        }
    }

    fn vector_scalar(
        &mut self,
        op: BinaryOp,
        v: Vec<SeriesV>,
        s: &[f64],
        swap: bool,
        return_bool: bool,
        r: &Range,
    ) -> Result<Val> {
        if matches!(op, BinaryOp::And | BinaryOp::Or | BinaryOp::Unless) {
            return err("set operator not allowed in binary scalar expression");
        }
        let is_cmp = is_comparison(op);
        let drop = self.op_drops_name(op) || return_bool;
        let mut out = Vec::with_capacity(v.len());
        for mut series in v {
            let mut pts = Vec::with_capacity(series.pts.len());
            for &(t, x) in &series.pts {
                let sv = s[r.idx(t)];
                let (mut lf, mut rf) = (x, sv);
                if swap {
                    std::mem::swap(&mut lf, &mut rf);
                }
                let (mut val, mut keep) = elem_binop(op, lf, rf);
                if is_cmp && swap {
                    val = rf;
                }
                if return_bool {
                    val = if keep { 1.0 } else { 0.0 };
                    keep = true;
                }
                if keep {
                    pts.push((t, val));
                }
            }
            if pts.is_empty() {
                continue;
            }
            series.pts = pts;
            if drop {
                self.drop_name(&mut series);
            }
            out.push(series);
        }
        if drop && !self.p3 {
            check_unique(out.iter().map(|s| &s.labels))?;
        }
        Ok(Val::Vector(out))
    }

    pub(crate) fn signature(&self, l: &Labels, on: bool, names: &[String]) -> String {
        let mut s = String::new();
        if on {
            let mut names: Vec<&String> = names.iter().collect();
            names.sort();
            names.dedup();
            for n in names {
                if let Some(v) = l.get(n) {
                    s.push_str(n);
                    s.push('\u{ff}');
                    s.push_str(v);
                    s.push('\u{ff}');
                }
            }
        } else {
            for p in l.iter() {
                if p.name == METRIC_NAME || names.contains(&p.name) {
                    continue;
                }
                s.push_str(&p.name);
                s.push('\u{ff}');
                s.push_str(&p.value);
                s.push('\u{ff}');
            }
        }
        s
    }

    fn match_labels(l: &Labels, on: bool, names: &[String]) -> Labels {
        if on {
            Labels::from_sorted(
                l.iter()
                    .filter(|p| names.contains(&p.name))
                    .cloned()
                    .collect(),
            )
        } else {
            Labels::from_sorted(
                l.iter()
                    .filter(|p| p.name != METRIC_NAME && !names.contains(&p.name))
                    .cloned()
                    .collect(),
            )
        }
    }

    fn set_op(
        &mut self,
        b: &BinaryExpr,
        l: Vec<SeriesV>,
        rv: Vec<SeriesV>,
        r: &Range,
    ) -> Result<Vec<SeriesV>> {
        let (on, names): (bool, &[String]) = match &b.matching {
            Some(m) => (m.on, &m.labels),
            None => (false, &[]),
        };
        // Signatures become small ids; per id, the sorted step indices where some series
        // with that signature has a point. Memory follows the points, not ids x steps.
        let mut ids: HashMap<String, usize> = HashMap::new();
        let mut id_of = |sig: String| {
            let k = ids.len();
            *ids.entry(sig).or_insert(k)
        };
        let lid: Vec<usize> = l
            .iter()
            .map(|s| id_of(self.signature(&s.labels, on, names)))
            .collect();
        let rid: Vec<usize> = rv
            .iter()
            .map(|s| id_of(self.signature(&s.labels, on, names)))
            .collect();
        let nids = ids.len();
        fn step_sets(series: &[SeriesV], sid: &[usize], r: &Range, nids: usize) -> Vec<Vec<u32>> {
            let mut per: Vec<Vec<u32>> = vec![Vec::new(); nids];
            let mut multi = vec![false; nids];
            for (s, &id) in series.iter().zip(sid) {
                multi[id] |= !per[id].is_empty();
                per[id].extend(s.pts.iter().map(|&(t, _)| r.idx(t) as u32));
            }
            for (v, m) in per.iter_mut().zip(multi) {
                if m {
                    v.sort_unstable();
                    v.dedup();
                }
            }
            per
        }
        /// Keeps the points of `pts` whose step is (`want`) or is not (`!want`) in `set`.
        fn keep(pts: &mut Vec<(i64, f64)>, set: &[u32], r: &Range, want: bool) {
            let mut j = 0;
            pts.retain(|&(t, _)| {
                let i = r.idx(t) as u32;
                while j < set.len() && set[j] < i {
                    j += 1;
                }
                (j < set.len() && set[j] == i) == want
            });
        }
        match b.op {
            BinaryOp::And | BinaryOp::Unless => {
                let rs = step_sets(&rv, &rid, r, nids);
                let want = b.op == BinaryOp::And;
                let mut out = Vec::new();
                for (mut s, &id) in l.into_iter().zip(&lid) {
                    keep(&mut s.pts, &rs[id], r, want);
                    if !s.pts.is_empty() {
                        out.push(s);
                    }
                }
                Ok(out)
            }
            _ => {
                let ls = step_sets(&l, &lid, r, nids);
                let mut rest = Vec::new();
                for (mut s, &id) in rv.into_iter().zip(&rid) {
                    keep(&mut s.pts, &ls[id], r, false);
                    if !s.pts.is_empty() {
                        rest.push(s);
                    }
                }
                drop(ls);
                let mut out = l;
                // A series on both sides with the same labels: merge the points.
                let mut idx: HashMap<Labels, usize> = HashMap::new();
                for (i, s) in out.iter().enumerate() {
                    idx.entry(s.labels.clone()).or_insert(i);
                }
                for s in rest {
                    if let Some(&i) = idx.get(&s.labels) {
                        let o = &mut out[i];
                        if o.drop_name == s.drop_name {
                            o.pts.extend(s.pts);
                            o.pts.sort_by_key(|p| p.0);
                            continue;
                        }
                    }
                    out.push(s);
                }
                Ok(out)
            }
        }
    }

    fn vector_vector(
        &mut self,
        b: &BinaryExpr,
        l: Vec<SeriesV>,
        rv: Vec<SeriesV>,
        r: &Range,
    ) -> Result<Vec<SeriesV>> {
        let op = b.op;
        let (on, names, group): (bool, Vec<String>, Option<&Group>) = match &b.matching {
            Some(m) => (m.on, m.labels.clone(), m.group.as_ref()),
            None => (false, Vec::new(), None),
        };
        let (card_one_to_many, include): (bool, &[String]) = match group {
            Some(Group::Left(inc)) => (false, inc),
            Some(Group::Right(inc)) => (true, inc),
            None => (false, &[]),
        };
        let one_to_one = group.is_none();
        let is_cmp = is_comparison(op);
        let drop = self.op_drops_name(op) || b.return_bool;
        // "many" side is lhs after a possible swap.
        let (many, one) = if card_one_to_many { (rv, l) } else { (l, rv) };
        // Signatures as small ids: the per-step matching below indexes arrays instead of
        // hashing strings.
        let mut ids: HashMap<String, usize> = HashMap::new();
        let mut id_of = |sig: String| {
            let k = ids.len();
            *ids.entry(sig).or_insert(k)
        };
        let msid: Vec<usize> = many
            .iter()
            .map(|s| id_of(self.signature(&s.labels, on, &names)))
            .collect();
        let osid: Vec<usize> = one
            .iter()
            .map(|s| id_of(self.signature(&s.labels, on, &names)))
            .collect();
        let nsig = ids.len();
        std::mem::drop(ids);
        let n = r.n();
        let many_by_step = ByStep::new(&many, r, |_| true);
        let one_by_step = ByStep::new(&one, r, |_| true);
        let fill = b.fill.as_ref();
        let mut out = OutBuilder::default();
        // Output series of a (many, one) pair: the last pair of each many-side series first
        // (matches rarely change between steps), then a map.
        let mut last_pair: Vec<Option<(usize, usize)>> = vec![None; many.len()];
        let mut pair_out: HashMap<(usize, usize), usize> = HashMap::new();
        // Per signature id, stamped with step + 1: the one-side series present, and whether a
        // many-side series matched it (one-to-one).
        let mut one_at: Vec<(usize, usize, f64)> = vec![(0, 0, 0.0); nsig];
        let mut matched_at: Vec<usize> = vec![0; nsig];
        let mut used_one: Vec<usize> = vec![0; one.len()];
        let mut grouped: HashMap<usize, std::collections::HashSet<usize>> = HashMap::new();
        for step in 0..n {
            let t = r.ts(step);
            let stamp = step + 1;
            for &(i, v) in one_by_step.at(step) {
                let sig = osid[i];
                if one_at[sig].0 == stamp {
                    let j = one_at[sig].1;
                    let side = if card_one_to_many { "left" } else { "right" };
                    let ml = Self::match_labels(&one[i].labels, on, &names);
                    return err(format!(
                        "found duplicate series for the match group {} on the {side} hand-side of the operation: [{}, {}];many-to-many matching not allowed: matching labels must be unique on one side",
                        go_labels(&ml),
                        go_labels(&one[i].labels),
                        go_labels(&one[j].labels)
                    ));
                }
                one_at[sig] = (stamp, i, v);
            }
            grouped.clear();
            for &(i, v) in many_by_step.at(step) {
                let sig = msid[i];
                if one_at[sig].0 != stamp {
                    if let Some(fr) =
                        fill.and_then(|f| if card_one_to_many { f.left } else { f.right })
                    {
                        let (lf, rf) = if card_one_to_many { (fr, v) } else { (v, fr) };
                        let (val, keep) = elem_binop(op, lf, rf);
                        let (val, keep) = bool_result(val, keep, is_cmp, b.return_bool, lf);
                        if keep {
                            let (labels, dn) = self.result_metric(
                                &many[i], None, drop, one_to_one, on, &names, include,
                            );
                            out.push(labels, dn, t, val)?;
                        }
                    }
                    continue;
                }
                let (_, j, ov) = one_at[sig];
                used_one[j] = stamp;
                let (lf, rf) = if card_one_to_many { (ov, v) } else { (v, ov) };
                let (val, keep) = elem_binop(op, lf, rf);
                let (val, keep) = bool_result(val, keep, is_cmp, b.return_bool, lf);
                let k = match last_pair[i] {
                    Some((lj, k)) if lj == j => k,
                    _ => {
                        let k = match pair_out.get(&(i, j)) {
                            Some(&k) => k,
                            None => {
                                let (labels, dn) = self.result_metric(
                                    &many[i],
                                    Some(&one[j]),
                                    drop,
                                    one_to_one,
                                    on,
                                    &names,
                                    include,
                                );
                                let k = out.slot(labels, dn);
                                pair_out.insert((i, j), k);
                                k
                            }
                        };
                        last_pair[i] = Some((j, k));
                        k
                    }
                };
                if one_to_one {
                    if matched_at[sig] == stamp {
                        return err("multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)");
                    }
                    matched_at[sig] = stamp;
                } else if !grouped.entry(sig).or_default().insert(k) {
                    return err(
                        "multiple matches for labels: grouping labels must ensure unique matches",
                    );
                }
                if !keep {
                    continue;
                }
                out.push_at(k, t, val)?;
            }
            if let Some(fl) = fill.and_then(|f| if card_one_to_many { f.right } else { f.left }) {
                for &(j, v) in one_by_step.at(step) {
                    if used_one[j] == stamp {
                        continue;
                    }
                    let (lf, rf) = if card_one_to_many { (v, fl) } else { (fl, v) };
                    let (val, keep) = elem_binop(op, lf, rf);
                    let (val, keep) = bool_result(val, keep, is_cmp, b.return_bool, lf);
                    if keep {
                        let (labels, dn) =
                            self.result_metric(&one[j], None, drop, one_to_one, on, &names, &[]);
                        out.push(labels, dn, t, val)?;
                    }
                }
            }
        }
        out.series.retain(|s| !s.pts.is_empty());
        Ok(out.series)
    }

    #[allow(clippy::too_many_arguments)]
    fn result_metric(
        &self,
        lhs: &SeriesV,
        rhs: Option<&SeriesV>,
        drop: bool,
        one_to_one: bool,
        on: bool,
        names: &[String],
        include: &[String],
    ) -> (Labels, bool) {
        let mut l = lhs.labels.clone();
        let mut dn = lhs.drop_name;
        if drop {
            if self.p3 {
                dn = true;
            } else {
                l.remove(METRIC_NAME);
            }
        }
        if one_to_one {
            if on {
                l = Labels::from_sorted(
                    l.iter()
                        .filter(|p| names.contains(&p.name))
                        .cloned()
                        .collect(),
                );
            } else {
                for n in names {
                    l.remove(n);
                }
            }
        }
        for n in include {
            match rhs.and_then(|r| r.labels.get(n)) {
                Some(v) => l.set(n, v),
                None => l.remove(n),
            }
        }
        (l, dn)
    }

    // ---------------------------------------------------------------- aggregations

    fn eval_aggregate(&mut self, a: &AggregateExpr, r: &Range) -> Result<Val> {
        crate::funcs::aggregate(self, a, r)
    }

    fn eval_call(&mut self, c: &Call, r: &Range) -> Result<Val> {
        funcs::call(self, c, r)
    }
}

fn bool_result(val: f64, keep: bool, is_cmp: bool, return_bool: bool, lf: f64) -> (f64, bool) {
    if return_bool {
        (if keep { 1.0 } else { 0.0 }, true)
    } else if is_cmp {
        (lf, keep)
    } else {
        (val, keep)
    }
}

pub(crate) fn is_comparison(op: BinaryOp) -> bool {
    matches!(
        op,
        BinaryOp::Eq | BinaryOp::Ne | BinaryOp::Gt | BinaryOp::Lt | BinaryOp::Ge | BinaryOp::Le
    )
}

/// Prometheus's `vectorElemBinop` for floats: (value, keep).
pub(crate) fn elem_binop(op: BinaryOp, l: f64, r: f64) -> (f64, bool) {
    match op {
        BinaryOp::Add => (l + r, true),
        BinaryOp::Sub => (l - r, true),
        BinaryOp::Mul => (l * r, true),
        BinaryOp::Div => (l / r, true),
        BinaryOp::Pow => (go_pow(l, r), true),
        BinaryOp::Mod => (l % r, true),
        BinaryOp::Atan2 => (l.atan2(r), true),
        BinaryOp::Eq => (l, l == r),
        BinaryOp::Ne => (l, l != r),
        BinaryOp::Gt => (l, l > r),
        BinaryOp::Lt => (l, l < r),
        BinaryOp::Ge => (l, l >= r),
        BinaryOp::Le => (l, l <= r),
        _ => (f64::NAN, false),
    }
}

/// Go's `math.Pow` (differs from C's pow for a few special cases).
pub(crate) fn go_pow(x: f64, y: f64) -> f64 {
    if y == 0.0 || x == 1.0 {
        return 1.0;
    }
    if x.is_nan() || y.is_nan() {
        return f64::NAN;
    }
    if x == -1.0 && y.is_infinite() {
        return 1.0;
    }
    x.powf(y)
}

/// Collects output points keyed by labels, rejecting two samples with the same labelset at
/// the same step.
#[derive(Default)]
pub(crate) struct OutBuilder {
    pub map: HashMap<Labels, usize>,
    pub series: Vec<SeriesV>,
}

impl OutBuilder {
    /// The index of the output series with these labels, created empty if new. Series left
    /// empty must be removed by the caller.
    pub fn slot(&mut self, labels: Labels, drop_name: bool) -> usize {
        if let Some(&i) = self.map.get(&labels) {
            return i;
        }
        self.map.insert(labels.clone(), self.series.len());
        self.series.push(SeriesV {
            labels,
            drop_name,
            pts: Vec::new(),
        });
        self.series.len() - 1
    }

    /// Appends a point to the series at `slot`.
    pub fn push_at(&mut self, slot: usize, t: i64, v: f64) -> Result<()> {
        let s = &mut self.series[slot];
        if s.pts.last().is_some_and(|p| p.0 == t) {
            return err("vector cannot contain metrics with the same labelset");
        }
        s.pts.push((t, v));
        Ok(())
    }

    pub fn push(&mut self, labels: Labels, drop_name: bool, t: i64, v: f64) -> Result<()> {
        match self.map.get(&labels) {
            Some(&i) => {
                let s = &mut self.series[i];
                if s.pts.last().is_some_and(|p| p.0 == t) {
                    return err("vector cannot contain metrics with the same labelset");
                }
                s.pts.push((t, v));
            }
            None => {
                self.map.insert(labels.clone(), self.series.len());
                self.series.push(SeriesV {
                    labels,
                    drop_name,
                    pts: vec![(t, v)],
                });
            }
        }
        Ok(())
    }
}
