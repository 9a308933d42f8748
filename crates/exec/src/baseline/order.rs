//! Rolling order statistics: a sorted multiset of floats with insertion, deletion and access
//! by rank, and the robust statistics computed from it (quantiles, median, MAD, IQR).
//!
//! The multiset is a list of sorted blocks (at most [`MAX_BLOCK`] values each) with a prefix
//! count over the blocks, rebuilt lazily: an insert or delete moves at most one block's values
//! (about 1 KiB) instead of half the window, and rank access is a binary search over the
//! prefix. Windows of any length stay cheap to slide.
//!
//! Values are ordered by `f64::total_cmp`; NaN is never stored: [`OrderStats`] counts NaN
//! samples separately so that the PromQL functions (`quantile_over_time`, one-argument
//! `mad_over_time`) can see them the way Prometheus sorts them (first), while the baseline
//! extensions ignore them.

/// Most values in one block; a block is split in two beyond this.
const MAX_BLOCK: usize = 128;
/// Block size used when (re)building from a sorted run.
const FILL_BLOCK: usize = 64;

/// A sorted multiset of non-NaN floats with rank access.
#[derive(Debug, Clone, Default)]
pub(crate) struct SortedBlocks {
    blocks: Vec<Vec<f64>>,
    /// `prefix[i]` = number of values in blocks `< i`; valid when `!dirty`.
    prefix: Vec<usize>,
    len: usize,
    dirty: bool,
}

#[inline]
fn lt(a: f64, b: f64) -> bool {
    a.total_cmp(&b).is_lt()
}

impl SortedBlocks {
    /// Number of values.
    pub fn len(&self) -> usize {
        self.len
    }

    /// The block that holds (or would hold) `v`: the first whose last value is `>= v`, or the
    /// last block.
    fn block_for(&self, v: f64) -> usize {
        let i = self
            .blocks
            .partition_point(|b| b.last().is_some_and(|&l| lt(l, v)));
        i.min(self.blocks.len().saturating_sub(1))
    }

    /// Adds one value.
    pub fn insert(&mut self, v: f64) {
        debug_assert!(!v.is_nan());
        self.len += 1;
        self.dirty = true;
        if self.blocks.is_empty() {
            self.blocks.push(vec![v]);
            return;
        }
        let bi = self.block_for(v);
        let b = &mut self.blocks[bi];
        let pos = b.partition_point(|&x| lt(x, v));
        b.insert(pos, v);
        if b.len() > MAX_BLOCK {
            let tail = b.split_off(b.len() / 2);
            self.blocks.insert(bi + 1, tail);
        }
    }

    /// Removes one copy of `v`; returns false when `v` is not present.
    pub fn remove(&mut self, v: f64) -> bool {
        if self.blocks.is_empty() {
            return false;
        }
        let bi = self.block_for(v);
        let b = &mut self.blocks[bi];
        let pos = b.partition_point(|&x| lt(x, v));
        if pos >= b.len() || b[pos].total_cmp(&v).is_ne() {
            return false;
        }
        b.remove(pos);
        self.len -= 1;
        self.dirty = true;
        if b.is_empty() {
            self.blocks.remove(bi);
        } else if b.len() < MAX_BLOCK / 8 && bi + 1 < self.blocks.len() {
            // Keep blocks from fragmenting: merge a small block into its successor.
            if self.blocks[bi].len() + self.blocks[bi + 1].len() <= MAX_BLOCK {
                let next = self.blocks.remove(bi + 1);
                self.blocks[bi].extend(next);
            }
        }
        true
    }

    /// Replaces the contents with `values` (any order, no NaN).
    pub fn rebuild(&mut self, values: &mut [f64]) {
        sort_total(values);
        self.blocks.clear();
        for c in values.chunks(FILL_BLOCK) {
            self.blocks.push(c.to_vec());
        }
        self.len = values.len();
        self.dirty = true;
    }

    fn refresh(&mut self) {
        if !self.dirty {
            return;
        }
        self.prefix.clear();
        let mut acc = 0;
        for b in &self.blocks {
            self.prefix.push(acc);
            acc += b.len();
        }
        self.dirty = false;
    }

    /// Makes rank access valid after updates; call before [`SortedBlocks::get`].
    pub fn prepare(&mut self) {
        self.refresh();
    }

    /// The value of rank `k` (0-based, ascending). [`SortedBlocks::prepare`] must have been
    /// called since the last update.
    #[inline]
    pub fn get(&self, k: usize) -> f64 {
        debug_assert!(!self.dirty && k < self.len);
        let bi = self.prefix.partition_point(|&p| p <= k) - 1;
        self.blocks[bi][k - self.prefix[bi]]
    }

