//! The statistics of one window: each computed from the incremental accumulators and, for
//! the test oracle and the `naive` benchmark baseline, from the window's values directly.

use super::moments::{naive_mean_var, Moments};
use super::order::{interp, naive_mad, naive_quantile, NanMode, OrderStats, MAD_SCALE};

/// Spread estimator of `band_over_time`, `zscore` and `zscore_over_time`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    /// Centre mean, spread sigma (population).
    Stddev,
    /// Centre median, spread 1.4826 * MAD.
    Mad,
    /// Centre median, bounds q25 - k*IQR and q75 + k*IQR (band only).
    Iqr,
}

impl Method {
    /// Parses the method argument.
    pub fn parse(func: &str, s: &str, allow_iqr: bool) -> Result<Method, String> {
        match s {
            "stddev" => Ok(Method::Stddev),
            "mad" => Ok(Method::Mad),
            "iqr" if allow_iqr => Ok(Method::Iqr),
            _ => Err(format!(
                "{func}: unknown method {s:?} (expected \"stddev\", \"mad\"{})",
                if allow_iqr { " or \"iqr\"" } else { "" }
            )),
        }
    }

    /// The spelling in queries.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Stddev => "stddev",
            Method::Mad => "mad",
            Method::Iqr => "iqr",
        }
    }

    /// Fewest non-NaN samples a window needs for a centre and a spread.
    pub fn min_samples(self) -> usize {
        match self {
            Method::Stddev => 2,
            Method::Mad => 3,
            Method::Iqr => 4,
        }
    }
}

/// One part of a band.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Part {
    /// Lower bound.
    Lower,
    /// Centre.
    Center,
    /// Upper bound.
    Upper,
}

impl Part {
    /// All parts, in output order.
    pub const ALL: [Part; 3] = [Part::Lower, Part::Center, Part::Upper];

    /// Parses the part argument.
    pub fn parse(s: &str) -> Result<Part, String> {
        match s {
            "lower" => Ok(Part::Lower),
            "center" => Ok(Part::Center),
            "upper" => Ok(Part::Upper),
            _ => Err(format!(
                "band_over_time: unknown part {s:?} (expected \"lower\", \"center\" or \"upper\")"
            )),
        }
    }

    /// The value of the `band` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Part::Lower => "lower",
            Part::Center => "center",
            Part::Upper => "upper",
        }
    }
}

/// What is computed over each window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Stat {
    /// `avg_over_time` (PromQL semantics; the caller uses this on finite data only).
    Avg,
    /// `sum_over_time`.
    Sum,
    /// `count_over_time` (NaN samples count).
    Count,
    /// `stddev_over_time`.
    Stddev,
    /// `stdvar_over_time`.
    Stdvar,
    /// `present_over_time`.
    Present,
    /// `min_over_time` (NaN only when every sample is NaN).
    Min,
    /// `max_over_time`.
    Max,
    /// `quantile_over_time(q, ...)`: Prometheus's sorting, NaN first.
    Quantile(f64),
    /// One-argument `mad_over_time`: Prometheus's semantics, NaN first.
    MadProm,
    /// `mad_over_time(v, scaled)`: NaN excluded, times 1.4826 when `scaled`.
    Mad { scaled: bool },
    /// `median_over_time`.
    Median,
    /// `iqr_over_time`.
    Iqr,
    /// `band_over_time(v, k, method)`: lower, center, upper.
    Band { k: f64, method: Method },
    /// `zscore_over_time(v, method)`: the last sample against its window.
    ZscoreOverTime { method: Method },
    /// The centre of `zscore`'s reference window (mean or median); `min` samples needed.
    Centre { method: Method, min: usize },
    /// The spread of `zscore`'s reference window (sigma or 1.4826*MAD).
    Spread { method: Method },
}

/// Which accumulators a statistic needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Needs {
    pub order: bool,
    pub moments: bool,
}

