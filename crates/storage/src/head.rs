//! The in-memory head: recent samples of every series, before they are flushed to blocks.
//!
//! Each series keeps closed chunks (encoded), an open chunk (raw columns, encoded when it
//! is cut) and a small buffer of out-of-order writes. Chunks are cut at block-range
//! boundaries and at a sample limit, so a chunk never straddles two blocks.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use crate::block::EncodedChunk;
use crate::index::{intern_labels, resolve_labels, Postings, SymLabels, Symbols};
use crate::labels::{Labels, Matcher};

pub(crate) struct HeadSeries {
    pub labels: SymLabels,
    pub chunks: Vec<EncodedChunk>,
    pub open_ts: Vec<i64>,
    pub open_vals: Vec<f64>,
    /// Out-of-order writes in arrival order (a later entry wins for the same timestamp).
    pub ooo: Vec<(i64, f64)>,
    /// Largest timestamp ever appended in order (survives flushes).
    pub max_t: i64,
    /// The WAL epoch in which this series' labels were last written (0: never). A record
    /// may name the series by id only when its labels were written earlier in the same
    /// epoch (docs/format/wal.md).
    pub wal_epoch: u64,
}

impl HeadSeries {
    fn has_data(&self) -> bool {
        !self.chunks.is_empty() || !self.open_ts.is_empty() || !self.ooo.is_empty()
    }
}

pub(crate) struct Head {
    pub symbols: Symbols,
    postings: Postings,
    pub series: Vec<HeadSeries>,
    by_hash: HashMap<u64, Vec<u32>>,
    pub n_samples: u64,
    /// Encoded bytes and samples of the closed chunks (for [`Head::memory_estimate`]).
    closed_bytes: u64,
    closed_samples: u64,
    pub min_t: i64,
    pub max_t: i64,
    chunk_samples: usize,
    block_range: i64,
}

fn labels_hash(labels: &Labels) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    labels.hash(&mut h);
    h.finish()
}

impl Head {
    pub fn new(chunk_samples: usize, block_range: i64) -> Head {
        Head {
            symbols: Symbols::default(),
            postings: Postings::default(),
            series: Vec::new(),
            by_hash: HashMap::new(),
            n_samples: 0,
            closed_bytes: 0,
            closed_samples: 0,
            min_t: i64::MAX,
            max_t: i64::MIN,
            chunk_samples,
            block_range,
        }
    }

    pub fn lookup(&self, labels: &Labels) -> Option<u32> {
        let ids = self.by_hash.get(&labels_hash(labels))?;
        ids.iter()
            .copied()
            .find(|&id| self.labels_equal(id, labels))
    }

    fn labels_equal(&self, id: u32, labels: &Labels) -> bool {
        let sl = &self.series[id as usize].labels;
        sl.len() == labels.len()
            && sl.iter().zip(labels.iter()).all(|(&(n, v), l)| {
                self.symbols.resolve(n) == l.name && self.symbols.resolve(v) == l.value
            })
    }

    /// Returns the series id, creating the series when new (its labels reach the WAL with
    /// the first record that names it).
    pub fn get_or_create(&mut self, labels: &Labels) -> u32 {
        if let Some(id) = self.lookup(labels) {
            return id;
        }
        let id = self.series.len() as u32;
        self.insert(id, labels);
        id
    }

    fn insert(&mut self, id: u32, labels: &Labels) {
        let sl = intern_labels(&mut self.symbols, labels);
        self.postings.add(id, &sl);
        self.series.push(HeadSeries {
            labels: sl,
            chunks: Vec::new(),
            open_ts: Vec::new(),
            open_vals: Vec::new(),
            ooo: Vec::new(),
            max_t: i64::MIN,
            wal_epoch: 0,
        });
        self.by_hash
            .entry(labels_hash(labels))
            .or_default()
            .push(id);
    }

    pub fn labels_of(&self, id: u32) -> Labels {
        resolve_labels(&self.symbols, &self.series[id as usize].labels)
    }

