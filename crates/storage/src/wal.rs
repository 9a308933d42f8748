//! Write-ahead log: segments of checksummed records, written before the head is changed.
//!
//! Layout and guarantees are documented in docs/format/wal.md. In short, each record is
//!
//! ```text
//! +-------+------+---------+---------+---------+---------+---------+---------+-----------+
//! | magic | type | len u32 | count   | min_t   | max_t   | hdr crc | payload | body crc  |
//! | 0xA5  | u8   |         | u32     | i64     | i64     | u32     | len B   | u32       |
//! +-------+------+---------+---------+---------+---------+---------+---------+-----------+
//! ```
//!
//! The header checksum lets replay trust `len` and report exactly what a damaged payload
//! held (sample count and time range) even when the payload itself is lost.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::enc::{put_str, put_uvarint, put_varint, Reader};
use crate::error::{Error, Result};
use crate::labels::{Labels, MatchOp, Matcher, MetricKind, MetricMeta, MetricType};
use crate::vfs::{Vfs, VfsFile};

/// First byte of every record.
pub const RECORD_MAGIC: u8 = 0xA5;
/// Bytes before the payload.
pub const HEADER_LEN: usize = 30;
/// Record type: a write batch (new series, metadata, samples).
pub const REC_BATCH: u8 = 1;
/// Record type: a deletion.
pub const REC_DELETE: u8 = 2;
/// Record type: the start of a series-id epoch (empty payload). Series ids in the records
/// after it refer only to declarations after it; replay forgets the ids declared before.
pub const REC_EPOCH: u8 = 3;
/// Largest payload accepted on replay (a bound for hostile input).
pub const MAX_RECORD: usize = 1 << 30;

/// A deletion: samples of matching series in `[mint, maxt]`.
#[derive(Debug, Clone)]
pub struct Deletion {
    /// Sequence number: the deletion applies to blocks with a smaller sequence number and
    /// to head samples written before it.
    pub seq: u64,
    /// Which series.
    pub matchers: Vec<Matcher>,
    /// First deleted timestamp.
    pub mint: i64,
    /// Last deleted timestamp.
    pub maxt: i64,
}

/// A decoded record.
#[derive(Debug)]
pub enum Record {
    /// A committed batch.
    Batch {
        /// Series declared by this batch (named for the first time in its epoch): (ref, labels).
        series: Vec<(u32, Labels)>,
        /// Metadata updates.
        meta: Vec<(String, MetricMeta)>,
        /// Samples: (ref, t, v).
        samples: Vec<(u32, i64, f64)>,
    },
    /// A deletion.
    Delete(Deletion),
    /// The start of a series-id epoch: ids declared before it are no longer named.
    Epoch,
}

/// Encodes a batch payload into `out` and returns (count, min_t, max_t).
pub fn encode_batch(
    out: &mut Vec<u8>,
    series: &[(u32, Labels)],
    meta: &[(String, MetricMeta)],
    samples: &[(u32, i64, f64)],
) -> (u32, i64, i64) {
    put_uvarint(out, series.len() as u64);
    for (r, labels) in series {
        put_uvarint(out, u64::from(*r));
        put_uvarint(out, labels.len() as u64);
        for l in labels {
            put_str(out, &l.name);
            put_str(out, &l.value);
        }
    }
    put_uvarint(out, meta.len() as u64);
    for (name, m) in meta {
        put_str(out, name);
        out.push(meta_type_code(m.metric_type));
        out.push(match m.kind {
            MetricKind::Health => 0,
            MetricKind::Kpi => 1,
        });
        put_str(out, &m.unit);
        put_str(out, &m.help);
    }
    put_uvarint(out, samples.len() as u64);
    out.reserve(samples.len() * 13);
    let (mut min_t, mut max_t) = (i64::MAX, i64::MIN);
    let mut prev_t = 0i64;
    for &(r, t, v) in samples {
        put_uvarint(out, u64::from(r));
        put_varint(out, t.wrapping_sub(prev_t));
        prev_t = t;
        out.extend_from_slice(&v.to_bits().to_le_bytes());
        min_t = min_t.min(t);
        max_t = max_t.max(t);
    }
    if samples.is_empty() {
        (min_t, max_t) = (0, 0);
    }
    (samples.len() as u32, min_t, max_t)
}

