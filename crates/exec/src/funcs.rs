//! Functions (dispatched from one table) and aggregation operators.

use std::collections::HashMap;

use tsq_parser::{AggregateExpr, AggregateOp, Call, Expr};
use tsq_storage::block::ChunkMeta;
use tsq_storage::{Labels, METRIC_NAME};

use crate::baseline::{slide, Moments, WindowAcc};
use crate::eval::{
    drop_stale_one, err, go_max, go_min, kahan_inc, samples_limit_error, unparen, ByStep,
    Evaluator, OutBuilder, Range, RangeArg, RawSeries, SeriesV, Val,
};
use crate::{Error, Result, SeriesSet};

/// One window of one series at one step.
pub(crate) struct Win<'a> {
    pub ts: &'a [i64],
    pub vs: &'a [f64],
    /// Evaluation time (after `@` and offset).
    pub t: i64,
    /// The step's own timestamp (what `predict_linear` predicts from).
    pub step_t: i64,
    pub range_ms: i64,
    /// Scalar arguments at this step, in argument order (the range argument left out).
    pub p: &'a [f64],
    pub p3: bool,
}

/// A function over a window; `Ok(None)` gives no output for the step.
pub(crate) type RangeImpl = fn(&Win) -> Result<Option<f64>>;

/// How a function is evaluated.
#[derive(Clone, Copy)]
enum Kind {
    /// Over a range vector argument at index `arg`; `keep_name` for last/first_over_time.
    Range {
        f: RangeImpl,
        arg: usize,
        keep_name: bool,
    },
    /// Element-wise on an instant vector, with trailing scalar arguments.
    Elem(fn(f64, &[f64]) -> Option<f64>),
    /// Calendar functions with an optional instant vector argument (default `vector(time())`).
    Date(fn(&Civil) -> f64),
    /// Evaluated by name in [`call`].
    Special,
}

struct FnDef {
    name: &'static str,
    kind: Kind,
}

macro_rules! r {
    ($n:expr, $f:expr) => {
        FnDef {
            name: $n,
            kind: Kind::Range {
                f: $f,
                arg: 0,
                keep_name: false,
            },
        }
    };
    ($n:expr, $f:expr, arg = $a:expr) => {
        FnDef {
            name: $n,
            kind: Kind::Range {
                f: $f,
                arg: $a,
                keep_name: false,
            },
        }
    };
    ($n:expr, $f:expr, keep) => {
        FnDef {
            name: $n,
            kind: Kind::Range {
                f: $f,
                arg: 0,
                keep_name: true,
            },
        }
    };
}
macro_rules! e {
    ($n:expr, $f:expr) => {
        FnDef {
            name: $n,
            kind: Kind::Elem(|v, _| Some($f(v))),
        }
    };
}
macro_rules! d {
    ($n:expr, $f:expr) => {
        FnDef {
            name: $n,
            kind: Kind::Date($f),
        }
    };
}
macro_rules! s {
    ($n:expr) => {
        FnDef {
            name: $n,
            kind: Kind::Special,
        }
    };
}

/// The function table. The parser's signature table decides what type-checks; this one
/// decides how each name is evaluated.
static FUNCS: &[FnDef] = &[
    r!("rate", |w| Ok(extrapolated_rate(w, true, true))),
    r!("increase", |w| Ok(extrapolated_rate(w, true, false))),
    r!("delta", |w| Ok(extrapolated_rate(w, false, false))),
    r!("irate", |w| Ok(instant_value(w, true))),
    r!("idelta", |w| Ok(instant_value(w, false))),
    r!("changes", |w| {
        let mut n = 0.0;
        for p in w.vs.windows(2) {
            if p[1] != p[0] && !(p[1].is_nan() && p[0].is_nan()) {
                n += 1.0;
            }
        }
        Ok(Some(n))
    }),
    r!("resets", |w| Ok(Some(
        w.vs.windows(2).filter(|p| p[1] < p[0]).count() as f64
    ))),
    r!("deriv", |w| {
        if w.vs.len() < 2 {
            return Ok(None);
        }
        Ok(Some(linear_regression(w.ts, w.vs, w.ts[0]).0))
    }),
    r!("predict_linear", |w| {
        if w.vs.len() < 2 {
            return Ok(None);
        }
        let (slope, intercept) = linear_regression(w.ts, w.vs, w.step_t);
        Ok(Some(slope * w.p[0] + intercept))
    }),
    r!("avg_over_time", |w| Ok(Some(if w.p3 {
        avg_p3(w.vs)
    } else {
        avg_242(w.vs)
    }))),
    // Compensated in both profiles: promtool 2.42 gives the Kahan-Neumaier sum too
    // (crates/exec/tests/promtool.rs).
    r!("sum_over_time", |w| Ok(Some(kahan_sum(w.vs)))),
    r!("count_over_time", |w| Ok(Some(w.vs.len() as f64))), // O(1) per window
    r!("min_over_time", |w| {
        let mut m = w.vs[0];
        for &v in w.vs {
            if v < m || m.is_nan() {
                m = v;
            }
        }
        Ok(Some(m))
    }),
    r!("max_over_time", |w| {
        let mut m = w.vs[0];
        for &v in w.vs {
            if v > m || m.is_nan() {
                m = v;
            }
        }
        Ok(Some(m))
    }),
    r!("ts_of_min_over_time", |w| {
        let (mut m, mut t) = (w.vs[0], w.ts[0]);
        for (&v, &x) in w.vs.iter().zip(w.ts) {
            if v <= m || m.is_nan() {
                m = v;
                t = x;
            }
        }
        Ok(Some(t as f64 / 1000.0))
    }),
    r!("ts_of_max_over_time", |w| {
        let (mut m, mut t) = (w.vs[0], w.ts[0]);
        for (&v, &x) in w.vs.iter().zip(w.ts) {
            if v >= m || m.is_nan() {
                m = v;
                t = x;
            }
        }
        Ok(Some(t as f64 / 1000.0))
    }),
    r!("stddev_over_time", |w| Ok(Some(
        stdvar_over_time(w.vs).sqrt()
    ))),
    r!("stdvar_over_time", |w| Ok(Some(stdvar_over_time(w.vs)))),
    r!(
        "quantile_over_time",
        |w| Ok(Some(quantile(w.p[0], &mut w.vs.to_vec()))),
        arg = 1
    ),
    r!("mad_over_time", |w| {
        let mut v = w.vs.to_vec();
        let median = quantile(0.5, &mut v);
        let mut dev: Vec<f64> = w.vs.iter().map(|x| (x - median).abs()).collect();
        Ok(Some(quantile(0.5, &mut dev)))
    }),
    r!("last_over_time", |w| Ok(w.vs.last().copied()), keep),
    r!("first_over_time", |w| Ok(w.vs.first().copied()), keep),
    r!("ts_of_last_over_time", |w| Ok(w
        .ts
        .last()
        .map(|&t| t as f64 / 1000.0))),
    r!("ts_of_first_over_time", |w| Ok(w
        .ts
        .first()
        .map(|&t| t as f64 / 1000.0))),
    r!("present_over_time", |_| Ok(Some(1.0))),
    r!("double_exponential_smoothing", |w| smoothing(w)),
    r!("holt_winters", |w| smoothing(w)),
    e!("abs", f64::abs),
    e!("ceil", f64::ceil),
    e!("floor", f64::floor),
    e!("exp", f64::exp),
    e!("sqrt", f64::sqrt),
    e!("ln", f64::ln),
    e!("log2", f64::log2),
    e!("log10", f64::log10),
    e!("sin", f64::sin),
    e!("cos", f64::cos),
    e!("tan", f64::tan),
    e!("asin", f64::asin),
    e!("acos", f64::acos),
    e!("atan", f64::atan),
    e!("sinh", f64::sinh),
    e!("cosh", f64::cosh),
    e!("tanh", f64::tanh),
    e!("asinh", f64::asinh),
    e!("acosh", f64::acosh),
    e!("atanh", f64::atanh),
    e!("deg", |v: f64| v * 180.0 / std::f64::consts::PI),
    e!("rad", |v: f64| v * std::f64::consts::PI / 180.0),
    e!("sgn", |v: f64| if v < 0.0 {
        -1.0
    } else if v > 0.0 {
        1.0
    } else {
        v
    }),
    FnDef {
        name: "round",
        kind: Kind::Elem(|v, p| {
            let to = p.first().copied().unwrap_or(1.0);
            let inv = 1.0 / to;
            Some((v * inv + 0.5).floor() / inv)
        }),
    },
    FnDef {
        name: "clamp",
        kind: Kind::Elem(|v, p| {
            if p[1] < p[0] {
                None
            } else {
                Some(go_max(p[0], go_min(p[1], v)))
            }
        }),
    },
    FnDef {
        name: "clamp_min",
        kind: Kind::Elem(|v, p| Some(go_max(p[0], v))),
    },
    FnDef {
        name: "clamp_max",
        kind: Kind::Elem(|v, p| Some(go_min(p[0], v))),
    },
    d!("minute", |c| c.minute as f64),
    d!("hour", |c| c.hour as f64),
    d!("day_of_week", |c| c.weekday as f64),
    d!("day_of_month", |c| c.day as f64),
    d!("day_of_year", |c| c.yday as f64),
    d!("days_in_month", |c| days_in_month(c.year, c.month) as f64),
    d!("month", |c| c.month as f64),
    d!("year", |c| c.year as f64),
    s!("time"),
    s!("pi"),
    s!("vector"),
    s!("scalar"),
    s!("timestamp"),
    s!("absent"),
    s!("absent_over_time"),
    s!("sort"),
    s!("sort_desc"),
    s!("sort_by_label"),
    s!("sort_by_label_desc"),
    s!("label_replace"),
    s!("label_join"),
    s!("histogram_quantile"),
    s!("histogram_count"),
    s!("histogram_sum"),
    s!("histogram_avg"),
    s!("histogram_fraction"),
    s!("histogram_stddev"),
    s!("histogram_stdvar"),
    s!("info"),
];

fn lookup(name: &str) -> Option<&'static FnDef> {
    FUNCS.iter().find(|f| f.name == name)
}

/// True when the engine can evaluate the function `name`.
pub fn is_known(name: &str) -> bool {
    lookup(name).is_some()
}

/// The window function of a range function: (implementation, index of the range argument,
/// keeps `__name__`). Used by the seasonal windows of `baseline`.
pub(crate) fn range_impl(name: &str) -> Option<(RangeImpl, usize, bool)> {
    match lookup(name)?.kind {
        Kind::Range { f, arg, keep_name } => Some((f, arg, keep_name)),
        _ => None,
    }
}

// ------------------------------------------------------------------ numeric helpers

/// The `k` samples `topk` (`top`) or `bottomk` keeps, chosen as Prometheus does: a heap of
/// up to `k` (Go's `container/heap`, least wanted at the root, NaN least of all) in input
/// order, the root replaced only by a strictly better value. Which of several equal values
/// survive therefore follows the heap's moves, not input order.
fn go_heap_select(items: &[(usize, f64)], k: usize, top: bool) -> Vec<(usize, f64)> {
    let less = |a: f64, b: f64| {
        if a.is_nan() {
            true
        } else if top {
            a < b
        } else {
            a > b
        }
    };
    fn up(h: &mut [(usize, f64)], mut j: usize, less: &impl Fn(f64, f64) -> bool) {
        while j > 0 {
            let i = (j - 1) / 2;
            if !less(h[j].1, h[i].1) {
                break;
            }
            h.swap(i, j);
            j = i;
        }
    }
    fn down(h: &mut [(usize, f64)], i0: usize, less: &impl Fn(f64, f64) -> bool) -> bool {
        let n = h.len();
        let mut i = i0;
        loop {
            let j1 = 2 * i + 1;
            if j1 >= n {
                break;
            }
            let mut j = j1;
            if j1 + 1 < n && less(h[j1 + 1].1, h[j1].1) {
                j = j1 + 1;
            }
            if !less(h[j].1, h[i].1) {
                break;
            }
            h.swap(i, j);
            i = j;
        }
        i > i0
    }
    let mut h: Vec<(usize, f64)> = Vec::with_capacity(k.min(items.len()));
    for &(i, v) in items {
        if h.len() < k {
            h.push((i, v));
            let last = h.len() - 1;
            up(&mut h, last, &less);
            continue;
        }
        let root = h[0].1;
        let better = if top { root < v } else { root > v };
        if better || (root.is_nan() && !v.is_nan()) {
            h[0] = (i, v);
            if k > 1 && !down(&mut h, 0, &less) {
                up(&mut h, 0, &less);
            }
        }
    }
    h
}

/// The non-empty windows of `s` for the steps of `arg`, as (step, lo, hi), in step order
/// (evaluation times must ascend).
fn step_windows(arg: &RangeArg, s: &RawSeries) -> Vec<(usize, usize, usize)> {
    let mut wins: Vec<(usize, usize, usize)> = Vec::with_capacity(arg.eval_t.len());
    let (mut lo, mut hi) = (0usize, 0usize);
    for (i, &t) in arg.eval_t.iter().enumerate() {
        arg.advance_window(s, t, &mut lo, &mut hi);
        if lo < hi {
            wins.push((i, lo, hi));
        }
    }
    wins
}

/// What [`sliding_moments`] returns per window.
#[derive(Clone, Copy, PartialEq)]
enum Moment {
    Sum,
    Mean,
    Var,
    Sd,
}

/// The baseline module's moments, re-centred on the window also when the level they slide
/// along drifts ([`Moments::off_centre`]): the PromQL functions promise 1e-12 of
/// Prometheus's answer on counters too.
struct Recentring(Moments);

impl WindowAcc for Recentring {
    fn add(&mut self, v: f64) {
        self.0.add(v);
    }
    fn remove(&mut self, v: f64) {
        self.0.remove(v);
    }
    fn rebuild(&mut self, values: &[f64]) {
        self.0.rebuild(values);
    }
    fn settle(&mut self, gather: &mut dyn FnMut() -> Vec<f64>) {
        if self.0.needs_rebuild() || self.0.off_centre() {
            self.0.rebuild(&gather());
        }
    }
}

