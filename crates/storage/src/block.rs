//! Immutable columnar blocks: one file per block, written once, read through a memory map.
//!
//! Layout (docs/format/block.md has every field):
//!
//! ```text
//! +----------------------+  offset 0
//! | header (16 B)        |  magic "TSQBLOCK", version u32, reserved u32
//! +----------------------+
//! | chunk data           |  encoded chunks (codec module), back to back
//! +----------------------+  index_off (8-aligned)
//! | symbols              |  u32 count, then uvarint len + UTF-8 bytes each
//! | series               |  u32 count, then per series: uvarint n_labels,
//! |                      |  (uvarint name, uvarint value) symbol ids, uvarint first chunk,
//! |                      |  uvarint chunk count
//! | padding to 8 (v1)    |
//! | chunk metas          |  v1: n_chunks x 80 B (ChunkMeta); v2: n_chunks compact records
//! |                      |  (varints, implicit offsets, repeated statistics elided);
//! |                      |  sorted by series then time
//! |                      |  v3: symbols, series and compact metas as in v2, stored as
//! |                      |  uvarint raw length + one zstd frame
//! +----------------------+  footer_off = len - 64
//! | footer (64 B)        |  offsets, time range, index crc, footer crc, magic "TSQBEND1"
//! +----------------------+
//! ```

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use bytemuck::{Pod, Zeroable};

use crate::codec;
use crate::enc::{put_uvarint, put_varint, Reader};
use crate::error::{Error, Result};
use crate::index::{resolve_labels, Postings, SymLabels, Symbols};
use crate::labels::{is_stale_nan, Labels, Matcher};
use crate::vfs::{Bytes, Vfs};

/// Block file magic.
pub const MAGIC: &[u8; 8] = b"TSQBLOCK";
/// Footer magic.
pub const END_MAGIC: &[u8; 8] = b"TSQBEND1";
/// Current block format version (written by [`write_block`]); versions 1 and 2 stay
/// readable.
pub const VERSION: u32 = 3;
/// Block format version 2: compact chunk metas, index stored plainly. Also written when
/// compressing a block's index would not pay (or would pass [`MAX_INDEX_RATIO`]).
pub const VERSION_V2: u32 = 2;
/// Block format version 1: 80-byte chunk metas.
pub const VERSION_V1: u32 = 1;
/// A version 3 index may decompress to at most this many times its stored size: a bound on
/// what a crafted block can make a reader allocate. The writer keeps to it by writing
/// version 2 instead.
pub const MAX_INDEX_RATIO: usize = 64;
/// zstd level of a version 3 index.
const INDEX_ZSTD_LEVEL: i32 = 3;
const HEADER_LEN: usize = 16;
const FOOTER_LEN: usize = 64;

/// Per-chunk metadata and statistics, stored as a fixed 80-byte little-endian record.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Pod, Zeroable)]
pub struct ChunkMeta {
    /// First timestamp.
    pub min_t: i64,
    /// Last timestamp.
    pub max_t: i64,
    /// Offset of the encoded chunk in the file.
    pub offset: u64,
    /// Encoded length.
    pub len: u32,
    /// Number of samples.
    pub count: u32,
    /// Smallest value, NaN excluded (NaN when every value is NaN).
    pub min: f64,
    /// Largest value, NaN excluded.
    pub max: f64,
    /// Sum of the values, NaN and staleness markers excluded.
    pub sum: f64,
    /// First value.
    pub first: f64,
    /// Last value.
    pub last: f64,
    /// CRC32 of the encoded chunk bytes.
    pub crc: u32,
    /// Bit 0: some value is NaN (other than a staleness marker). Bit 1: some value is a
    /// staleness marker.
    pub flags: u32,
}

/// Flag: the chunk holds a NaN that is not a staleness marker.
pub const FLAG_NAN: u32 = 1;
/// Flag: the chunk holds a staleness marker.
pub const FLAG_STALE: u32 = 2;

impl ChunkMeta {
    /// Statistics of a run of samples (offset, len and crc left zero).
    pub fn stats(ts: &[i64], vals: &[f64]) -> ChunkMeta {
        let mut m = ChunkMeta {
            min_t: ts.first().copied().unwrap_or(0),
            max_t: ts.last().copied().unwrap_or(0),
            count: ts.len() as u32,
            min: f64::NAN,
            max: f64::NAN,
            first: vals.first().copied().unwrap_or(f64::NAN),
            last: vals.last().copied().unwrap_or(f64::NAN),
            ..ChunkMeta::zeroed()
        };
        let mut sum = 0.0;
        for &v in vals {
            if v.is_nan() {
                m.flags |= if is_stale_nan(v) {
                    FLAG_STALE
                } else {
                    FLAG_NAN
                };
                continue;
            }
            m.min = m.min.min(v);
            m.max = m.max.max(v);
            sum += v;
        }
        m.sum = sum;
        m
    }
}

/// A chunk to be written: its statistics and encoded bytes.
#[derive(Debug, Clone)]
pub struct EncodedChunk {
    /// Statistics (offset and crc are filled in by the writer).
    pub meta: ChunkMeta,
    /// Encoded samples.
    pub data: Arc<[u8]>,
}