fn meta_type_code(t: MetricType) -> u8 {
    match t {
        MetricType::Unknown => 0,
        MetricType::Counter => 1,
        MetricType::Gauge => 2,
        MetricType::Histogram => 3,
        MetricType::Summary => 4,
    }
}

fn meta_type_from(c: u8) -> Option<MetricType> {
    Some(match c {
        0 => MetricType::Unknown,
        1 => MetricType::Counter,
        2 => MetricType::Gauge,
        3 => MetricType::Histogram,
        4 => MetricType::Summary,
        _ => return None,
    })
}

/// Encodes a deletion payload.
pub fn encode_delete(out: &mut Vec<u8>, d: &Deletion) {
    put_uvarint(out, d.seq);
    put_uvarint(out, d.matchers.len() as u64);
    for m in &d.matchers {
        out.push(match m.op {
            MatchOp::Equal => 0,
            MatchOp::NotEqual => 1,
            MatchOp::Regex => 2,
            MatchOp::NotRegex => 3,
        });
        put_str(out, &m.name);
        put_str(out, &m.value);
    }
    put_varint(out, d.mint);
    put_varint(out, d.maxt);
}

/// Decodes one payload of the given type.
pub fn decode_record(typ: u8, payload: &[u8]) -> Option<Record> {
    let mut r = Reader::new(payload);
    match typ {
        REC_BATCH => {
            let n_series = usize::try_from(r.uvarint()?).ok()?;
            let mut series = Vec::with_capacity(n_series.min(r.remaining()));
            for _ in 0..n_series {
                let id = u32::try_from(r.uvarint()?).ok()?;
                let n = usize::try_from(r.uvarint()?).ok()?;
                let mut pairs = Vec::with_capacity(n.min(r.remaining()));
                for _ in 0..n {
                    pairs.push((r.str()?.to_string(), r.str()?.to_string()));
                }
                series.push((id, Labels::new(pairs)));
            }
            let n_meta = usize::try_from(r.uvarint()?).ok()?;
            let mut meta = Vec::with_capacity(n_meta.min(r.remaining()));
            for _ in 0..n_meta {
                let name = r.str()?.to_string();
                let metric_type = meta_type_from(r.u8()?)?;
                let kind = match r.u8()? {
                    0 => MetricKind::Health,
                    1 => MetricKind::Kpi,
                    _ => return None,
                };
                let unit = r.str()?.to_string();
                let help = r.str()?.to_string();
                meta.push((
                    name,
                    MetricMeta {
                        metric_type,
                        unit,
                        help,
                        kind,
                    },
                ));
            }
            let n = usize::try_from(r.uvarint()?).ok()?;
            // Each sample takes at least 10 bytes: bound the allocation by the input.
            let mut samples = Vec::with_capacity(n.min(r.remaining() / 10));
            let mut prev_t = 0i64;
            for _ in 0..n {
                let id = u32::try_from(r.uvarint()?).ok()?;
                let t = prev_t.wrapping_add(r.varint()?);
                prev_t = t;
                let v = f64::from_bits(r.u64()?);
                samples.push((id, t, v));
            }
            if r.remaining() != 0 {
                return None;
            }
            Some(Record::Batch {
                series,
                meta,
                samples,
            })
        }
        REC_EPOCH => (r.remaining() == 0).then_some(Record::Epoch),
        REC_DELETE => {
            let seq = r.uvarint()?;
            let n = usize::try_from(r.uvarint()?).ok()?;
            let mut matchers = Vec::with_capacity(n.min(r.remaining()));
            for _ in 0..n {
                let op = match r.u8()? {
                    0 => MatchOp::Equal,
                    1 => MatchOp::NotEqual,
                    2 => MatchOp::Regex,
                    3 => MatchOp::NotRegex,
                    _ => return None,
                };
                let name = r.str()?;
                let value = r.str()?;
                matchers.push(Matcher::new(op, name, value, true).ok()?);
            }
            let mint = r.varint()?;
            let maxt = r.varint()?;
            if r.remaining() != 0 {
                return None;
            }
            Some(Record::Delete(Deletion {
                seq,
                matchers,
                mint,
                maxt,
            }))
        }
        _ => None,
    }
}