/// `sum`/`avg`/`stdvar`/`stddev_over_time` of every step's window of `s` by sliding one set of
/// compensated moments (samples entering are added, samples leaving removed), when that is
/// both much cheaper than recomputing each window and as accurate: windows of at least 64
/// samples that move by at most a quarter of their length per step on average, over a
/// series whose values are finite, of one sign and below 1e150 in magnitude. One sign makes
/// the sum well conditioned (no cancellation between terms), and the moments are re-centred
/// on the window whenever deletions or a drifting level cost precision (see
/// [`Moments::needs_rebuild`], [`Moments::off_centre`]), so the answer stays within about
/// 1e-13 relative of Prometheus's window-by-window compensated sums (property-tested in
/// `batched_tests`). `None`: recompute each window.
fn sliding_moments(
    arg: &RangeArg,
    s: &RawSeries,
    r: &Range,
    kind: Moment,
) -> Option<Vec<(i64, f64)>> {
    let wins = step_windows(arg, s);
    if wins.len() < 8 {
        return None;
    }
    let total: usize = wins.iter().map(|&(_, lo, hi)| hi - lo).sum();
    let moved: usize = wins
        .windows(2)
        .map(|w| (w[1].1 - w[0].1) + (w[1].2 - w[0].2))
        .sum();
    if total < 64 * wins.len() || moved * 4 > total {
        return None;
    }
    let (a, b) = (wins[0].1, wins[wins.len() - 1].2);
    let vs = &s.vs[a..b];
    let ok = |pos: bool| {
        vs.chunks(64).all(|c| {
            c.iter().fold(true, |acc, &v| {
                acc & (v.abs() < 1e150) & if pos { v >= 0.0 } else { v <= 0.0 }
            })
        })
    };
    if !(ok(true) || ok(false)) {
        return None;
    }
    let mut acc = Recentring(Moments::default());
    let mut out = Vec::with_capacity(wins.len());
    slide(
        &s.vs,
        wins.len(),
        &mut acc,
        |k, ranges| ranges.push((wins[k].1, wins[k].2)),
        |w, acc| {
            let m = &acc.0;
            let v = match kind {
                Moment::Sum => m.sum(),
                Moment::Mean => m.mean(),
                Moment::Var => m.variance(),
                Moment::Sd => m.variance().sqrt(),
            };
            out.push((r.ts(wins[w.step].0), v));
        },
    );
    Some(out)
}

/// Four equally long windows of `vs` read side by side: the `j`-th item holds the `j`-th
/// value of each (lane `k` starts at `start[k]`).
#[inline(always)]
fn four_lanes(vs: &[f64], start: [usize; 4], n: usize) -> impl Iterator<Item = [f64; 4]> + '_ {
    let lanes = start.map(|s0| &vs[s0..s0 + n]);
    lanes[0]
        .iter()
        .zip(lanes[1])
        .zip(lanes[2])
        .zip(lanes[3])
        .map(|(((&a, &b), &d), &e)| [a, b, d, e])
}

/// `sum_over_time` (or, with `avg`, 3.x's `avg_over_time`) of every step's window of `s`,
/// the windows' compensated sums computed four at a time: each window gets exactly the
/// additions `kahan_sum` / `avg_p3` would make, in the same order, so the results are
/// bit-identical, while the four independent dependency chains overlap in the CPU. A window
/// whose running sum overflows (where 3.x's mean switches formula) is recomputed alone.
fn batched_sums(arg: &RangeArg, s: &RawSeries, r: &Range, avg: bool) -> Vec<(i64, f64)> {
    let wins = step_windows(arg, s);
    let vs = &s.vs;
    let mut out = Vec::with_capacity(wins.len());
    for group in wins.chunks(4) {
        let lanes = group.len();
        let (mut sum, mut c, mut inf) = ([0.0f64; 4], [0.0f64; 4], [false; 4]);
        let mut start = [0usize; 4];
        let mut end = [0usize; 4];
        for (k, &(_, lo, hi)) in group.iter().enumerate() {
            // avg_p3 starts from the first value; kahan_sum from zero.
            if avg {
                sum[k] = vs[lo];
                start[k] = lo + 1;
            } else {
                start[k] = lo;
            }
            end[k] = hi;
        }
        let len = |k: usize| end[k] - start[k];
        let longest = (0..lanes).map(len).max().unwrap_or(0);
        // All four lanes advance without checks while each has samples left (windows of
        // neighbouring steps are usually as long), the rest lane by lane.
        let common = if lanes == 4 {
            (0..4).map(len).min().unwrap_or(0)
        } else {
            0
        };
        if common > 0 {
            neumaier_lanes(vs, start, common, &mut sum, &mut c);
        }
        for j in common..longest {
            for k in 0..lanes {
                let idx = start[k] + j;
                if idx < end[k] {
                    (sum[k], c[k]) = neumaier_step(vs[idx], sum[k], c[k]);
                }
            }
        }
        for k in 0..lanes {
            c[k] = neumaier_final_c(sum[k], c[k]);
            // Once infinite, a running sum stays infinite or becomes NaN.
            inf[k] = !sum[k].is_finite();
        }
        for (k, &(i, lo, hi)) in group.iter().enumerate() {
            let v = if !avg {
                if sum[k].is_infinite() {
                    sum[k]
                } else {
                    sum[k] + c[k]
                }
            } else if inf[k] {
                avg_p3(&vs[lo..hi])
            } else {
                (sum[k] + c[k]) / (hi - lo) as f64
            };
            out.push((r.ts(i), v));
        }
    }
    out
}

/// [`kahan_inc`] without its reset of the compensation when the sum overflows, for loops
/// the compiler can vectorise; [`neumaier_final_c`] applies the reset at the end. The two
/// give `kahan_inc`'s result bit for bit: once the running sum is ±Inf it stays ±Inf or
/// becomes NaN (it can never be finite again), so a finite final sum saw no reset, an
/// infinite one had its compensation reset at the last step (compensation 0), and a NaN sum
/// is NaN whatever the compensation.
#[inline(always)]
pub(crate) fn neumaier_step(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    let big = sum.abs() >= inc.abs();
    let (a, b) = if big { (sum, inc) } else { (inc, sum) };
    (t, c + ((a - t) + b))
}

/// The compensation of a sum built with [`neumaier_step`], as [`kahan_inc`] leaves it.
#[inline(always)]
pub(crate) fn neumaier_final_c(sum: f64, c: f64) -> f64 {
    if sum.is_infinite() {
        0.0
    } else {
        c
    }
}

pub(crate) fn kahan_sum(vs: &[f64]) -> f64 {
    let (mut s, mut c) = (0.0, 0.0);
    for &v in vs {
        (s, c) = kahan_inc(v, s, c);
    }
    if s.is_infinite() {
        s
    } else {
        s + c
    }
}

/// 3.x mean: direct Kahan sum, switching to an incremental mean on overflow.
pub(crate) fn avg_p3(vs: &[f64]) -> f64 {
    let mut acc = AvgAcc::new(vs[0]);
    for &v in &vs[1..] {
        acc.add(v);
    }
    acc.finish()
}

#[derive(Clone)]
struct AvgAcc {
    sum: f64,
    c: f64,
    mean: f64,
    count: f64,
    incremental: bool,
}

impl AvgAcc {
    fn new(v: f64) -> Self {
        AvgAcc {
            sum: v,
            c: 0.0,
            mean: 0.0,
            count: 1.0,
            incremental: false,
        }
    }
    fn add(&mut self, v: f64) {
        self.count += 1.0;
        let count = self.count;
        if !self.incremental {
            let (ns, nc) = kahan_inc(v, self.sum, self.c);
            if !ns.is_infinite() {
                self.sum = ns;
                self.c = nc;
                return;
            }
            self.incremental = true;
            self.mean = self.sum / (count - 1.0);
            self.c /= count - 1.0;
        }
        if self.mean.is_infinite() {
            if v.is_infinite() && (self.mean > 0.0) == (v > 0.0) {
                return;
            }
            if !v.is_infinite() && !v.is_nan() {
                return;
            }
        }
        let current = self.mean + self.c;
        (self.mean, self.c) = kahan_inc(v / count - current / count, self.mean, self.c);
    }
    fn finish(&self) -> f64 {
        if self.incremental {
            self.mean + self.c
        } else {
            (self.sum + self.c) / self.count
        }
    }
}

/// 2.42 mean: plain incremental mean.
/// 2.42's mean: an incremental mean, Kahan-Neumaier compensated (`mean + c`), as promtool
/// 2.42 computes it.
fn avg_242(vs: &[f64]) -> f64 {
    let (mut mean, mut count, mut c) = (0.0f64, 0.0f64, 0.0f64);
    for &v in vs {
        count += 1.0;
        if mean.is_infinite() {
            if v.is_infinite() && (mean > 0.0) == (v > 0.0) {
                continue;
            }
            if !v.is_infinite() && !v.is_nan() {
                continue;
            }
        }
        (mean, c) = kahan_inc(v / count - mean / count, mean, c);
    }
    if mean.is_infinite() {
        mean
    } else {
        mean + c
    }
}

/// `stdvar_over_time` (or its square root) of every step's window of `s`, four windows side
/// by side as in [`batched_sums`]: each window gets exactly the operations of
/// [`stdvar_over_time`] in the same order (the compensation reset included, since the running
/// mean is read inside the loop), so the results are bit-identical; the four independent
/// chains hide the latency of the per-sample division.
fn batched_stdvar(arg: &RangeArg, s: &RawSeries, r: &Range, sqrt: bool) -> Vec<(i64, f64)> {
    let wins = step_windows(arg, s);
    let vs = &s.vs;
    let mut out = Vec::with_capacity(wins.len());
    for group in wins.chunks(4) {
        let mut st = StdvarLanes::default();
        let common = if group.len() == 4 {
            group.iter().map(|&(_, lo, hi)| hi - lo).min().unwrap_or(0)
        } else {
            0
        };
        if common > 0 {
            let start = [group[0].1, group[1].1, group[2].1, group[3].1];
            stdvar_lanes(vs, start, common, &mut st);
        }
        for (k, &(i, lo, hi)) in group.iter().enumerate() {
            let mut acc = StdvarAcc {
                count: common as f64,
                mean: st.mean[k],
                c_mean: st.c_mean[k],
                aux: st.aux[k],
                c_aux: st.c_aux[k],
            };
            for &v in &vs[lo + common..hi] {
                acc.push(v);
            }
            let var = acc.finish();
            out.push((r.ts(i), if sqrt { var.sqrt() } else { var }));
        }
    }
    out
}

/// The running state of four `stdvar_over_time` windows.
#[derive(Default)]
struct StdvarLanes {
    mean: [f64; 4],
    c_mean: [f64; 4],
    aux: [f64; 4],
    c_aux: [f64; 4],
}

/// Advances four `stdvar_over_time` windows by `n` values each (all from their start, so
/// their counts are equal), lane `k` reading `vs[start[k]..]`.
fn stdvar_lanes(vs: &[f64], start: [usize; 4], n: usize, st: &mut StdvarLanes) {
    #[cfg(target_arch = "x86_64")]
    if avx::available() {
        return avx::stdvar_lanes(vs, start, n, st);
    }
    stdvar_lanes_body(vs, start, n, st)
}

/// [`kahan_inc`] without branches (the same operations and result), for vectorised loops.
#[inline(always)]
fn kahan_inc_select(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let (t, nc) = neumaier_step(inc, sum, c);
    (t, if t.is_infinite() { 0.0 } else { nc })
}

#[inline(always)]
fn stdvar_lanes_body(vs: &[f64], start: [usize; 4], n: usize, st: &mut StdvarLanes) {
    let mut count = 0.0f64;
    for x in four_lanes(vs, start, n) {
        count += 1.0;
        for (k, &xk) in x.iter().enumerate() {
            let delta = xk - (st.mean[k] + st.c_mean[k]);
            (st.mean[k], st.c_mean[k]) = kahan_inc_select(delta / count, st.mean[k], st.c_mean[k]);
            let d2 = delta * (xk - (st.mean[k] + st.c_mean[k]));
            (st.aux[k], st.c_aux[k]) = kahan_inc_select(d2, st.aux[k], st.c_aux[k]);
        }
    }
}

/// Prometheus's compensated running variance (`stdvar_over_time`), one value at a time.
#[derive(Default)]
struct StdvarAcc {
    count: f64,
    mean: f64,
    c_mean: f64,
    aux: f64,
    c_aux: f64,
}

impl StdvarAcc {
    fn push(&mut self, v: f64) {
        self.count += 1.0;
        let delta = v - (self.mean + self.c_mean);
        (self.mean, self.c_mean) = kahan_inc(delta / self.count, self.mean, self.c_mean);
        let d2 = delta * (v - (self.mean + self.c_mean));
        (self.aux, self.c_aux) = kahan_inc(d2, self.aux, self.c_aux);
    }

    fn finish(&self) -> f64 {
        (self.aux + self.c_aux) / self.count
    }
}

fn stdvar_over_time(vs: &[f64]) -> f64 {
    let mut acc = StdvarAcc::default();
    for &v in vs {
        acc.push(v);
    }
    acc.finish()
}

/// Prometheus's `quantile`: NaN sorts first, linear interpolation between ranks.
pub(crate) fn quantile(q: f64, values: &mut [f64]) -> f64 {
    if values.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    values.sort_by(|a, b| match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Less,
        (false, true) => std::cmp::Ordering::Greater,
        _ => a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal),
    });
    let n = values.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let weight = rank - rank.floor();
    values[lower as usize] * (1.0 - weight) + values[upper as usize] * weight
}

/// `(slope, intercept)` of the least-squares line through the window, as Prometheus's
/// `linearRegression` computes it (compensated sums of x, y, xy, x^2).
fn linear_regression(ts: &[i64], vs: &[f64], intercept_t: i64) -> (f64, f64) {
    #[cfg(target_arch = "x86_64")]
    if avx::available() {
        return avx::linear_regression(ts, vs, intercept_t);
    }
    linear_regression_body(ts, vs, intercept_t)
}

