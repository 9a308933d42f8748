//! Chunk codecs: one chunk is the samples of one series over part of a block's time range.
//!
//! The contract every caller relies on:
//! - `encode_chunk(ts, vals)` takes strictly increasing timestamps and any f64 values, and
//!   `decode_chunk` gives back exactly the same timestamps and the same value *bits*
//!   (NaN payloads, -0.0, +/-Inf, the staleness marker).
//! - `decode_chunk` on arbitrary bytes returns an error, never panics, and never allocates
//!   more than a bound derived from the input length and [`MAX_CHUNK_SAMPLES`].
//! - The chunk starts with enough information to know its sample count.
//!
//! Per chunk the encoder sizes every eligible timestamp codec and every eligible value codec
//! (each is a `Candidate` that estimates its exact encoded length before writing) and
//! keeps the smallest of each; then it wraps a section in zstd only where that saves at least
//! an eighth of it. The byte layout is specified in `docs/format/codecs.md`.

mod bitpack;
mod io;
mod ts;
mod values;

#[cfg(test)]
mod tests;

use std::cell::RefCell;
use std::fmt;

use io::{put_varint, Reader};
pub use ts::{TS_DELTA, TS_DOD, TS_GRID, TS_GRID_EXC, TS_RAW, TS_REGULAR};
pub use values::{
    MAX_DECIMAL_EXP, V_CONST, V_DEC_DELTA, V_DEC_DOD, V_DEC_FOR, V_FLOAT_DELTA, V_FLOAT_PATCHED,
    V_RAW, V_XOR,
};

/// A chunk could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodecError(pub String);

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CodecError {}

/// What a chunk is made of, for `tsq inspect` and `tsq analyze`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkCodecInfo {
    /// Number of samples.
    pub count: usize,
    /// Name of the timestamp codec.
    pub ts_codec: &'static str,
    /// Name of the value codec.
    pub value_codec: &'static str,
    /// Bytes spent on timestamps (including the count header).
    pub ts_bytes: usize,
    /// Bytes spent on values.
    pub value_bytes: usize,
}

/// First byte of a chunk in the original raw layout (format version 0).
pub const FORMAT_RAW_V0: u8 = 0;
/// First byte of a chunk in the per-chunk codec layout (format version 1).
pub const FORMAT_V1: u8 = 1;
/// Most samples a version-1 chunk holds. Longer inputs are written as version 0 (raw).
pub const MAX_CHUNK_SAMPLES: usize = 65_536;
/// Flag bit of a codec id byte: the section is zstd-compressed.
pub const ZSTD_FLAG: u8 = 0x80;
/// zstd level used for sections.
const ZSTD_LEVEL: i32 = 1;
/// Sections shorter than this are never tried with zstd.
const ZSTD_MIN_INPUT: usize = 128;

/// A way to encode one section (the timestamps or the values of a chunk): it estimates its
/// encoded length before writing anything, so the encoder can keep the smallest one.
pub(crate) trait Candidate {
    /// Codec id written in the chunk header.
    fn id(&self) -> u8;
    /// Exact length `write` will append, or `None` if the codec is not eligible.
    fn estimate(&self) -> Option<usize>;
    /// Appends the section.
    fn write(&self, out: &mut Vec<u8>);
}

/// The eligible candidate with the smallest estimate; the first one wins ties, so list the
/// cheaper-to-decode codecs first. `cands[0]` must always be eligible.
pub(crate) fn smallest<'a>(cands: &[&'a dyn Candidate]) -> &'a dyn Candidate {
    let mut best = cands[0];
    let mut best_len = best.estimate().unwrap_or(usize::MAX);
    for &c in &cands[1..] {
        if let Some(len) = c.estimate() {
            if len < best_len {
                best = c;
                best_len = len;
            }
        }
    }
    best
}

/// Encodes one chunk, appending to `out`.
///
/// `ts` and `vals` must have the same length (panics otherwise). Timestamps should be
/// strictly increasing; if they are not they are stored raw and still decode back.
pub fn encode_chunk(ts: &[i64], vals: &[f64], out: &mut Vec<u8>) {
    let done = encode_chunk_forced(ts, vals, ForceCodecs::default(), out);
    debug_assert!(done.is_ok());
}

