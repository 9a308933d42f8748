//! Window geometry: plain and seasonal windows per step, their sample index ranges, and the
//! incremental driver that slides an accumulator from one step's windows to the next.
//!
//! A step's windows are a sorted list of disjoint index ranges into a series' samples: one
//! range for `v[d]`, up to `n` for a pooled `seasons(P, n)` (overlapping seasons are merged, so
//! a sample counts once), one per output series for `"by_season"`. Moving to the next step,
//! only the samples that left or entered the union are removed from or added to the
//! accumulator, so a day-long window at a one-minute step costs a handful of updates per step
//! instead of a full rescan.

use super::tz::Zone;

/// A `seasons(period, n [, "centered"] [, "by_season"] [, tz])` modifier with its values.
#[derive(Debug, Clone)]
pub(crate) struct SeasonSpec {
    /// Season length, ms (whole days when `zone` is set).
    pub period_ms: i64,
    /// Seasons k = 1..=n.
    pub n: u32,
    /// Windows centred on the season's anchor instead of ending there.
    pub centered: bool,
    /// One output per season instead of one pooled range.
    pub by_season: bool,
    /// Local wall-clock seasons.
    pub zone: Option<Zone>,
}

/// Most a local-time season anchor can differ from `t - k*P` (DST and zone rule changes).
const TZ_SLACK_MS: i64 = 3 * 3_600_000;

impl SeasonSpec {
    /// The anchor of season `k` for evaluation time `t`: `t - k*P`, or the same local time
    /// `k*P` days earlier with a zone.
    pub fn anchor(&self, t: i64, k: u32) -> i64 {
        let plain = t - self.period_ms * k as i64;
        match &self.zone {
            Some(z) => z
                .days_earlier(t, self.period_ms / 86_400_000 * k as i64)
                .unwrap_or(plain),
            None => plain,
        }
    }

    /// The window `(a, b]` of season `k` for evaluation time `t` and range `r`.
    pub fn bounds(&self, t: i64, k: u32, r: i64) -> (i64, i64) {
        let e = self.anchor(t, k);
        if self.centered {
            (e - r / 2, e + (r - r / 2))
        } else {
            (e - r, e)
        }
    }

    /// How far before and after the evaluation time data is needed for range `r`.
    pub fn reach(&self, r: i64) -> (i64, i64) {
        let slack = if self.zone.is_some() { TZ_SLACK_MS } else { 0 };
        let n = self.n as i64;
        let back = if self.centered {
            n * self.period_ms + r / 2
        } else {
            n * self.period_ms + r
        } + slack;
        let fwd = if self.centered {
            (r - r / 2) - self.period_ms
        } else {
            -self.period_ms
        } + slack;
        (back, fwd.max(0))
    }
}

/// Per-step window bounds `(a, b]`: `bounds[slot][step]`. Slot 0 alone for a plain window;
/// slot k-1 for season k.
#[derive(Debug, Clone)]
pub(crate) struct StepBounds {
    pub bounds: Vec<Vec<(i64, i64)>>,
    /// `(a, b]` when true, `[a, b]` when false (Prometheus 2.42).
    pub left_open: bool,
    /// Seasons pooled into one range (the slots are united per step).
    pub pooled: bool,
}

impl StepBounds {
    /// Windows `(t - r, t]` for each evaluation time.
    pub fn plain(eval_t: &[i64], r: i64, left_open: bool) -> StepBounds {
        StepBounds {
            bounds: vec![eval_t.iter().map(|&t| (t - r, t)).collect()],
            left_open,
            pooled: false,
        }
    }

    /// Seasonal windows for each evaluation time.
    pub fn seasons(eval_t: &[i64], r: i64, s: &SeasonSpec, left_open: bool) -> StepBounds {
        let bounds = (1..=s.n)
            .map(|k| eval_t.iter().map(|&t| s.bounds(t, k, r)).collect())
            .collect();
        StepBounds {
            bounds,
            left_open,
            pooled: !s.by_season,
        }
    }

    /// Number of steps.
    pub fn steps(&self) -> usize {
        self.bounds.first().map_or(0, Vec::len)
    }

    /// The output units: one for a plain or pooled window, one per season otherwise. Each is
    /// the list of slots it unites.
    pub fn units(&self) -> Vec<Vec<usize>> {
        if self.pooled {
            vec![(0..self.bounds.len()).collect()]
        } else {
            (0..self.bounds.len()).map(|s| vec![s]).collect()
        }
    }
}