/// The hot kernels compiled a second time with AVX enabled (256-bit registers: the four
/// lanes of a Neumaier step in one instruction instead of two), chosen at run time. The
/// arithmetic is the same IEEE operations in the same order (AVX adds no fused
/// multiply-add), so the results are bit-identical to the portable build, but for the sign
/// bit of a NaN result (x86 propagates one NaN operand, which one depends on register
/// allocation).
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod avx {
    /// True when the CPU executes AVX instructions (the check is cached by std).
    pub fn available() -> bool {
        std::arch::is_x86_feature_detected!("avx")
    }

    #[target_feature(enable = "avx")]
    fn linear_regression_avx(ts: &[i64], vs: &[f64], intercept_t: i64) -> (f64, f64) {
        super::linear_regression_body(ts, vs, intercept_t)
    }

    /// [`super::linear_regression`] with AVX; only called after [`available`].
    pub fn linear_regression(ts: &[i64], vs: &[f64], intercept_t: i64) -> (f64, f64) {
        debug_assert!(available());
        // SAFETY: calling a `target_feature(enable = "avx")` function is sound when the CPU
        // supports AVX, which the caller checked with `available()`.
        unsafe { linear_regression_avx(ts, vs, intercept_t) }
    }

    #[target_feature(enable = "avx")]
    fn neumaier_lanes_avx(
        vs: &[f64],
        start: [usize; 4],
        n: usize,
        sum: &mut [f64; 4],
        c: &mut [f64; 4],
    ) {
        super::neumaier_lanes_body(vs, start, n, sum, c)
    }

    #[target_feature(enable = "avx")]
    fn stdvar_lanes_avx(vs: &[f64], start: [usize; 4], n: usize, st: &mut super::StdvarLanes) {
        super::stdvar_lanes_body(vs, start, n, st)
    }

    /// [`super::stdvar_lanes`] with AVX; only called after [`available`].
    pub fn stdvar_lanes(vs: &[f64], start: [usize; 4], n: usize, st: &mut super::StdvarLanes) {
        debug_assert!(available());
        // SAFETY: as in `linear_regression` above: the caller checked `available()`.
        unsafe { stdvar_lanes_avx(vs, start, n, st) }
    }

    /// [`super::neumaier_lanes`] with AVX; only called after [`available`].
    pub fn neumaier_lanes(
        vs: &[f64],
        start: [usize; 4],
        n: usize,
        sum: &mut [f64; 4],
        c: &mut [f64; 4],
    ) {
        debug_assert!(available());
        // SAFETY: as in `linear_regression` above: the caller checked `available()`.
        unsafe { neumaier_lanes_avx(vs, start, n, sum, c) }
    }
}

/// Advances four compensated sums by `n` values each, lane `k` reading `vs[start[k]..]`.
fn neumaier_lanes(vs: &[f64], start: [usize; 4], n: usize, sum: &mut [f64; 4], c: &mut [f64; 4]) {
    #[cfg(target_arch = "x86_64")]
    if avx::available() {
        return avx::neumaier_lanes(vs, start, n, sum, c);
    }
    neumaier_lanes_body(vs, start, n, sum, c)
}

#[inline(always)]
fn neumaier_lanes_body(
    vs: &[f64],
    start: [usize; 4],
    n: usize,
    sum: &mut [f64; 4],
    c: &mut [f64; 4],
) {
    let (mut s, mut cc) = (*sum, *c);
    for x in four_lanes(vs, start, n) {
        for k in 0..4 {
            (s[k], cc[k]) = neumaier_step(x[k], s[k], cc[k]);
        }
    }
    (*sum, *c) = (s, cc);
}

#[inline(always)]
fn linear_regression_body(ts: &[i64], vs: &[f64], intercept_t: i64) -> (f64, f64) {
    // Four Kahan-Neumaier sums (x, y, xy, x^2) advanced together, written without branches
    // so that the compiler can keep them in vector registers; the same operations as
    // `kahan_inc` on each, in the same order, so the result is bit-identical (the reset of
    // the compensation on overflow is applied once at the end: see `neumaier_step`).
    let mut s = [0.0f64; 4];
    let mut c = [0.0f64; 4];
    let init_y = vs[0];
    // Prometheus compares every later value with the first (so a NaN first value makes any
    // longer window non-constant).
    let const_y = vs[1..].iter().all(|&v| v == init_y);
    for (&t, &v) in ts.iter().zip(vs) {
        let x = (t - intercept_t) as f64 / 1e3;
        let inc = [x, v, x * v, x * x];
        for k in 0..4 {
            (s[k], c[k]) = neumaier_step(inc[k], s[k], c[k]);
        }
    }
    for k in 0..4 {
        c[k] = neumaier_final_c(s[k], c[k]);
    }
    if const_y {
        if init_y.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, init_y);
    }
    let n = ts.len() as f64;
    let [sx, sy, sxy, sx2] = [s[0] + c[0], s[1] + c[1], s[2] + c[2], s[3] + c[3]];
    let cov = sxy - sx * sy / n;
    let var = sx2 - sx * sx / n;
    let slope = cov / var;
    (slope, sy / n - slope * sx / n)
}

fn extrapolated_rate(w: &Win, is_counter: bool, is_rate: bool) -> Option<f64> {
    let n = w.vs.len();
    if n < 2 {
        return None;
    }
    let range_start = w.t - w.range_ms;
    let range_end = w.t;
    let first_t = w.ts[0];
    let last_t = w.ts[n - 1];
    let mut result = w.vs[n - 1] - w.vs[0];
    // Most windows hold no reset: a branch-free scan (it vectorises) finds that, and the
    // exact in-order sum below runs only for the windows that need it.
    let drops = |vs: &[f64]| {
        vs[1..]
            .iter()
            .zip(vs)
            .fold(false, |any, (v, prev)| any | (v < prev))
    };
    if is_counter && (drops(w.vs) || (!w.p3 && w.vs[0] < 0.0)) {
        if w.p3 {
            let mut prev = w.vs[0];
            for &v in &w.vs[1..] {
                if v < prev {
                    result += prev;
                }
                prev = v;
            }
        } else {
            let mut last = 0.0;
            for &v in w.vs {
                if v < last {
                    result += last;
                }
                last = v;
            }
        }
    }
    let mut to_start = (first_t - range_start) as f64 / 1000.0;
    let mut to_end = (range_end - last_t) as f64 / 1000.0;
    let sampled = (last_t - first_t) as f64 / 1000.0;
    let avg_between = sampled / (n - 1) as f64;
    let threshold = avg_between * 1.1;
    let mut interval = sampled;
    if w.p3 {
        if to_start >= threshold {
            to_start = avg_between / 2.0;
        }
        if is_counter {
            let mut to_zero = to_start;
            if result > 0.0 && w.vs[0] >= 0.0 {
                to_zero = sampled * (w.vs[0] / result);
            }
            if to_zero < to_start {
                to_start = to_zero;
            }
        }
        interval += to_start;
        if to_end >= threshold {
            to_end = avg_between / 2.0;
        }
        interval += to_end;
    } else {
        if is_counter && result > 0.0 && w.vs[0] >= 0.0 {
            let to_zero = sampled * (w.vs[0] / result);
            if to_zero < to_start {
                to_start = to_zero;
            }
        }
        interval += if to_start < threshold {
            to_start
        } else {
            avg_between / 2.0
        };
        interval += if to_end < threshold {
            to_end
        } else {
            avg_between / 2.0
        };
    }
    let mut factor = interval / sampled;
    if is_rate {
        factor /= w.range_ms as f64 / 1000.0;
    }
    Some(result * factor)
}

fn instant_value(w: &Win, is_rate: bool) -> Option<f64> {
    let n = w.vs.len();
    if n < 2 {
        return None;
    }
    let (lt, lv) = (w.ts[n - 1], w.vs[n - 1]);
    let (pt, pv) = (w.ts[n - 2], w.vs[n - 2]);
    let mut v = if is_rate && lv < pv { lv } else { lv - pv };
    let dt = lt - pt;
    if dt == 0 {
        return None;
    }
    if is_rate {
        v /= dt as f64 / 1000.0;
    }
    Some(v)
}

fn smoothing(w: &Win) -> Result<Option<f64>> {
    let (sf, tf) = (w.p[0], w.p[1]);
    if sf <= 0.0 || sf >= 1.0 || sf.is_nan() {
        return err(format!(
            "invalid smoothing factor. Expected: 0 < sf < 1, got: {}",
            go_fmt_f(sf)
        ));
    }
    if tf <= 0.0 || tf >= 1.0 || tf.is_nan() {
        return err(format!(
            "invalid trend factor. Expected: 0 < tf < 1, got: {}",
            go_fmt_f(tf)
        ));
    }
    let l = w.vs.len();
    if l < 2 {
        return Ok(None);
    }
    let (mut s0, mut s1) = (0.0, w.vs[0]);
    let mut b = w.vs[1] - w.vs[0];
    for i in 1..l {
        let x = sf * w.vs[i];
        if i - 1 != 0 {
            b = tf * (s1 - s0) + (1.0 - tf) * b;
        }
        let y = (1.0 - sf) * (s1 + b);
        s0 = s1;
        s1 = x + y;
    }
    Ok(Some(s1))
}

/// Go's `%f`.
fn go_fmt_f(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{v:.6}")
    }
}

/// Go's `strconv.FormatFloat(v, 'f', -1, 64)`.
pub(crate) fn go_fmt_shortest(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{v}")
    }
}

/// Go's `%g` for annotation messages.
pub(crate) fn go_fmt_g(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    let a = v.abs();
    if a != 0.0 && !(1e-4..1e21).contains(&a) {
        let s = format!("{v:e}");
        // Rust: 1e-5 / 1.5e21; Go: 1e-05 / 1.5e+21.
        if let Some((m, e)) = s.split_once('e') {
            let (sign, digits) = match e.strip_prefix('-') {
                Some(d) => ('-', d),
                None => ('+', e),
            };
            let digits = if digits.len() < 2 {
                format!("0{digits}")
            } else {
                digits.to_string()
            };
            return format!("{m}e{sign}{digits}");
        }
        s
    } else {
        format!("{v}")
    }
}

// ------------------------------------------------------------------ calendar

pub(crate) struct Civil {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    weekday: u32,
    yday: u32,
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ => {
            if is_leap(y) {
                29
            } else {
                28
            }
        }
    }
}

pub(crate) fn civil(secs: i64) -> Civil {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = if m <= 2 { y + 1 } else { y };
    let mut yday = d;
    for mm in 1..m {
        yday += days_in_month(year, mm);
    }
    Civil {
        year,
        month: m,
        day: d,
        hour: (rem / 3600) as u32,
        minute: ((rem % 3600) / 60) as u32,
        weekday: (days + 4).rem_euclid(7) as u32,
        yday,
    }
}

// ------------------------------------------------------------------ hashing (limit_ratio)