/// Frames a payload as a record.
pub fn frame(out: &mut Vec<u8>, typ: u8, payload: &[u8], count: u32, min_t: i64, max_t: i64) {
    let start = out.len();
    out.push(RECORD_MAGIC);
    out.push(typ);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&min_t.to_le_bytes());
    out.extend_from_slice(&max_t.to_le_bytes());
    let hcrc = crc32fast::hash(&out[start..]);
    out.extend_from_slice(&hcrc.to_le_bytes());
    out.extend_from_slice(payload);
    let mut h = crc32fast::Hasher::new();
    h.update(&[typ]);
    h.update(payload);
    out.extend_from_slice(&h.finalize().to_le_bytes());
}

/// A framed epoch record (the first record of every segment the writer starts afresh).
pub fn epoch_record() -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + 4);
    frame(&mut out, REC_EPOCH, &[], 0, 0, 0);
    out
}

/// The segment file name for a sequence number.
pub fn segment_name(seq: u64) -> String {
    format!("{seq:08}")
}

/// Appends records to the current segment and rolls to a new one past a size limit.
pub struct WalWriter {
    vfs: Arc<dyn Vfs>,
    dir: PathBuf,
    seq: u64,
    file: Box<dyn VfsFile>,
    written: u64,
    segment_size: u64,
    /// Bytes written since the last sync.
    dirty: bool,
}

impl WalWriter {
    /// Starts a new segment `seq` in `dir` (made durable: its directory entry is synced).
    pub fn create(vfs: Arc<dyn Vfs>, dir: &Path, seq: u64, segment_size: u64) -> Result<Self> {
        let path = dir.join(segment_name(seq));
        let file = vfs
            .create(&path)
            .map_err(|e| Error::io("create", &path, e))?;
        vfs.sync_dir(dir).map_err(|e| Error::io("sync", dir, e))?;
        Ok(WalWriter {
            vfs,
            dir: dir.to_path_buf(),
            seq,
            file,
            written: 0,
            segment_size,
            dirty: false,
        })
    }

    /// Sequence number of the segment being written.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Appends one framed record (rolling the segment first when full).
    pub fn append(&mut self, framed: &[u8]) -> Result<()> {
        if self.written > 0 && self.written + framed.len() as u64 > self.segment_size {
            // The old segment must be complete on disk before the new one is used.
            self.sync()?;
            let next =
                WalWriter::create(self.vfs.clone(), &self.dir, self.seq + 1, self.segment_size)?;
            *self = next;
        }
        let path = self.dir.join(segment_name(self.seq));
        self.file
            .write_all(framed)
            .map_err(|e| Error::io("write", &path, e))?;
        self.written += framed.len() as u64;
        self.dirty = true;
        Ok(())
    }

    /// Makes every appended record durable.
    pub fn sync(&mut self) -> Result<()> {
        if self.dirty {
            let path = self.dir.join(segment_name(self.seq));
            self.file.sync().map_err(|e| Error::io("sync", &path, e))?;
            self.dirty = false;
        }
        Ok(())
    }

    /// A handle that syncs the current segment without holding this writer (group commit).
    /// Records in earlier segments are already durable: a segment is synced before the
    /// writer rolls to the next one.
    pub fn syncer(&self) -> Result<Box<dyn VfsFile>> {
        let path = self.dir.join(segment_name(self.seq));
        self.file.syncer().map_err(|e| Error::io("open", &path, e))
    }

    /// Marks everything appended so far as synced (after a sync through a [`Self::syncer`]).
    pub fn mark_synced(&mut self) {
        self.dirty = false;
    }

    /// True when records were appended since the last sync.
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }
}

/// Something replay found and dealt with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayNotice {
    /// The segment file.
    pub segment: PathBuf,
    /// Offset of the damage.
    pub offset: u64,
    /// What happened and what was lost.
    pub message: String,
}

