//! Rolling count, sum, mean and variance with insertion and deletion.
//!
//! Sums are compensated (Neumaier) and taken about a shift (the first value added since the
//! window was last empty), so that deleting values does not accumulate cancellation error:
//! the variance of values near 1e9 that differ by 1e-3 stays exact to many digits. Infinite
//! samples are counted, not summed, so a window recovers when they leave it.

/// Neumaier's compensated addition of `x` to `(sum, c)`.
#[inline]
fn neumaier(sum: &mut f64, c: &mut f64, x: f64) {
    let t = *sum + x;
    if sum.abs() >= x.abs() {
        *c += (*sum - t) + x;
    } else {
        *c += (x - t) + *sum;
    }
    *sum = t;
}

/// Count, mean and variance of a sliding multiset of samples.
#[derive(Debug, Clone, Default)]
pub(crate) struct Moments {
    n: usize,
    nan: usize,
    pinf: usize,
    ninf: usize,
    shift: f64,
    s1: f64,
    c1: f64,
    s2: f64,
    c2: f64,
    /// Largest second moment seen since the sums were last reset: when values much larger
    /// than the current ones have left the window, the compensated sums have lost digits.
    peak: f64,
}

impl Moments {
    /// Adds a sample.
    #[inline]
    pub fn add(&mut self, v: f64) {
        self.update(v, 1.0);
    }

    /// Removes a sample previously added.
    #[inline]
    pub fn remove(&mut self, v: f64) {
        self.update(v, -1.0);
    }

    #[inline]
    fn update(&mut self, v: f64, sign: f64) {
        let add = sign > 0.0;
        if v.is_nan() {
            if add {
                self.nan += 1;
            } else {
                self.nan = self.nan.saturating_sub(1);
            }
            return;
        }
        if v.is_infinite() {
            let c = if v > 0.0 {
                &mut self.pinf
            } else {
                &mut self.ninf
            };
            if add {
                *c += 1;
            } else {
                *c = c.saturating_sub(1);
            }
            return;
        }
        if add {
            if self.finite() == 0 {
                self.reset_sums();
                self.shift = v;
            }
            self.n += 1;
        } else {
            self.n = self.n.saturating_sub(1);
            if self.n == 0 {
                self.reset_sums();
                return;
            }
        }
        let d = v - self.shift;
        neumaier(&mut self.s1, &mut self.c1, sign * d);
        neumaier(&mut self.s2, &mut self.c2, sign * d * d);
        if add {
            self.peak = self.peak.max(self.s2);
        }
    }

    fn reset_sums(&mut self) {
        self.s1 = 0.0;
        self.c1 = 0.0;
        self.s2 = 0.0;
        self.c2 = 0.0;
        self.peak = 0.0;
    }

    /// Removes every sample.
    pub fn clear(&mut self) {
        *self = Moments::default();
    }

    /// Replaces the contents with `values`, shifted by the last finite one (the newest
    /// sample of a window, which stays longest).
    pub fn rebuild(&mut self, values: &[f64]) {
        self.clear();
        let last = values.iter().rposition(|v| v.is_finite());
        if let Some(i) = last {
            self.add(values[i]);
        }
        for (j, &v) in values.iter().enumerate() {
            if Some(j) != last {
                self.add(v);
            }
        }
    }

    /// True when deletions have left the sums dominated by values no longer in the window
    /// (the variance is far below the second moment about the shift): the caller should
    /// [`Moments::rebuild`] from the window to restore full precision.
    pub fn needs_rebuild(&self) -> bool {
        if self.n == 0 {
            return false;
        }
        let n = self.n as f64;
        let s1 = self.s1 + self.c1;
        let s2 = self.s2 + self.c2;
        let var = ((s2 - s1 * s1 / n) / n).max(0.0);
        if s2 > 0.0 && var * n < 1e-8 * s2 || s2.abs() < 1e-6 * self.peak {
            return true;
        }
        // The mean is shift + s1/n: far from the shift, the rounding of the differences
        // shows in the mean.
        let mean_d = s1 / n;
        mean_d.abs() > 1e4 * (self.shift + mean_d).abs().max(var.sqrt())
    }