    /// Number of values `< v` (total order).
    pub fn rank_of(&self, v: f64) -> usize {
        debug_assert!(!self.dirty);
        if self.blocks.is_empty() {
            return 0;
        }
        let bi = self
            .blocks
            .partition_point(|b| b.last().is_some_and(|&l| lt(l, v)));
        if bi == self.blocks.len() {
            return self.len;
        }
        self.prefix[bi] + self.blocks[bi].partition_point(|&x| lt(x, v))
    }

    /// All values in order (for tests and the naive fallbacks).
    pub fn iter(&self) -> impl Iterator<Item = f64> + '_ {
        self.blocks.iter().flat_map(|b| b.iter().copied())
    }
}

/// The samples of a window, as order statistics: non-NaN values sorted, NaN counted.
#[derive(Debug, Clone, Default)]
pub(crate) struct OrderStats {
    vals: SortedBlocks,
    nan: usize,
}

/// How NaN samples take part in a statistic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NanMode {
    /// Left out (the baseline extensions).
    Exclude,
    /// Sorted before every number, as Prometheus's `quantile` sorts them.
    First,
}

/// Scale factor that makes the MAD a consistent estimator of sigma for normal data.
pub(crate) const MAD_SCALE: f64 = 1.4826;

impl OrderStats {
    /// Adds a sample.
    #[inline]
    pub fn add(&mut self, v: f64) {
        if v.is_nan() {
            self.nan += 1;
        } else {
            self.vals.insert(v);
        }
    }

    /// Removes a sample previously added.
    #[inline]
    pub fn remove(&mut self, v: f64) {
        if v.is_nan() {
            self.nan = self.nan.saturating_sub(1);
        } else {
            let found = self.vals.remove(v);
            debug_assert!(found, "removed a value not in the window");
        }
    }

    /// Replaces the contents with `values`.
    pub fn rebuild(&mut self, values: &[f64]) {
        let mut v: Vec<f64> = Vec::with_capacity(values.len());
        self.nan = 0;
        for &x in values {
            if x.is_nan() {
                self.nan += 1;
            } else {
                v.push(x);
            }
        }
        self.vals.rebuild(&mut v);
    }

    /// Number of non-NaN samples.
    pub fn count(&self) -> usize {
        self.vals.len()
    }

    /// Number of samples, NaN included.
    pub fn count_all(&self) -> usize {
        self.vals.len() + self.nan
    }

    /// Makes rank access valid; call after updates, before the statistics below.
    pub fn prepare(&mut self) {
        self.vals.prepare();
    }

    fn n(&self, mode: NanMode) -> usize {
        match mode {
            NanMode::Exclude => self.vals.len(),
            NanMode::First => self.vals.len() + self.nan,
        }
    }

    #[inline]
    fn kth(&self, k: usize, mode: NanMode) -> f64 {
        match mode {
            NanMode::Exclude => self.vals.get(k),
            NanMode::First => {
                if k < self.nan {
                    f64::NAN
                } else {
                    self.vals.get(k - self.nan)
                }
            }
        }
    }

    /// Smallest non-NaN value.
    pub fn min(&self) -> Option<f64> {
        (self.vals.len() > 0).then(|| self.vals.get(0))
    }

    /// Largest non-NaN value.
    pub fn max(&self) -> Option<f64> {
        (self.vals.len() > 0).then(|| self.vals.get(self.vals.len() - 1))
    }

    /// Prometheus's `quantile(q, ...)`: linear interpolation between ranks; `None` when empty.
    pub fn quantile(&self, q: f64, mode: NanMode) -> Option<f64> {
        let n = self.n(mode);
        if n == 0 {
            return None;
        }
        Some(interp(q, n, |k| self.kth(k, mode)))
    }