/// The outcome of reading one segment.
pub struct SegmentScan {
    /// Offset after the last good record (where a torn tail starts).
    pub good_len: u64,
    /// True when the segment ends in an incomplete or damaged record with nothing valid
    /// after it.
    pub torn_tail: bool,
}

fn header_at(data: &[u8], pos: usize) -> Option<(u8, usize, u32, i64, i64)> {
    let h = data.get(pos..pos + HEADER_LEN)?;
    if h[0] != RECORD_MAGIC {
        return None;
    }
    let stored = u32::from_le_bytes(h[26..30].try_into().ok()?);
    if crc32fast::hash(&h[..26]) != stored {
        return None;
    }
    let typ = h[1];
    let len = u32::from_le_bytes(h[2..6].try_into().ok()?) as usize;
    let count = u32::from_le_bytes(h[6..10].try_into().ok()?);
    let min_t = i64::from_le_bytes(h[10..18].try_into().ok()?);
    let max_t = i64::from_le_bytes(h[18..26].try_into().ok()?);
    if len > MAX_RECORD {
        return None;
    }
    Some((typ, len, count, min_t, max_t))
}

fn body_ok(data: &[u8], pos: usize, typ: u8, len: usize) -> Option<bool> {
    let start = pos + HEADER_LEN;
    let payload = data.get(start..start + len)?;
    let stored = u32::from_le_bytes(data.get(start + len..start + len + 4)?.try_into().ok()?);
    let mut h = crc32fast::Hasher::new();
    h.update(&[typ]);
    h.update(payload);
    Some(h.finalize() == stored)
}

/// True when the segment starts with a record whose header and body checksums verify (an
/// empty segment does not). An epoch record is only ever the first of a segment, so a
/// segment whose start is damaged may have lost one: replay then forgets the ids of the
/// previous epoch, as the lost record would have made it (samples whose declaration is
/// lost with it are reported rather than given to another series).
pub fn first_record_intact(data: &[u8]) -> bool {
    header_at(data, 0).is_some_and(|(typ, len, ..)| body_ok(data, 0, typ, len) == Some(true))
}

/// Reads the records of one segment, calling `f` for each good one, and reports damage.
/// A damaged record is skipped (its header's count and time range are reported when the
/// header is intact); replay resumes at the next record whose checksums verify.
pub fn scan_segment(
    path: &Path,
    data: &[u8],
    notices: &mut Vec<ReplayNotice>,
    mut f: impl FnMut(Record) -> Result<()>,
) -> Result<SegmentScan> {
    let mut pos = 0usize;
    let mut good_len = 0u64;
    while pos < data.len() {
        if let Some((typ, len, count, min_t, max_t)) = header_at(data, pos) {
            match body_ok(data, pos, typ, len) {
                Some(true) => {
                    let payload = &data[pos + HEADER_LEN..pos + HEADER_LEN + len];
                    match decode_record(typ, payload) {
                        Some(rec) => f(rec)?,
                        None => notices.push(ReplayNotice {
                            segment: path.to_path_buf(),
                            offset: pos as u64,
                            message: format!(
                                "record of type {typ} has a valid checksum but cannot be decoded; skipped ({count} samples in [{min_t}, {max_t}] lost)"
                            ),
                        }),
                    }
                    pos += HEADER_LEN + len + 4;
                    good_len = pos as u64;
                    continue;
                }
                Some(false) => {
                    let next = pos + HEADER_LEN + len + 4;
                    if next >= data.len() {
                        // The last record of the segment: a write cut short or garbled.
                        return Ok(SegmentScan {
                            good_len,
                            torn_tail: true,
                        });
                    }
                    // A complete record whose payload is damaged: lose it alone.
                    notices.push(ReplayNotice {
                        segment: path.to_path_buf(),
                        offset: pos as u64,
                        message: format!(
                            "corrupt record (payload checksum mismatch): {count} samples with timestamps in [{min_t}, {max_t}] lost"
                        ),
                    });
                    pos = next;
                    continue;
                }
                None => {
                    // Payload runs past the end of the file: a write cut short.
                    return Ok(SegmentScan {
                        good_len,
                        torn_tail: true,
                    });
                }
            }
        }
        // Header damaged or missing: look for the next valid record.
        match find_next(data, pos + 1) {
            Some(next) => {
                notices.push(ReplayNotice {
                    segment: path.to_path_buf(),
                    offset: pos as u64,
                    message: format!(
                        "corrupt record header: bytes {pos}..{next} skipped (contents unknown)"
                    ),
                });
                pos = next;
            }
            None => {
                return Ok(SegmentScan {
                    good_len,
                    torn_tail: true,
                })
            }
        }
    }
    Ok(SegmentScan {
        good_len,
        torn_tail: false,
    })
}