/// xxHash64 with seed 0, as Prometheus's `labels.Hash()` uses.
pub(crate) fn xxh64(data: &[u8]) -> u64 {
    const P1: u64 = 0x9E37_79B1_85EB_CA87;
    const P2: u64 = 0xC2B2_AE3D_27D4_EB4F;
    const P3: u64 = 0x1656_67B1_9E37_79F9;
    const P4: u64 = 0x85EB_CA77_C2B2_AE63;
    const P5: u64 = 0x27D4_EB2F_1656_67C5;
    fn round(acc: u64, input: u64) -> u64 {
        acc.wrapping_add(input.wrapping_mul(P2))
            .rotate_left(31)
            .wrapping_mul(P1)
    }
    fn merge(acc: u64, val: u64) -> u64 {
        (acc ^ round(0, val)).wrapping_mul(P1).wrapping_add(P4)
    }
    let rd64 = |b: &[u8]| u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
    let len = data.len();
    let mut p = data;
    let mut h: u64;
    if len >= 32 {
        let mut v1 = P1.wrapping_add(P2);
        let mut v2 = P2;
        let mut v3 = 0u64;
        let mut v4 = 0u64.wrapping_sub(P1);
        while p.len() >= 32 {
            v1 = round(v1, rd64(&p[0..]));
            v2 = round(v2, rd64(&p[8..]));
            v3 = round(v3, rd64(&p[16..]));
            v4 = round(v4, rd64(&p[24..]));
            p = &p[32..];
        }
        h = v1
            .rotate_left(1)
            .wrapping_add(v2.rotate_left(7))
            .wrapping_add(v3.rotate_left(12))
            .wrapping_add(v4.rotate_left(18));
        h = merge(h, v1);
        h = merge(h, v2);
        h = merge(h, v3);
        h = merge(h, v4);
    } else {
        h = P5;
    }
    h = h.wrapping_add(len as u64);
    while p.len() >= 8 {
        h ^= round(0, rd64(p));
        h = h.rotate_left(27).wrapping_mul(P1).wrapping_add(P4);
        p = &p[8..];
    }
    if p.len() >= 4 {
        let k = u32::from_le_bytes([p[0], p[1], p[2], p[3]]) as u64;
        h ^= k.wrapping_mul(P1);
        h = h.rotate_left(23).wrapping_mul(P2).wrapping_add(P3);
        p = &p[4..];
    }
    for &b in p {
        h ^= (b as u64).wrapping_mul(P5);
        h = h.rotate_left(11).wrapping_mul(P1);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(P2);
    h ^= h >> 29;
    h = h.wrapping_mul(P3);
    h ^= h >> 32;
    h
}

pub(crate) fn labels_hash(l: &Labels) -> u64 {
    let mut b = Vec::with_capacity(128);
    for p in l.iter() {
        b.extend_from_slice(p.name.as_bytes());
        b.push(0xff);
        b.extend_from_slice(p.value.as_bytes());
        b.push(0xff);
    }
    xxh64(&b)
}

// ------------------------------------------------------------------ calls

fn label_name_ok(ev: &Evaluator, name: &str) -> bool {
    if ev.p3 {
        !name.is_empty()
    } else {
        tsq_storage::labels::is_valid_label_name(name)
    }
}

/// The i-th argument of a call, or an error (hand-built trees may be malformed).
pub(crate) fn arg_at(c: &Call, i: usize) -> Result<&Expr> {
    c.args.get(i).ok_or_else(|| {
        Error::Eval(format!(
            "wrong number of arguments for function {:?}: argument {} missing",
            c.func,
            i + 1
        ))
    })
}

/// Evaluates a function call.
pub(crate) fn call(ev: &mut Evaluator, c: &Call, r: &Range) -> Result<Val> {
    let name = c.func.as_str();
    // Before any dispatch: a seasonal range must not reach it through the baseline path.
    if ev.p3 && name == "holt_winters" {
        return err("unknown function with name \"holt_winters\" (renamed to double_exponential_smoothing in Prometheus 3; use profile prometheus-2.42)");
    }
    // Baseline functions, seasonal ranges and time-zone calendar arguments.
    if let Some(v) = crate::baseline::call(ev, c, r)? {
        return Ok(v);
    }
    if let Some(v) = crate::episodes::call(ev, c, r)? {
        return Ok(v);
    }
    let Some(def) = lookup(name) else {
        return Err(Error::Unsupported(format!(
            "function {name:?} is not implemented"
        )));
    };
    match def.kind {
        Kind::Range { f, arg, keep_name } => range_fn(ev, c, r, name, f, arg, keep_name),
        Kind::Elem(f) => {
            let need = match name {
                "clamp" => 3,
                "clamp_min" | "clamp_max" => 2,
                _ => 1,
            };
            if c.args.len() < need {
                return err(format!("wrong number of arguments for function {name:?}"));
            }
            let v = ev.eval_vector(arg_at(c, 0)?, r)?;
            let params: Vec<Vec<f64>> = c
                .args
                .get(1..)
                .unwrap_or_default()
                .iter()
                .map(|a| ev.eval_scalar(a, r))
                .collect::<Result<_>>()?;
            let mut p = vec![0.0; params.len()];
            let mut out = Vec::with_capacity(v.len());
            for mut s in v {
                let mut pts = Vec::with_capacity(s.pts.len());
                for &(t, x) in &s.pts {
                    let i = r.idx(t);
                    for (k, pv) in params.iter().enumerate() {
                        p[k] = pv[i];
                    }
                    if let Some(y) = f(x, &p) {
                        pts.push((t, y));
                    }
                }
                if pts.is_empty() {
                    continue;
                }
                s.pts = pts;
                ev.drop_name(&mut s);
                out.push(s);
            }
            check_dups_242(ev, &out)?;
            Ok(Val::Vector(out))
        }
        Kind::Date(f) => {
            if c.args.is_empty() {
                let pts = (0..r.n())
                    .map(|i| (r.ts(i), f(&civil(r.ts(i).div_euclid(1000)))))
                    .collect();
                return Ok(Val::Vector(vec![SeriesV {
                    labels: Labels::default(),
                    drop_name: false,
                    pts,
                }]));
            }
            let v = ev.eval_vector(arg_at(c, 0)?, r)?;
            let mut out = Vec::with_capacity(v.len());
            for mut s in v {
                for p in &mut s.pts {
                    p.1 = f(&civil(p.1 as i64));
                }
                ev.drop_name(&mut s);
                out.push(s);
            }
            check_dups_242(ev, &out)?;
            Ok(Val::Vector(out))
        }
        Kind::Special => special(ev, c, r, name),
    }
}

fn check_dups_242(ev: &Evaluator, out: &[SeriesV]) -> Result<()> {
    if ev.p3 {
        return Ok(());
    }
    let mut seen = std::collections::HashSet::new();
    for s in out {
        if !seen.insert(&s.labels) {
            return err("vector cannot contain metrics with the same labelset");
        }
    }
    Ok(())
}

/// Prometheus's info annotation for `rate`/`increase` of a series whose name does not look
/// like a counter's.
pub(crate) fn counter_name_info(ev: &mut Evaluator, func: &str, labels: &Labels) {
    if !matches!(func, "rate" | "increase") {
        return;
    }
    if let Some(m) = labels.metric_name() {
        let counter = ["_total", "_sum", "_count", "_bucket"]
            .iter()
            .any(|s| m.ends_with(s));
        if !counter {
            ev.info(format!("PromQL info: metric might not be a counter, name does not end in _total/_sum/_count/_bucket: {m:?}"));
        }
    }
}

fn range_fn(
    ev: &mut Evaluator,
    c: &Call,
    r: &Range,
    name: &str,
    f: RangeImpl,
    arg_idx: usize,
    keep_name: bool,
) -> Result<Val> {
    // `anchored`/`smoothed` (Prometheus 3.x): changes, delta, increase, rate, resets only.
    if let Expr::MatrixSelector(ms) = unparen(arg_at(c, arg_idx)?) {
        if let Some(m) = ms.modifier {
            return crate::eval::extended_call(ev, ms, m, r, name);
        }
    }
    let mut params: Vec<Vec<f64>> = Vec::new();
    for (j, a) in c.args.iter().enumerate() {
        if j != arg_idx {
            params.push(ev.eval_scalar(a, r)?);
        }
    }
    let need = match name {
        "predict_linear" | "quantile_over_time" => 1,
        "double_exponential_smoothing" | "holt_winters" => 2,
        _ => 0,
    };
    if params.len() < need {
        return err(format!("wrong number of arguments for function {name:?}"));
    }
    if name == "quantile_over_time" {
        if let Some(&q) = params[0]
            .iter()
            .find(|q| q.is_nan() || **q < 0.0 || **q > 1.0)
        {
            // Emitted below only if some window is non-empty.
            let arg = ev.eval_range_arg(arg_at(c, arg_idx)?, r)?;
            let any = arg.series.iter().any(|s| {
                (0..r.n()).any(|i| {
                    let (lo, hi) = arg.window(s, i);
                    lo < hi
                })
            });
            if any {
                ev.warn(format!(
                    "PromQL warning: quantile value should be between 0 and 1, got {}",
                    go_fmt_g(q)
                ));
            }
            return run_range(ev, arg, r, name, f, &params, keep_name);
        }
    }
    if let Expr::MatrixSelector(ms) = unparen(arg_at(c, arg_idx)?) {
        if ms.modifier.is_none() && ms.seasons.is_none() {
            let (set, arg) = ev.select_range_lazy(ms, r)?;
            return run_range_lazy(ev, &*set, arg, r, name, f, &params, keep_name);
        }
    }
    let arg = ev.eval_range_arg(arg_at(c, arg_idx)?, r)?;
    run_range(ev, arg, r, name, f, &params, keep_name)
}

/// How a range function evaluates one series' windows: the function and its parameters,
/// and which incremental path (if any) computes the same answer.
struct RangeFn<'p> {
    f: RangeImpl,
    params: &'p [Vec<f64>],
    p3: bool,
    /// The evaluation times ascend (windows move forward): decided once, not per series.
    monotonic: bool,
    /// Monotonic deques for min/max (no float arithmetic: bit-identical to a rescan).
    extreme: Option<bool>,
    /// Compensated sums, four windows side by side (bit-identical to one at a time).
    batched_sum: Option<bool>,
    batched_var: Option<bool>,
    slide: Option<Moment>,
}

impl<'p> RangeFn<'p> {
    fn new(name: &str, f: RangeImpl, params: &'p [Vec<f64>], p3: bool, arg: &RangeArg) -> Self {
        RangeFn {
            f,
            params,
            p3,
            monotonic: arg.eval_t.windows(2).all(|w| w[0] <= w[1]),
            extreme: match name {
                "max_over_time" => Some(true),
                "min_over_time" => Some(false),
                _ => None,
            },
            batched_sum: match name {
                "sum_over_time" => Some(false),
                "avg_over_time" if p3 => Some(true),
                _ => None,
            },
            batched_var: match name {
                "stdvar_over_time" => Some(false),
                "stddev_over_time" => Some(true),
                _ => None,
            },
            slide: match name {
                "sum_over_time" => Some(Moment::Sum),
                "avg_over_time" => Some(Moment::Mean),
                "stdvar_over_time" => Some(Moment::Var),
                "stddev_over_time" => Some(Moment::Sd),
                _ => None,
            },
        }
    }

    /// The output points of series `s` at the steps of `r`.
    fn points(&self, arg: &RangeArg, s: &RawSeries, r: &Range) -> Result<Vec<(i64, f64)>> {
        let n = r.n();
        let monotonic = self.monotonic;
        if let (Some(kind), true, true) = (self.slide, n > 1, monotonic) {
            if let Some(pts) = sliding_moments(arg, s, r, kind) {
                return Ok(pts);
            }
        }
        if let Some(is_max) = self.extreme {
            // One window (instant query): a plain scan is cheaper than the deque.
            if n > 1 && monotonic && !s.vs.iter().any(|v| v.is_nan()) {
                return Ok(sliding_extreme(arg, s, r, is_max));
            }
        }
        if let (Some(avg), true, true) = (self.batched_sum, n > 1, monotonic) {
            return Ok(batched_sums(arg, s, r, avg));
        }
        if let (Some(sqrt), true, true) = (self.batched_var, n > 1, monotonic) {
            return Ok(batched_stdvar(arg, s, r, sqrt));
        }
        let mut pts = Vec::new();
        let mut p = vec![0.0; self.params.len()];
        let (mut lo, mut hi) = (0usize, 0usize);
        for i in 0..n {
            let t = arg.eval_t[i];
            if monotonic {
                arg.advance_window(s, t, &mut lo, &mut hi);
            } else {
                (lo, hi) = arg.window(s, i);
            }
            if lo >= hi {
                continue;
            }
            for (k, pv) in self.params.iter().enumerate() {
                p[k] = pv[i];
            }
            let w = Win {
                ts: &s.ts[lo..hi],
                vs: &s.vs[lo..hi],
                t,
                step_t: r.ts(i),
                range_ms: arg.range_ms,
                p: &p,
                p3: self.p3,
            };
            if let Some(v) = (self.f)(&w)? {
                pts.push((r.ts(i), v));
            }
        }
        Ok(pts)
    }
}