    /// Appends one sample. Returns false for an unknown series id.
    #[inline]
    pub fn append(&mut self, id: u32, t: i64, v: f64) -> bool {
        let chunk_samples = self.chunk_samples;
        let block_range = self.block_range;
        let Some(s) = self.series.get_mut(id as usize) else {
            return false;
        };
        if t > s.max_t {
            if let Some(&first) = s.open_ts.first() {
                if s.open_ts.len() >= chunk_samples
                    || t.div_euclid(block_range) != first.div_euclid(block_range)
                {
                    let c = EncodedChunk::encode(&s.open_ts, &s.open_vals);
                    let (bytes, samples) = closed_size(std::slice::from_ref(&c));
                    self.closed_bytes += bytes;
                    self.closed_samples += samples;
                    s.chunks.push(c);
                    // The next chunk will likely be as long as this one: reserve once
                    // instead of growing sample by sample.
                    let expect = s.open_ts.len();
                    s.open_ts.clear();
                    s.open_vals.clear();
                    s.open_ts.reserve(expect);
                    s.open_vals.reserve(expect);
                }
            }
            s.open_ts.push(t);
            s.open_vals.push(v);
            s.max_t = t;
        } else if s.open_ts.last() == Some(&t) {
            // Duplicate of the newest sample: last write wins.
            *s.open_vals.last_mut().expect("non-empty") = v;
            return true;
        } else {
            s.ooo.push((t, v));
        }
        self.n_samples += 1;
        self.min_t = self.min_t.min(t);
        self.max_t = self.max_t.max(t);
        true
    }

    pub fn select_ids(&self, matchers: &[Matcher]) -> Vec<u32> {
        self.postings.select(&self.symbols, matchers)
    }

    /// The samples of series `id` in `[mint, maxt]`, merged (out-of-order writes win).
    pub fn samples(&self, id: u32, mint: i64, maxt: i64, ts: &mut Vec<i64>, vals: &mut Vec<f64>) {
        let s = &self.series[id as usize];
        let start = ts.len();
        for c in &s.chunks {
            if c.meta.max_t < mint || c.meta.min_t > maxt {
                continue;
            }
            let (mut cts, mut cvals) = (Vec::new(), Vec::new());
            crate::codec::decode_chunk(&c.data, &mut cts, &mut cvals)
                .expect("head chunks are encoded by this process");
            push_range(&cts, &cvals, mint, maxt, ts, vals);
        }
        push_range(&s.open_ts, &s.open_vals, mint, maxt, ts, vals);
        if !s.ooo.is_empty() {
            let extra: Vec<(i64, f64)> = s
                .ooo
                .iter()
                .copied()
                .filter(|&(t, _)| t >= mint && t <= maxt)
                .collect();
            if !extra.is_empty() {
                let base: Vec<(i64, f64)> = ts[start..]
                    .iter()
                    .copied()
                    .zip(vals[start..].iter().copied())
                    .collect();
                let merged = merge_runs(&[base, extra]);
                ts.truncate(start);
                vals.truncate(start);
                for (t, v) in merged {
                    ts.push(t);
                    vals.push(v);
                }
            }
        }
    }

    /// Everything the head holds for one series, as chunks ready for a block (ordered,
    /// non-overlapping, cut at block boundaries). Empty when the series has no samples.
    pub fn flush_chunks(&self, id: u32) -> Vec<EncodedChunk> {
        let s = &self.series[id as usize];
        if !s.has_data() {
            return Vec::new();
        }
        if s.ooo.is_empty() {
            let mut out = s.chunks.clone();
            if !s.open_ts.is_empty() {
                out.push(EncodedChunk::encode(&s.open_ts, &s.open_vals));
            }
            return out;
        }
        let (mut ts, mut vals) = (Vec::new(), Vec::new());
        self.samples(id, i64::MIN, i64::MAX, &mut ts, &mut vals);
        cut_chunks(&ts, &vals, self.chunk_samples, self.block_range)
    }