    /// Median absolute deviation from the median (unscaled); `None` when empty.
    pub fn mad(&self, mode: NanMode) -> Option<f64> {
        let n = self.n(mode);
        if n == 0 {
            return None;
        }
        let m = interp(0.5, n, |k| self.kth(k, mode));
        if m.is_nan() {
            return Some(f64::NAN);
        }
        let nan = if mode == NanMode::First { self.nan } else { 0 };
        if m.is_infinite() {
            // |x - Inf| is NaN for x = Inf: the two-array selection below needs numbers.
            let mut dev: Vec<f64> = std::iter::repeat_n(f64::NAN, nan)
                .chain(self.vals.iter().map(|x| (x - m).abs()))
                .collect();
            return Some(naive_quantile(0.5, &mut dev));
        }
        // Deviations, ascending: NaN first (mode First), then the merge of the values below
        // the median read downwards (m - x) and those above read upwards (x - m).
        let split = self.vals.rank_of(m);
        let len = self.vals.len();
        let below = |j: usize| m - self.vals.get(split - 1 - j);
        let above = |j: usize| self.vals.get(split + j) - m;
        let dev_k = |k: usize| -> f64 {
            if k < nan {
                f64::NAN
            } else {
                kth_of_two(k - nan, split, len - split, &below, &above)
            }
        };
        Some(interp(0.5, n, dev_k))
    }

    /// Interquartile range q75 - q25 (PromQL interpolation); `None` when empty.
    pub fn iqr(&self, mode: NanMode) -> Option<f64> {
        Some(self.quantile(0.75, mode)? - self.quantile(0.25, mode)?)
    }
}

/// Prometheus's quantile interpolation over `n` sorted values given by rank.
#[inline]
pub(crate) fn interp(q: f64, n: usize, at: impl Fn(usize) -> f64) -> f64 {
    if n == 0 || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    let nf = n as f64;
    let rank = q * (nf - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(nf - 1.0);
    let weight = rank - rank.floor();
    at(lower as usize) * (1.0 - weight) + at(upper as usize) * weight
}

/// The `k`-th smallest (0-based) of the union of two ascending sequences given by index.
fn kth_of_two(
    k: usize,
    la: usize,
    lb: usize,
    a: &impl Fn(usize) -> f64,
    b: &impl Fn(usize) -> f64,
) -> f64 {
    debug_assert!(k < la + lb);
    let want = k + 1;
    let mut lo = want.saturating_sub(lb);
    let mut hi = want.min(la);
    loop {
        let i = lo + (hi - lo) / 2;
        let j = want - i;
        if i < hi && j > 0 && b(j - 1) > a(i) {
            lo = i + 1;
        } else if i > lo && j < lb && a(i - 1) > b(j) {
            hi = i - 1;
        } else {
            let x = if i > 0 { a(i - 1) } else { f64::NEG_INFINITY };
            let y = if j > 0 { b(j - 1) } else { f64::NEG_INFINITY };
            return if i == 0 {
                y
            } else if j == 0 || x > y {
                x
            } else {
                y
            };
        }
    }
}

// ------------------------------------------------------------------ naive oracles

/// Prometheus's `quantile`: sorts (NaN first) and interpolates. The test oracle and the
/// fallback for windows that the incremental structures do not handle.
pub(crate) fn naive_quantile(q: f64, values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Less,
        (false, true) => std::cmp::Ordering::Greater,
        _ => a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal),
    });
    interp(q, values.len(), |k| values[k])
}

/// MAD by sorting twice (the test oracle).
pub(crate) fn naive_mad(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    let m = naive_quantile(0.5, &mut v);
    let mut d: Vec<f64> = values.iter().map(|x| (x - m).abs()).collect();
    naive_quantile(0.5, &mut d)
}