impl EncodedChunk {
    /// Encodes samples into a chunk.
    pub fn encode(ts: &[i64], vals: &[f64]) -> EncodedChunk {
        let mut data = Vec::with_capacity(ts.len() * 2 + 16);
        codec::encode_chunk(ts, vals, &mut data);
        EncodedChunk {
            meta: ChunkMeta::stats(ts, vals),
            data: data.into(),
        }
    }
}

/// Writes a block file: `series` sorted by labels, each with its chunks in time order.
/// The file is written under a temporary name, synced, and renamed into place; the caller
/// syncs the directory (usually together with the manifest that makes the block live).
pub fn write_block(
    vfs: &dyn Vfs,
    dir: &Path,
    name: &str,
    series: &[(Labels, Vec<EncodedChunk>)],
) -> Result<BlockStats> {
    write_block_version(vfs, dir, name, series, VERSION)
}

/// [`write_block`] in a given format version (1, 2 or 3; version 3 falls back to 2 when
/// compression does not pay); versions 1 and 2 only for tests of old blocks.
fn write_block_version(
    vfs: &dyn Vfs,
    dir: &Path,
    name: &str,
    series: &[(Labels, Vec<EncodedChunk>)],
    version: u32,
) -> Result<BlockStats> {
    let mut buf: Vec<u8> = Vec::new();
    buf.extend_from_slice(MAGIC);
    buf.extend_from_slice(&version.to_le_bytes());
    buf.extend_from_slice(&0u32.to_le_bytes());
    let mut metas: Vec<ChunkMeta> = Vec::new();
    let mut symbols = Symbols::default();
    let mut sym_series: Vec<(SymLabels, u32, u32)> = Vec::with_capacity(series.len());
    let (mut min_t, mut max_t, mut n_samples) = (i64::MAX, i64::MIN, 0u64);
    for (labels, chunks) in series {
        let first = metas.len() as u32;
        for c in chunks {
            let mut m = c.meta;
            m.offset = buf.len() as u64;
            m.len = c.data.len() as u32;
            m.crc = crc32fast::hash(&c.data);
            buf.extend_from_slice(&c.data);
            min_t = min_t.min(m.min_t);
            max_t = max_t.max(m.max_t);
            n_samples += u64::from(m.count);
            metas.push(m);
        }
        let sl = crate::index::intern_labels(&mut symbols, labels);
        sym_series.push((sl, first, chunks.len() as u32));
    }
    if metas.is_empty() {
        (min_t, max_t) = (0, 0);
    }
    while buf.len() % 8 != 0 {
        buf.push(0);
    }
    let index_off = buf.len() as u64;
    let data_len = buf.len();
    buf.extend_from_slice(&(symbols.len() as u32).to_le_bytes());
    for i in 0..symbols.len() as u32 {
        let s = symbols.resolve(i);
        put_uvarint(&mut buf, s.len() as u64);
        buf.extend_from_slice(s.as_bytes());
    }
    buf.extend_from_slice(&(sym_series.len() as u32).to_le_bytes());
    for (sl, first, n) in &sym_series {
        put_uvarint(&mut buf, sl.len() as u64);
        for &(a, b) in sl.iter() {
            put_uvarint(&mut buf, u64::from(a));
            put_uvarint(&mut buf, u64::from(b));
        }
        put_uvarint(&mut buf, u64::from(*first));
        put_uvarint(&mut buf, u64::from(*n));
    }
    let mut version = version;
    let mut meta_off = if version == VERSION_V1 {
        while buf.len() % 8 != 0 {
            buf.push(0);
        }
        let meta_off = buf.len() as u64;
        buf.extend_from_slice(bytemuck::cast_slice(&metas));
        meta_off
    } else {
        let meta_off = buf.len() as u64;
        write_compact_metas(&metas, &mut buf);
        meta_off
    };
    if version == VERSION {
        // Version 3: the index as written above, compressed; `meta_off` becomes relative to
        // the decompressed index. Version 2 when that saves nothing or passes the ratio.
        let plain = &buf[data_len..];
        let mut region = Vec::new();
        put_uvarint(&mut region, plain.len() as u64);
        match zstd::bulk::compress(plain, INDEX_ZSTD_LEVEL) {
            Ok(frame)
                if region.len() + frame.len() < plain.len()
                    && plain.len() <= MAX_INDEX_RATIO * (region.len() + frame.len()) =>
            {
                region.extend_from_slice(&frame);
                meta_off -= index_off;
                buf.truncate(data_len);
                buf.extend_from_slice(&region);
            }
            _ => version = VERSION_V2,
        }
        buf[8..12].copy_from_slice(&version.to_le_bytes());
    }
    let index_crc = crc32fast::hash(&buf[index_off as usize..]);
    let footer_start = buf.len();
    buf.extend_from_slice(&index_off.to_le_bytes());
    buf.extend_from_slice(&meta_off.to_le_bytes());
    buf.extend_from_slice(&(metas.len() as u64).to_le_bytes());
    buf.extend_from_slice(&min_t.to_le_bytes());
    buf.extend_from_slice(&max_t.to_le_bytes());
    buf.extend_from_slice(&n_samples.to_le_bytes());
    buf.extend_from_slice(&index_crc.to_le_bytes());
    let footer_crc = crc32fast::hash(&buf[footer_start..]);
    buf.extend_from_slice(&footer_crc.to_le_bytes());
    buf.extend_from_slice(END_MAGIC);
    debug_assert_eq!(buf.len() - footer_start, FOOTER_LEN);

    let tmp = dir.join(format!("{name}.tmp"));
    let path = dir.join(name);
    let mut f = vfs.create(&tmp).map_err(|e| Error::io("create", &tmp, e))?;
    f.write_all(&buf).map_err(|e| Error::io("write", &tmp, e))?;
    f.sync().map_err(|e| Error::io("sync", &tmp, e))?;
    drop(f);
    vfs.rename(&tmp, &path)
        .map_err(|e| Error::io("rename", &tmp, e))?;
    Ok(BlockStats {
        min_t,
        max_t,
        n_samples,
        n_series: series.len() as u64,
        n_chunks: metas.len() as u64,
        bytes: buf.len() as u64,
    })
}