    /// Removes every sample (after a flush); series and their ids stay.
    pub fn clear_samples(&mut self) {
        for s in &mut self.series {
            s.chunks = Vec::new();
            s.open_ts = Vec::new();
            s.open_vals = Vec::new();
            s.ooo = Vec::new();
        }
        self.n_samples = 0;
        self.closed_bytes = 0;
        self.closed_samples = 0;
        self.min_t = i64::MAX;
        self.max_t = i64::MIN;
    }

    /// Roughly the memory the head's samples take: the closed chunks' encoded bytes plus 16
    /// bytes for every sample not yet in a closed chunk (open chunks, out-of-order buffer).
    pub fn memory_estimate(&self) -> u64 {
        self.closed_bytes + 16 * self.n_samples.saturating_sub(self.closed_samples)
    }

    /// Deletes samples of matching series in `[mint, maxt]`.
    pub fn delete(&mut self, matchers: &[Matcher], mint: i64, maxt: i64) {
        for id in self.select_ids(matchers) {
            let s = &self.series[id as usize];
            if !s.has_data() {
                continue;
            }
            let (mut ts, mut vals) = (Vec::new(), Vec::new());
            self.samples(id, i64::MIN, i64::MAX, &mut ts, &mut vals);
            let before = ts.len();
            let (kts, kvals): (Vec<i64>, Vec<f64>) = ts
                .iter()
                .zip(vals.iter())
                .filter(|(&t, _)| t < mint || t > maxt)
                .map(|(&t, &v)| (t, v))
                .unzip();
            let removed = (before - kts.len()) as u64;
            let chunk_samples = self.chunk_samples;
            let block_range = self.block_range;
            let s = &mut self.series[id as usize];
            let (old_bytes, old_samples) = closed_size(&s.chunks);
            s.ooo.clear();
            s.open_ts.clear();
            s.open_vals.clear();
            s.chunks = cut_chunks(&kts, &kvals, chunk_samples, block_range);
            // Keep the newest chunk open so that in-order appends continue cheaply.
            if let Some(last) = s.chunks.pop() {
                crate::codec::decode_chunk(&last.data, &mut s.open_ts, &mut s.open_vals)
                    .expect("encoded by this process");
            }
            let (bytes, samples) = closed_size(&s.chunks);
            self.closed_bytes = self.closed_bytes - old_bytes + bytes;
            self.closed_samples = self.closed_samples - old_samples + samples;
            self.n_samples = self.n_samples.saturating_sub(removed);
        }
    }

    pub fn label_names(&self) -> Vec<String> {
        self.postings
            .names(&self.symbols)
            .map(str::to_string)
            .collect()
    }

    pub fn label_values(&self, name: &str) -> Vec<String> {
        self.postings
            .values(&self.symbols, name)
            .into_iter()
            .map(str::to_string)
            .collect()
    }
}

fn push_range(
    src_t: &[i64],
    src_v: &[f64],
    mint: i64,
    maxt: i64,
    ts: &mut Vec<i64>,
    vals: &mut Vec<f64>,
) {
    let lo = src_t.partition_point(|&t| t < mint);
    let hi = src_t.partition_point(|&t| t <= maxt);
    if lo < hi {
        ts.extend_from_slice(&src_t[lo..hi]);
        vals.extend_from_slice(&src_v[lo..hi]);
    }
}

/// Merges sorted runs given in precedence order (later runs win on equal timestamps;
/// within one run, a later entry wins). Runs need not be sorted internally.
pub(crate) fn merge_runs(runs: &[Vec<(i64, f64)>]) -> Vec<(i64, f64)> {
    let mut all: Vec<(i64, usize, f64)> = Vec::with_capacity(runs.iter().map(Vec::len).sum());
    let mut seq = 0usize;
    for run in runs {
        for &(t, v) in run {
            all.push((t, seq, v));
            seq += 1;
        }
    }
    all.sort_unstable_by_key(|a| (a.0, a.1));
    let mut out: Vec<(i64, f64)> = Vec::with_capacity(all.len());
    for (t, _, v) in all {
        match out.last_mut() {
            Some(last) if last.0 == t => last.1 = v,
            _ => out.push((t, v)),
        }
    }
    out
}

