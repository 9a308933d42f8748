//! The staged form of a parsed file: what `tsq ingest` keeps between reading a file (once)
//! and writing it, so that nothing is written before the whole file is known to be valid.
//!
//! A [`Stage`] receives the parser's events and keeps, per file segment:
//! * the distinct series keys, each with a local id (the order of first appearance);
//! * a byte stream of samples: a series switch `varint(id << 1 | 1)` before the first
//!   sample of a run, then per sample `varint(zigzag(t - previous t) << 1)`,
//!   `varint(line - previous line)` and the value's 8 bytes (little endian): 12 bytes a
//!   sample for the generated datasets (10 to 15 s steps), against 24 for
//!   `(SeriesRef, i64, f64)`;
//! * the metadata reports, each with the number of samples before it.
//!
//! The stream stays in memory up to [`Spill::MEM_LIMIT`] bytes and beyond that goes to an
//! anonymous temporary file (`tempfile::tempfile`, in `TMPDIR`: unlinked from the start,
//! so it disappears with the process whatever happens), written and read back in 1 MiB
//! pieces: memory stays bounded whatever the file size.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};

use tsq::formats::Event;
use tsq::storage::MetricMeta;

use super::KeyHasher;

/// The sample stream: a buffer, spilled to a temporary file past a size.
pub(super) struct Spill {
    buf: Vec<u8>,
    file: Option<File>,
    /// Spill the buffer once it holds this much.
    flush_at: usize,
}

impl Spill {
    /// Kept in memory up to this size; larger streams go to a temporary file.
    pub(super) const MEM_LIMIT: usize = 8 << 20;
    /// Write (and read back) the temporary file in pieces of this size.
    const PIECE: usize = 1 << 20;

    pub(super) fn new(mem_limit: usize) -> Spill {
        Spill {
            buf: Vec::new(),
            file: None,
            flush_at: mem_limit.max(64),
        }
    }

    #[inline]
    fn varint(&mut self, v: u64) {
        tsq::storage::enc::put_uvarint(&mut self.buf, v);
    }

    #[inline]
    fn series(&mut self, id: u32) {
        self.varint(u64::from(id) << 1 | 1);
    }

    #[inline]
    fn sample(&mut self, dt: i64, dline: u64, v: f64) -> io::Result<()> {
        // Timestamps are within 0..2^54 ms, so the zigzag fits 55 bits and the shift 56.
        let zz = ((dt << 1) ^ (dt >> 63)) as u64;
        self.varint(zz << 1);
        self.varint(dline);
        self.buf.extend_from_slice(&v.to_le_bytes());
        if self.buf.len() >= self.flush_at {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        let first = self.file.is_none();
        if first {
            self.file = Some(tempfile::tempfile()?);
            self.flush_at = Self::PIECE;
        }
        let f = self.file.as_mut().expect("created above");
        f.write_all(&self.buf)?;
        if first {
            // Give back the memory of the in-memory stage: from now on pieces are small.
            self.buf = Vec::with_capacity(Self::PIECE + 64);
        } else {
            self.buf.clear();
        }
        Ok(())
    }

    /// True when part of the stream went to a temporary file.
    #[cfg(test)]
    pub(super) fn spilled(&self) -> bool {
        self.file.is_some()
    }

    /// Reads the stream back from its start.
    pub(super) fn into_reader(mut self) -> io::Result<SpillReader> {
        let file = match self.file.take() {
            Some(mut f) => {
                f.write_all(&self.buf)?;
                f.seek(SeekFrom::Start(0))?;
                self.buf.clear();
                Some(f)
            }
            None => None,
        };
        Ok(SpillReader {
            eof: file.is_none(),
            file,
            buf: self.buf,
            pos: 0,
        })
    }
}

/// One item of the stream.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Item {
    /// The following samples are of the series with this local id.
    Series(u32),
    /// A sample: time and line as differences from the previous sample's.
    Sample { dt: i64, dline: u64, v: f64 },
}

/// Reads a [`Spill`] back.
pub(super) struct SpillReader {
    file: Option<File>,
    buf: Vec<u8>,
    pos: usize,
    eof: bool,
}

fn corrupt() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        "the staged samples in the temporary file are damaged",
    )
}

impl SpillReader {
    /// Longest item: two 10-byte varints and a value.
    const MAX_ITEM: usize = 28;

    fn refill(&mut self) -> io::Result<()> {
        let Some(f) = self.file.as_mut() else {
            self.eof = true;
            return Ok(());
        };
        self.buf.drain(..self.pos);
        self.pos = 0;
        let have = self.buf.len();
        self.buf.resize(have + Spill::PIECE, 0);
        let mut filled = have;
        while filled < self.buf.len() {
            let n = f.read(&mut self.buf[filled..])?;
            if n == 0 {
                self.eof = true;
                break;
            }
            filled += n;
        }
        self.buf.truncate(filled);
        Ok(())
    }

    #[inline]
    fn varint(&mut self) -> io::Result<u64> {
        let mut r = tsq::storage::enc::Reader::new(&self.buf[self.pos..]);
        let v = r.uvarint().ok_or_else(corrupt)?;
        self.pos += r.pos();
        Ok(v)
    }