/// `same` bits of a compact (version 2) chunk meta: which statistics repeat another one and
/// are therefore not stored.
const SAME_LAST_FIRST: u8 = 1;
const SAME_MIN_FIRST: u8 = 2;
const SAME_MIN_LAST: u8 = 4;
const SAME_MAX_FIRST: u8 = 8;
const SAME_MAX_LAST: u8 = 16;
/// Smallest compact chunk meta: six one-byte varints, the CRC, first and sum.
const MIN_COMPACT_META: usize = 6 + 4 + 8 + 8;

/// Version 2 chunk metas (docs/format/block.md): per chunk, varint `min_t` minus the previous
/// chunk's `max_t` (zigzag), varint `max_t - min_t`, varint `len`, varint `count`, u32 `crc`,
/// varint `flags`, a `same` byte, then `first`, and `last`, `min`, `max` unless `same` says
/// they repeat, then `sum`, each f64 bits as u64. Offsets are implicit: chunks lie back to
/// back from the end of the header, in meta order.
fn write_compact_metas(metas: &[ChunkMeta], out: &mut Vec<u8>) {
    let mut prev_t = 0i64;
    for m in metas {
        put_varint(out, m.min_t.wrapping_sub(prev_t));
        put_uvarint(out, m.max_t.wrapping_sub(m.min_t) as u64);
        put_uvarint(out, u64::from(m.len));
        put_uvarint(out, u64::from(m.count));
        out.extend_from_slice(&m.crc.to_le_bytes());
        put_uvarint(out, u64::from(m.flags));
        let b = |x: f64| x.to_bits();
        let mut same = 0u8;
        if b(m.last) == b(m.first) {
            same |= SAME_LAST_FIRST;
        }
        if b(m.min) == b(m.first) {
            same |= SAME_MIN_FIRST;
        } else if b(m.min) == b(m.last) {
            same |= SAME_MIN_LAST;
        }
        if b(m.max) == b(m.first) {
            same |= SAME_MAX_FIRST;
        } else if b(m.max) == b(m.last) {
            same |= SAME_MAX_LAST;
        }
        out.push(same);
        out.extend_from_slice(&b(m.first).to_le_bytes());
        if same & SAME_LAST_FIRST == 0 {
            out.extend_from_slice(&b(m.last).to_le_bytes());
        }
        if same & (SAME_MIN_FIRST | SAME_MIN_LAST) == 0 {
            out.extend_from_slice(&b(m.min).to_le_bytes());
        }
        if same & (SAME_MAX_FIRST | SAME_MAX_LAST) == 0 {
            out.extend_from_slice(&b(m.max).to_le_bytes());
        }
        out.extend_from_slice(&b(m.sum).to_le_bytes());
        prev_t = m.max_t;
    }
}