/// Runs `work` over `0..n` split into contiguous parts, one per thread (`threads` of them,
/// or inline for one), and returns the parts' results in order.
fn in_parts<T: Send>(
    n: usize,
    threads: usize,
    work: impl Fn(std::ops::Range<usize>) -> Vec<Result<T>> + Sync,
) -> Vec<Result<T>> {
    if threads <= 1 || n < 2 {
        return work(0..n);
    }
    let part = n.div_ceil(threads);
    std::thread::scope(|sc| {
        let handles: Vec<_> = (0..n)
            .step_by(part)
            .map(|lo| {
                let work = &work;
                sc.spawn(move || work(lo..(lo + part).min(n)))
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| {
                h.join()
                    .unwrap_or_else(|_| vec![Err(Error::Internal("worker panicked".into()))])
            })
            .collect()
    })
}

/// Threads worth using for `samples` samples to read and `windows` windows to evaluate
/// (a week of 15 s samples for 30 series at 1 m steps qualifies; a dashboard panel not).
fn threads_for(ev: &Evaluator, series: usize, samples: usize, windows: usize) -> usize {
    let threads = ev.opts.threads.max(1);
    if threads > 1 && series >= 2 && samples.saturating_add(windows) >= 200_000 {
        threads
    } else {
        1
    }
}

/// The vector of a range function's results: series without points dropped, the name
/// dropped unless kept.
fn range_output(
    ev: &mut Evaluator,
    name: &str,
    keep_name: bool,
    results: impl IntoIterator<Item = (Labels, bool, Vec<(i64, f64)>)>,
) -> Result<Val> {
    let mut out = Vec::new();
    for (labels, drop_name, pts) in results {
        if pts.is_empty() {
            continue;
        }
        counter_name_info(ev, name, &labels);
        let mut sv = SeriesV {
            labels,
            drop_name,
            pts,
        };
        if !keep_name {
            ev.drop_name(&mut sv);
        }
        out.push(sv);
    }
    check_dups_242(ev, &out)?;
    Ok(Val::Vector(out))
}

fn run_range(
    ev: &mut Evaluator,
    arg: RangeArg,
    r: &Range,
    name: &str,
    f: RangeImpl,
    params: &[Vec<f64>],
    keep_name: bool,
) -> Result<Val> {
    let rf = RangeFn::new(name, f, params, ev.p3, &arg);
    let samples: usize = arg.series.iter().map(|s| s.ts.len()).sum();
    let windows = arg.eval_t.len().saturating_mul(arg.series.len());
    let threads = threads_for(ev, arg.series.len(), samples, windows);
    let results = in_parts(arg.series.len(), threads, |part| {
        arg.series[part]
            .iter()
            .map(|s| rf.points(&arg, s, r))
            .collect()
    });
    let mut all = Vec::with_capacity(results.len());
    for (s, pts) in arg.series.into_iter().zip(results) {
        all.push((s.labels, s.drop_name, pts?));
    }
    range_output(ev, name, keep_name, all)
}

/// The range functions that chunk statistics answer exactly for a chunk lying wholly
/// inside a window: its count, and (when no NaN-only or signed-zero tie can make the order
/// of the samples matter) its largest or smallest value.
#[derive(Clone, Copy, PartialEq)]
enum Summary {
    Count,
    Max,
    Min,
}

impl Summary {
    fn of(name: &str) -> Option<Summary> {
        match name {
            "count_over_time" => Some(Summary::Count),
            "max_over_time" => Some(Summary::Max),
            "min_over_time" => Some(Summary::Min),
            _ => None,
        }
    }

    /// Whether this chunk's statistics give the same answer as its samples. The storage
    /// offers only chunks without staleness markers. `max`/`min` exclude NaN (they are NaN
    /// only when every value is), and PromQL's max/min skip NaN unless all are; a zero
    /// extreme is refused because which of 0 and -0 PromQL returns depends on their order.
    fn accepts(self, m: &ChunkMeta) -> bool {
        match self {
            Summary::Count => true,
            Summary::Max => !m.max.is_nan() && m.max != 0.0,
            Summary::Min => !m.min.is_nan() && m.min != 0.0,
        }
    }

    /// The function's value over decoded samples `vs` (time order) and summarised chunks
    /// `sums`, all inside the window; `None` when the window is empty.
    fn value(self, vs: &[f64], sums: &[ChunkMeta]) -> Option<f64> {
        match self {
            Summary::Count => {
                let n = vs.len() + sums.iter().map(|m| m.count as usize).sum::<usize>();
                (n > 0).then_some(n as f64)
            }
            Summary::Max | Summary::Min => {
                let better = |v: f64, m: f64| {
                    if self == Summary::Max {
                        v > m
                    } else {
                        v < m
                    }
                };
                let extremes = sums
                    .iter()
                    .map(|m| if self == Summary::Max { m.max } else { m.min });
                // PromQL's rule, in order: a value replaces the kept one if better or if
                // the kept one is NaN.
                vs.iter().copied().chain(extremes).fold(None, |acc, v| {
                    Some(match acc {
                        Some(m) if !(better(v, m) || m.is_nan()) => m,
                        _ => v,
                    })
                })
            }
        }
    }
}

/// Whether the chunk `[m.min_t, m.max_t]` lies wholly inside or wholly outside every window
/// of `arg` (eval times sorted): then its statistics stand for its samples in each window.
/// A window cuts the chunk when one of its ends falls inside it; both ends move forward
/// with the steps, so two binary searches decide (a long window at many steps would
/// otherwise mean a loop over every window containing the chunk).
fn chunk_fits_windows(arg: &RangeArg, m: &ChunkMeta) -> bool {
    let (a, b) = (m.min_t, m.max_t);
    let et = &arg.eval_t;
    // A window ends inside the chunk (`a <= end < b`): its last samples are in, later ones
    // out.
    let k = et.partition_point(|&e| e < a);
    if k < et.len() && et[k] < b {
        return false;
    }
    // A window starts inside it: `a < start <= b` for windows `[start, end]`,
    // `a <= start < b` for left-open ones `(start, end]`.
    let r = arg.range_ms;
    let k = if arg.left_open {
        et.partition_point(|&e| e - r < a)
    } else {
        et.partition_point(|&e| e - r <= a)
    };
    if let Some(&e) = et.get(k) {
        let start = e - r;
        if (arg.left_open && start < b) || (!arg.left_open && start <= b) {
            return false;
        }
    }
    true
}

/// The points of a series read with some chunks summarised: per window, the decoded
/// samples inside it and the summarised chunks inside it (each chunk is wholly inside or
/// outside every window, [`chunk_fits_windows`]).
fn summary_points(
    kind: Summary,
    arg: &RangeArg,
    s: &RawSeries,
    sums: &[ChunkMeta],
    r: &Range,
) -> Vec<(i64, f64)> {
    let mut pts = Vec::new();
    let (mut lo, mut hi) = (0usize, 0usize);
    let (mut jlo, mut jhi) = (0usize, 0usize);
    for i in 0..r.n() {
        let t = arg.eval_t[i];
        arg.advance_window(s, t, &mut lo, &mut hi);
        let start = t - arg.range_ms;
        while jlo < sums.len()
            && (sums[jlo].min_t < start || (arg.left_open && sums[jlo].min_t == start))
        {
            jlo += 1;
        }
        jhi = jhi.max(jlo);
        while jhi < sums.len() && sums[jhi].min_t <= t {
            jhi += 1;
        }
        if let Some(v) = kind.value(&s.vs[lo..hi.max(lo)], &sums[jlo..jhi]) {
            pts.push((r.ts(i), v));
        }
    }
    pts
}

/// [`run_range`] over a plain matrix selector, reading its series one at a time (each
/// thread into its own reused buffers) instead of loading them all first: the memory a
/// query holds is one series per thread plus the results, and the samples are evaluated
/// while still in cache.
#[allow(clippy::too_many_arguments)]
fn run_range_lazy(
    ev: &mut Evaluator,
    set: &dyn SeriesSet,
    arg: RangeArg,
    r: &Range,
    name: &str,
    f: RangeImpl,
    params: &[Vec<f64>],
    keep_name: bool,
) -> Result<Val> {
    let rf = RangeFn::new(name, f, params, ev.p3, &arg);
    let n = set.len();
    let samples: usize = (0..n).map(|i| set.samples_hint(i)).sum();
    let threads = threads_for(ev, n, samples, arg.eval_t.len().saturating_mul(n));
    let max_samples = ev.opts.max_samples;
    let loaded = std::sync::atomic::AtomicUsize::new(ev.samples_loaded);
    // Chunk statistics instead of samples where a chunk lies wholly inside the windows.
    let summary = Summary::of(name).filter(|_| rf.monotonic);
    let results = in_parts(n, threads, |part| {
        let mut s = RawSeries {
            labels: Labels::default(),
            drop_name: false,
            ts: Vec::new(),
            vs: Vec::new(),
        };
        let mut sums: Vec<ChunkMeta> = Vec::new();
        let mut out = Vec::with_capacity(part.len());
        for i in part {
            let read = match summary {
                Some(kind) => set.read_summarised(i, &mut s.ts, &mut s.vs, &mut sums, &|m| {
                    kind.accepts(m) && chunk_fits_windows(&arg, m)
                }),
                None => set.read(i, &mut s.ts, &mut s.vs),
            };
            if let Err(e) = read {
                out.push(Err(e.into()));
                break;
            }
            let total =
                loaded.fetch_add(s.ts.len(), std::sync::atomic::Ordering::Relaxed) + s.ts.len();
            if total > max_samples {
                out.push(Err(samples_limit_error(max_samples)));
                break;
            }
            drop_stale_one(&mut s);
            out.push(match summary {
                Some(kind) if !sums.is_empty() => Ok(summary_points(kind, &arg, &s, &sums, r)),
                _ if s.ts.is_empty() => Ok(Vec::new()),
                _ => rf.points(&arg, &s, r),
            });
        }
        out
    });
    ev.samples_loaded = loaded.into_inner();
    let mut all = Vec::with_capacity(results.len());
    for (i, pts) in results.into_iter().enumerate() {
        let pts = pts?;
        if !pts.is_empty() {
            all.push((set.labels(i).clone(), false, pts));
        }
    }
    range_output(ev, name, keep_name, all)
}

/// min/max over sliding windows with a monotonic deque (windows must move forward).
fn sliding_extreme(arg: &RangeArg, s: &RawSeries, r: &Range, is_max: bool) -> Vec<(i64, f64)> {
    let mut pts = Vec::new();
    let mut dq: std::collections::VecDeque<usize> = std::collections::VecDeque::new();
    let (mut lo, mut hi) = (0usize, 0usize);
    for i in 0..r.n() {
        let t = arg.eval_t[i];
        let from = t - arg.range_ms;
        while lo < s.ts.len() && (s.ts[lo] < from || (arg.left_open && s.ts[lo] == from)) {
            lo += 1;
        }
        if hi < lo {
            hi = lo;
        }
        while hi < s.ts.len() && s.ts[hi] <= t {
            let v = s.vs[hi];
            while let Some(&b) = dq.back() {
                let bv = s.vs[b];
                // Strictly: of equal values the earliest stays in front, as PromQL keeps
                // the first of equal extremes (0 and -0 differ in sign only).
                if (is_max && bv < v) || (!is_max && bv > v) {
                    dq.pop_back();
                } else {
                    break;
                }
            }
            dq.push_back(hi);
            hi += 1;
        }
        while dq.front().is_some_and(|&f| f < lo) {
            dq.pop_front();
        }
        if let Some(&f) = dq.front() {
            pts.push((r.ts(i), s.vs[f]));
        }
    }
    pts
}

fn absent_labels(e: &Expr) -> Labels {
    let vs = match e {
        Expr::VectorSelector(vs) => vs,
        Expr::MatrixSelector(ms) => &ms.selector,
        _ => return Labels::default(),
    };
    let mut l = Labels::default();
    let mut has: std::collections::HashSet<&str> = Default::default();
    for m in &vs.matchers {
        if m.name == METRIC_NAME {
            continue;
        }
        if m.op == tsq_parser::MatchOp::Equal && !has.contains(m.name.as_str()) {
            l.set(&m.name, &m.value);
            has.insert(&m.name);
        } else {
            l.remove(&m.name);
        }
    }
    l
}

/// `github.com/facette/natsort`'s `Compare(a, b)`: a < b in natural order.
fn natsort_less(a: &str, b: &str) -> bool {
    fn chunks(s: &str) -> Vec<&str> {
        let mut out = Vec::new();
        let bytes = s.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            let d = bytes[i].is_ascii_digit();
            let mut j = i;
            while j < bytes.len() && bytes[j].is_ascii_digit() == d {
                j += 1;
            }
            out.push(&s[i..j]);
            i = j;
        }
        out
    }
    let ca = chunks(a);
    let cb = chunks(b);
    for i in 0..ca.len() {
        if i >= cb.len() {
            return false;
        }
        let ai = ca[i].parse::<i64>();
        let bi = cb[i].parse::<i64>();
        if let (Ok(x), Ok(y)) = (&ai, &bi) {
            if x == y {
                if i == ca.len() - 1 {
                    return true;
                } else if i == cb.len() - 1 {
                    return false;
                }
                continue;
            }
            return x < y;
        }
        if ca[i] == cb[i] {
            if i == ca.len() - 1 {
                return true;
            } else if i == cb.len() - 1 {
                return false;
            }
            continue;
        }
        return ca[i] < cb[i];
    }
    false
}

fn special(ev: &mut Evaluator, c: &Call, r: &Range, name: &str) -> Result<Val> {
    let n = r.n();
    if name.starts_with("sort") && r.start != r.end {
        ev.warn(
            "PromQL warning: sort is ineffective for range queries since results are always ordered by labels"
                .into(),
        );
    }
    match name {
        "time" => Ok(Val::Scalar(
            (0..n).map(|i| r.ts(i) as f64 / 1000.0).collect(),
        )),
        "pi" => Ok(Val::Scalar(vec![std::f64::consts::PI; n])),
        "vector" => {
            let s = ev.eval_scalar(arg_at(c, 0)?, r)?;
            Ok(Val::Vector(vec![SeriesV {
                labels: Labels::default(),
                drop_name: false,
                pts: (0..n).map(|i| (r.ts(i), s[i])).collect(),
            }]))
        }
        "scalar" => {
            let v = ev.eval_vector(arg_at(c, 0)?, r)?;
            let mut cnt = vec![0u32; n];
            let mut val = vec![f64::NAN; n];
            for s in &v {
                for &(t, x) in &s.pts {
                    let i = r.idx(t);
                    cnt[i] += 1;
                    val[i] = x;
                }
            }
            Ok(Val::Scalar(
                (0..n)
                    .map(|i| if cnt[i] == 1 { val[i] } else { f64::NAN })
                    .collect(),
            ))
        }
        "timestamp" => {
            let arg = unparen(arg_at(c, 0)?);
            let v = if let Expr::VectorSelector(vs) = arg {
                ev.eval_selector_timestamps(vs, r)?
            } else {
                let mut v = ev.eval_vector(arg, r)?;
                for s in &mut v {
                    for p in &mut s.pts {
                        p.1 = p.0 as f64 / 1000.0;
                    }
                }
                v
            };
            let mut out = Vec::with_capacity(v.len());
            for mut s in v {
                ev.drop_name(&mut s);
                out.push(s);
            }
            check_dups_242(ev, &out)?;
            Ok(Val::Vector(out))
        }
        "absent" => {
            let v = ev.eval_vector(arg_at(c, 0)?, r)?;
            let mut present = vec![false; n];
            for s in &v {
                for &(t, _) in &s.pts {
                    present[r.idx(t)] = true;
                }
            }
            let pts: Vec<(i64, f64)> = (0..n)
                .filter(|&i| !present[i])
                .map(|i| (r.ts(i), 1.0))
                .collect();
            if pts.is_empty() {
                return Ok(Val::Vector(Vec::new()));
            }
            Ok(Val::Vector(vec![SeriesV {
                labels: absent_labels(arg_at(c, 0)?),
                drop_name: false,
                pts,
            }]))
        }
        "absent_over_time" => {
            let arg = ev.eval_range_arg(arg_at(c, 0)?, r)?;
            let mut pts = Vec::new();
            for i in 0..n {
                let any = arg.series.iter().any(|s| {
                    let (lo, hi) = arg.window(s, i);
                    lo < hi
                });
                if !any {
                    pts.push((r.ts(i), 1.0));
                }
            }
            if pts.is_empty() {
                return Ok(Val::Vector(Vec::new()));
            }
            Ok(Val::Vector(vec![SeriesV {
                labels: absent_labels(unparen(arg_at(c, 0)?)),
                drop_name: false,
                pts,
            }]))
        }
        "sort" | "sort_desc" => {
            let mut v = ev.eval_vector(arg_at(c, 0)?, r)?;
            if n == 1 {
                let desc = name == "sort_desc";
                v.sort_by(|a, b| {
                    let (x, y) = (a.pts[0].1, b.pts[0].1);
                    match (x.is_nan(), y.is_nan()) {
                        (true, true) => std::cmp::Ordering::Equal,
                        (true, false) => std::cmp::Ordering::Greater,
                        (false, true) => std::cmp::Ordering::Less,
                        _ => {
                            let o = x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal);
                            if desc {
                                o.reverse()
                            } else {
                                o
                            }
                        }
                    }
                });
            }
            Ok(Val::Vector(v))
        }
        "sort_by_label" | "sort_by_label_desc" => {
            let mut v = ev.eval_vector(arg_at(c, 0)?, r)?;
            let mut names = Vec::new();
            for a in c.args.get(1..).unwrap_or_default() {
                names.push(ev.eval_string(a, r)?);
            }
            let desc = name == "sort_by_label_desc";
            v.sort_by(|a, b| {
                for l in &names {
                    let x = a.labels.get(l).unwrap_or("");
                    let y = b.labels.get(l).unwrap_or("");
                    if x == y {
                        continue;
                    }
                    let less = if desc {
                        natsort_less(y, x)
                    } else {
                        natsort_less(x, y)
                    };
                    return if less {
                        std::cmp::Ordering::Less
                    } else {
                        std::cmp::Ordering::Greater
                    };
                }
                if desc {
                    b.labels.cmp(&a.labels)
                } else {
                    a.labels.cmp(&b.labels)
                }
            });
            Ok(Val::Vector(v))
        }
        "label_replace" => {
            let v = ev.eval_vector(arg_at(c, 0)?, r)?;
            let dst = ev.eval_string(arg_at(c, 1)?, r)?;
            let repl = ev.eval_string(arg_at(c, 2)?, r)?;
            let src = ev.eval_string(arg_at(c, 3)?, r)?;
            let re_s = ev.eval_string(arg_at(c, 4)?, r)?;
            let re = regex::RegexBuilder::new(&format!("^(?:{re_s})$"))
                .dot_matches_new_line(ev.p3)
                .build()
                .map_err(|e| {
                    Error::Eval(format!(
                        "invalid regular expression in label_replace(): {re_s}: {e}"
                    ))
                })?;
            if !label_name_ok(ev, &dst) {
                return err(format!(
                    "invalid destination label name in label_replace(): {dst}"
                ));
            }
            let mut out = OutBuilder::default();
            for s in v {
                let mut labels = s.labels.clone();
                let mut dn = s.drop_name;
                let sv = s.labels.get(&src).unwrap_or("");
                if let Some(caps) = re.captures(sv) {
                    let mut res = String::new();
                    caps.expand(&repl, &mut res);
                    labels.set(&dst, &res);
                    if dst == METRIC_NAME {
                        dn = false;
                    }
                }
                for (t, x) in s.pts {
                    out.push(labels.clone(), dn, t, x)?;
                }
            }
            Ok(Val::Vector(out.series))
        }
        "label_join" => {
            let v = ev.eval_vector(arg_at(c, 0)?, r)?;
            let dst = ev.eval_string(arg_at(c, 1)?, r)?;
            let sep = ev.eval_string(arg_at(c, 2)?, r)?;
            let mut srcs = Vec::new();
            for a in c.args.get(3..).unwrap_or_default() {
                let s = ev.eval_string(a, r)?;
                if !label_name_ok(ev, &s) {
                    return err(format!("invalid source label name in label_join(): {s}"));
                }
                srcs.push(s);
            }
            if !label_name_ok(ev, &dst) {
                return err(format!(
                    "invalid destination label name in label_join(): {dst}"
                ));
            }
            let mut out = OutBuilder::default();
            for s in v {
                let mut labels = s.labels.clone();
                let joined: Vec<&str> =
                    srcs.iter().map(|n| s.labels.get(n).unwrap_or("")).collect();
                labels.set(&dst, &joined.join(&sep));
                let dn = s.drop_name && dst != METRIC_NAME;
                for (t, x) in s.pts {
                    out.push(labels.clone(), dn, t, x)?;
                }
            }
            Ok(Val::Vector(out.series))
        }
        "histogram_quantile" => histogram_quantile(ev, c, r),
        "histogram_count" | "histogram_sum" | "histogram_avg" | "histogram_fraction"
        | "histogram_stddev" | "histogram_stdvar" => {
            // Defined on native histograms only; float samples give no result.
            for a in &c.args {
                ev.eval(a, r)?;
            }
            Ok(Val::Vector(Vec::new()))
        }
        "info" => info(ev, c, r),
        _ => Err(Error::Internal(format!(
            "special function {name} not dispatched"
        ))),
    }
}