/// Cuts sorted samples into chunks at block boundaries and every `chunk_samples` samples.
pub(crate) fn cut_chunks(
    ts: &[i64],
    vals: &[f64],
    chunk_samples: usize,
    block_range: i64,
) -> Vec<EncodedChunk> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < ts.len() {
        let block = ts[start].div_euclid(block_range);
        let mut end = start + 1;
        while end < ts.len()
            && end - start < chunk_samples
            && ts[end].div_euclid(block_range) == block
        {
            end += 1;
        }
        out.push(EncodedChunk::encode(&ts[start..end], &vals[start..end]));
        start = end;
    }
    out
}

/// Encoded bytes and samples of closed chunks (what [`Head::memory_estimate`] counts).
fn closed_size(chunks: &[EncodedChunk]) -> (u64, u64) {
    chunks.iter().fold((0, 0), |(b, n), c| {
        (b + c.data.len() as u64, n + u64::from(c.meta.count))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_duplicate_and_out_of_order_writes() {
        let mut h = Head::new(4, 100);
        let id = h.get_or_create(&Labels::new([("__name__", "x")]));
        for t in [1, 2, 3, 4, 5, 150, 151] {
            assert!(h.append(id, t, t as f64));
        }
        h.append(id, 151, -1.0); // duplicate newest: overwritten
        h.append(id, 2, 20.0); // out of order: wins over the chunk's 2
        h.append(id, 99, 99.0); // out of order, new timestamp
        let (mut ts, mut vs) = (Vec::new(), Vec::new());
        h.samples(id, 0, 1000, &mut ts, &mut vs);
        assert_eq!(ts, vec![1, 2, 3, 4, 5, 99, 150, 151]);
        assert_eq!(vs, vec![1.0, 20.0, 3.0, 4.0, 5.0, 99.0, 150.0, -1.0]);
        // Chunks: [1..4] cut by size, [5] cut by the block boundary at 100.
        assert_eq!(h.series[0].chunks.len(), 2);
        let chunks = h.flush_chunks(id);
        for c in &chunks {
            assert_eq!(c.meta.min_t.div_euclid(100), c.meta.max_t.div_euclid(100));
        }
        assert_eq!(chunks.iter().map(|c| c.meta.count).sum::<u32>(), 8);
        h.delete(&[Matcher::equal("__name__", "x")], 3, 99);
        let (mut ts, mut vs) = (Vec::new(), Vec::new());
        h.samples(id, i64::MIN, i64::MAX, &mut ts, &mut vs);
        assert_eq!(ts, vec![1, 2, 150, 151]);
    }

    /// The memory estimate follows closed chunks and open samples through appends,
    /// deletions and a flush.
    #[test]
    fn memory_estimate_tracks_chunks() {
        let mut h = Head::new(4, 1_000_000);
        let ids: Vec<u32> = (0..3)
            .map(|i| h.get_or_create(&Labels::new([("__name__", format!("m{i}"))])))
            .collect();
        let recount = |h: &Head| -> u64 {
            let mut b = 0;
            for s in &h.series {
                b += s.chunks.iter().map(|c| c.data.len() as u64).sum::<u64>();
                b += 16 * (s.open_ts.len() + s.ooo.len()) as u64;
            }
            b
        };
        assert_eq!(h.memory_estimate(), 0);
        for t in 0..50 {
            for &id in &ids {
                h.append(id, t * 10, (t * 7919 % 113) as f64 / 3.0);
            }
        }
        h.append(ids[0], 5, 1.0); // out of order
        assert!(h.memory_estimate() > 0);
        assert_eq!(h.memory_estimate(), recount(&h));
        h.delete(&[Matcher::equal("__name__", "m1")], 100, 300);
        assert_eq!(h.memory_estimate(), recount(&h));
        h.clear_samples();
        assert_eq!(h.memory_estimate(), 0);
    }
}