/// Reads `n` version 2 chunk metas that must fill `bytes` exactly.
fn read_compact_metas(bytes: &[u8], n: u64) -> std::result::Result<Vec<ChunkMeta>, String> {
    if n.saturating_mul(MIN_COMPACT_META as u64) > bytes.len() as u64 {
        return Err("chunk count does not fit the chunk meta section".into());
    }
    let mut r = Reader::new(bytes);
    let mut metas = Vec::with_capacity(n as usize);
    let (mut prev_t, mut offset) = (0i64, HEADER_LEN as u64);
    let bad = |what: &str| format!("bad chunk meta {what}");
    let u32_of = |x: Option<u64>, what: &str| {
        x.and_then(|x| u32::try_from(x).ok())
            .ok_or_else(|| bad(what))
    };
    for _ in 0..n {
        let min_t = prev_t.wrapping_add(r.varint().ok_or_else(|| bad("time"))?);
        let span = r.uvarint().ok_or_else(|| bad("time"))?;
        let max_t = min_t.wrapping_add(span as i64);
        if max_t < min_t {
            return Err(bad("time range"));
        }
        let len = u32_of(r.uvarint(), "length")?;
        let count = u32_of(r.uvarint(), "count")?;
        let crc = r.u32().ok_or_else(|| bad("crc"))?;
        let flags = u32_of(r.uvarint(), "flags")?;
        let same = r.u8().ok_or_else(|| bad("statistics"))?;
        if same >= 32
            || same & (SAME_MIN_FIRST | SAME_MIN_LAST) == SAME_MIN_FIRST | SAME_MIN_LAST
            || same & (SAME_MAX_FIRST | SAME_MAX_LAST) == SAME_MAX_FIRST | SAME_MAX_LAST
        {
            return Err(bad("statistics"));
        }
        let mut f = || r.u64().map(f64::from_bits).ok_or_else(|| bad("statistics"));
        let first = f()?;
        let last = if same & SAME_LAST_FIRST != 0 {
            first
        } else {
            f()?
        };
        let pick = |a: u8, b: u8, f: &mut dyn FnMut() -> std::result::Result<f64, String>| {
            if same & a != 0 {
                Ok(first)
            } else if same & b != 0 {
                Ok(last)
            } else {
                f()
            }
        };
        let min = pick(SAME_MIN_FIRST, SAME_MIN_LAST, &mut f)?;
        let max = pick(SAME_MAX_FIRST, SAME_MAX_LAST, &mut f)?;
        let sum = f()?;
        metas.push(ChunkMeta {
            min_t,
            max_t,
            offset,
            len,
            count,
            min,
            max,
            sum,
            first,
            last,
            crc,
            flags,
        });
        offset = offset.saturating_add(u64::from(len));
        prev_t = max_t;
    }
    if r.remaining() != 0 {
        return Err("trailing bytes after the chunk metas".into());
    }
    Ok(metas)
}

/// Summary of a block, from its footer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockStats {
    /// First timestamp.
    pub min_t: i64,
    /// Last timestamp.
    pub max_t: i64,
    /// Samples.
    pub n_samples: u64,
    /// Series.
    pub n_series: u64,
    /// Chunks.
    pub n_chunks: u64,
    /// File size.
    pub bytes: u64,
}

/// The parsed index of a block, built on first use.
pub struct BlockIndex {
    symbols: Symbols,
    postings: Postings,
    series: Vec<(SymLabels, u32, u32)>,
    metas: MetaView,
}

enum MetaView {
    /// Viewed in place in the map (aligned).
    Mapped { off: usize, n: usize },
    /// Copied out because the bytes were not 8-aligned in memory.
    Owned(Vec<ChunkMeta>),
}

/// An open block.
pub struct Block {
    /// Block file name (its id).
    pub name: String,
    path: PathBuf,
    data: Bytes,
    footer: Footer,
    version: u32,
    index: OnceLock<std::result::Result<BlockIndex, String>>,
}

#[derive(Debug, Clone, Copy)]
struct Footer {
    index_off: u64,
    meta_off: u64,
    n_chunks: u64,
    min_t: i64,
    max_t: i64,
    n_samples: u64,
    index_crc: u32,
}

/// One series of a block with its chunk metas.
pub struct BlockSeries<'a> {
    /// Labels.
    pub labels: Labels,
    /// Chunk metas in time order.
    pub chunks: &'a [ChunkMeta],
}

impl Block {
    /// Opens a block: maps the file and checks header and footer. The index is read lazily.
    pub fn open(vfs: &dyn Vfs, dir: &Path, name: &str) -> Result<Block> {
        let path = dir.join(name);
        let data = vfs.map(&path).map_err(|e| Error::io("open", &path, e))?;
        let bytes: &[u8] = (*data).as_ref();
        let (footer, version) = parse_footer(&path, bytes)?;
        Ok(Block {
            name: name.to_string(),
            path,
            data,
            footer,
            version,
            index: OnceLock::new(),
        })
    }

    /// Path of the file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Summary from the footer.
    pub fn stats(&self) -> BlockStats {
        BlockStats {
            min_t: self.footer.min_t,
            max_t: self.footer.max_t,
            n_samples: self.footer.n_samples,
            n_series: 0,
            n_chunks: self.footer.n_chunks,
            bytes: self.bytes().len() as u64,
        }
    }

    fn bytes(&self) -> &[u8] {
        (*self.data).as_ref()
    }

    /// The index, parsed and checksum-verified on first use.
    pub fn index(&self) -> Result<&BlockIndex> {
        let r = self.index.get_or_init(|| self.load_index());
        r.as_ref()
            .map_err(|reason| Error::corrupted(&self.path, self.footer.index_off, reason.clone()))
    }

