//! A simple in-memory [`Queryable`], used by the test-script runner, tests and benchmarks.

use std::collections::BTreeMap;

use tsq_storage::{Labels, SeriesData};

use crate::Queryable;

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

impl Queryable for MemStorage {
    fn select(
        &self,
        matchers: &[tsq_storage::Matcher],
        mint_ms: i64,
        maxt_ms: i64,
    ) -> tsq_storage::Result<Vec<SeriesData>> {
        let mut out = Vec::new();
        for (labels, (ts, vs)) in &self.series {
            if !matchers.iter().all(|m| m.matches_labels(labels)) {
                continue;
            }
            let lo = ts.partition_point(|&t| t < mint_ms);
            let hi = ts.partition_point(|&t| t <= maxt_ms);
            if lo >= hi {
                continue;
            }
            out.push(SeriesData {
                labels: labels.clone(),
                timestamps: ts[lo..hi].to_vec(),
                values: vs[lo..hi].to_vec(),
            });
        }
        Ok(out)
    }
}