/// First index `>= hint`-ish where `pred` becomes true (`pred` monotone false..true),
/// galloping from `hint` when the answer is at or after it.
#[inline]
fn first_true(ts: &[i64], hint: usize, pred: impl Fn(i64) -> bool) -> usize {
    let hint = hint.min(ts.len());
    if hint > 0 && pred(ts[hint - 1]) {
        return ts[..hint].partition_point(|&x| !pred(x));
    }
    let mut step = 1;
    let mut lo = hint;
    while lo + step <= ts.len() && !pred(ts[lo + step - 1]) {
        lo += step;
        step *= 2;
    }
    let hi = (lo + step).min(ts.len());
    lo + ts[lo..hi].partition_point(|&x| !pred(x))
}

/// Index range `[lo, hi)` of the samples in the window `(a, b]` (or `[a, b]`), searching from
/// the previous range of the same slot.
#[inline]
pub(crate) fn index_range(
    ts: &[i64],
    (a, b): (i64, i64),
    left_open: bool,
    hint: (usize, usize),
) -> (usize, usize) {
    let lo = if left_open {
        first_true(ts, hint.0, |x| x > a)
    } else {
        first_true(ts, hint.0, |x| x >= a)
    };
    let hi = first_true(ts, hint.1, |x| x > b);
    (lo, hi.max(lo))
}

/// An accumulator the driver can slide.
pub(crate) trait WindowAcc {
    /// Adds a sample value.
    fn add(&mut self, v: f64);
    /// Removes a sample value previously added.
    fn remove(&mut self, v: f64);
    /// Replaces the contents.
    fn rebuild(&mut self, values: &[f64]);
    /// Called after each step's updates with the window's values (gathered lazily): restores
    /// precision or prepares rank access.
    fn settle(&mut self, gather: &mut dyn FnMut() -> Vec<f64>);
}

impl WindowAcc for super::order::OrderStats {
    fn add(&mut self, v: f64) {
        super::order::OrderStats::add(self, v)
    }
    fn remove(&mut self, v: f64) {
        super::order::OrderStats::remove(self, v)
    }
    fn rebuild(&mut self, values: &[f64]) {
        super::order::OrderStats::rebuild(self, values)
    }
    fn settle(&mut self, _gather: &mut dyn FnMut() -> Vec<f64>) {
        self.prepare();
    }
}

impl WindowAcc for super::moments::Moments {
    fn add(&mut self, v: f64) {
        super::moments::Moments::add(self, v)
    }
    fn remove(&mut self, v: f64) {
        super::moments::Moments::remove(self, v)
    }
    fn rebuild(&mut self, values: &[f64]) {
        super::moments::Moments::rebuild(self, values)
    }
    fn settle(&mut self, gather: &mut dyn FnMut() -> Vec<f64>) {
        if self.needs_rebuild() {
            let v = gather();
            super::moments::Moments::rebuild(self, &v);
        }
    }
}

/// Both accumulators (band and zscore with a separate centre and spread use one each).
impl<A: WindowAcc, B: WindowAcc> WindowAcc for (A, B) {
    fn add(&mut self, v: f64) {
        self.0.add(v);
        self.1.add(v);
    }
    fn remove(&mut self, v: f64) {
        self.0.remove(v);
        self.1.remove(v);
    }
    fn rebuild(&mut self, values: &[f64]) {
        self.0.rebuild(values);
        self.1.rebuild(values);
    }
    fn settle(&mut self, gather: &mut dyn FnMut() -> Vec<f64>) {
        self.0.settle(gather);
        self.1.settle(gather);
    }
}

/// The windows of one unit of one series at one step, as handed to a statistic.
pub(crate) struct StepWindow<'a> {
    /// Step index.
    pub step: usize,
    /// Sorted disjoint index ranges of the samples in the window.
    pub ranges: &'a [(usize, usize)],
    /// Sample values of the series.
    pub vs: &'a [f64],
}

impl StepWindow<'_> {
    /// The window's values in time order.
    pub fn values(&self) -> Vec<f64> {
        gather(self.vs, self.ranges)
    }
    /// The last non-NaN sample value.
    pub fn last_value(&self) -> Option<f64> {
        self.ranges
            .iter()
            .rev()
            .flat_map(|&(a, b)| self.vs[a..b].iter().rev())
            .copied()
            .find(|v| !v.is_nan())
    }
}