    fn load_index(&self) -> std::result::Result<BlockIndex, String> {
        let bytes = self.bytes();
        let f = self.footer;
        let footer_start = bytes.len() - FOOTER_LEN;
        let region = bytes
            .get(f.index_off as usize..footer_start)
            .ok_or("index offset out of bounds")?;
        let got = crc32fast::hash(region);
        if got != f.index_crc {
            return Err(format!(
                "index checksum mismatch: expected {:#010x}, got {got:#010x}",
                f.index_crc
            ));
        }
        // The index (symbols, series, chunk metas) and where its chunk metas start in it.
        let decompressed;
        let (index, meta_at): (&[u8], usize) = if self.version == VERSION {
            let mut r = Reader::new(region);
            let raw_len = r.uvarint().ok_or("bad index length")?;
            let frame = &region[region.len() - r.remaining()..];
            if raw_len > (MAX_INDEX_RATIO * region.len()) as u64 {
                return Err(format!(
                    "index claims {raw_len} bytes, more than {MAX_INDEX_RATIO} times its {} stored",
                    region.len()
                ));
            }
            decompressed = zstd::bulk::decompress(frame, raw_len as usize)
                .map_err(|e| format!("index does not decompress: {e}"))?;
            if decompressed.len() as u64 != raw_len || f.meta_off > raw_len {
                return Err("index length or chunk meta offset mismatch".into());
            }
            (&decompressed, f.meta_off as usize)
        } else {
            if self.version == VERSION_V1 {
                let meta_len = (f.n_chunks as usize)
                    .checked_mul(std::mem::size_of::<ChunkMeta>())
                    .ok_or("chunk count overflows")?;
                if f.meta_off < f.index_off || f.meta_off as usize + meta_len != footer_start {
                    return Err("chunk meta section does not end at the footer".into());
                }
            } else if f.meta_off < f.index_off || f.meta_off as usize > footer_start {
                return Err("chunk meta section out of bounds".into());
            }
            (region, (f.meta_off - f.index_off) as usize)
        };
        let mut r = Reader::new(&index[..meta_at]);
        let n_sym = r.u32().ok_or("truncated symbol table")? as usize;
        let mut symbols = Symbols::default();
        for i in 0..n_sym {
            let s = r.str().ok_or("bad symbol")?;
            if symbols.intern(s) != i as u32 {
                return Err(format!("duplicate symbol {s:?}"));
            }
        }
        let n_series = r.u32().ok_or("truncated series table")? as usize;
        let mut series = Vec::with_capacity(n_series.min(r.remaining()));
        let mut postings = Postings::default();
        let mut next_chunk = 0u64;
        let empty = symbols.get("");
        let mut prev_names: Vec<u32> = Vec::new();
        for id in 0..n_series {
            let n = r.uvarint().ok_or("bad series entry")? as usize;
            if n > r.remaining() {
                return Err("bad label count".into());
            }
            let mut sl = Vec::with_capacity(n);
            for _ in 0..n {
                let a = r.uvarint().ok_or("bad label")?;
                let b = r.uvarint().ok_or("bad label")?;
                if a >= n_sym as u64 || b >= n_sym as u64 {
                    return Err("label symbol out of range".into());
                }
                sl.push((a as u32, b as u32));
            }
            // A label set is sorted by name, names unique, values non-empty: a series
            // table that says otherwise is damage, not a label set. Series usually share
            // their names, so the names are compared as strings only when they change.
            if sl.iter().any(|&(_, v)| Some(v) == empty) {
                return Err(format!("series {id}: a label has an empty value"));
            }
            let same_names =
                prev_names.len() == sl.len() && prev_names.iter().zip(&sl).all(|(p, l)| *p == l.0);
            if !same_names {
                if sl
                    .windows(2)
                    .any(|w| symbols.resolve(w[0].0) >= symbols.resolve(w[1].0))
                {
                    return Err(format!("series {id}: labels not sorted by name"));
                }
                prev_names.clear();
                prev_names.extend(sl.iter().map(|l| l.0));
            }
            let first = r.uvarint().ok_or("bad chunk ref")?;
            let count = r.uvarint().ok_or("bad chunk ref")?;
            if first != next_chunk || first + count > f.n_chunks {
                return Err(format!(
                    "series {id}: chunk range out of order or out of bounds"
                ));
            }
            next_chunk = first + count;
            let sl: SymLabels = sl.into_boxed_slice();
            postings.add(id as u32, &sl);
            series.push((sl, first as u32, count as u32));
        }
        let meta_bytes = &index[meta_at..];
        let metas = match bytemuck::try_cast_slice::<u8, ChunkMeta>(meta_bytes) {
            _ if self.version != VERSION_V1 => {
                MetaView::Owned(read_compact_metas(meta_bytes, f.n_chunks)?)
            }
            Ok(_) => MetaView::Mapped {
                off: f.meta_off as usize,
                n: f.n_chunks as usize,
            },
            Err(_) => MetaView::Owned(
                meta_bytes
                    .chunks_exact(std::mem::size_of::<ChunkMeta>())
                    .map(bytemuck::pod_read_unaligned)
                    .collect(),
            ),
        };
        let idx = BlockIndex {
            symbols,
            postings,
            series,
            metas,
        };
        // Every chunk must lie inside the chunk data section.
        for m in self.all_metas(&idx) {
            if m.offset < HEADER_LEN as u64 || m.offset + u64::from(m.len) > f.index_off {
                return Err(format!("chunk at {} overruns the data section", m.offset));
            }
        }
        Ok(idx)
    }