/// `info(v [, {data-label-selector}])`: adds the data labels of the info series (default
/// `target_info`) that share `v`'s identifying labels `instance` and `job`. Labels already on
/// the series win; series without a matching info series are returned unchanged.
fn info(ev: &mut Evaluator, c: &Call, r: &Range) -> Result<Val> {
    const IDENTIFYING: [&str; 2] = ["instance", "job"];
    let v = ev.eval_vector(arg_at(c, 0)?, r)?;
    let mut name_matchers = Vec::new();
    let mut data_matchers = Vec::new();
    // The info series are looked up at the times the input was: the `@`/offset of the input
    // selector, or of the data-label selector when it has one.
    let (mut at, mut offset) = match unparen(arg_at(c, 0)?) {
        Expr::VectorSelector(vs) => (vs.at.clone(), vs.offset.clone()),
        _ => (None, None),
    };
    if let Some(Expr::VectorSelector(sel)) = c.args.get(1).map(unparen) {
        if sel.at.is_some() || sel.offset.is_some() {
            (at, offset) = (sel.at.clone(), sel.offset.clone());
        }
        for m in &sel.matchers {
            if m.name == METRIC_NAME {
                name_matchers.push(m.clone());
            } else {
                data_matchers.push(m.clone());
            }
        }
    }
    if name_matchers.is_empty() {
        name_matchers.push(tsq_parser::Matcher {
            name: METRIC_NAME.into(),
            op: tsq_parser::MatchOp::Equal,
            value: "target_info".into(),
        });
    }
    let sel = tsq_parser::VectorSelector {
        name: None,
        matchers: name_matchers,
        offset,
        at,
        modifier: None,
    };
    let infos = match ev.eval(&Expr::VectorSelector(sel), r)? {
        Val::Vector(x) => x,
        _ => Vec::new(),
    };
    if infos.is_empty() {
        return Ok(Val::Vector(v));
    }
    let dm: Vec<tsq_storage::Matcher> = data_matchers
        .iter()
        .map(|m| {
            let op = match m.op {
                tsq_parser::MatchOp::Equal => tsq_storage::MatchOp::Equal,
                tsq_parser::MatchOp::NotEqual => tsq_storage::MatchOp::NotEqual,
                tsq_parser::MatchOp::Regex => tsq_storage::MatchOp::Regex,
                tsq_parser::MatchOp::NotRegex => tsq_storage::MatchOp::NotRegex,
            };
            tsq_storage::Matcher::new(op, m.name.clone(), m.value.clone(), ev.p3)
                .map_err(|e| Error::Eval(format!("invalid regular expression {:?}: {e}", m.value)))
        })
        .collect::<Result<_>>()?;
    let key = |l: &Labels| -> String {
        IDENTIFYING
            .iter()
            .map(|n| l.get(n).unwrap_or(""))
            .collect::<Vec<_>>()
            .join("\u{ff}")
    };
    // Per step: identifying key -> data labels.
    let n = r.n();
    let mut per_step: Vec<HashMap<String, Vec<(String, String)>>> = vec![HashMap::new(); n];
    for s in &infos {
        if !dm.iter().all(|m| m.matches_labels(&s.labels)) {
            continue;
        }
        let k = key(&s.labels);
        let data: Vec<(String, String)> = s
            .labels
            .iter()
            .filter(|p| p.name != METRIC_NAME && !IDENTIFYING.contains(&p.name.as_str()))
            .filter(|p| {
                dm.iter()
                    .filter(|m| m.name == p.name)
                    .all(|m| m.matches(&p.value))
            })
            .filter(|p| dm.is_empty() || dm.iter().any(|m| m.name == p.name))
            .map(|p| (p.name.clone(), p.value.clone()))
            .collect();
        for &(t, _) in &s.pts {
            per_step[r.idx(t)]
                .entry(k.clone())
                .or_default()
                .extend(data.clone());
        }
    }
    let mut out = OutBuilder::default();
    for s in v {
        let k = key(&s.labels);
        for &(t, x) in &s.pts {
            let mut labels = s.labels.clone();
            if let Some(data) = per_step[r.idx(t)].get(&k) {
                for (n, val) in data {
                    if labels.get(n).is_none() {
                        labels.set(n, val);
                    }
                }
            }
            out.push(labels, s.drop_name, t, x)?;
        }
    }
    Ok(Val::Vector(out.series))
}

fn histogram_quantile(ev: &mut Evaluator, c: &Call, r: &Range) -> Result<Val> {
    let q = ev.eval_scalar(arg_at(c, 0)?, r)?;
    let v = ev.eval_vector(arg_at(c, 1)?, r)?;
    // Group key per series (labels without le and __name__), and its upper bound.
    let mut groups: HashMap<Labels, usize> = HashMap::new();
    let mut group_labels: Vec<Labels> = Vec::new();
    let mut per_series: Vec<Option<(usize, f64)>> = Vec::with_capacity(v.len());
    for s in &v {
        let le = s.labels.get("le").unwrap_or("");
        let ub = match parse_go_float(le) {
            Some(x) => x,
            None => {
                if !s.pts.is_empty() {
                    ev.warn(format!(
                        "PromQL warning: bucket label \"le\" is missing or has a malformed value of {:?} for metric name {:?}",
                        le,
                        s.labels.metric_name().unwrap_or("")
                    ));
                }
                per_series.push(None);
                continue;
            }
        };
        let mut key = s.labels.without_metric_name();
        key.remove("le");
        let g = *groups.entry(key.clone()).or_insert_with(|| {
            group_labels.push(key);
            group_labels.len() - 1
        });
        per_series.push(Some((g, ub)));
    }
    let by_step = ByStep::new(&v, r, |i| per_series[i].is_some());
    let mut out = OutBuilder::default();
    let mut buckets: Vec<Vec<(f64, f64)>> = vec![Vec::new(); group_labels.len()];
    let mut qwarn = None;
    for (step, items) in by_step.steps().enumerate() {
        if items.is_empty() {
            continue;
        }
        let qv = q[step];
        if qv.is_nan() || !(0.0..=1.0).contains(&qv) {
            qwarn = Some(qv);
        }
        for b in &mut buckets {
            b.clear();
        }
        let mut order = Vec::new();
        for &(i, x) in items {
            let (g, ub) = per_series[i].unwrap_or((0, 0.0));
            if buckets[g].is_empty() {
                order.push(g);
            }
            buckets[g].push((ub, x));
        }
        for g in order {
            let (val, forced) = bucket_quantile(qv, &mut buckets[g]);
            if forced {
                let name = v
                    .iter()
                    .find_map(|s| {
                        let mut k = s.labels.without_metric_name();
                        k.remove("le");
                        (k == group_labels[g]).then(|| s.labels.metric_name().unwrap_or(""))
                    })
                    .unwrap_or("")
                    .to_string();
                ev.info(format!("PromQL info: input to histogram_quantile needed to be fixed for monotonicity (see https://prometheus.io/docs/prometheus/latest/querying/functions/#histogram_quantile) for metric name {name:?}"));
            }
            out.push(group_labels[g].clone(), false, r.ts(step), val)?;
        }
    }
    if let Some(qv) = qwarn {
        ev.warn(format!(
            "PromQL warning: quantile value should be between 0 and 1, got {}",
            go_fmt_g(qv)
        ));
    }
    Ok(Val::Vector(out.series))
}

/// Go's `strconv.ParseFloat` for bucket bounds.
pub(crate) fn parse_go_float(s: &str) -> Option<f64> {
    let t = s.trim();
    if t.is_empty() || t != s {
        return None;
    }
    match t.to_ascii_lowercase().as_str() {
        "inf" | "+inf" | "infinity" | "+infinity" => return Some(f64::INFINITY),
        "-inf" | "-infinity" => return Some(f64::NEG_INFINITY),
        "nan" => return Some(f64::NAN),
        _ => {}
    }
    t.parse::<f64>().ok()
}

fn almost_equal(a: f64, b: f64, eps: f64) -> bool {
    const MIN_NORMAL: f64 = f64::MIN_POSITIVE;
    if a.is_nan() && b.is_nan() {
        return true;
    }
    if a == b {
        return true;
    }
    let abs_sum = a.abs() + b.abs();
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || abs_sum < MIN_NORMAL {
        return diff < eps * MIN_NORMAL;
    }
    diff / abs_sum.min(f64::MAX) < eps
}

/// Prometheus's `BucketQuantile` for classic buckets `(upper bound, cumulative count)`.
/// Returns the value and whether monotonicity had to be forced.
fn bucket_quantile(q: f64, b: &mut [(f64, f64)]) -> (f64, bool) {
    if q.is_nan() {
        return (f64::NAN, false);
    }
    if q < 0.0 {
        return (f64::NEG_INFINITY, false);
    }
    if q > 1.0 {
        return (f64::INFINITY, false);
    }
    b.sort_by(|x, y| x.0.partial_cmp(&y.0).unwrap_or(std::cmp::Ordering::Equal));
    if !b.last().is_some_and(|x| x.0 == f64::INFINITY) {
        return (f64::NAN, false);
    }
    // Coalesce equal bounds.
    let mut co: Vec<(f64, f64)> = Vec::with_capacity(b.len());
    for &(ub, c) in b.iter() {
        match co.last_mut() {
            Some(last) if last.0 == ub => last.1 += c,
            _ => co.push((ub, c)),
        }
    }
    let mut forced = false;
    let mut prev = co[0].1;
    for x in co.iter_mut().skip(1) {
        let curr = x.1;
        if curr == prev {
            continue;
        }
        if almost_equal(prev, curr, 1e-12) {
            x.1 = prev;
            continue;
        }
        if curr < prev {
            x.1 = prev;
            forced = true;
            continue;
        }
        prev = curr;
    }
    if co.len() < 2 {
        return (f64::NAN, forced);
    }
    let obs = co[co.len() - 1].1;
    if obs == 0.0 {
        return (f64::NAN, forced);
    }
    let mut rank = q * obs;
    let nb = co.len() - 1;
    let bi = co[..nb].partition_point(|x| x.1 < rank);
    if bi == nb {
        return (co[nb - 1].0, forced);
    }
    if bi == 0 && co[0].0 <= 0.0 {
        return (co[0].0, forced);
    }
    let mut start = 0.0;
    let end = co[bi].0;
    let mut count = co[bi].1;
    if bi > 0 {
        start = co[bi - 1].0;
        count -= co[bi - 1].1;
        rank -= co[bi - 1].1;
    }
    (start + (end - start) * (rank / count), forced)
}