fn gather(vs: &[f64], ranges: &[(usize, usize)]) -> Vec<f64> {
    let mut out = Vec::with_capacity(ranges.iter().map(|r| r.1 - r.0).sum());
    for &(a, b) in ranges {
        out.extend_from_slice(&vs[a..b]);
    }
    out
}

/// Calls `f(from, to, add)` for each index range that entered (`add`) or left the union of
/// the ranges between `old` and `new` (both sorted and disjoint).
fn for_each_diff(
    old: &[(usize, usize)],
    new: &[(usize, usize)],
    points: &mut Vec<usize>,
    mut f: impl FnMut(usize, usize, bool),
) {
    if let ([(a, b)], [(c, d)]) = (old, new) {
        let (a, b, c, d) = (*a, *b, *c, *d);
        if b <= c || d <= a {
            f(a, b, false);
            f(c, d, true);
        } else {
            if a < c {
                f(a, c, false);
            } else if c < a {
                f(c, a, true);
            }
            if d < b {
                f(d, b, false);
            } else if b < d {
                f(b, d, true);
            }
        }
        return;
    }
    points.clear();
    for &(a, b) in old.iter().chain(new) {
        points.push(a);
        points.push(b);
    }
    points.sort_unstable();
    points.dedup();
    let (mut i, mut j) = (0, 0);
    for w in points.windows(2) {
        let (p, q) = (w[0], w[1]);
        while i < old.len() && old[i].1 <= p {
            i += 1;
        }
        while j < new.len() && new[j].1 <= p {
            j += 1;
        }
        let in_old = i < old.len() && old[i].0 <= p;
        let in_new = j < new.len() && new[j].0 <= p;
        if in_old != in_new {
            f(p, q, in_new);
        }
    }
}

/// Slides `acc` over the steps of one unit of one series and calls `f` at each step with a
/// non-empty window. `windows(step, out)` fills the step's sorted disjoint ranges.
pub(crate) fn slide<A: WindowAcc>(
    vs: &[f64],
    steps: usize,
    acc: &mut A,
    mut windows: impl FnMut(usize, &mut Vec<(usize, usize)>),
    mut f: impl FnMut(&StepWindow, &mut A),
) {
    let mut prev: Vec<(usize, usize)> = Vec::new();
    let mut cur: Vec<(usize, usize)> = Vec::new();
    let mut points = Vec::new();
    for step in 0..steps {
        cur.clear();
        windows(step, &mut cur);
        let size: usize = cur.iter().map(|r| r.1 - r.0).sum();
        let mut changed = 0;
        for_each_diff(&prev, &cur, &mut points, |a, b, _| changed += b - a);
        if changed >= size {
            // Cheaper to start over (one sort) than to insert and delete value by value:
            // the first window, and windows that moved past the previous one.
            let v = gather(vs, &cur);
            acc.rebuild(&v);
        } else {
            for_each_diff(&prev, &cur, &mut points, |a, b, add| {
                for &v in &vs[a..b] {
                    if add {
                        acc.add(v);
                    } else {
                        acc.remove(v);
                    }
                }
            });
        }
        std::mem::swap(&mut prev, &mut cur);
        if size == 0 {
            continue;
        }
        acc.settle(&mut || gather(vs, &prev));
        let w = StepWindow {
            step,
            ranges: &prev,
            vs,
        };
        f(&w, acc);
    }
}

/// Fills `out` with the sorted disjoint index ranges of `slots` at `step`, using and
/// updating the per-slot search hints.
pub(crate) fn unit_ranges(
    sb: &StepBounds,
    slots: &[usize],
    ts: &[i64],
    step: usize,
    hints: &mut [(usize, usize)],
    out: &mut Vec<(usize, usize)>,
) {
    for (h, &slot) in slots.iter().enumerate() {
        let r = index_range(ts, sb.bounds[slot][step], sb.left_open, hints[h]);
        hints[h] = r;
        if r.0 < r.1 {
            out.push(r);
        }
    }
    if out.len() > 1 {
        out.sort_unstable();
        // Merge overlaps: a sample in two seasons' windows counts once.
        let mut w = 0;
        for i in 1..out.len() {
            if out[i].0 <= out[w].1 {
                out[w].1 = out[w].1.max(out[i].1);
            } else {
                w += 1;
                out[w] = out[i];
            }
        }
        out.truncate(w + 1);
    }
}