/// Sorts in `f64::total_cmp` order, as integer keys: the key of a float is its bits with
/// the sign bit flipped for positives and every bit flipped for negatives, which orders
/// like `total_cmp` and sorts about twice as fast (integer comparisons, no branches on
/// the sign). The same values come back, bit for bit.
pub(crate) fn sort_total(values: &mut [f64]) {
    let key = |x: f64| {
        let b = x.to_bits();
        if b >> 63 == 1 {
            !b
        } else {
            b | (1 << 63)
        }
    };
    let unkey = |k: u64| f64::from_bits(if k >> 63 == 1 { k & !(1 << 63) } else { !k });
    let mut keys: Vec<u64> = values.iter().map(|&x| key(x)).collect();
    keys.sort_unstable();
    for (v, k) in values.iter_mut().zip(keys) {
        *v = unkey(k);
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn sort_total_orders_like_total_cmp_bit_for_bit() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for round in 0..300 {
            let n = (next() % 600) as usize;
            let mut v: Vec<f64> = (0..n)
                .map(|_| match next() % 9 {
                    0 => 0.0,
                    1 => -0.0,
                    2 => f64::INFINITY,
                    3 => f64::NEG_INFINITY,
                    4 => f64::from_bits(next()), // any bit pattern, NaN payloads included
                    5 => f64::MIN_POSITIVE / 3.0,
                    _ => (next() % 2_000) as f64 / 7.0 - 140.0,
                })
                .collect();
            if round % 3 == 0 {
                v.retain(|x| !x.is_nan());
            }
            let mut want = v.clone();
            want.sort_by(|a, b| a.total_cmp(b));
            super::sort_total(&mut v);
            let bits = |s: &[f64]| s.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&v), bits(&want));
        }
    }

    use super::*;
    use proptest::prelude::*;

    fn same(a: f64, b: f64) -> bool {
        (a.is_nan() && b.is_nan()) || a == b
    }

    #[test]
    fn blocks_split_merge_and_rank() {
        let mut s = SortedBlocks::default();
        for i in (0..1000).rev() {
            s.insert(i as f64);
        }
        s.prepare();
        for k in 0..1000 {
            assert_eq!(s.get(k), k as f64);
        }
        for i in (0..1000).step_by(2) {
            assert!(s.remove(i as f64));
        }
        assert!(!s.remove(0.0));
        s.prepare();
        assert_eq!(s.len(), 500);
        for k in 0..500 {
            assert_eq!(s.get(k), (2 * k + 1) as f64);
        }
        assert_eq!(s.rank_of(10.0), 5);
        assert_eq!(s.rank_of(2000.0), 500);
    }

    #[test]
    fn mad_of_mostly_equal_values_is_zero() {
        let mut o = OrderStats::default();
        for v in [5.0, 5.0, 5.0, 5.0, 9.0, 1.0, 5.0] {
            o.add(v);
        }
        o.prepare();
        assert_eq!(o.quantile(0.5, NanMode::Exclude), Some(5.0));
        assert_eq!(o.mad(NanMode::Exclude), Some(0.0));
        assert_eq!(o.iqr(NanMode::Exclude), Some(0.0));
    }

    #[test]
    fn nan_first_matches_prometheus_sorting() {
        let mut o = OrderStats::default();
        for v in [f64::NAN, 1.0, 2.0, 3.0] {
            o.add(v);
        }
        o.prepare();
        // Prometheus: sorted [NaN, 1, 2, 3]; median interpolates NaN*0.5 + 1*... = NaN? No:
        // rank 1.5 -> values[1]*0.5 + values[2]*0.5 = 1.5.
        assert_eq!(o.quantile(0.5, NanMode::First), Some(1.5));
        assert_eq!(o.quantile(0.5, NanMode::Exclude), Some(2.0));
        let mad = o.mad(NanMode::First).unwrap();
        assert!(same(mad, naive_mad(&[f64::NAN, 1.0, 2.0, 3.0])), "{mad}");
    }

    #[derive(Debug, Clone)]
    enum Op {
        Add(f64),
        RemoveOldest,
    }

    fn value() -> impl Strategy<Value = f64> {
        prop_oneof![
            8 => (-50i32..50).prop_map(|x| x as f64 / 4.0),
            3 => -1e6f64..1e6,
            1 => Just(f64::NAN),
            1 => Just(f64::INFINITY),
            1 => Just(f64::NEG_INFINITY),
            1 => Just(-0.0),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Incremental order statistics equal sorting the window, for every operation order.
        #[test]
        fn incremental_equals_naive(ops in prop::collection::vec(
            prop_oneof![3 => value().prop_map(Op::Add), 2 => Just(Op::RemoveOldest)], 1..400),
            q in 0.0f64..1.0) {
            let mut o = OrderStats::default();
            let mut window: std::collections::VecDeque<f64> = Default::default();
            for op in ops {
                match op {
                    Op::Add(v) => { o.add(v); window.push_back(v); }
                    Op::RemoveOldest => {
                        if let Some(v) = window.pop_front() { o.remove(v); }
                    }
                }
                o.prepare();
                let all: Vec<f64> = window.iter().copied().collect();
                let clean: Vec<f64> = all.iter().copied().filter(|v| !v.is_nan()).collect();
                for (mode, vals) in [(NanMode::First, &all), (NanMode::Exclude, &clean)] {
                    let got_q = o.quantile(q, mode);
                    let got_mad = o.mad(mode);
                    if vals.is_empty() {
                        prop_assert!(got_q.is_none() && got_mad.is_none());
                        continue;
                    }
                    let want_q = naive_quantile(q, &mut vals.clone());
                    prop_assert!(same(got_q.unwrap(), want_q), "q {:?} {}", got_q, want_q);
                    let want_mad = naive_mad(vals);
                    prop_assert!(same(got_mad.unwrap(), want_mad),
                        "mad {:?} {} {:?}", got_mad, want_mad, vals);
                }
            }
        }
    }
}