// ------------------------------------------------------------------ aggregation

#[derive(Clone)]
struct Acc {
    seen: bool,
    v: f64,
    c: f64,
    mean: f64,
    count: f64,
    avg: Option<AvgAcc>,
    vals: Vec<f64>,
}

impl Default for Acc {
    fn default() -> Self {
        Acc {
            seen: false,
            v: 0.0,
            c: 0.0,
            mean: 0.0,
            count: 0.0,
            avg: None,
            vals: Vec::new(),
        }
    }
}

/// The labels that define an aggregation group (`by` keeps `names`; `without` drops them
/// and the metric name).
pub(crate) fn grouping_labels(l: &Labels, without: bool, names: &[String]) -> Labels {
    if without {
        Labels::from_sorted(
            l.iter()
                .filter(|p| p.name != METRIC_NAME && !names.contains(&p.name))
                .cloned()
                .collect(),
        )
    } else {
        Labels::from_sorted(
            l.iter()
                .filter(|p| names.contains(&p.name))
                .cloned()
                .collect(),
        )
    }
}

/// Evaluates an aggregation.
pub(crate) fn aggregate(ev: &mut Evaluator, a: &AggregateExpr, r: &Range) -> Result<Val> {
    let op = a.op;
    if op == AggregateOp::OutliersMad {
        return crate::baseline::outliers_mad(ev, a, r);
    }
    let n = r.n();
    let mut param: Option<Vec<f64>> = None;
    let mut cv_label = None;
    match op {
        AggregateOp::Topk
        | AggregateOp::Bottomk
        | AggregateOp::Limitk
        | AggregateOp::Quantile
        | AggregateOp::LimitRatio => {
            let p = a
                .param
                .as_ref()
                .ok_or_else(|| Error::Eval("aggregation parameter missing".into()))?;
            param = Some(ev.eval_scalar(p, r)?);
        }
        AggregateOp::CountValues => {
            let p = a
                .param
                .as_ref()
                .ok_or_else(|| Error::Eval("aggregation parameter missing".into()))?;
            let l = ev.eval_string(p, r)?;
            if !label_name_ok(ev, &l) {
                return err(format!("invalid label name {l:?}"));
            }
            cv_label = Some(l);
        }
        _ => {}
    }
    let input = ev.eval_vector(&a.expr, r)?;
    let (without, names): (bool, Vec<String>) = match &a.grouping {
        Some(g) => (g.without, g.labels.clone()),
        None => (false, Vec::new()),
    };
    // Groups, in order of first appearance.
    let mut gidx: HashMap<Labels, usize> = HashMap::new();
    let mut glabels: Vec<Labels> = Vec::new();
    let mut series_group = Vec::with_capacity(input.len());
    for s in &input {
        let gl = grouping_labels(&s.labels, without, &names);
        let g = match gidx.get(&gl) {
            Some(&g) => g,
            None => {
                gidx.insert(gl.clone(), glabels.len());
                glabels.push(gl);
                glabels.len() - 1
            }
        };
        series_group.push(g);
    }
    let by_step = ByStep::new(&input, r, |_| true);
    let ng = glabels.len();
    let mut out = OutBuilder::default();
    match op {
        AggregateOp::Topk
        | AggregateOp::Bottomk
        | AggregateOp::Limitk
        | AggregateOp::LimitRatio => {
            let pv = param.unwrap_or_default();
            let mut members: Vec<Vec<(usize, f64)>> = vec![Vec::new(); ng];
            // Output in group order; remember the per-step order for instant queries.
            for (step, items) in by_step.steps().enumerate() {
                if items.is_empty() {
                    continue;
                }
                let p = pv[step];
                let k: i64;
                if op == AggregateOp::LimitRatio {
                    if p.is_nan() {
                        return err("Ratio value is NaN");
                    }
                    k = 0;
                } else {
                    if p.is_nan() {
                        return err("Parameter value is NaN");
                    }
                    if !(-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&p) {
                        return err(format!("Scalar value {} overflows int64", go_fmt_g(p)));
                    }
                    k = p as i64;
                    if k < 1 {
                        continue;
                    }
                }
                let ratio = if op == AggregateOp::LimitRatio {
                    let mut rr = p;
                    if !(-1.0..=1.0).contains(&rr) {
                        let capped = rr.clamp(-1.0, 1.0);
                        ev.warn(format!(
                            "PromQL warning: ratio value should be between -1 and 1, got {}, capping to {}",
                            go_fmt_g(rr),
                            go_fmt_g(capped)
                        ));
                        rr = capped;
                    }
                    rr
                } else {
                    0.0
                };
                for m in &mut members {
                    m.clear();
                }
                let mut order = Vec::new();
                for &(i, v) in items {
                    let g = series_group[i];
                    if members[g].is_empty() {
                        order.push(g);
                    }
                    members[g].push((i, v));
                }
                let t = r.ts(step);
                for g in order {
                    let m = &mut members[g];
                    let chosen: Vec<(usize, f64)> = match op {
                        AggregateOp::Limitk => m.iter().take(k as usize).copied().collect(),
                        AggregateOp::LimitRatio => m
                            .iter()
                            .filter(|(i, _)| {
                                let off = labels_hash(&input[*i].labels) as f64 / u64::MAX as f64;
                                (ratio >= 0.0 && off < ratio) || (ratio < 0.0 && off >= 1.0 + ratio)
                            })
                            .copied()
                            .collect(),
                        _ => {
                            let top = op == AggregateOp::Topk;
                            let mut chosen = go_heap_select(m, k as usize, top);
                            // Printed best first (NaN last), ties in input order.
                            chosen.sort_by(|a, b| {
                                let o = match (a.1.is_nan(), b.1.is_nan()) {
                                    (true, true) => std::cmp::Ordering::Equal,
                                    (true, false) => std::cmp::Ordering::Greater,
                                    (false, true) => std::cmp::Ordering::Less,
                                    _ => {
                                        let o =
                                            a.1.partial_cmp(&b.1)
                                                .unwrap_or(std::cmp::Ordering::Equal);
                                        if top {
                                            o.reverse()
                                        } else {
                                            o
                                        }
                                    }
                                };
                                o.then(a.0.cmp(&b.0))
                            });
                            chosen
                        }
                    };
                    for (i, v) in chosen {
                        let s = &input[i];
                        out.push(s.labels.clone(), s.drop_name, t, v)?;
                    }
                }
            }
        }
        AggregateOp::CountValues => {
            let label = cv_label.unwrap_or_default();
            for (step, items) in by_step.steps().enumerate() {
                let t = r.ts(step);
                let mut counts: Vec<(Labels, f64)> = Vec::new();
                let mut pos: HashMap<Labels, usize> = HashMap::new();
                for &(i, v) in items {
                    let mut l = glabels[series_group[i]].clone();
                    l.set(&label, &go_fmt_shortest(v));
                    match pos.get(&l) {
                        Some(&p) => counts[p].1 += 1.0,
                        None => {
                            pos.insert(l.clone(), counts.len());
                            counts.push((l, 1.0));
                        }
                    }
                }
                for (l, c) in counts {
                    out.push(l, false, t, c)?;
                }
            }
        }
        _ => {
            // One output series per group, in order of first appearance.
            let mut outs: Vec<Vec<(i64, f64)>> = vec![Vec::new(); ng];
            let mut acc: Vec<Acc> = vec![Acc::default(); ng];
            let qv = param.unwrap_or_default();
            let mut qwarn = None;
            let mut order = Vec::new();
            for (step, items) in by_step.steps().enumerate() {
                if items.is_empty() {
                    continue;
                }
                order.clear();
                for &(i, f) in items {
                    let g = series_group[i];
                    let a = &mut acc[g];
                    if !a.seen {
                        *a = Acc::default();
                        a.seen = true;
                        order.push(g);
                        a.count = 1.0;
                        match op {
                            AggregateOp::Sum | AggregateOp::Min | AggregateOp::Max => a.v = f,
                            AggregateOp::Avg => {
                                if ev.p3 {
                                    a.avg = Some(AvgAcc::new(f));
                                } else {
                                    a.mean = f;
                                }
                            }
                            AggregateOp::Stddev | AggregateOp::Stdvar => {
                                a.mean = f;
                                a.v = if ev.p3 && (f.is_nan() || f.is_infinite()) {
                                    f64::NAN
                                } else {
                                    0.0
                                };
                            }
                            AggregateOp::Quantile => a.vals.push(f),
                            _ => {}
                        }
                        continue;
                    }
                    a.count += 1.0;
                    match op {
                        AggregateOp::Sum => {
                            if ev.p3 {
                                (a.v, a.c) = kahan_inc(f, a.v, a.c);
                            } else {
                                a.v += f;
                            }
                        }
                        AggregateOp::Min if a.v > f || a.v.is_nan() => a.v = f,
                        AggregateOp::Max if a.v < f || a.v.is_nan() => a.v = f,
                        AggregateOp::Avg => {
                            if let Some(b) = &mut a.avg {
                                b.add(f);
                            } else {
                                let cnt = a.count;
                                if a.mean.is_infinite() {
                                    if f.is_infinite() && (a.mean > 0.0) == (f > 0.0) {
                                        continue;
                                    }
                                    if !f.is_infinite() && !f.is_nan() {
                                        continue;
                                    }
                                }
                                a.mean += f / cnt - a.mean / cnt;
                            }
                        }
                        AggregateOp::Stddev | AggregateOp::Stdvar => {
                            let delta = f - a.mean;
                            a.mean += delta / a.count;
                            a.v += delta * (f - a.mean);
                        }
                        AggregateOp::Quantile => a.vals.push(f),
                        _ => {}
                    }
                }
                let t = r.ts(step);
                if op == AggregateOp::Quantile {
                    let q = qv[step];
                    if q.is_nan() || !(0.0..=1.0).contains(&q) {
                        qwarn = Some(q);
                    }
                }
                for &g in &order {
                    let a = &mut acc[g];
                    a.seen = false;
                    let v = match op {
                        AggregateOp::Sum => {
                            if ev.p3 && !a.v.is_infinite() {
                                a.v + a.c
                            } else {
                                a.v
                            }
                        }
                        AggregateOp::Min | AggregateOp::Max => a.v,
                        AggregateOp::Avg => match &a.avg {
                            Some(b) => b.finish(),
                            None => a.mean,
                        },
                        AggregateOp::Group => 1.0,
                        AggregateOp::Count => a.count,
                        AggregateOp::Stdvar => a.v / a.count,
                        AggregateOp::Stddev => (a.v / a.count).sqrt(),
                        AggregateOp::Quantile => quantile(qv[step], &mut a.vals),
                        _ => return Err(Error::Internal("aggregation op".into())),
                    };
                    if outs[g].capacity() == 0 {
                        // A group seen at this step is usually seen at the later ones too.
                        outs[g].reserve(n - step);
                    }
                    outs[g].push((t, v));
                }
            }
            if let Some(q) = qwarn {
                ev.warn(format!(
                    "PromQL warning: quantile value should be between 0 and 1, got {}",
                    go_fmt_g(q)
                ));
            }
            return Ok(Val::Vector(
                glabels
                    .into_iter()
                    .zip(outs)
                    .enumerate()
                    .filter(|(_, (_, pts))| !pts.is_empty())
                    .map(|(g, (labels, pts))| SeriesV {
                        labels,
                        // As Prometheus: the flag of the input series with the group's index.
                        drop_name: ev.p3 && input.get(g).is_some_and(|s| s.drop_name),
                        pts,
                    })
                    .collect(),
            ));
        }
    }
    Ok(Val::Vector(out.series))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xxh64_known_vectors() {
        assert_eq!(xxh64(b""), 0xEF46_DB37_51D8_E999);
        assert_eq!(xxh64(b"a"), 0xD24E_C4F1_A98C_6E5B);
        assert_eq!(xxh64(b"abc"), 0x44BC_2CF5_AD77_0999);
        let long = b"Nobody inspects the spammish repetition";
        assert_eq!(xxh64(long), 0xFBCE_A83C_8A37_8BF1);
    }

    #[test]
    fn natural_sort_and_calendar() {
        assert!(natsort_less("x2", "x10"));
        assert!(!natsort_less("x10", "x2"));
        assert!(natsort_less("9", "10"));
        let c = civil(1_700_000_000);
        assert_eq!(
            (c.year, c.month, c.day, c.hour, c.minute),
            (2023, 11, 14, 22, 13)
        );
        assert_eq!((c.weekday, c.yday), (2, 318));
        let c = civil(-1);
        assert_eq!((c.year, c.month, c.day, c.yday), (1969, 12, 31, 365));
    }

    #[test]
    fn go_number_formatting() {
        assert_eq!(go_fmt_g(2.0), "2");
        assert_eq!(go_fmt_g(1.5), "1.5");
        assert_eq!(go_fmt_g(1e21), "1e+21");
        assert_eq!(go_fmt_g(1e-5), "1e-05");
        assert_eq!(go_fmt_shortest(1e21), "1000000000000000000000");
        assert_eq!(go_fmt_shortest(f64::NEG_INFINITY), "-Inf");
        assert_eq!(go_fmt_f(1.0), "1.000000");
    }
}

#[cfg(test)]
mod heap_tests {
    use super::go_heap_select;

    fn ids(v: Vec<(usize, f64)>) -> Vec<usize> {
        let mut i: Vec<usize> = v.into_iter().map(|x| x.0).collect();
        i.sort();
        i
    }

    #[test]
    fn ties_follow_the_heap() {
        let items: Vec<(usize, f64)> = [1.0, 0.0, 0.0, 1.0, 0.0].into_iter().enumerate().collect();
        assert_eq!(ids(go_heap_select(&items, 3, true)), vec![0, 2, 3]);
        assert_eq!(ids(go_heap_select(&items, 2, false)), vec![1, 2]);
        let nan: Vec<(usize, f64)> = [f64::NAN, 2.0, 1.0].into_iter().enumerate().collect();
        assert_eq!(ids(go_heap_select(&nan, 2, true)), vec![1, 2]);
        assert_eq!(ids(go_heap_select(&nan, 2, false)), vec![1, 2]);
    }
}

