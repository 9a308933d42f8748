//! A simple in-memory [`Queryable`], used by the test-script runner, tests and benchmarks.

use std::collections::BTreeMap;

use tsq_storage::{Labels, SeriesData};

use crate::{copy_samples, Queryable, SeriesSet};

/// Series kept in memory, sorted by labels; samples sorted by time (a later `add` at the same
/// timestamp replaces the value).
#[derive(Debug, Clone, Default)]
pub struct MemStorage {
    series: BTreeMap<Labels, (Vec<i64>, Vec<f64>)>,
}

impl MemStorage {
    /// An empty storage.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one sample.
    pub fn add(&mut self, labels: Labels, t: i64, v: f64) {
        let (ts, vs) = self.series.entry(labels).or_default();
        match ts.last() {
            Some(&last) if last < t => {
                ts.push(t);
                vs.push(v);
            }
            None => {
                ts.push(t);
                vs.push(v);
            }
            _ => match ts.binary_search(&t) {
                Ok(i) => vs[i] = v,
                Err(i) => {
                    ts.insert(i, t);
                    vs.insert(i, v);
                }
            },
        }
    }

    /// Removes every series.
    pub fn clear(&mut self) {
        self.series.clear();
    }

    /// Number of series.
    pub fn num_series(&self) -> usize {
        self.series.len()
    }

    /// Number of samples.
    pub fn num_samples(&self) -> usize {
        self.series.values().map(|(t, _)| t.len()).sum()
    }
}

/// The series of a [`MemStorage`] that a selector matched, borrowed.
struct MemSet<'a> {
    series: Vec<(&'a Labels, &'a [i64], &'a [f64])>,
}

impl SeriesSet for MemSet<'_> {
    fn len(&self) -> usize {
        self.series.len()
    }

    fn labels(&self, i: usize) -> &Labels {
        self.series[i].0
    }

    fn samples_hint(&self, i: usize) -> usize {
        self.series[i].1.len()
    }

    fn read(&self, i: usize, ts: &mut Vec<i64>, vs: &mut Vec<f64>) -> tsq_storage::Result<()> {
        let (_, t, v) = self.series[i];
        copy_samples(ts, vs, t, v);
        Ok(())
    }

    fn read_last(&self, i: usize, ts: &mut Vec<i64>, vs: &mut Vec<f64>) -> tsq_storage::Result<()> {
        let (_, t, v) = self.series[i];
        // Series without samples in the range are not in the set.
        copy_samples(ts, vs, &t[t.len() - 1..], &v[v.len() - 1..]);
        Ok(())
    }
}

impl MemStorage {
    /// The matching series' samples in the range, borrowed; series without any left out.
    fn matching(
        &self,
        matchers: &[tsq_storage::Matcher],
        mint_ms: i64,
        maxt_ms: i64,
    ) -> Vec<(&Labels, &[i64], &[f64])> {
        self.series
            .iter()
            .filter_map(|(labels, (ts, vs))| {
                if !matchers.iter().all(|m| m.matches_labels(labels)) {
                    return None;
                }
                let lo = ts.partition_point(|&t| t < mint_ms);
                let hi = ts.partition_point(|&t| t <= maxt_ms);
                (lo < hi).then(|| (labels, &ts[lo..hi], &vs[lo..hi]))
            })
            .collect()
    }
}

impl Queryable for MemStorage {
    fn select(
        &self,
        matchers: &[tsq_storage::Matcher],
        mint_ms: i64,
        maxt_ms: i64,
    ) -> tsq_storage::Result<Vec<SeriesData>> {
        Ok(self
            .matching(matchers, mint_ms, maxt_ms)
            .into_iter()
            .map(|(labels, ts, vs)| SeriesData {
                labels: labels.clone(),
                timestamps: ts.to_vec(),
                values: vs.to_vec(),
            })
            .collect())
    }

    fn select_lazy(
        &self,
        matchers: &[tsq_storage::Matcher],
        mint_ms: i64,
        maxt_ms: i64,
    ) -> tsq_storage::Result<Box<dyn SeriesSet + '_>> {
        Ok(Box::new(MemSet {
            series: self.matching(matchers, mint_ms, maxt_ms),
        }))
    }
}