/// Offset of the next position at or after `from` holding a record whose header and body
/// checksums both verify.
fn find_next(data: &[u8], from: usize) -> Option<usize> {
    let mut p = from;
    while p + HEADER_LEN <= data.len() {
        if data[p] == RECORD_MAGIC {
            if let Some((typ, len, ..)) = header_at(data, p) {
                if body_ok(data, p, typ, len) == Some(true) {
                    return Some(p);
                }
            }
        }
        p += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(n: usize, base: i64) -> Vec<u8> {
        let samples: Vec<(u32, i64, f64)> =
            (0..n).map(|i| (1, base + i as i64, i as f64)).collect();
        let mut payload = Vec::new();
        let (c, a, b) = encode_batch(
            &mut payload,
            &[(1, Labels::new([("__name__", "x")]))],
            &[],
            &samples,
        );
        let mut out = Vec::new();
        frame(&mut out, REC_BATCH, &payload, c, a, b);
        out
    }

    fn count(data: &[u8]) -> (usize, Vec<ReplayNotice>, bool) {
        let mut notices = Vec::new();
        let mut n = 0;
        let scan = scan_segment(Path::new("seg"), data, &mut notices, |r| {
            if let Record::Batch { samples, .. } = r {
                n += samples.len();
            }
            Ok(())
        })
        .unwrap();
        (n, notices, scan.torn_tail)
    }

    #[test]
    fn round_trip_and_special_values() {
        let samples = vec![
            (3, -5, f64::from_bits(0x7ff0_0000_0000_0002)),
            (3, i64::MAX, -0.0),
        ];
        let mut p = Vec::new();
        encode_batch(&mut p, &[], &[], &samples);
        let Some(Record::Batch { samples: got, .. }) = decode_record(REC_BATCH, &p) else {
            panic!("decode failed")
        };
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].2.to_bits(), 0x7ff0_0000_0000_0002);
        assert_eq!(got[1].2.to_bits(), (-0.0f64).to_bits());
        assert_eq!(got[1].1, i64::MAX);
    }

    #[test]
    fn torn_tail_and_corrupt_middle() {
        let mut data = batch(10, 0);
        let second = data.len();
        data.extend(batch(5, 100));
        let third = data.len();
        data.extend(batch(7, 200));
        assert_eq!(count(&data), (22, vec![], false));
        // Torn tail: the last record cut anywhere is dropped, nothing else.
        for cut in third + 1..data.len() {
            let (n, notices, torn) = count(&data[..cut]);
            assert_eq!((n, torn), (15, true), "cut at {cut}");
            assert!(notices.is_empty());
        }
        // Payload damage in the middle record: exactly its 5 samples are lost, reported.
        let mut bad = data.clone();
        bad[second + HEADER_LEN + 3] ^= 0x10;
        let (n, notices, torn) = count(&bad);
        assert_eq!((n, torn), (17, false));
        assert_eq!(notices.len(), 1);
        assert!(
            notices[0].message.contains("5 samples"),
            "{}",
            notices[0].message
        );
        assert!(
            notices[0].message.contains("[100, 104]"),
            "{}",
            notices[0].message
        );
        // Header damage in the middle record: skipped to the next valid record.
        let mut bad = data.clone();
        bad[second + 3] ^= 0x01;
        let (n, notices, _) = count(&bad);
        assert_eq!(n, 17);
        assert_eq!(notices.len(), 1);
    }
}
