//! The label index: interned symbols and postings lists per label pair.
//!
//! Used by the head (built incrementally) and by each block (built lazily from the block's
//! series table on first query).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use crate::labels::{Label, Labels, MatchOp, Matcher};

/// Interned strings: each distinct label name or value is stored once.
#[derive(Debug, Default)]
pub struct Symbols {
    ids: HashMap<Arc<str>, u32>,
    strs: Vec<Arc<str>>,
}

impl Symbols {
    /// The id of `s`, adding it if new.
    pub fn intern(&mut self, s: &str) -> u32 {
        if let Some(&id) = self.ids.get(s) {
            return id;
        }
        let id = self.strs.len() as u32;
        let a: Arc<str> = Arc::from(s);
        self.strs.push(a.clone());
        self.ids.insert(a, id);
        id
    }

    /// The id of `s` if interned.
    pub fn get(&self, s: &str) -> Option<u32> {
        self.ids.get(s).copied()
    }

    /// The string of an id.
    pub fn resolve(&self, id: u32) -> &str {
        &self.strs[id as usize]
    }

    /// Number of symbols.
    pub fn len(&self) -> usize {
        self.strs.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.strs.is_empty()
    }
}

/// Label pairs of one series as symbol ids, sorted by name.
pub type SymLabels = Box<[(u32, u32)]>;

