//! A cache from series keys to the caller's series ids.

use crate::{parse_series_key, ParseError};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use tsq_storage::Labels;

/// FxHash (rustc's hasher): fast on short keys; not DoS-resistant, which is fine for a cache
/// keyed by the lines of a file being imported.
#[derive(Default, Clone, Copy)]
pub struct FxHasher {
    hash: u64,
}

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    #[inline]
    fn add(&mut self, w: u64) {
        self.hash = (self.hash.rotate_left(5) ^ w).wrapping_mul(SEED);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(w));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.hash
    }
}

/// Maps the series keys of [`Record`](crate::Record)s to the caller's ids (e.g. storage series
/// refs), building the [`Labels`] only on a miss. Consecutive samples of one series (the
/// usual layout of OpenMetrics files) skip the hash lookup.
///
/// ```
/// use tsq_formats::{parse, Event, Format, ParseError, ParseOptions, SeriesCache};
/// let mut cache: SeriesCache<u32> = SeriesCache::new();
/// let mut series = Vec::new(); // id -> labels, standing in for the storage
/// let mut samples = Vec::new();
/// let input = b"up{job=\"a\"} 1 1\nup{job=\"a\"} 2 2\nup{job=\"b\"} 3 3\n";
/// parse(input, &ParseOptions::new(Format::Prometheus), |ev| {
///     if let Event::Sample(r) = ev {
///         let id = cache.get_or_insert(r.series_key, |labels| {
///             series.push(labels);
///             Ok::<u32, ParseError>(series.len() as u32 - 1)
///         })?;
///         samples.push((id, r.timestamp_ms, r.value));
///     }
///     Ok::<(), ParseError>(())
/// })
/// .unwrap();
/// assert_eq!(series.len(), 2);
/// assert_eq!(samples, [(0, 1, 1.0), (0, 2, 2.0), (1, 3, 3.0)]);
/// ```
pub struct SeriesCache<T> {
    map: HashMap<Box<str>, T, BuildHasherDefault<FxHasher>>,
    last_key: String,
    last: Option<T>,
}

impl<T: Copy> Default for SeriesCache<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Copy> SeriesCache<T> {
    /// An empty cache.
    pub fn new() -> Self {
        SeriesCache {
            map: HashMap::default(),
            last_key: String::new(),
            last: None,
        }
    }

    /// The id of `key`; on a miss, `make` gets the labels (from
    /// [`parse_series_key`]) and returns the id to remember. A key that does not parse (never
    /// one reported by [`parse`](crate::parse)) gives the [`ParseError`], converted.
    #[inline]
    pub fn get_or_insert<E: From<ParseError>>(
        &mut self,
        key: &str,
        make: impl FnOnce(Labels) -> Result<T, E>,
    ) -> Result<T, E> {
        if let Some(v) = self.last {
            if self.last_key == key {
                return Ok(v);
            }
        }
        let v = match self.map.get(key) {
            Some(&v) => v,
            None => {
                let v = make(parse_series_key(key)?)?;
                self.map.insert(key.into(), v);
                v
            }
        };
        self.last_key.clear();
        self.last_key.push_str(key);
        self.last = Some(v);
        Ok(v)
    }

    /// Number of distinct keys cached.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Forgets everything (e.g. after the storage dropped series).
    pub fn clear(&mut self) {
        self.map.clear();
        self.last_key.clear();
        self.last = None;
    }
}