/// A window's result: up to three values (a band); `Short` when the window had samples but
/// too few for the statistic.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Out {
    /// No output for this window.
    None,
    /// Too few (non-NaN) samples.
    Short,
    /// One value.
    One(f64),
    /// lower, center, upper.
    Band([f64; 3]),
}

/// `(v - centre) / spread` with spread 0 giving 0 when `v` equals the centre (up to rounding of
/// the mean) and +/-Inf otherwise.
pub(crate) fn zscore_value(v: f64, centre: f64, spread: f64) -> f64 {
    let d = v - centre;
    if spread == 0.0 {
        if d.abs() <= 1e-12 * v.abs().max(centre.abs()) {
            0.0
        } else if d > 0.0 {
            f64::INFINITY
        } else {
            f64::NEG_INFINITY
        }
    } else {
        d / spread
    }
}

impl Stat {
    /// The accumulators the incremental path needs.
    pub fn needs(&self) -> Needs {
        let moments = matches!(
            self,
            Stat::Avg
                | Stat::Sum
                | Stat::Stddev
                | Stat::Stdvar
                | Stat::Count
                | Stat::Present
                | Stat::Band {
                    method: Method::Stddev,
                    ..
                }
                | Stat::ZscoreOverTime {
                    method: Method::Stddev
                }
                | Stat::Centre {
                    method: Method::Stddev,
                    ..
                }
                | Stat::Spread {
                    method: Method::Stddev
                }
        );
        // Everything else ranks values; the moment-based statistics never do.
        let order = !moments;
        Needs { order, moments }
    }

    /// From the incremental accumulators. `last` is the window's last non-NaN value (for
    /// `zscore_over_time`).
    pub fn eval_inc(&self, o: &OrderStats, m: &Moments, last: Option<f64>) -> Out {
        let ex = NanMode::Exclude;
        match *self {
            Stat::Avg => one(m.mean()),
            Stat::Sum => one(m.sum()),
            Stat::Count => one((m.count() + m.nan_count()) as f64),
            Stat::Stddev => one(m.variance().sqrt()),
            Stat::Stdvar => one(m.variance()),
            Stat::Present => Out::One(1.0),
            Stat::Min => match o.min() {
                Some(v) => Out::One(v),
                None => one_if(o.count_all() > 0, f64::NAN),
            },
            Stat::Max => match o.max() {
                Some(v) => Out::One(v),
                None => one_if(o.count_all() > 0, f64::NAN),
            },
            Stat::Quantile(q) => opt(o.quantile(q, NanMode::First)),
            Stat::MadProm => opt(o.mad(NanMode::First)),
            Stat::Mad { scaled } => {
                short(o.mad(ex).map(|v| if scaled { v * MAD_SCALE } else { v }))
            }
            Stat::Median => short(o.quantile(0.5, ex)),
            Stat::Iqr => short(o.iqr(ex)),
            Stat::Band { k, method } => {
                let n = match method {
                    Method::Stddev => m.count(),
                    _ => o.count(),
                };
                if n < method.min_samples() {
                    return Out::Short;
                }
                let b = match method {
                    Method::Stddev => {
                        let (c, s) = (m.mean(), m.variance().sqrt());
                        [c - k * s, c, c + k * s]
                    }
                    Method::Mad => {
                        let c = o.quantile(0.5, ex).unwrap_or(f64::NAN);
                        let s = o.mad(ex).unwrap_or(f64::NAN) * MAD_SCALE;
                        [c - k * s, c, c + k * s]
                    }
                    Method::Iqr => {
                        let q1 = o.quantile(0.25, ex).unwrap_or(f64::NAN);
                        let c = o.quantile(0.5, ex).unwrap_or(f64::NAN);
                        let q3 = o.quantile(0.75, ex).unwrap_or(f64::NAN);
                        [q1 - k * (q3 - q1), c, q3 + k * (q3 - q1)]
                    }
                };
                Out::Band(b)
            }
            Stat::ZscoreOverTime { method } => {
                let n = match method {
                    Method::Stddev => m.count(),
                    _ => o.count(),
                };
                let Some(v) = last else { return Out::Short };
                if n < method.min_samples() {
                    return Out::Short;
                }
                let (c, s) = centre_spread_inc(method, o, m);
                Out::One(zscore_value(v, c, s))
            }
            Stat::Centre { method, min } => {
                let n = match method {
                    Method::Stddev => m.count(),
                    _ => o.count(),
                };
                if n < min.max(1) {
                    return Out::Short;
                }
                Out::One(centre_spread_inc(method, o, m).0)
            }
            Stat::Spread { method } => {
                let n = match method {
                    Method::Stddev => m.count(),
                    _ => o.count(),
                };
                if n < method.min_samples() {
                    return Out::Short;
                }
                Out::One(centre_spread_inc(method, o, m).1)
            }
        }
    }