/// Hashes the symbol ids this module assigns. They count up from 0, so nobody outside
/// chooses them and SipHash's resistance to chosen collisions buys nothing; one
/// multiplication spreads them (the low bits of `id * odd` are a bijection of the id's low
/// bits, the high bits mix), about five times cheaper per lookup than SipHash.
#[derive(Debug, Default, Clone, Copy)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u32(u32::from(b));
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.0 = (self.0.rotate_left(32) ^ u64::from(n)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// A map keyed by symbol ids.
type IdMap<V> = HashMap<u32, V, BuildHasherDefault<IdHasher>>;

/// Postings: for each label name, for each value, the sorted ids of the series having it.
#[derive(Debug, Default)]
pub struct Postings {
    by_name: IdMap<IdMap<Vec<u32>>>,
    all: Vec<u32>,
}

impl Postings {
    /// Adds series `id` (ids must be added in increasing order) with its labels.
    pub fn add(&mut self, id: u32, labels: &[(u32, u32)]) {
        debug_assert!(self.all.last().is_none_or(|&l| l < id));
        self.all.push(id);
        for &(n, v) in labels {
            self.by_name
                .entry(n)
                .or_default()
                .entry(v)
                .or_default()
                .push(id);
        }
    }

    /// Ids of the series matching every matcher, sorted. An empty matcher list selects all.
    pub fn select(&self, symbols: &Symbols, matchers: &[Matcher]) -> Vec<u32> {
        // Start from the most selective matchers that cannot match an absent label.
        let mut result: Option<Vec<u32>> = None;
        let mut filters: Vec<&Matcher> = Vec::new();
        for m in matchers {
            if m.matches_empty() {
                filters.push(m);
                continue;
            }
            let ids = self.ids_matching(symbols, m);
            result = Some(match result {
                None => ids,
                Some(r) => intersect(&r, &ids),
            });
            if result.as_ref().is_some_and(|r| r.is_empty()) {
                return Vec::new();
            }
        }
        let mut ids = result.unwrap_or_else(|| self.all.clone());
        // Matchers that accept an absent label: remove the series whose value fails.
        for m in filters {
            let Some(name) = symbols.get(&m.name) else {
                continue;
            };
            let Some(values) = self.by_name.get(&name) else {
                continue;
            };
            let mut reject = Vec::new();
            for (&v, list) in values {
                if !m.matches(symbols.resolve(v)) {
                    reject.extend_from_slice(list);
                }
            }
            if !reject.is_empty() {
                reject.sort_unstable();
                ids = subtract(&ids, &reject);
            }
        }
        ids
    }

    fn ids_matching(&self, symbols: &Symbols, m: &Matcher) -> Vec<u32> {
        let Some(name) = symbols.get(&m.name) else {
            return Vec::new();
        };
        let Some(values) = self.by_name.get(&name) else {
            return Vec::new();
        };
        if m.op == MatchOp::Equal {
            return symbols
                .get(&m.value)
                .and_then(|v| values.get(&v))
                .cloned()
                .unwrap_or_default();
        }
        let mut lists: Vec<&Vec<u32>> = Vec::new();
        for (&v, list) in values {
            if m.matches(symbols.resolve(v)) {
                lists.push(list);
            }
        }
        let mut out: Vec<u32> = lists.into_iter().flatten().copied().collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Label names present in the index.
    pub fn names<'a>(&'a self, symbols: &'a Symbols) -> impl Iterator<Item = &'a str> + 'a {
        self.by_name.keys().map(|&n| symbols.resolve(n))
    }

    /// Values of one label name.
    pub fn values<'a>(&'a self, symbols: &'a Symbols, name: &str) -> Vec<&'a str> {
        symbols
            .get(name)
            .and_then(|n| self.by_name.get(&n))
            .map(|vals| vals.keys().map(|&v| symbols.resolve(v)).collect())
            .unwrap_or_default()
    }
}

/// Sorted intersection.
pub fn intersect(a: &[u32], b: &[u32]) -> Vec<u32> {
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::with_capacity(a.len().min(b.len()));
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out
}

/// Sorted difference `a - b`.
pub fn subtract(a: &[u32], b: &[u32]) -> Vec<u32> {
    let mut j = 0;
    let mut out = Vec::with_capacity(a.len());
    for &x in a {
        while j < b.len() && b[j] < x {
            j += 1;
        }
        if j >= b.len() || b[j] != x {
            out.push(x);
        }
    }
    out
}

/// Interns a label set.
pub fn intern_labels(symbols: &mut Symbols, labels: &Labels) -> SymLabels {
    labels
        .iter()
        .map(|l| (symbols.intern(&l.name), symbols.intern(&l.value)))
        .collect()
}

/// Turns symbol ids back into a label set.
pub fn resolve_labels(symbols: &Symbols, labels: &[(u32, u32)]) -> Labels {
    Labels::from_sorted(
        labels
            .iter()
            .map(|&(n, v)| Label {
                name: symbols.resolve(n).to_string(),
                value: symbols.resolve(v).to_string(),
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn select_with_all_matcher_kinds() {
        let mut syms = Symbols::default();
        let mut p = Postings::default();
        let series = [
            Labels::new([("__name__", "cpu"), ("host", "a"), ("dc", "x")]),
            Labels::new([("__name__", "cpu"), ("host", "b")]),
            Labels::new([("__name__", "mem"), ("host", "a"), ("dc", "y")]),
        ];
        for (i, l) in series.iter().enumerate() {
            let sl = intern_labels(&mut syms, l);
            p.add(i as u32, &sl);
        }
        let m = |op, n: &str, v: &str| Matcher::new(op, n, v, true).unwrap();
        assert_eq!(
            p.select(&syms, &[m(MatchOp::Equal, "__name__", "cpu")]),
            vec![0, 1]
        );
        assert_eq!(
            p.select(
                &syms,
                &[
                    m(MatchOp::Equal, "host", "a"),
                    m(MatchOp::NotEqual, "dc", "y")
                ]
            ),
            vec![0]
        );
        // dc="" selects series without dc.
        assert_eq!(p.select(&syms, &[m(MatchOp::Equal, "dc", "")]), vec![1]);
        assert_eq!(
            p.select(&syms, &[m(MatchOp::Regex, "dc", "x|y")]),
            vec![0, 2]
        );
        assert_eq!(
            p.select(&syms, &[m(MatchOp::NotRegex, "host", "a")]),
            vec![1]
        );
        assert_eq!(
            p.select(&syms, &[m(MatchOp::Equal, "nope", "1")]),
            Vec::<u32>::new()
        );
        let sl = intern_labels(&mut syms, &series[2]);
        assert_eq!(resolve_labels(&syms, &sl), series[2]);
    }
}