    fn all_metas<'a>(&'a self, idx: &'a BlockIndex) -> &'a [ChunkMeta] {
        match &idx.metas {
            MetaView::Mapped { off, n } => bytemuck::cast_slice(
                &self.bytes()[*off..*off + n * std::mem::size_of::<ChunkMeta>()],
            ),
            MetaView::Owned(v) => v,
        }
    }

    /// Series matching `matchers`, with their chunk metas.
    pub fn select(&self, matchers: &[Matcher]) -> Result<Vec<BlockSeries<'_>>> {
        let idx = self.index()?;
        let metas = self.all_metas(idx);
        Ok(idx
            .postings
            .select(&idx.symbols, matchers)
            .into_iter()
            .map(|id| {
                let (sl, first, n) = &idx.series[id as usize];
                BlockSeries {
                    labels: resolve_labels(&idx.symbols, sl),
                    chunks: &metas[*first as usize..(*first + *n) as usize],
                }
            })
            .collect())
    }

    /// Every series, in label order.
    pub fn all_series(&self) -> Result<Vec<BlockSeries<'_>>> {
        self.select(&[])
    }

    /// Label names.
    pub fn label_names(&self) -> Result<Vec<String>> {
        let idx = self.index()?;
        Ok(idx
            .postings
            .names(&idx.symbols)
            .map(str::to_string)
            .collect())
    }

    /// Values of a label.
    pub fn label_values(&self, name: &str) -> Result<Vec<String>> {
        let idx = self.index()?;
        Ok(idx
            .postings
            .values(&idx.symbols, name)
            .into_iter()
            .map(str::to_string)
            .collect())
    }

    /// The encoded bytes of a chunk, checksum-verified.
    pub fn chunk_bytes(&self, m: &ChunkMeta) -> Result<&[u8]> {
        let data = self
            .bytes()
            .get(m.offset as usize..m.offset as usize + m.len as usize)
            .ok_or_else(|| Error::corrupted(&self.path, m.offset, "chunk out of bounds"))?;
        let got = crc32fast::hash(data);
        if got != m.crc {
            return Err(Error::ChecksumMismatch {
                path: self.path.clone(),
                offset: m.offset,
                what: format!("chunk with samples in [{}, {}]", m.min_t, m.max_t),
                expected: m.crc,
                got,
            });
        }
        Ok(data)
    }

    /// Decodes a chunk, appending to the buffers.
    pub fn decode_chunk(
        &self,
        m: &ChunkMeta,
        ts: &mut Vec<i64>,
        vals: &mut Vec<f64>,
    ) -> Result<()> {
        let data = self.chunk_bytes(m)?;
        let before = ts.len();
        codec::decode_chunk(data, ts, vals).map_err(|e| {
            Error::corrupted(
                &self.path,
                m.offset,
                format!("chunk [{}, {}]: {e}", m.min_t, m.max_t),
            )
        })?;
        if ts.len() - before != m.count as usize {
            return Err(Error::corrupted(
                &self.path,
                m.offset,
                "chunk sample count differs from its metadata",
            ));
        }
        Ok(())
    }

    /// Verifies every checksum of the block; returns a description of each problem found.
    pub fn check(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let series = match self.all_series() {
            Ok(s) => s,
            Err(e) => return vec![e.to_string()],
        };
        // The one range under no checksum: the zero padding between the chunk data and the
        // index. It must still be as written.
        if let Ok(idx) = self.index() {
            let data_end = self
                .all_metas(idx)
                .iter()
                .map(|m| m.offset.saturating_add(u64::from(m.len)))
                .max()
                .unwrap_or(HEADER_LEN as u64);
            let bytes = self.bytes();
            let (from, to) = (data_end as usize, self.footer.index_off as usize);
            if from <= to && to <= bytes.len() && bytes[from..to].iter().any(|&b| b != 0) {
                problems.push(format!(
                    "{}",
                    Error::corrupted(
                        &self.path,
                        from as u64,
                        "padding after the chunk data is not zero"
                    )
                ));
            }
        }
        let (mut ts, mut vals) = (Vec::new(), Vec::new());
        for s in series {
            for m in s.chunks {
                ts.clear();
                vals.clear();
                if let Err(e) = self.decode_chunk(m, &mut ts, &mut vals) {
                    problems.push(format!("{}: {e}", s.labels));
                }
            }
        }
        problems
    }
}