/// Codecs to use instead of the encoder's choice (tests, fuzzing, benchmarks, experiments).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ForceCodecs {
    /// Timestamp codec id (without [`ZSTD_FLAG`]).
    pub ts: Option<u8>,
    /// Value codec id (without [`ZSTD_FLAG`]).
    pub values: Option<u8>,
    /// Always (`Some(true)`) or never (`Some(false)`) wrap sections in zstd.
    pub zstd: Option<bool>,
}

/// [`encode_chunk`] with some choices forced. Fails, appending nothing, when a forced codec is
/// not eligible for the data (e.g. `regular` for irregular timestamps, `const` for varying
/// values, anything but `raw` for non-increasing timestamps). Empty chunks and chunks over
/// [`MAX_CHUNK_SAMPLES`] samples ignore `force`.
pub fn encode_chunk_forced(
    ts: &[i64],
    vals: &[f64],
    force: ForceCodecs,
    out: &mut Vec<u8>,
) -> Result<(), CodecError> {
    assert_eq!(
        ts.len(),
        vals.len(),
        "timestamps and values differ in length"
    );
    let n = ts.len();
    if n > MAX_CHUNK_SAMPLES {
        encode_raw_v0(ts, vals, out);
        return Ok(());
    }
    let start = out.len();
    out.push(FORMAT_V1);
    put_varint(out, n as u64);
    if n == 0 {
        return Ok(());
    }
    let not_eligible = |out: &mut Vec<u8>, what: &str| {
        out.truncate(start);
        Err(CodecError(format!("forced {what} codec is not eligible")))
    };
    let mut sec = Vec::with_capacity(n * 2 + 16);
    let Some(id) = ts::encode_ts(ts, force.ts, &mut sec) else {
        return not_eligible(out, "timestamp");
    };
    let (id, sec) = maybe_zstd(id, sec, n, force.zstd);
    out.push(id);
    put_varint(out, sec.len() as u64);
    out.extend_from_slice(&sec);

    let mut sec = Vec::with_capacity(n * 2 + 16);
    let Some(id) = values::encode_values(vals, force.values, &mut sec) else {
        return not_eligible(out, "value");
    };
    let (id, sec) = maybe_zstd(id, sec, n, force.zstd);
    out.push(id);
    out.extend_from_slice(&sec);
    Ok(())
}

fn encode_raw_v0(ts: &[i64], vals: &[f64], out: &mut Vec<u8>) {
    out.push(FORMAT_RAW_V0);
    out.extend_from_slice(&(ts.len() as u32).to_le_bytes());
    for t in ts {
        out.extend_from_slice(&t.to_le_bytes());
    }
    for v in vals {
        out.extend_from_slice(&v.to_bits().to_le_bytes());
    }
}

thread_local! {
    static ZSTD_C: RefCell<Option<zstd::bulk::Compressor<'static>>> = const { RefCell::new(None) };
    static ZSTD_D: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
}

/// Largest uncompressed section a chunk of `n` samples may declare: raw is `8 n` bytes and
/// the encoder never keeps a section longer than raw (plus a small constant).
fn max_section_len(n: usize) -> usize {
    n * 8 + 64
}

/// Replaces `sec` by `[varint raw_len][zstd frame]` and sets the flag on `id` when that is
/// at least an eighth shorter (or when `force` says so).
fn maybe_zstd(id: u8, sec: Vec<u8>, n: usize, force: Option<bool>) -> (u8, Vec<u8>) {
    if force == Some(false)
        || sec.len() > max_section_len(n)
        || (force.is_none() && (sec.len() < ZSTD_MIN_INPUT || !has_repeats(&sec)))
    {
        return (id, sec);
    }
    let frame = ZSTD_C.with(|c| {
        let mut c = c.borrow_mut();
        if c.is_none() {
            *c = zstd::bulk::Compressor::new(ZSTD_LEVEL).ok();
        }
        c.as_mut().and_then(|c| c.compress(&sec).ok())
    });
    let Some(frame) = frame else { return (id, sec) };
    let mut wrapped = Vec::with_capacity(frame.len() + 4);
    put_varint(&mut wrapped, sec.len() as u64);
    wrapped.extend_from_slice(&frame);
    if force == Some(true) || wrapped.len() + sec.len() / 8 <= sec.len() {
        (id | ZSTD_FLAG, wrapped)
    } else {
        (id, sec)
    }
}