    /// From the window's values (the oracle and the benchmark baseline): sorts and sums
    /// from scratch.
    pub fn eval_naive(&self, values: &[f64], last: Option<f64>) -> Out {
        if values.is_empty() {
            return Out::None;
        }
        let clean: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
        let med = |v: &[f64]| naive_quantile(0.5, &mut v.to_vec());
        match *self {
            Stat::Avg | Stat::Sum | Stat::Stddev | Stat::Stdvar => {
                if clean.is_empty() {
                    return Out::One(f64::NAN);
                }
                let (mean, var) = naive_mean_var(&clean);
                let var = if var <= 1e-14 * mean * mean { 0.0 } else { var };
                Out::One(match self {
                    Stat::Avg => mean,
                    Stat::Sum => clean.iter().sum(),
                    Stat::Stddev => var.sqrt(),
                    _ => var,
                })
            }
            Stat::Count => Out::One(values.len() as f64),
            Stat::Present => Out::One(1.0),
            Stat::Min => Out::One(clean.iter().copied().fold(f64::NAN, f64::min)),
            Stat::Max => Out::One(clean.iter().copied().fold(f64::NAN, f64::max)),
            Stat::Quantile(q) => Out::One(naive_quantile(q, &mut values.to_vec())),
            Stat::MadProm => Out::One(naive_mad(values)),
            Stat::Mad { scaled } => {
                if clean.is_empty() {
                    return Out::Short;
                }
                let v = naive_mad(&clean);
                Out::One(if scaled { v * MAD_SCALE } else { v })
            }
            Stat::Median => {
                if clean.is_empty() {
                    return Out::Short;
                }
                Out::One(med(&clean))
            }
            Stat::Iqr => {
                if clean.is_empty() {
                    return Out::Short;
                }
                let mut c = clean.clone();
                Out::One(naive_quantile(0.75, &mut c) - naive_quantile(0.25, &mut c))
            }
            Stat::Band { k, method } => {
                if clean.len() < method.min_samples() {
                    return Out::Short;
                }
                Out::Band(match method {
                    Method::Stddev => {
                        let (mean, var) = naive_mean_var(&clean);
                        let s = var.sqrt();
                        [mean - k * s, mean, mean + k * s]
                    }
                    Method::Mad => {
                        let (m, mad) = sorted_median_mad(clean);
                        let s = mad * MAD_SCALE;
                        [m - k * s, m, m + k * s]
                    }
                    Method::Iqr => {
                        let mut c = clean;
                        c.sort_unstable_by(f64::total_cmp);
                        let q = |q| interp(q, c.len(), |i| c[i]);
                        let (q1, m, q3) = (q(0.25), q(0.5), q(0.75));
                        [q1 - k * (q3 - q1), m, q3 + k * (q3 - q1)]
                    }
                })
            }
            Stat::ZscoreOverTime { method } => {
                let Some(v) = last else { return Out::Short };
                if clean.len() < method.min_samples() {
                    return Out::Short;
                }
                let (c, s) = centre_spread_naive(method, &clean);
                Out::One(zscore_value(v, c, s))
            }
            Stat::Centre { method, min } => {
                if clean.len() < min.max(1) {
                    return Out::Short;
                }
                Out::One(centre_spread_naive(method, &clean).0)
            }
            Stat::Spread { method } => {
                if clean.len() < method.min_samples() {
                    return Out::Short;
                }
                Out::One(centre_spread_naive(method, &clean).1)
            }
        }
    }
}