#[cfg(test)]
mod batched_tests {
    use super::*;

    /// A xorshift64 generator: the tests' reproducible random numbers.
    fn xorshift(mut x: u64) -> impl FnMut() -> u64 {
        move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        }
    }

    /// The bits of a value, every NaN as one (the sign and payload of a NaN that comes out of
    /// an addition of two NaNs depend on which operand the compiler puts first).
    fn bits(v: f64) -> u64 {
        if v.is_nan() {
            f64::NAN.to_bits()
        } else {
            v.to_bits()
        }
    }

    /// Deferring the overflow reset of the compensation ([`neumaier_step`] then
    /// [`neumaier_final_c`]) gives `kahan_inc`'s sum and compensation bit for bit, on runs
    /// that overflow to ±Inf, come back through NaN, or stay finite.
    #[test]
    fn deferred_reset_equals_kahan_inc() {
        let mut next = xorshift(0x0bad_cafe_dead_beefu64);
        let (mut overflowed, mut finite) = (0, 0);
        for round in 0..2000 {
            let n = (next() % 60) as usize + 1;
            let (mut s1, mut c1, mut s2, mut c2) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
            for _ in 0..n {
                let v = match next() % 10 {
                    0 => f64::MAX / 1.5,
                    1 => -f64::MAX / 1.5,
                    2 if round % 3 == 0 => f64::INFINITY,
                    3 if round % 11 == 0 => f64::NEG_INFINITY,
                    4 if round % 13 == 0 => f64::NAN,
                    5 => 1e-300 * (next() % 7) as f64,
                    _ => (next() % 1_000_000) as f64 / 997.0 - 400.0,
                };
                (s1, c1) = kahan_inc(v, s1, c1);
                (s2, c2) = neumaier_step(v, s2, c2);
            }
            let c2 = neumaier_final_c(s2, c2);
            assert_eq!(s1.to_bits(), s2.to_bits(), "round {round}");
            if !s1.is_nan() {
                assert_eq!(c1.to_bits(), c2.to_bits(), "round {round}");
                assert_eq!((s1 + c1).to_bits(), (s2 + c2).to_bits(), "round {round}");
            }
            if s1.is_infinite() {
                overflowed += 1;
            } else if s1.is_finite() {
                finite += 1;
            }
        }
        assert!(overflowed > 100 && finite > 100, "{overflowed} {finite}");
    }

    /// The AVX build of the kernels gives the portable build's results bit for bit.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx_kernels_equal_portable_ones() {
        if !avx::available() {
            return;
        }
        let mut next = xorshift(0x5eed_0123_4567_89abu64);
        for round in 0..300 {
            let n = (next() % 400) as usize + 2;
            let mut ts = Vec::with_capacity(n);
            let mut vs = Vec::with_capacity(n);
            let mut t = (next() % 1_000_000) as i64;
            for _ in 0..n {
                t += 1 + (next() % 20_000) as i64;
                ts.push(t);
                vs.push(match next() % 9 {
                    0 if round % 4 == 0 => f64::MAX / 2.0,
                    1 if round % 9 == 0 => f64::INFINITY,
                    2 if round % 10 == 0 => f64::NAN,
                    _ => (next() % 10_000_000) as f64 / 977.0,
                });
            }
            let at = t + (next() % 60_000) as i64;
            // Bit for bit, except that a NaN may come out with another sign bit (which NaN
            // operand x86 propagates depends on register allocation); PromQL treats every
            // NaN alike.
            let same = |a: f64, b: f64| a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan());
            let (a, b) = linear_regression_body(&ts, &vs, at);
            let (c, d) = avx::linear_regression(&ts, &vs, at);
            assert!(same(a, c) && same(b, d), "{a} {b} {c} {d}");
            let m = n / 2;
            let start = [0, 1, n - m, (next() as usize) % (n - m + 1)];
            let (mut s1, mut c1) = ([1.5, -2.0, 0.0, 1e300], [0.0; 4]);
            let (mut s2, mut c2) = (s1, c1);
            neumaier_lanes_body(&vs, start, m, &mut s1, &mut c1);
            avx::neumaier_lanes(&vs, start, m, &mut s2, &mut c2);
            for k in 0..4 {
                assert!(same(s1[k], s2[k]) && same(c1[k], c2[k]), "lane {k}");
            }
        }
    }

    /// The two binary searches of `chunk_fits_windows` agree with checking every window.
    #[test]
    fn chunk_fits_windows_equals_checking_every_window() {
        let mut next = xorshift(0x0bad_5eed_1234_5678);
        for _ in 0..20_000 {
            let n = 1 + (next() % 12) as usize;
            let step = 1 + (next() % 50) as i64;
            let first = (next() % 100) as i64;
            let eval_t: Vec<i64> = (0..n as i64).map(|k| first + k * step).collect();
            let arg = RangeArg {
                series: Vec::new(),
                range_ms: 1 + (next() % 120) as i64,
                eval_t,
                left_open: next() % 2 == 0,
            };
            let a = (next() % 800) as i64 - 100;
            let b = a + (next() % 60) as i64;
            let m = ChunkMeta::stats(&[a, b], &[0.0, 0.0]);
            let inside = |t: i64, e: i64| {
                let s = e - arg.range_ms;
                (if arg.left_open { t > s } else { t >= s }) && t <= e
            };
            // Every window: every time in the chunk's span (its samples may be at any of
            // them) is in it, or none is.
            let want = arg.eval_t.iter().all(|&e| {
                let n_in = (a..=b).filter(|&t| inside(t, e)).count() as i64;
                n_in == 0 || n_in == b - a + 1
            });
            assert_eq!(
                chunk_fits_windows(&arg, &m),
                want,
                "ends {:?}, range {}, left open {}, chunk [{a}, {b}]",
                arg.eval_t,
                arg.range_ms,
                arg.left_open
            );
        }
    }

    /// Bug (found by session 5's lazy-read test): the sliding max/min of range queries
    /// kept the *last* of equal extremes, so a window holding 0 then -0 gave -0 where
    /// PromQL (and the same query at one instant) gives 0, the first.
    #[test]
    fn sliding_max_min_keep_the_first_of_equal_extremes() {
        let mut db = crate::MemStorage::new();
        let l = Labels::new([("__name__", "z")]);
        // 0, -0, 0, -0, ... then -1 and 1 to move the extremes away and back.
        for k in 0..40i64 {
            let v = match k {
                30 => -1.0,
                31 => 1.0,
                _ if k % 2 == 0 => 0.0,
                _ => -0.0,
            };
            db.add(l.clone(), k * 10_000, v);
        }
        let engine = crate::Engine::default();
        for q in [
            "max_over_time(z[1m])",
            "min_over_time(z[45s])",
            "max_over_time(z[35s])",
        ] {
            let range = engine.range_query(&db, q, 0, 400_000, 10_000).unwrap();
            let crate::Value::Matrix(m) = &range.value else {
                panic!("{q}: not a matrix")
            };
            for &(t, v) in &m[0].samples {
                let one = engine.instant_query(&db, q, t).unwrap();
                let crate::Value::Vector(iv) = &one.value else {
                    panic!("{q}: not a vector")
                };
                assert_eq!(
                    v.to_bits(),
                    iv[0].v.to_bits(),
                    "{q} at {t}: {v} vs {}",
                    iv[0].v
                );
            }
        }
    }

    /// batched_sums gives, bit for bit, what the one-window-at-a-time functions give, on
    /// values chosen to stress compensation and overflow (huge, tiny, NaN, ±Inf).
    #[test]
    fn batched_sums_equal_one_window_at_a_time() {
        let mut next = xorshift(0x1234_5678_9abc_def0u64);
        for round in 0..200 {
            let n = (next() % 300) as usize + 1;
            let mut ts = Vec::new();
            let mut vs = Vec::new();
            let mut t = 0i64;
            for _ in 0..n {
                t += 1 + (next() % 30_000) as i64;
                ts.push(t);
                let v = match next() % 12 {
                    0 => f64::MAX / 3.0,
                    1 => -f64::MAX / 2.0,
                    2 if round % 5 == 0 => f64::NAN,
                    3 if round % 7 == 0 => f64::INFINITY,
                    4 => 1e-300,
                    _ => (next() % 100_000) as f64 / 1000.0 - 50.0,
                };
                vs.push(v);
            }
            let s = RawSeries {
                labels: Default::default(),
                drop_name: false,
                ts: ts.clone(),
                vs: vs.clone(),
            };
            let range_ms = 1 + (next() % 600_000) as i64;
            let step = 1 + (next() % 60_000) as i64;
            let r = Range {
                start: 0,
                end: t + 60_000,
                step,
            };
            for left_open in [true, false] {
                let arg = RangeArg {
                    series: Vec::new(),
                    range_ms,
                    eval_t: (0..r.n()).map(|i| r.ts(i)).collect(),
                    left_open,
                };
                for avg in [false, true] {
                    let got = batched_sums(&arg, &s, &r, avg);
                    let mut want = Vec::new();
                    for i in 0..r.n() {
                        let (lo, hi) = arg.window(&s, i);
                        if lo < hi {
                            let w = &vs[lo..hi];
                            let v = if avg { avg_p3(w) } else { kahan_sum(w) };
                            want.push((r.ts(i), bits(v)));
                        }
                    }
                    let got: Vec<(i64, u64)> = got.iter().map(|&(t, v)| (t, bits(v))).collect();
                    assert_eq!(got, want, "round {round}, avg {avg}, left_open {left_open}");
                }
                for sqrt in [false, true] {
                    let got = batched_stdvar(&arg, &s, &r, sqrt);
                    let mut want = Vec::new();
                    for i in 0..r.n() {
                        let (lo, hi) = arg.window(&s, i);
                        if lo < hi {
                            let v = stdvar_over_time(&vs[lo..hi]);
                            want.push((r.ts(i), bits(if sqrt { v.sqrt() } else { v })));
                        }
                    }
                    let got: Vec<(i64, u64)> = got.iter().map(|&(t, v)| (t, bits(v))).collect();
                    assert_eq!(got, want, "round {round}, stdvar, left_open {left_open}");
                }
            }
        }
    }

    /// The sliding moments agree with Prometheus's window-by-window compensated sums within
    /// 1e-12 relative (or 1e-12 of the window's mean square for a variance near 0), on
    /// one-sign series shaped like metrics: noisy levels, counters (a level that drifts far
    /// from where the moments were centred), sparse spikes a million times the level that
    /// enter and leave windows, and integers; with random windows and steps.
    #[test]
    fn sliding_moments_match_window_by_window() {
        let mut next = xorshift(0x00c0_ffee_1234_5678u64);
        let (mut slid, mut windows, mut identical) = (0, 0usize, 0usize);
        let mut worst = 0.0f64;
        for round in 0..300 {
            let n = 200 + (next() % 3000) as usize;
            let mut ts = Vec::with_capacity(n);
            let mut vs = Vec::with_capacity(n);
            let mut t = 0i64;
            let mut level = (next() % 1000) as f64 / 7.0 + 0.5;
            for _ in 0..n {
                t += 10_000 + (next() % 10_000) as i64;
                ts.push(t);
                let noise = (next() % 1_000_000) as f64 / 1e6;
                let v = match round % 4 {
                    0 => level * (1.0 + 0.06 * noise),
                    1 => {
                        level += noise * 50.0;
                        level
                    }
                    2 if next() % 200 == 0 => level * 1e6,
                    3 => (next() % 5) as f64,
                    _ => level * (0.9 + 0.2 * noise),
                };
                vs.push(if round % 9 == 8 { -v } else { v });
            }
            let s = RawSeries {
                labels: Default::default(),
                drop_name: false,
                ts: ts.clone(),
                vs: vs.clone(),
            };
            let range_ms = 2_000_000 + (next() % 20_000_000) as i64;
            let step = 15_000 + (next() % (range_ms as u64 / 6)) as i64;
            let r = Range {
                start: ts[0],
                end: t,
                step,
            };
            let arg = RangeArg {
                series: Vec::new(),
                range_ms,
                eval_t: (0..r.n()).map(|i| r.ts(i)).collect(),
                left_open: round % 2 == 0,
            };
            for kind in [Moment::Sum, Moment::Mean, Moment::Var, Moment::Sd] {
                let Some(got) = sliding_moments(&arg, &s, &r, kind) else {
                    continue;
                };
                slid += 1;
                let mut k = 0;
                for i in 0..r.n() {
                    let (lo, hi) = arg.window(&s, i);
                    if lo >= hi {
                        continue;
                    }
                    let w = &vs[lo..hi];
                    let want = match kind {
                        Moment::Sum => kahan_sum(w),
                        Moment::Mean => avg_p3(w),
                        Moment::Var => stdvar_over_time(w),
                        Moment::Sd => stdvar_over_time(w).sqrt(),
                    };
                    let (gt, g) = got[k];
                    k += 1;
                    assert_eq!(gt, r.ts(i));
                    let scale = match kind {
                        Moment::Var => w.iter().map(|v| v * v).sum::<f64>() / w.len() as f64,
                        Moment::Sd => {
                            (w.iter().map(|v| v * v).sum::<f64>() / w.len() as f64).sqrt()
                        }
                        _ => want.abs(),
                    };
                    assert!(
                        (g - want).abs() <= 1e-12 * scale.max(want.abs()),
                        "round {round}, step {i}: {g} vs {want}"
                    );
                    windows += 1;
                    identical += usize::from(g.to_bits() == want.to_bits());
                    worst =
                        worst.max((g - want).abs() / scale.max(want.abs()).max(f64::MIN_POSITIVE));
                }
                assert_eq!(k, got.len());
            }
        }
        // The cases must exercise the sliding path, not fall back to recomputing.
        assert!(slid > 500, "{slid}");
        eprintln!(
            "sliding moments: {identical} of {windows} windows bit-identical, worst relative difference {worst:e}"
        );
    }
}