/// Cheap guess whether zstd can pay on a section: the bit-packed sections have no byte-level
/// redundancy except repeated substrings, so count the bytes covered by repeated 4-byte
/// sequences (an LZ4-style hash-table scan) and ask for at least an eighth of the section.
fn has_repeats(sec: &[u8]) -> bool {
    const BITS: u32 = 10;
    let mut table = [0u32; 1 << BITS];
    let mut covered = 0usize;
    let mut misses = 0usize;
    let mut i = 0;
    while i + 4 <= sec.len() {
        let mut a = [0u8; 4];
        a.copy_from_slice(&sec[i..i + 4]);
        let h = (u32::from_le_bytes(a).wrapping_mul(0x9e37_79b1) >> (32 - BITS)) as usize;
        // Positions are stored plus one (0 = empty); sections are far below 4 GiB.
        let j = table[h] as usize;
        table[h] = (i + 1) as u32;
        if j > 0 && sec[j - 1..j + 3] == sec[i..i + 4] {
            covered += 4;
            i += 4;
            misses = 0;
        } else {
            // Like LZ4's acceleration: long runs without a match are skimmed faster.
            misses += 1;
            i += 1 + (misses >> 4);
        }
    }
    covered * 8 >= sec.len()
}

/// Undoes [`maybe_zstd`]: `Cow`-like, returns the plain section.
fn unwrap_section<'a>(
    id: u8,
    sec: &'a [u8],
    n: usize,
    scratch: &'a mut Vec<u8>,
) -> Result<&'a [u8], CodecError> {
    if id & ZSTD_FLAG == 0 {
        return Ok(sec);
    }
    let mut r = Reader::new(sec);
    let raw_len = r.varint()?;
    if raw_len > max_section_len(n) as u64 {
        return Err(CodecError("zstd section declares too many bytes".into()));
    }
    let raw_len = raw_len as usize;
    let frame = r.rest();
    let data = ZSTD_D.with(|d| {
        let mut d = d.borrow_mut();
        if d.is_none() {
            *d = zstd::bulk::Decompressor::new().ok();
        }
        match d.as_mut() {
            Some(d) => d
                .decompress(frame, raw_len)
                .map_err(|e| CodecError(format!("zstd: {e}"))),
            None => Err(CodecError("zstd decompressor unavailable".into())),
        }
    })?;
    if data.len() != raw_len {
        return Err(CodecError("zstd section length mismatch".into()));
    }
    *scratch = data;
    Ok(scratch)
}

/// The parsed header of a chunk.
struct Layout<'a> {
    count: usize,
    ts_id: u8,
    ts_sec: &'a [u8],
    val_id: u8,
    val_sec: &'a [u8],
    /// Bytes before the value codec byte (format, count, timestamp codec and section).
    ts_bytes: usize,
}

fn layout(data: &[u8]) -> Result<Layout<'_>, CodecError> {
    let mut r = Reader::new(data);
    match r.u8()? {
        FORMAT_RAW_V0 => {
            let mut a = [0u8; 4];
            a.copy_from_slice(r.bytes(4)?);
            let count = u32::from_le_bytes(a) as usize;
            if r.remaining() as u64 != count as u64 * 16 {
                return Err(CodecError("chunk length does not match its count".into()));
            }
            let ts_sec = r.bytes(count * 8)?;
            Ok(Layout {
                count,
                ts_id: TS_RAW,
                ts_sec,
                val_id: V_RAW,
                val_sec: r.rest(),
                ts_bytes: 5 + count * 8,
            })
        }
        FORMAT_V1 => {
            let count = r.varint()?;
            if count > MAX_CHUNK_SAMPLES as u64 {
                return Err(CodecError(format!("chunk claims {count} samples")));
            }
            let count = count as usize;
            if count == 0 {
                r.finish()?;
                return Ok(Layout {
                    count,
                    ts_id: TS_RAW,
                    ts_sec: &[],
                    val_id: V_RAW,
                    val_sec: &[],
                    ts_bytes: r.pos(),
                });
            }
            let ts_id = r.u8()?;
            let ts_len = r.varint()?;
            if ts_len > r.remaining() as u64 {
                return Err(CodecError("timestamp section truncated".into()));
            }
            let ts_sec = r.bytes(ts_len as usize)?;
            let ts_bytes = r.pos();
            let val_id = r.u8()?;
            ts::ts_codec_name(ts_id & !ZSTD_FLAG)
                .ok_or_else(|| CodecError(format!("unknown timestamp codec {ts_id}")))?;
            values::value_codec_name(val_id & !ZSTD_FLAG)
                .ok_or_else(|| CodecError(format!("unknown value codec {val_id}")))?;
            Ok(Layout {
                count,
                ts_id,
                ts_sec,
                val_id,
                val_sec: r.rest(),
                ts_bytes,
            })
        }
        v => Err(CodecError(format!("unknown chunk format {v}"))),
    }
}