fn one(v: f64) -> Out {
    Out::One(v)
}

fn one_if(c: bool, v: f64) -> Out {
    if c {
        Out::One(v)
    } else {
        Out::None
    }
}

fn opt(v: Option<f64>) -> Out {
    v.map_or(Out::None, Out::One)
}

fn short(v: Option<f64>) -> Out {
    v.map_or(Out::Short, Out::One)
}

fn centre_spread_inc(method: Method, o: &OrderStats, m: &Moments) -> (f64, f64) {
    match method {
        Method::Stddev => (m.mean(), m.variance().sqrt()),
        _ => (
            o.quantile(0.5, NanMode::Exclude).unwrap_or(f64::NAN),
            o.mad(NanMode::Exclude).unwrap_or(f64::NAN) * MAD_SCALE,
        ),
    }
}

/// Median and MAD of NaN-free values by one sort and one selection (the naive baseline,
/// kept reasonably fast so that the benchmark compares against a fair recomputation).
fn sorted_median_mad(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_unstable_by(f64::total_cmp);
    let n = v.len();
    let m = interp(0.5, n, |i| v[i]);
    let mut d: Vec<f64> = v.iter().map(|x| (x - m).abs()).collect();
    d.sort_unstable_by(f64::total_cmp);
    (m, interp(0.5, n, |i| d[i]))
}

fn centre_spread_naive(method: Method, clean: &[f64]) -> (f64, f64) {
    match method {
        Method::Stddev => {
            let (mean, var) = naive_mean_var(clean);
            let var = if var <= 1e-14 * mean * mean { 0.0 } else { var };
            (mean, var.sqrt())
        }
        _ => (
            naive_quantile(0.5, &mut clean.to_vec()),
            naive_mad(clean) * MAD_SCALE,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zscore_with_zero_spread() {
        assert_eq!(zscore_value(5.0, 5.0, 0.0), 0.0);
        assert_eq!(zscore_value(6.0, 5.0, 0.0), f64::INFINITY);
        assert_eq!(zscore_value(4.0, 5.0, 0.0), f64::NEG_INFINITY);
        assert_eq!(zscore_value(7.0, 5.0, 2.0), 1.0);
    }

    #[test]
    fn band_methods_match_naive() {
        let vals = [1.0, 2.0, 2.0, 3.0, 10.0, f64::NAN, 4.0];
        let mut o = OrderStats::default();
        let mut m = Moments::default();
        for v in vals {
            o.add(v);
            m.add(v);
        }
        o.prepare();
        for method in [Method::Stddev, Method::Mad, Method::Iqr] {
            let s = Stat::Band { k: 2.0, method };
            let (Out::Band(a), Out::Band(b)) =
                (s.eval_inc(&o, &m, None), s.eval_naive(&vals, None))
            else {
                panic!("band expected");
            };
            for i in 0..3 {
                assert!((a[i] - b[i]).abs() < 1e-12, "{method:?} {a:?} {b:?}");
            }
        }
        // median 2.5, MAD 1 (deviations 1.5 .5 .5 .5 7.5 1.5 -> sorted .5 .5 .5 1.5 1.5 7.5)
        let Out::Band(b) = (Stat::Band {
            k: 1.0,
            method: Method::Mad,
        })
        .eval_naive(&vals, None) else {
            panic!()
        };
        assert_eq!(b[1], 2.5);
        assert!((b[2] - 2.5 - MAD_SCALE).abs() < 1e-12);
        assert_eq!(
            (Stat::Band {
                k: 1.0,
                method: Method::Iqr
            })
            .eval_naive(&[1.0, 2.0, 3.0], None),
            Out::Short
        );
    }
}