    /// True when the mean has moved more than 100 standard deviations from the shift (a
    /// window sliding along a level that drifts, such as a counter): the variance then comes
    /// from a difference of sums 10^4 times larger than itself and has lost four digits;
    /// [`Moments::rebuild`] re-centres on the window.
    pub fn off_centre(&self) -> bool {
        if self.n < 2 {
            return false;
        }
        let n = self.n as f64;
        let s1 = self.s1 + self.c1;
        let s2 = self.s2 + self.c2;
        let mean_d = s1 / n;
        let var = (s2 / n - mean_d * mean_d).max(0.0);
        mean_d * mean_d > 1e4 * var
    }

    fn finite(&self) -> usize {
        self.n
    }

    /// Number of non-NaN samples.
    pub fn count(&self) -> usize {
        self.n + self.pinf + self.ninf
    }

    /// Number of NaN samples.
    pub fn nan_count(&self) -> usize {
        self.nan
    }

    /// Sum of the non-NaN samples.
    pub fn sum(&self) -> f64 {
        match (self.pinf > 0, self.ninf > 0) {
            (true, true) => f64::NAN,
            (true, false) => f64::INFINITY,
            (false, true) => f64::NEG_INFINITY,
            _ => self.shift * self.n as f64 + (self.s1 + self.c1),
        }
    }

    /// Mean of the non-NaN samples (NaN when there are none).
    pub fn mean(&self) -> f64 {
        match (self.pinf > 0, self.ninf > 0) {
            (true, true) => f64::NAN,
            (true, false) => f64::INFINITY,
            (false, true) => f64::NEG_INFINITY,
            _ => {
                if self.n == 0 {
                    f64::NAN
                } else {
                    self.shift + (self.s1 + self.c1) / self.n as f64
                }
            }
        }
    }

    /// Population variance of the non-NaN samples. A variance below the rounding level of
    /// the sums (all samples equal, up to rounding) is 0.
    pub fn variance(&self) -> f64 {
        if self.pinf + self.ninf > 0 {
            return f64::NAN;
        }
        if self.n == 0 {
            return f64::NAN;
        }
        let n = self.n as f64;
        let s1 = self.s1 + self.c1;
        let s2 = self.s2 + self.c2;
        let var = (s2 - s1 * s1 / n) / n;
        if var <= 1e-14 * (s2 / n) || var < 0.0 {
            0.0
        } else {
            var
        }
    }
}

/// Mean and population variance by two passes (the test oracle).
/// Differences are taken from the first value, which keeps them exact for close values.
pub(crate) fn naive_mean_var(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let c = values.first().copied().unwrap_or(0.0);
    let md = values.iter().map(|v| v - c).sum::<f64>() / n;
    let var = values
        .iter()
        .map(|v| (v - c - md) * (v - c - md))
        .sum::<f64>()
        / n;
    (c + md, var)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= tol * a.abs().max(b.abs())
    }

    #[test]
    fn equal_values_have_zero_variance_after_deletions() {
        let mut m = Moments::default();
        for v in [0.1, 0.7, 1e9, 0.3] {
            m.add(v);
        }
        for v in [0.1, 0.7, 1e9, 0.3] {
            m.remove(v);
        }
        for _ in 0..10 {
            m.add(0.3);
        }
        assert_eq!(m.variance(), 0.0);
        assert_eq!(m.mean(), 0.3);
        m.add(f64::INFINITY);
        assert_eq!(m.mean(), f64::INFINITY);
        m.remove(f64::INFINITY);
        assert_eq!(m.mean(), 0.3);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn sliding_moments_equal_two_pass(values in prop::collection::vec(
            prop_oneof![-1e3f64..1e3, (0i32..5).prop_map(|x| 1e9 + x as f64 * 1e-3)], 1..300),
            width in 1usize..50) {
            let mut m = Moments::default();
            for i in 0..values.len() {
                m.add(values[i]);
                if i >= width {
                    m.remove(values[i - width]);
                }
                let lo = (i + 1).saturating_sub(width);
                let w = &values[lo..=i];
                if m.needs_rebuild() {
                    m.rebuild(w);
                }
                let (mean, var) = naive_mean_var(w);
                prop_assert!(close(m.mean(), mean, 1e-9), "{} {}", m.mean(), mean);
                let scale = w.iter().map(|v| (v - mean).abs()).fold(0.0, f64::max);
                prop_assert!((m.variance() - var).abs() <= 1e-7 * (scale * scale).max(1e-300),
                    "{} {}", m.variance(), var);
            }
        }
    }
}