/// Decodes one chunk, appending to `ts` and `vals`. On error neither vector is changed.
pub fn decode_chunk(data: &[u8], ts: &mut Vec<i64>, vals: &mut Vec<f64>) -> Result<(), CodecError> {
    let (ts_len, vals_len) = (ts.len(), vals.len());
    let res = decode_into(data, ts, Some(vals));
    if res.is_err() {
        ts.truncate(ts_len);
        vals.truncate(vals_len);
    }
    res
}

/// Decodes only the timestamps of a chunk, appending to `ts`. On error `ts` is unchanged.
pub fn decode_timestamps(data: &[u8], ts: &mut Vec<i64>) -> Result<(), CodecError> {
    let ts_len = ts.len();
    let res = decode_into(data, ts, None);
    if res.is_err() {
        ts.truncate(ts_len);
    }
    res
}

fn decode_into(
    data: &[u8],
    ts: &mut Vec<i64>,
    vals: Option<&mut Vec<f64>>,
) -> Result<(), CodecError> {
    let l = layout(data)?;
    if l.count == 0 {
        return Ok(());
    }
    let mut scratch = Vec::new();
    let ts_sec = unwrap_section(l.ts_id, l.ts_sec, l.count, &mut scratch)?;
    ts::decode_ts(l.ts_id & !ZSTD_FLAG, ts_sec, l.count, ts)?;
    if let Some(vals) = vals {
        let val_sec = unwrap_section(l.val_id, l.val_sec, l.count, &mut scratch)?;
        values::decode_values(l.val_id & !ZSTD_FLAG, val_sec, l.count, vals)?;
    }
    Ok(())
}

/// Reads the chunk's header: count and codecs, without decoding the samples.
///
/// Codec names carry a `+zstd` suffix when the section is zstd-compressed.
pub fn chunk_info(data: &[u8]) -> Result<ChunkCodecInfo, CodecError> {
    let l = layout(data)?;
    let (ts_codec, value_codec) = if l.count == 0 {
        ("none", "none")
    } else {
        (codec_name(l.ts_id, true), codec_name(l.val_id, false))
    };
    Ok(ChunkCodecInfo {
        count: l.count,
        ts_codec,
        value_codec,
        ts_bytes: l.ts_bytes,
        value_bytes: data.len() - l.ts_bytes,
    })
}

/// Name of a codec id byte (with or without [`ZSTD_FLAG`]); "unknown" for ids no version
/// defines.
pub fn codec_name(id: u8, timestamps: bool) -> &'static str {
    let z = id & ZSTD_FLAG != 0;
    let id = id & !ZSTD_FLAG;
    let name = if timestamps {
        ts::ts_codec_name(id)
    } else {
        values::value_codec_name(id)
    };
    match (name, z) {
        (None, _) => "unknown",
        (Some(n), false) => n,
        (Some(n), true) => zstd_name(n),
    }
}

fn zstd_name(n: &'static str) -> &'static str {
    match n {
        "raw" => "raw+zstd",
        "regular" => "regular+zstd",
        "delta" => "delta+zstd",
        "delta-of-delta" => "delta-of-delta+zstd",
        "grid-jitter" => "grid-jitter+zstd",
        "grid-exceptions" => "grid-exceptions+zstd",
        "const" => "const+zstd",
        "decimal-for" => "decimal-for+zstd",
        "decimal-delta" => "decimal-delta+zstd",
        "decimal-dod" => "decimal-dod+zstd",
        "xor" => "xor+zstd",
        "float-delta" => "float-delta+zstd",
        "float-patched" => "float-patched+zstd",
        _ => "unknown+zstd",
    }
}