fn parse_footer(path: &Path, bytes: &[u8]) -> Result<(Footer, u32)> {
    if bytes.len() < HEADER_LEN + FOOTER_LEN {
        return Err(Error::corrupted(path, 0, "file too short for a block"));
    }
    if &bytes[..8] != MAGIC {
        return Err(Error::corrupted(path, 0, "bad magic"));
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if !(VERSION_V1..=VERSION).contains(&version) {
        return Err(Error::UnsupportedVersion {
            path: path.to_path_buf(),
            version,
        });
    }
    if bytes[12..16] != [0; 4] {
        return Err(Error::corrupted(
            path,
            12,
            "reserved header bytes are not zero",
        ));
    }
    let start = bytes.len() - FOOTER_LEN;
    let fb = &bytes[start..];
    if &fb[56..64] != END_MAGIC {
        return Err(Error::corrupted(
            path,
            start as u64 + 56,
            "bad footer magic (truncated file?)",
        ));
    }
    let stored = u32::from_le_bytes(fb[52..56].try_into().expect("4 bytes"));
    let got = crc32fast::hash(&fb[..52]);
    if stored != got {
        return Err(Error::ChecksumMismatch {
            path: path.to_path_buf(),
            offset: start as u64,
            what: "block footer".into(),
            expected: stored,
            got,
        });
    }
    let mut r = Reader::new(fb);
    let footer = Footer {
        index_off: r.u64().expect("len checked"),
        meta_off: r.u64().expect("len checked"),
        n_chunks: r.u64().expect("len checked"),
        min_t: r.i64().expect("len checked"),
        max_t: r.i64().expect("len checked"),
        n_samples: r.u64().expect("len checked"),
        index_crc: r.u32().expect("len checked"),
    };
    if footer.index_off < HEADER_LEN as u64 || footer.index_off > start as u64 {
        return Err(Error::corrupted(
            path,
            start as u64,
            "index offset out of bounds",
        ));
    }
    Ok((footer, version))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vfs::MemVfs;

    /// Two series `a` and `b`, and `filler` look-alike series that make the index worth
    /// compressing (version 3).
    fn sample_series(filler: usize) -> Vec<(Labels, Vec<EncodedChunk>)> {
        let mut v = vec![
            (
                Labels::new([("__name__", "a"), ("x", "1")]),
                vec![
                    EncodedChunk::encode(&[1, 2, 3], &[1.0, f64::NAN, 3.0]),
                    EncodedChunk::encode(&[10], &[-0.0]),
                ],
            ),
            (
                Labels::new([("__name__", "b")]),
                vec![EncodedChunk::encode(&[5], &[7.0])],
            ),
        ];
        for i in 0..filler {
            let le = format!("{}", i * 5);
            v.push((
                Labels::new([
                    ("__name__", "c_bucket"),
                    ("instance", "127.0.0.1:9100"),
                    ("job", "node"),
                    ("le", le.as_str()),
                ]),
                vec![EncodedChunk::encode(&[5, 15, 25], &[1.0; 3])],
            ));
        }
        v
    }

    fn sample_block_version(vfs: &MemVfs, version: u32) -> Block {
        let dir = Path::new("/b");
        vfs.create_dir_all(dir).unwrap();
        let filler = if version == VERSION { 40 } else { 0 };
        write_block_version(vfs, dir, "0001", &sample_series(filler), version).unwrap();
        Block::open(vfs, dir, "0001").unwrap()
    }

    #[test]
    fn write_then_read_back() {
        for version in [VERSION_V1, VERSION_V2, VERSION] {
            let vfs = MemVfs::new();
            let b = sample_block_version(&vfs, version);
            assert_eq!(b.version, version);
            let filler = if version == VERSION { 40 } else { 0 };
            assert_eq!(b.stats().n_samples, 5 + 3 * filler);
            let max_t = if filler > 0 { 25 } else { 10 };
            assert_eq!((b.stats().min_t, b.stats().max_t), (1, max_t));
            assert_eq!(b.all_series().unwrap().len(), 2 + filler as usize);
            let sel = b.select(&[Matcher::equal("x", "1")]).unwrap();
            assert_eq!(sel.len(), 1);
            assert_eq!(sel[0].chunks.len(), 2);
            assert_eq!(sel[0].chunks[0].flags, FLAG_NAN);
            assert_eq!(sel[0].chunks[0].sum, 4.0);
            let (mut ts, mut vs) = (Vec::new(), Vec::new());
            for m in sel[0].chunks {
                b.decode_chunk(m, &mut ts, &mut vs).unwrap();
            }
            assert_eq!(ts, vec![1, 2, 3, 10]);
            assert_eq!(vs[3].to_bits(), (-0.0f64).to_bits());
            assert!(b.check().is_empty());
        }
    }

    /// A version 3 index is the version 2 one compressed; when compressing saves nothing
    /// (an index of noise) the writer writes version 2 instead. Both read back the same.
    #[test]
    fn version_3_compresses_the_index_or_falls_back_to_version_2() {
        let vfs = MemVfs::new();
        let dir = Path::new("/b");
        vfs.create_dir_all(dir).unwrap();
        let series = sample_series(40);
        write_block_version(&vfs, dir, "v2", &series, VERSION_V2).unwrap();
        write_block(&vfs, dir, "v3", &series).unwrap();
        // One series whose label is 300 pseudo-random characters: nothing to compress.
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let noise: String = (0..300)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                char::from(b'!' + (x % 90) as u8)
            })
            .collect();
        let noisy = vec![(
            Labels::new([("__name__", noise.as_str())]),
            vec![EncodedChunk::encode(&[5], &[7.0])],
        )];
        write_block(&vfs, dir, "noisy", &noisy).unwrap();
        let (v2, v3) = (
            Block::open(&vfs, dir, "v2").unwrap(),
            Block::open(&vfs, dir, "v3").unwrap(),
        );
        assert_eq!((v2.version, v3.version), (VERSION_V2, VERSION));
        assert!(
            v3.bytes().len() * 2 < v2.bytes().len() + 600,
            "{} vs {}",
            v3.bytes().len(),
            v2.bytes().len()
        );
        let all = |b: &Block| {
            b.all_series()
                .unwrap()
                .into_iter()
                .map(|s| (s.labels, s.chunks.to_vec()))
                .collect::<Vec<_>>()
        };
        assert_eq!(all(&v2), all(&v3));
        assert!(v3.check().is_empty());
        assert_eq!(Block::open(&vfs, dir, "noisy").unwrap().version, VERSION_V2);
    }

    /// Compact (version 2) metas give back exactly the 80-byte records of version 1, every
    /// statistic bit for bit, whichever of them repeat one another.
    #[test]
    fn compact_metas_round_trip_bit_exactly() {
        let stale = f64::from_bits(crate::STALE_NAN_BITS);
        let shapes: Vec<(Vec<i64>, Vec<f64>)> = vec![
            (vec![1, 2, 3], vec![1.0, f64::NAN, 3.0]),
            (vec![-5], vec![-0.0]),
            (vec![7, 8, 9], vec![3.0, 1.0, 2.0]),
            (vec![10, 11, 12], vec![2.0, 1.0, 3.0]),
            (vec![20, 30], vec![f64::NAN, stale]),
            (
                vec![i64::MIN, i64::MAX],
                vec![f64::INFINITY, f64::NEG_INFINITY],
            ),
            (vec![i64::MAX], vec![5.0]),
            (vec![], vec![]),
            (vec![100, 200, 300], vec![0.0, -0.0, 0.0]),
        ];
        let chunks: Vec<EncodedChunk> = shapes
            .iter()
            .map(|(t, v)| EncodedChunk::encode(t, v))
            .collect();
        let mut metas: Vec<ChunkMeta> = Vec::new();
        let mut offset = HEADER_LEN as u64;
        for c in &chunks {
            let mut m = c.meta;
            m.offset = offset;
            m.len = c.data.len() as u32;
            m.crc = crc32fast::hash(&c.data);
            offset += u64::from(m.len);
            metas.push(m);
        }
        let mut buf = Vec::new();
        write_compact_metas(&metas, &mut buf);
        assert!(buf.len() < metas.len() * std::mem::size_of::<ChunkMeta>());
        let back = read_compact_metas(&buf, metas.len() as u64).unwrap();
        let raw = |m: &[ChunkMeta]| bytemuck::cast_slice::<ChunkMeta, u8>(m).to_vec();
        assert_eq!(raw(&back), raw(&metas));
        // Truncated or padded sections, and too many chunks for the bytes, are errors.
        assert!(read_compact_metas(&buf[..buf.len() - 1], metas.len() as u64).is_err());
        let mut longer = buf.clone();
        longer.push(0);
        assert!(read_compact_metas(&longer, metas.len() as u64).is_err());
        assert!(read_compact_metas(&buf, u64::MAX).is_err());
    }

    #[test]
    fn every_bit_flip_is_detected_or_harmless() {
        // Flip each bit of the file in turn: opening, selecting and decoding either fails
        // with an error or returns exactly the original samples. Never a panic, never
        // different data.
        for version in [VERSION_V1, VERSION_V2, VERSION] {
            bit_flips(version);
        }
    }

    fn bit_flips(version: u32) {
        let vfs = MemVfs::new();
        let b = sample_block_version(&vfs, version);
        let len = b.bytes().len() as u64;
        let path = b.path().to_path_buf();
        drop(b);
        for bit in 0..len * 8 {
            vfs.flip_bit(&path, bit).unwrap();
            if let Ok(b) = Block::open(&vfs, Path::new("/b"), "0001") {
                if let Ok(sel) = b.select(&[Matcher::equal("__name__", "a")]) {
                    let (mut ts, mut vs) = (Vec::new(), Vec::new());
                    let ok = sel
                        .iter()
                        .flat_map(|s| s.chunks)
                        .all(|m| b.decode_chunk(m, &mut ts, &mut vs).is_ok());
                    if ok && !sel.is_empty() {
                        assert_eq!(ts, vec![1, 2, 3, 10], "bit {bit}");
                        let bits: Vec<u64> = vs.iter().map(|v| v.to_bits()).collect();
                        assert_eq!(
                            bits,
                            vec![
                                1.0f64.to_bits(),
                                f64::NAN.to_bits(),
                                3.0f64.to_bits(),
                                (-0.0f64).to_bits()
                            ],
                            "bit {bit}"
                        );
                    }
                }
            }
            vfs.flip_bit(&path, bit).unwrap();
        }
    }
}