    /// The next item, `None` at the end.
    #[inline]
    pub(super) fn next_item(&mut self) -> io::Result<Option<Item>> {
        if self.buf.len() - self.pos < Self::MAX_ITEM && !self.eof {
            self.refill()?;
        }
        if self.pos == self.buf.len() {
            return Ok(None);
        }
        let h = self.varint()?;
        if h & 1 == 1 {
            let id = u32::try_from(h >> 1).map_err(|_| corrupt())?;
            return Ok(Some(Item::Series(id)));
        }
        let zz = h >> 1;
        let dt = (zz >> 1) as i64 ^ -((zz & 1) as i64);
        let dline = self.varint()?;
        let bytes = self
            .buf
            .get(self.pos..self.pos + 8)
            .ok_or_else(corrupt)?
            .try_into()
            .expect("8 bytes");
        self.pos += 8;
        Ok(Some(Item::Sample {
            dt,
            dline,
            v: f64::from_le_bytes(bytes),
        }))
    }
}

/// What one segment of a file holds, in a form cheap to write: see the module comment.
pub(super) struct Stage {
    keys: HashMap<Box<str>, u32, std::hash::BuildHasherDefault<KeyHasher>>,
    /// Local id -> series key.
    pub(super) key_list: Vec<Box<str>>,
    /// The key of the current run (consecutive samples of one series skip the hash lookup).
    last_key: String,
    current: Option<u32>,
    prev_t: i64,
    prev_line: usize,
    /// Samples staged.
    pub(super) samples: u64,
    /// Metadata reports: (samples staged before it, metric, metadata).
    pub(super) meta: Vec<(u64, String, MetricMeta)>,
    pub(super) out: Spill,
}

impl Stage {
    pub(super) fn new(mem_limit: usize) -> Stage {
        Stage {
            keys: HashMap::default(),
            key_list: Vec::new(),
            last_key: String::new(),
            current: None,
            prev_t: 0,
            prev_line: 0,
            samples: 0,
            meta: Vec::new(),
            out: Spill::new(mem_limit),
        }
    }

    /// Stages one parser event.
    #[inline]
    pub(super) fn event(&mut self, ev: Event<'_>) -> io::Result<()> {
        match ev {
            Event::Sample(r) => {
                let same = self.current.is_some() && self.last_key == r.series_key;
                if !same {
                    let id = match self.keys.get(r.series_key) {
                        Some(&id) => id,
                        None => {
                            let id = u32::try_from(self.key_list.len()).map_err(|_| {
                                io::Error::other("more than 2^32 series in one file")
                            })?;
                            self.keys.insert(r.series_key.into(), id);
                            self.key_list.push(r.series_key.into());
                            id
                        }
                    };
                    self.last_key.clear();
                    self.last_key.push_str(r.series_key);
                    if self.current != Some(id) {
                        self.out.series(id);
                        self.current = Some(id);
                    }
                }
                let dt = r.timestamp_ms.wrapping_sub(self.prev_t);
                let dline = (r.line - self.prev_line) as u64;
                self.prev_t = r.timestamp_ms;
                self.prev_line = r.line;
                self.samples += 1;
                self.out.sample(dt, dline, r.value)
            }
            Event::Metadata { metric, meta } => {
                self.meta
                    .push((self.samples, metric.to_string(), meta.clone()));
                Ok(())
            }
        }
    }

    /// Distinct series keys staged.
    pub(super) fn series(&self) -> usize {
        self.key_list.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tsq::formats::Record;

    /// Staged samples read back as they went in, from memory and from a spilled file, with
    /// times far apart (zigzag of large differences) and every kind of value.
    #[test]
    fn staged_samples_read_back_exactly() {
        let keys = ["a{x=\"1\"}", "b", "a{x=\"1\"}", "c{y=\"2\"}"];
        let values = [
            0.0,
            -0.0,
            1.5,
            f64::NAN,
            f64::INFINITY,
            -1e300,
            20.625590993354837,
        ];
        let mut expect = Vec::new();
        let mut line = 1;
        for i in 0..50_000u64 {
            let key = keys[(i / 7 % 4) as usize];
            let t = if i % 11 == 0 {
                tsq::formats::MAX_TIMESTAMP_MS - i as i64
            } else {
                (i as i64) * 15_000
            };
            let v = values[(i % 7) as usize];
            line += 1 + (i % 3) as usize;
            expect.push((key, t, v, line));
        }
        for limit in [usize::MAX, 1000] {
            let mut st = Stage::new(limit);
            for &(key, t, v, line) in &expect {
                st.event(Event::Sample(Record {
                    series_key: key,
                    timestamp_ms: t,
                    value: v,
                    line,
                }))
                .unwrap();
            }
            assert_eq!(st.out.spilled(), limit == 1000);
            assert_eq!(st.series(), 3);
            let key_list = st.key_list.clone();
            let mut r = st.out.into_reader().unwrap();
            let (mut t, mut line, mut cur) = (0i64, 0usize, None);
            let mut got = Vec::new();
            while let Some(item) = r.next_item().unwrap() {
                match item {
                    Item::Series(id) => cur = Some(id),
                    Item::Sample { dt, dline, v } => {
                        t = t.wrapping_add(dt);
                        line += dline as usize;
                        let key: &str = &key_list[cur.unwrap() as usize];
                        got.push((key.to_string(), t, v.to_bits(), line));
                    }
                }
            }
            let want: Vec<_> = expect
                .iter()
                .map(|&(k, t, v, l)| (k.to_string(), t, v.to_bits(), l))
                .collect();
            assert_eq!(got, want, "limit {limit}");
        }
    }
}