#[cfg(test)]
mod tests {
    use super::super::moments::{naive_mean_var, Moments};
    use super::super::order::{naive_quantile, NanMode, OrderStats};
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn index_ranges_left_open_and_closed() {
        let ts = [10, 20, 30, 40, 50];
        assert_eq!(index_range(&ts, (20, 40), true, (0, 0)), (2, 4));
        assert_eq!(index_range(&ts, (20, 40), false, (4, 5)), (1, 4));
        assert_eq!(index_range(&ts, (55, 60), true, (0, 0)), (5, 5));
        assert_eq!(index_range(&ts, (0, 5), true, (3, 3)), (0, 0));
    }

    #[test]
    fn season_anchors_and_reach() {
        let s = SeasonSpec {
            period_ms: 1000,
            n: 3,
            centered: false,
            by_season: false,
            zone: None,
        };
        assert_eq!(s.bounds(10_000, 2, 100), (7_900, 8_000));
        assert_eq!(s.reach(100), (3_100, 0));
        let c = SeasonSpec {
            centered: true,
            ..s.clone()
        };
        assert_eq!(c.bounds(10_000, 1, 100), (8_950, 9_050));
        assert_eq!(c.reach(3000), (4_500, 500));
    }

    fn check_slide(
        ts: &[i64],
        vs: &[f64],
        eval_t: &[i64],
        r: i64,
        spec: Option<&SeasonSpec>,
    ) -> Result<(), TestCaseError> {
        let sb = match spec {
            Some(s) => StepBounds::seasons(eval_t, r, s, true),
            None => StepBounds::plain(eval_t, r, true),
        };
        for slots in sb.units() {
            let mut hints = vec![(0, 0); slots.len()];
            let mut acc = (OrderStats::default(), Moments::default());
            let mut seen = vec![false; sb.steps()];
            slide(
                vs,
                sb.steps(),
                &mut acc,
                |step, out| unit_ranges(&sb, &slots, ts, step, &mut hints, out),
                |w, (o, m)| {
                    seen[w.step] = true;
                    // The naive window: every sample inside any slot's bounds, once.
                    let want: Vec<f64> = ts
                        .iter()
                        .zip(vs)
                        .filter(|(t, _)| {
                            slots.iter().any(|&s| {
                                let (a, b) = sb.bounds[s][w.step];
                                **t > a && **t <= b
                            })
                        })
                        .map(|(_, v)| *v)
                        .collect();
                    assert_eq!(w.values(), want);
                    let mut sorted = want.clone();
                    let q = naive_quantile(0.5, &mut sorted);
                    assert_eq!(o.quantile(0.5, NanMode::Exclude), Some(q));
                    let (mean, _) = naive_mean_var(&want);
                    assert!((m.mean() - mean).abs() <= 1e-9 * mean.abs().max(1.0));
                },
            );
            // Steps without a callback have empty windows.
            for (step, s) in seen.iter().enumerate() {
                if !s {
                    let any = ts.iter().any(|t| {
                        slots.iter().any(|&s| {
                            let (a, b) = sb.bounds[s][step];
                            *t > a && *t <= b
                        })
                    });
                    prop_assert!(!any);
                }
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(100))]

        /// Sliding plain, pooled and by-season windows gives the same windows and statistics
        /// as selecting every window from scratch, for any step (also steps larger than the
        /// window, and non-monotonic evaluation times as `@` produces).
        #[test]
        fn sliding_equals_rescan(
            gaps in prop::collection::vec(1i64..40, 1..300),
            start in -100i64..100, step in 1i64..90, nsteps in 1usize..60,
            r in 1i64..200, period in 1i64..150, n in 1u32..5,
            centered: bool, by_season: bool, shuffle: bool) {
            let mut ts = Vec::new();
            let mut t = 0;
            for g in &gaps { t += g; ts.push(t); }
            let vs: Vec<f64> = ts.iter().map(|t| ((t * 7919) % 101) as f64).collect();
            let mut eval_t: Vec<i64> = (0..nsteps as i64).map(|i| start + 300 + i * step).collect();
            if shuffle { eval_t.reverse(); }
            check_slide(&ts, &vs, &eval_t, r, None)?;
            let spec = SeasonSpec { period_ms: period, n, centered, by_season, zone: None };
            check_slide(&ts, &vs, &eval_t, r, Some(&spec))?;
        }
    }
}
