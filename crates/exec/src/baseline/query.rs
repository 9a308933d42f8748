//! Evaluation of the baseline functions and of seasonal range arguments inside the engine.

use std::cell::Cell;
use std::collections::HashMap;

use tsq_parser::{AggregateExpr, Call, DurationExpr, DurationOp, Expr, Seasons};
use tsq_storage::{Labels, METRIC_NAME};

use super::moments::Moments;
use super::order::{naive_quantile, OrderStats, MAD_SCALE};
use super::stats::{zscore_value, Method, Needs, Out, Part, Stat};
use super::tz::{LocalFields, Zone};
use super::windows::{slide, unit_ranges, SeasonSpec, StepBounds, WindowAcc};
use crate::eval::{err, unparen, Evaluator, OutBuilder, Range, RawSeries, SeriesV, Val};
use crate::funcs::grouping_labels;
use crate::funcs::{go_fmt_g, range_impl, RangeImpl, Win};
use crate::{Error, Result};

thread_local! {
    static NAIVE: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with the baseline functions recomputing every window from scratch (sorting and
/// summing each window) instead of sliding their incremental structures. The answers are the
/// same; this exists for benchmarks and as a test oracle.
pub fn with_naive_windows<T>(f: impl FnOnce() -> T) -> T {
    let before = NAIVE.with(|n| n.replace(true));
    let out = f();
    NAIVE.with(|n| n.set(before));
    out
}

fn naive() -> bool {
    NAIVE.with(|n| n.get())
}

/// The functions this module evaluates (beyond those of the main table).
pub(crate) const FUNCTIONS: &[&str] = &[
    "median_over_time",
    "iqr_over_time",
    "band_over_time",
    "zscore",
    "zscore_over_time",
    "local_offset",
];

const CALENDAR: &[&str] = &[
    "minute",
    "hour",
    "day_of_week",
    "day_of_month",
    "day_of_year",
    "days_in_month",
    "month",
    "year",
];

// ------------------------------------------------------------------ range inputs

/// A range argument, loaded once, with its per-step window bounds.
pub(crate) struct RangeInput {
    pub series: Vec<RawSeries>,
    pub sb: StepBounds,
    /// The window length `r` written in the query.
    pub range_ms: i64,
    /// Evaluation time of each step, after `@` and offset.
    pub eval_t: Vec<i64>,
    /// Whether outputs are per season (label `season`).
    pub by_season: bool,
}

pub(crate) fn has_seasons(e: &Expr) -> bool {
    match unparen(e) {
        Expr::MatrixSelector(m) => m.seasons.is_some(),
        Expr::Subquery(s) => s.seasons.is_some(),
        _ => false,
    }
}

fn is_range(e: &Expr) -> bool {
    matches!(unparen(e), Expr::MatrixSelector(_) | Expr::Subquery(_))
}

fn season_spec(ev: &Evaluator, s: &Seasons) -> Result<SeasonSpec> {
    let period_ms = ev.duration_ms(&s.period)?;
    if period_ms <= 0 {
        return err("seasons: the period must be positive");
    }
    if s.count == 0 {
        return err("seasons: the number of seasons must be positive");
    }
    let zone = match &s.tz {
        Some(name) => {
            if period_ms % 86_400_000 != 0 {
                return err("seasons with a time zone need a period of whole days");
            }
            Some(Zone::get(name).map_err(Error::Eval)?)
        }
        None => None,
    };
    Ok(SeasonSpec {
        period_ms,
        n: s.count,
        centered: s.centered,
        by_season: s.by_season,
        zone,
    })
}

/// Loads a range argument. A seasonal one is loaded as one wider window covering every
/// season (shifted forward when centred seasons reach past the evaluation time), then cut
/// into the seasons' windows per step.
pub(crate) fn range_input(ev: &mut Evaluator, e: &Expr, r: &Range) -> Result<RangeInput> {
    let e = unparen(e);
    let (seasons, range_expr) = match e {
        Expr::MatrixSelector(ms) => (ms.seasons.as_ref(), &ms.range),
        Expr::Subquery(sq) => (sq.seasons.as_ref(), &sq.range),
        _ => return err("expected a range vector"),
    };
    let Some(sa) = seasons else {
        let arg = ev.eval_range_arg(e, r)?;
        let sb = StepBounds::plain(&arg.eval_t, arg.range_ms, arg.left_open);
        return Ok(RangeInput {
            series: arg.series,
            sb,
            range_ms: arg.range_ms,
            eval_t: arg.eval_t,
            by_season: false,
        });
    };
    if matches!(e, Expr::MatrixSelector(ms) if ms.modifier.is_some()) {
        return Err(crate::Error::Unsupported(
            "seasons() after the anchored or smoothed modifier is not implemented yet".into(),
        ));
    }
    let spec = season_spec(ev, sa)?;
    let range_ms = ev.duration_ms(range_expr)?;
    if range_ms <= 0 {
        return err("seasons: the range must be positive");
    }
    let (back, fwd) = spec.reach(range_ms);
    let total = DurationExpr::Literal(back + fwd);
    let shift = |off: &Option<DurationExpr>| -> Option<DurationExpr> {
        if fwd == 0 {
            return off.clone();
        }
        Some(DurationExpr::Binary(
            DurationOp::Sub,
            Box::new(off.clone().unwrap_or(DurationExpr::Literal(0))),
            Box::new(DurationExpr::Literal(fwd)),
        ))
    };
    let wide = match e {
        Expr::MatrixSelector(ms) => {
            let mut m = ms.clone();
            m.seasons = None;
            m.range = total;
            m.selector.offset = shift(&m.selector.offset);
            Expr::MatrixSelector(m)
        }
        Expr::Subquery(sq) => {
            let mut s = sq.clone();
            s.seasons = None;
            s.range = total;
            s.offset = shift(&s.offset);
            Expr::Subquery(s)
        }
        _ => return err("expected a range vector"),
    };
    let arg = ev.eval_range_arg(&wide, r)?;
    let eval_t: Vec<i64> = arg.eval_t.iter().map(|t| t - fwd).collect();
    let sb = StepBounds::seasons(&eval_t, range_ms, &spec, arg.left_open);
    Ok(RangeInput {
        series: arg.series,
        sb,
        range_ms,
        eval_t,
        by_season: spec.by_season,
    })
}

/// The value of a seasonal range at the root of an instant query: the raw samples of each
/// series' seasons (pooled into one series, or one series per season with label `season`).
/// `None` when `e` has no seasons.
pub(crate) fn seasonal_matrix(
    ev: &mut Evaluator,
    e: &Expr,
    r: &Range,
) -> Result<Option<Vec<RawSeries>>> {
    if !has_seasons(e) {
        return Ok(None);
    }
    let input = range_input(ev, e, r)?;
    let mut out = Vec::new();
    let mut ranges = Vec::new();
    for s in &input.series {
        for slots in input.sb.units() {
            let mut hints = vec![(0usize, 0usize); slots.len()];
            ranges.clear();
            unit_ranges(&input.sb, &slots, &s.ts, 0, &mut hints, &mut ranges);
            if ranges.is_empty() {
                continue;
            }
            let mut labels = s.labels.clone();
            if let Some(k) = unit_season(&input, &slots) {
                labels.set("season", &k.to_string());
            }
            let (ts, vs) = ranges
                .iter()
                .flat_map(|&(a, b)| s.ts[a..b].iter().copied().zip(s.vs[a..b].iter().copied()))
                .unzip();
            out.push(RawSeries {
                labels,
                drop_name: s.drop_name,
                ts,
                vs,
            });
        }
    }
    Ok(Some(out))
}

// ------------------------------------------------------------------ the sliding driver

/// The accumulators a statistic needs (the others stay empty).
#[derive(Default)]
struct Accs {
    order: OrderStats,
    mom: Moments,
    use_order: bool,
    use_mom: bool,
}

impl Accs {
    fn new(n: Needs) -> Accs {
        Accs {
            use_order: n.order,
            use_mom: n.moments,
            ..Default::default()
        }
    }
}

impl WindowAcc for Accs {
    fn add(&mut self, v: f64) {
        if self.use_order {
            self.order.add(v);
        }
        if self.use_mom {
            self.mom.add(v);
        }
    }
    fn remove(&mut self, v: f64) {
        if self.use_order {
            self.order.remove(v);
        }
        if self.use_mom {
            self.mom.remove(v);
        }
    }
    fn rebuild(&mut self, values: &[f64]) {
        if self.use_order {
            self.order.rebuild(values);
        }
        if self.use_mom {
            self.mom.rebuild(values);
        }
    }
    fn settle(&mut self, gather: &mut dyn FnMut() -> Vec<f64>) {
        if self.use_order {
            self.order.prepare();
        }
        if self.use_mom {
            WindowAcc::settle(&mut self.mom, gather);
        }
    }
}

/// The results of one output unit (a series, or a series and season).
pub(crate) struct UnitOut<T> {
    pub series: usize,
    /// 1-based season for `"by_season"` inputs.
    pub season: Option<u32>,
    pub pts: Vec<(usize, T)>,
}

fn unit_season(input: &RangeInput, slots: &[usize]) -> Option<u32> {
    input.by_season.then(|| slots[0] as u32 + 1)
}

/// Evaluates `stat_at(step)` over every window of every unit of every series.
fn run_stat(input: &RangeInput, stat_at: &dyn Fn(usize) -> Stat) -> Vec<UnitOut<Out>> {
    let naive = naive();
    let steps = input.sb.steps();
    if !naive && steps > 0 && matches!(stat_at(0), Stat::Avg | Stat::Sum) {
        return run_prefix(input, stat_at(0) == Stat::Avg);
    }
    let needs = if naive || steps == 0 {
        Needs {
            order: false,
            moments: false,
        }
    } else {
        stat_at(0).needs()
    };
    let units = input.sb.units();
    let work = |(si, s): (usize, &RawSeries)| -> Vec<UnitOut<Out>> {
        let mut res = Vec::with_capacity(units.len());
        for slots in &units {
            let mut acc = Accs::new(needs);
            let mut hints = vec![(0usize, 0usize); slots.len()];
            let mut pts = Vec::new();
            slide(
                &s.vs,
                steps,
                &mut acc,
                |step, out| unit_ranges(&input.sb, slots, &s.ts, step, &mut hints, out),
                |w, acc| {
                    let stat = stat_at(w.step);
                    let last = match stat {
                        Stat::ZscoreOverTime { .. } => w.last_value(),
                        _ => None,
                    };
                    let o = if naive {
                        stat.eval_naive(&w.values(), last)
                    } else {
                        stat.eval_inc(&acc.order, &acc.mom, last)
                    };
                    if o != Out::None {
                        pts.push((w.step, o));
                    }
                },
            );
            res.push(UnitOut {
                series: si,
                season: unit_season(input, slots),
                pts,
            });
        }
        res
    };
    input.series.iter().enumerate().flat_map(work).collect()
}

/// Sums and means from prefix sums: O(1) per window whatever the window's length and the
/// step, which matters for seasonal windows (n windows per step, each moving by a step that
/// may be a large part of its length). The prefix sums are taken about the series' first
/// value: a window's sum is exact to about eps * (series length / window length) relative.
/// Only used on finite data (the caller recomputes windows with NaN or Inf).
fn run_prefix(input: &RangeInput, mean: bool) -> Vec<UnitOut<Out>> {
    let steps = input.sb.steps();
    let units = input.sb.units();
    let mut res = Vec::new();
    let mut ranges = Vec::new();
    for (si, s) in input.series.iter().enumerate() {
        let shift = s.vs.first().copied().unwrap_or(0.0);
        // ps[i] = sum of (v - shift) over samples < i.
        let mut ps = vec![0.0f64; s.vs.len() + 1];
        let mut sum = 0.0f64;
        for (p, &v) in ps[1..].iter_mut().zip(&s.vs) {
            sum += v - shift;
            *p = sum;
        }
        for slots in &units {
            let mut hints = vec![(0usize, 0usize); slots.len()];
            let mut pts = Vec::with_capacity(steps);
            for step in 0..steps {
                ranges.clear();
                unit_ranges(&input.sb, slots, &s.ts, step, &mut hints, &mut ranges);
                if ranges.is_empty() {
                    continue;
                }
                let (mut d, mut n) = (0.0, 0usize);
                for &(a, b) in &ranges {
                    d += ps[b] - ps[a];
                    n += b - a;
                }
                let v = if mean {
                    shift + d / n as f64
                } else {
                    shift * n as f64 + d
                };
                pts.push((step, Out::One(v)));
            }
            res.push(UnitOut {
                series: si,
                season: unit_season(input, slots),
                pts,
            });
        }
    }
    res
}

/// Evaluates a main-table range function over the (seasonal) windows, recomputing each
/// window: for functions that are not order-insensitive statistics (`rate`, `deriv`, ...)
/// and for non-finite data, where the incremental sums would differ from PromQL's.
fn run_generic(
    ev: &Evaluator,
    input: &RangeInput,
    r: &Range,
    f: RangeImpl,
    params: &[Vec<f64>],
    only: Option<&[bool]>,
) -> Result<Vec<UnitOut<Out>>> {
    let steps = input.sb.steps();
    let units = input.sb.units();
    let mut res = Vec::new();
    let mut p = vec![0.0; params.len()];
    for (si, s) in input.series.iter().enumerate() {
        if only.is_some_and(|o| !o[si]) {
            continue;
        }
        for slots in &units {
            let mut hints = vec![(0usize, 0usize); slots.len()];
            let mut pts = Vec::new();
            let mut ranges = Vec::new();
            for step in 0..steps {
                ranges.clear();
                unit_ranges(&input.sb, slots, &s.ts, step, &mut hints, &mut ranges);
                if ranges.is_empty() {
                    continue;
                }
                let (ts, vs): (Vec<i64>, Vec<f64>) = ranges
                    .iter()
                    .flat_map(|&(a, b)| s.ts[a..b].iter().copied().zip(s.vs[a..b].iter().copied()))
                    .unzip();
                let end = slots
                    .iter()
                    .map(|&k| input.sb.bounds[k][step].1)
                    .max()
                    .unwrap_or(input.eval_t[step]);
                for (k, pv) in params.iter().enumerate() {
                    p[k] = pv[step];
                }
                let w = Win {
                    ts: &ts,
                    vs: &vs,
                    t: end,
                    step_t: r.ts(step) - (input.eval_t[step] - end),
                    range_ms: input.range_ms,
                    p: &p,
                    p3: ev.p3,
                };
                if let Some(v) = f(&w)? {
                    pts.push((step, Out::One(v)));
                }
            }
            res.push(UnitOut {
                series: si,
                season: unit_season(input, slots),
                pts,
            });
        }
    }
    Ok(res)
}

/// Turns unit results into output series: `season` label for seasonal units, `band` label
/// for bands (or only `part`), `__name__` dropped unless `keep_name`. Returns whether some
/// window was too short.
fn emit(
    ev: &Evaluator,
    input: &RangeInput,
    r: &Range,
    units: Vec<UnitOut<Out>>,
    keep_name: bool,
    part: Option<Part>,
) -> (Vec<SeriesV>, bool) {
    let mut out = Vec::new();
    let mut short = false;
    for u in units {
        let s = &input.series[u.series];
        let mut labels = s.labels.clone();
        if let Some(k) = u.season {
            labels.set("season", &k.to_string());
        }
        let is_band = u.pts.iter().any(|p| matches!(p.1, Out::Band(_)));
        short |= u.pts.iter().any(|p| p.1 == Out::Short);
        let parts: Vec<Option<Part>> = if is_band {
            match part {
                Some(p) => vec![Some(p)],
                None => Part::ALL.iter().map(|&p| Some(p)).collect(),
            }
        } else {
            vec![None]
        };
        for p in parts {
            let pts: Vec<(i64, f64)> = u
                .pts
                .iter()
                .filter_map(|&(step, o)| {
                    let v = match (o, p) {
                        (Out::One(v), _) => v,
                        (Out::Band(b), Some(p)) => b[p as usize],
                        _ => return None,
                    };
                    Some((r.ts(step), v))
                })
                .collect();
            if pts.is_empty() {
                continue;
            }
            let mut l = labels.clone();
            if let (Some(p), None) = (p, part) {
                l.set("band", p.as_str());
            }
            let mut sv = SeriesV {
                labels: l,
                drop_name: s.drop_name,
                pts,
            };
            if !keep_name {
                ev.drop_name(&mut sv);
            }
            out.push(sv);
        }
    }
    (out, short)
}

// ------------------------------------------------------------------ dispatch

/// Evaluates `c` if it is a baseline function, a calendar function with a time zone, or a
/// range function over a seasonal range; `None` leaves it to the main table.
pub(crate) fn call(ev: &mut Evaluator, c: &Call, r: &Range) -> Result<Option<Val>> {
    let name = c.func.as_str();
    let v = match name {
        "median_over_time" => robust(ev, c, r, |_| Stat::Median, "median_over_time")?,
        "iqr_over_time" => robust(ev, c, r, |_| Stat::Iqr, "iqr_over_time")?,
        "mad_over_time" => {
            if c.args.len() >= 2 {
                let scaled = ev.eval_scalar(arg(c, 1)?, r)?;
                robust(
                    ev,
                    c,
                    r,
                    move |i| Stat::Mad {
                        scaled: scaled[i] != 0.0 && !scaled[i].is_nan(),
                    },
                    "mad_over_time",
                )?
            } else {
                robust(ev, c, r, |_| Stat::MadProm, "mad_over_time")?
            }
        }
        "quantile_over_time" => quantile_over_time(ev, c, r)?,
        "band_over_time" => band_over_time(ev, c, r)?,
        "zscore_over_time" => {
            let method = match c.args.get(1) {
                Some(a) => Method::parse(name, &ev.eval_string(a, r)?, false).map_err(err_msg)?,
                None => Method::Stddev,
            };
            let input = range_input(ev, arg(c, 0)?, r)?;
            let units = run_stat(&input, &|_| Stat::ZscoreOverTime { method });
            let (out, short) = emit(ev, &input, r, units, false, None);
            if short {
                ev.info(format!(
                    "PromQL info: zscore_over_time: method {:?} needs at least {} non-NaN samples in a window; windows with fewer give no output",
                    method.as_str(),
                    method.min_samples()
                ));
            }
            Val::Vector(out)
        }
        "zscore" => zscore(ev, c, r)?,
        "local_offset" => {
            let zone = zone_arg(ev, arg(c, 0)?, r)?;
            let pts = (0..r.n())
                .filter_map(|i| zone.offset_seconds(r.ts(i)).map(|o| (r.ts(i), o as f64)))
                .collect();
            Val::Vector(vec![SeriesV {
                labels: Labels::default(),
                drop_name: false,
                pts,
            }])
        }
        _ if CALENDAR.contains(&name) && c.args.len() == 2 => calendar(ev, c, r, name)?,
        _ => {
            if let Some(i) = c.args.iter().position(has_seasons) {
                seasonal(ev, c, r, i)?
            } else {
                return Ok(None);
            }
        }
    };
    Ok(Some(v))
}

use crate::funcs::arg_at as arg;

fn err_msg(e: String) -> Error {
    Error::Eval(e)
}

/// median/MAD/IQR: one value per window, NaN excluded (except one-argument
/// `mad_over_time`, which is PromQL's).
fn robust(
    ev: &mut Evaluator,
    c: &Call,
    r: &Range,
    stat: impl Fn(usize) -> Stat,
    name: &str,
) -> Result<Val> {
    let input = range_input(ev, arg(c, 0)?, r)?;
    let units = run_stat(&input, &stat);
    let (out, short) = emit(ev, &input, r, units, false, None);
    if short {
        ev.info(format!(
            "PromQL info: {name}: windows whose samples are all NaN give no output"
        ));
    }
    Ok(Val::Vector(out))
}

fn quantile_over_time(ev: &mut Evaluator, c: &Call, r: &Range) -> Result<Val> {
    let q = ev.eval_scalar(arg(c, 0)?, r)?;
    let input = range_input(ev, arg(c, 1)?, r)?;
    let qs = q.clone();
    let units = run_stat(&input, &move |i| Stat::Quantile(qs[i]));
    if let Some(&bad) = q.iter().find(|q| q.is_nan() || **q < 0.0 || **q > 1.0) {
        if units.iter().any(|u| !u.pts.is_empty()) {
            ev.warn(format!(
                "PromQL warning: quantile value should be between 0 and 1, got {}",
                go_fmt_g(bad)
            ));
        }
    }
    Ok(Val::Vector(emit(ev, &input, r, units, false, None).0))
}

fn band_over_time(ev: &mut Evaluator, c: &Call, r: &Range) -> Result<Val> {
    let k = ev.eval_scalar(arg(c, 1)?, r)?;
    let method = match c.args.get(2) {
        Some(a) => {
            Method::parse("band_over_time", &ev.eval_string(a, r)?, true).map_err(err_msg)?
        }
        None => Method::Stddev,
    };
    let part = match c.args.get(3) {
        Some(a) => Some(Part::parse(&ev.eval_string(a, r)?).map_err(err_msg)?),
        None => None,
    };
    let input = range_input(ev, arg(c, 0)?, r)?;
    let units = run_stat(&input, &|i| Stat::Band { k: k[i], method });
    let (out, short) = emit(ev, &input, r, units, false, part);
    if short {
        ev.info(format!(
            "PromQL info: band_over_time: method {:?} needs at least {} non-NaN samples in a window; windows with fewer give no output",
            method.as_str(),
            method.min_samples()
        ));
    }
    Ok(Val::Vector(out))
}

/// True when no value is NaN or infinite (branch-free over blocks, so that it vectorises).
fn all_finite(vs: &[f64]) -> bool {
    vs.chunks(64)
        .all(|c| c.iter().fold(true, |a, v| a & v.is_finite()))
}

/// A main-table range function (`avg_over_time`, `rate`, ...) over a seasonal range.
fn seasonal(ev: &mut Evaluator, c: &Call, r: &Range, range_idx: usize) -> Result<Val> {
    let name = c.func.as_str();
    let Some((f, arg_idx, keep_name)) = range_impl(name) else {
        return Err(Error::Unsupported(format!(
            "{name}: seasonal ranges are not supported by this function"
        )));
    };
    if arg_idx != range_idx {
        return err(format!("{name}: unexpected seasonal argument"));
    }
    let mut params = Vec::new();
    for (j, a) in c.args.iter().enumerate() {
        if j != arg_idx {
            params.push(ev.eval_scalar(a, r)?);
        }
    }
    let input = range_input(ev, arg(c, arg_idx)?, r)?;
    // Order-insensitive statistics slide incrementally; sums on non-finite data keep
    // PromQL's exact NaN/Inf arithmetic by recomputing.
    let inc = match name {
        "avg_over_time" => Some((Stat::Avg, true)),
        "sum_over_time" => Some((Stat::Sum, true)),
        "stddev_over_time" => Some((Stat::Stddev, true)),
        "stdvar_over_time" => Some((Stat::Stdvar, true)),
        "count_over_time" => Some((Stat::Count, false)),
        "present_over_time" => Some((Stat::Present, false)),
        "min_over_time" => Some((Stat::Min, false)),
        "max_over_time" => Some((Stat::Max, false)),
        _ => None,
    };
    let units = match inc {
        Some((stat, finite_only)) => {
            let finite: Vec<bool> = input
                .series
                .iter()
                .map(|s| !finite_only || all_finite(&s.vs))
                .collect();
            let mut units: Vec<UnitOut<Out>> = run_stat(&input, &|_| stat)
                .into_iter()
                .filter(|u| finite[u.series])
                .collect();
            if finite.iter().any(|f| !f) {
                let rest: Vec<bool> = finite.iter().map(|f| !f).collect();
                units.extend(run_generic(ev, &input, r, f, &params, Some(&rest))?);
                units.sort_by_key(|u| (u.series, u.season));
            }
            units
        }
        None => run_generic(ev, &input, r, f, &params, None)?,
    };
    let mut seen = vec![false; input.series.len()];
    for u in units.iter().filter(|u| !u.pts.is_empty()) {
        if !std::mem::replace(&mut seen[u.series], true) {
            crate::funcs::counter_name_info(ev, name, &input.series[u.series].labels);
        }
    }
    Ok(Val::Vector(emit(ev, &input, r, units, keep_name, None).0))
}

// ------------------------------------------------------------------ zscore

fn match_key(l: &Labels, matching: &Option<(bool, Vec<String>)>) -> Labels {
    match matching {
        Some((true, names)) => Labels::from_sorted(
            l.iter()
                .filter(|p| names.contains(&p.name))
                .cloned()
                .collect(),
        ),
        Some((false, names)) => Labels::from_sorted(
            l.iter()
                .filter(|p| p.name != METRIC_NAME && !names.contains(&p.name))
                .cloned()
                .collect(),
        ),
        None => l.without_metric_name(),
    }
}

/// Per step: match key -> value, from one statistic's output; duplicate keys are an error.
fn per_step(
    input: &RangeInput,
    units: &[UnitOut<Out>],
    matching: &Option<(bool, Vec<String>)>,
    steps: usize,
    side: &str,
) -> Result<Vec<HashMap<Labels, f64>>> {
    let mut maps: Vec<HashMap<Labels, f64>> = vec![HashMap::new(); steps];
    for u in units {
        let mut l = input.series[u.series].labels.clone();
        if let Some(k) = u.season {
            l.set("season", &k.to_string());
        }
        let key = match_key(&l, matching);
        for &(step, o) in &u.pts {
            if let Out::One(v) = o {
                if maps[step].insert(key.clone(), v).is_some() {
                    return err(format!(
                        "zscore: found duplicate series for the match group {} on the {side} side; many-to-many matching not allowed: matching labels must be unique on one side",
                        crate::eval::go_labels(&key)
                    ));
                }
            }
        }
    }
    Ok(maps)
}

/// `zscore(v, ref[d] [, spread_ref[d2]] [, method [, floor]])`.
fn zscore(ev: &mut Evaluator, c: &Call, r: &Range) -> Result<Val> {
    let v = ev.eval_vector(arg(c, 0)?, r)?;
    let ref_in = range_input(ev, arg(c, 1)?, r)?;
    let mut spread_in = None;
    let mut method = Method::Stddev;
    let mut floor = vec![0.0; r.n()];
    let mut rest = c.args.iter().skip(2).peekable();
    if rest.peek().is_some_and(|a| is_range(a)) {
        if let Some(a) = rest.next() {
            spread_in = Some(range_input(ev, a, r)?);
        }
    }
    if let Some(a) = rest.next() {
        method = Method::parse("zscore", &ev.eval_string(a, r)?, false).map_err(err_msg)?;
    }
    if let Some(a) = rest.next() {
        floor = ev.eval_scalar(a, r)?;
    }
    let n = r.n();
    let min_centre = if spread_in.is_some() {
        1
    } else {
        method.min_samples()
    };
    let centre_units = run_stat(&ref_in, &|_| Stat::Centre {
        method,
        min: min_centre,
    });
    let (spread_units, spread_src) = match &spread_in {
        Some(si) => (run_stat(si, &|_| Stat::Spread { method }), si),
        None => (run_stat(&ref_in, &|_| Stat::Spread { method }), &ref_in),
    };
    let short = centre_units
        .iter()
        .chain(&spread_units)
        .any(|u| u.pts.iter().any(|p| p.1 == Out::Short));
    if short {
        ev.info(format!(
            "PromQL info: zscore: method {:?} needs at least {} non-NaN samples in the spread window (and 1 in the centre window); steps with fewer give no output",
            method.as_str(),
            method.min_samples()
        ));
    }
    let centres = per_step(&ref_in, &centre_units, &c.matching, n, "reference")?;
    let spreads = per_step(
        spread_src,
        &spread_units,
        &c.matching,
        n,
        "spread reference",
    )?;
    let mut out = OutBuilder::default();
    let mut seen: Vec<std::collections::HashSet<Labels>> = vec![Default::default(); n];
    for s in &v {
        let key = match_key(&s.labels, &c.matching);
        let mut labels = match &c.matching {
            Some((true, _)) => key.clone(),
            Some((false, names)) => {
                let mut l = s.labels.clone();
                for nm in names {
                    l.remove(nm);
                }
                l
            }
            None => s.labels.clone(),
        };
        let mut dn = s.drop_name;
        if ev.p3 {
            dn = true;
        } else {
            labels.remove(METRIC_NAME);
        }
        for &(t, x) in &s.pts {
            let i = r.idx(t);
            let (Some(&cv), Some(&sv)) = (centres[i].get(&key), spreads[i].get(&key)) else {
                continue;
            };
            if !seen[i].insert(key.clone()) {
                return err("zscore: multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)");
            }
            let spread = if sv.is_nan() { sv } else { sv.max(floor[i]) };
            out.push(labels.clone(), dn, t, zscore_value(x, cv, spread))?;
        }
    }
    Ok(Val::Vector(out.series))
}

// ------------------------------------------------------------------ outliers_mad

/// `outliers_mad(tolerance, v) by|without (...)`: per step and group of at least 3 members,
/// the members whose |v - median| exceeds tolerance * 1.4826 * MAD of the group.
pub(crate) fn outliers_mad(ev: &mut Evaluator, a: &AggregateExpr, r: &Range) -> Result<Val> {
    let p = a
        .param
        .as_ref()
        .ok_or_else(|| Error::Eval("outliers_mad: tolerance missing".into()))?;
    let tol = ev.eval_scalar(p, r)?;
    let input = ev.eval_vector(&a.expr, r)?;
    let (without, names): (bool, Vec<String>) = match &a.grouping {
        Some(g) => (g.without, g.labels.clone()),
        None => (false, Vec::new()),
    };
    let mut gidx: HashMap<Labels, usize> = HashMap::new();
    let mut group = Vec::with_capacity(input.len());
    for s in &input {
        let gl = grouping_labels(&s.labels, without, &names);
        let n = gidx.len();
        group.push(*gidx.entry(gl).or_insert(n));
    }
    let n = r.n();
    let mut by_step: Vec<Vec<(usize, f64)>> = vec![Vec::new(); n];
    for (i, s) in input.iter().enumerate() {
        for &(t, v) in &s.pts {
            if !v.is_nan() {
                by_step[r.idx(t)].push((i, v));
            }
        }
    }
    let mut members: Vec<Vec<(usize, f64)>> = vec![Vec::new(); gidx.len()];
    let mut out = OutBuilder::default();
    let mut short = false;
    for (step, items) in by_step.iter().enumerate() {
        for m in &mut members {
            m.clear();
        }
        for &(i, v) in items {
            members[group[i]].push((i, v));
        }
        let t = r.ts(step);
        for m in &members {
            if m.is_empty() {
                continue;
            }
            if m.len() < 3 {
                short = true;
                continue;
            }
            let mut vals: Vec<f64> = m.iter().map(|x| x.1).collect();
            let med = naive_quantile(0.5, &mut vals);
            let mut dev: Vec<f64> = m.iter().map(|x| (x.1 - med).abs()).collect();
            let mad = naive_quantile(0.5, &mut dev);
            let thr = tol[step] * MAD_SCALE * mad;
            for &(i, v) in m {
                if (v - med).abs() > thr {
                    let s = &input[i];
                    out.push(s.labels.clone(), s.drop_name, t, v)?;
                }
            }
        }
    }
    if short {
        ev.info(
            "PromQL info: outliers_mad: groups with fewer than 3 series at a step give no output"
                .into(),
        );
    }
    Ok(Val::Vector(out.series))
}

// ------------------------------------------------------------------ time zones

fn zone_arg(ev: &mut Evaluator, e: &Expr, r: &Range) -> Result<Zone> {
    let name = ev.eval_string(e, r)?;
    Zone::get(&name).map_err(Error::Eval)
}

fn calendar(ev: &mut Evaluator, c: &Call, r: &Range, name: &str) -> Result<Val> {
    let zone = zone_arg(ev, arg(c, 1)?, r)?;
    let field: fn(&LocalFields) -> f64 = match name {
        "minute" => |f| f.minute as f64,
        "hour" => |f| f.hour as f64,
        "day_of_week" => |f| f.weekday as f64,
        "day_of_month" => |f| f.day as f64,
        "day_of_year" => |f| f.yday as f64,
        "days_in_month" => |f| f.days_in_month as f64,
        "month" => |f| f.month as f64,
        _ => |f| f.year as f64,
    };
    let v = ev.eval_vector(arg(c, 0)?, r)?;
    let mut out = Vec::with_capacity(v.len());
    for mut s in v {
        for p in &mut s.pts {
            p.1 = if p.1.is_finite() {
                zone.fields((p.1 as i64).saturating_mul(1000))
                    .map_or(f64::NAN, |f| field(&f))
            } else {
                f64::NAN
            };
        }
        ev.drop_name(&mut s);
        out.push(s);
    }
    Ok(Val::Vector(out))
}

#[cfg(test)]
mod tests {
    use crate::{Engine, MemStorage, QueryResult, Value};
    use proptest::prelude::*;
    use tsq_storage::Labels;

    fn db() -> MemStorage {
        let mut db = MemStorage::new();
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        for inst in ["a", "b", "c"] {
            let l = Labels::new([("__name__", "lat"), ("instance", inst)]);
            for i in 0..3000i64 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let v = match x % 23 {
                    0 => f64::NAN,
                    1 => 5.0,
                    _ => (x % 1000) as f64 / 100.0 + (i % 96) as f64,
                };
                db.add(l.clone(), i * 15_000, v);
            }
        }
        db
    }

    fn close(a: &QueryResult, b: &QueryResult) {
        let (Value::Matrix(a), Value::Matrix(b)) = (&a.value, &b.value) else {
            panic!("matrix expected");
        };
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert_eq!(x.labels, y.labels);
            assert_eq!(x.samples.len(), y.samples.len(), "{}", x.labels);
            for (p, q) in x.samples.iter().zip(&y.samples) {
                assert_eq!(p.0, q.0);
                let ok = (p.1.is_nan() && q.1.is_nan())
                    || p.1 == q.1
                    || (p.1 - q.1).abs() <= 1e-9 * p.1.abs().max(q.1.abs()).max(1.0);
                assert!(ok, "{} at {}: {} vs {}", x.labels, p.0, p.1, q.1);
            }
        }
    }

    /// Every baseline query gives the same answer sliding incrementally as recomputing each
    /// window, on data with NaN, repeated values and gaps.
    #[test]
    fn incremental_equals_naive_recompute() {
        let db = db();
        let e = Engine::default();
        for q in [
            "median_over_time(lat[1h])",
            "mad_over_time(lat[30m])",
            "mad_over_time(lat[30m], 1)",
            "iqr_over_time(lat[2h])",
            "quantile_over_time(0.9, lat[1h])",
            "band_over_time(lat[1h], 3)",
            "band_over_time(lat[1h], 3, \"mad\")",
            "band_over_time(lat[1h], 1.5, \"iqr\", \"upper\")",
            "zscore_over_time(lat[1h], \"mad\")",
            "zscore(lat, lat[1h] seasons(2h, 3), lat[6h], \"mad\", 0.01)",
            "avg_over_time(lat[20m] seasons(2h, 3, \"by_season\"))",
            "median_over_time(lat[20m] seasons(1h, 4))",
            "max_over_time(lat[20m] seasons(1h, 4, \"centered\"))",
            "stddev_over_time(lat[20m] seasons(1h, 2))",
            "band_over_time(lat[3h] seasons(1h, 3), 2, \"mad\")",
        ] {
            for step in [60_000, 15_000, 3_600_000] {
                let inc = e.range_query(&db, q, 20_000_000, 40_000_000, step).unwrap();
                let naive = super::with_naive_windows(|| {
                    e.range_query(&db, q, 20_000_000, 40_000_000, step).unwrap()
                });
                close(&inc, &naive);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(40))]

        /// Random series (gaps, NaN, repeated values) and random query geometry: sliding and
        /// recomputing give the same answers.
        #[test]
        fn random_data_incremental_equals_naive(
            vals in prop::collection::vec(
                prop_oneof![
                    6 => (0i32..20).prop_map(|x| Some(x as f64 / 2.0)),
                    1 => Just(Some(f64::NAN)),
                    1 => Just(None),
                ], 1..400),
            step_s in 1i64..400, range_m in 1i64..60, k in 0.0f64..4.0) {
            let mut db = MemStorage::new();
            let l = Labels::new([("__name__", "m"), ("i", "a")]);
            for (i, v) in vals.iter().enumerate() {
                if let Some(v) = v {
                    db.add(l.clone(), i as i64 * 15_000, *v);
                }
            }
            let e = Engine::default();
            let end = vals.len() as i64 * 15_000;
            for q in [
                format!("median_over_time(m[{range_m}m])"),
                format!("mad_over_time(m[{range_m}m])"),
                format!("iqr_over_time(m[{range_m}m])"),
                format!("band_over_time(m[{range_m}m], {k}, \"mad\")"),
                format!("band_over_time(m[{range_m}m], {k}, \"iqr\")"),
                format!("band_over_time(m[{range_m}m], {k})"),
                format!("zscore_over_time(m[{range_m}m], \"mad\")"),
                format!("quantile_over_time({}, m[{range_m}m])", k / 4.0),
                format!("avg_over_time(m[{range_m}m] seasons(7m, 3))"),
                format!("max_over_time(m[{range_m}m] seasons(7m, 3, \"centered\"))"),
                format!("median_over_time(m[{range_m}m] seasons(5m, 2, \"by_season\"))"),
            ] {
                let inc = e.range_query(&db, &q, 0, end, step_s * 1000).unwrap();
                let naive = super::with_naive_windows(|| {
                    e.range_query(&db, &q, 0, end, step_s * 1000).unwrap()
                });
                close(&inc, &naive);
            }
        }
    }

    #[test]
    fn seasonal_range_at_the_root_of_an_instant_query() {
        let mut db = MemStorage::new();
        let l = Labels::new([("__name__", "s")]);
        for i in 0..=40i64 {
            db.add(l.clone(), i * 60_000, i as f64);
        }
        let e = Engine::default();
        let r = e
            .instant_query(&db, "s[3m] seasons(10m, 2, \"by_season\")", 30 * 60_000)
            .unwrap();
        let Value::Matrix(m) = r.value else {
            panic!("matrix expected")
        };
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].labels.get("season"), Some("1"));
        let vals: Vec<f64> = m[0].samples.iter().map(|p| p.1).collect();
        assert_eq!(vals, [18.0, 19.0, 20.0]);
        // A pooled range is only an argument of order-insensitive functions.
        assert!(e
            .instant_query(&db, "s[3m] seasons(10m, 2)", 30 * 60_000)
            .is_err());
    }

    #[test]
    fn seasons_by_season_equal_offsets() {
        let db = db();
        let e = Engine::default();
        let a = e
            .range_query(
                &db,
                "rate(lat[10m] seasons(1h, 2, \"by_season\"))",
                20_000_000,
                30_000_000,
                60_000,
            )
            .unwrap();
        let b = e
            .range_query(
                &db,
                "label_replace(rate(lat[10m] offset 1h), \"season\", \"1\", \"\", \"\") or label_replace(rate(lat[10m] offset 2h), \"season\", \"2\", \"\", \"\")",
                20_000_000,
                30_000_000,
                60_000,
            )
            .unwrap();
        close(&a, &b);
    }
}
