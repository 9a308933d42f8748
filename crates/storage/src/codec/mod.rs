//! Chunk codecs: one chunk is the samples of one series over part of a block's time range.
//!
//! The contract every caller relies on:
//! - `encode_chunk(ts, vals)` takes strictly increasing timestamps and any f64 values, and
//!   `decode_chunk` gives back exactly the same timestamps and the same value *bits*
//!   (NaN payloads, -0.0, +/-Inf, the staleness marker).
//! - `decode_chunk` on arbitrary bytes returns an error, never panics, and never allocates
//!   more than a bound derived from the input length.
//! - The chunk starts with enough information to know its sample count.

use std::fmt;

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

/// Encodes one chunk, appending to `out`.
pub fn encode_chunk(ts: &[i64], vals: &[f64], out: &mut Vec<u8>) {
    assert_eq!(ts.len(), vals.len());
    out.push(0);
    out.extend_from_slice(&(ts.len() as u32).to_le_bytes());
    for t in ts {
        out.extend_from_slice(&t.to_le_bytes());
    }
    for v in vals {
        out.extend_from_slice(&v.to_bits().to_le_bytes());
    }
}

/// Decodes one chunk, appending to `ts` and `vals`.
pub fn decode_chunk(data: &[u8], ts: &mut Vec<i64>, vals: &mut Vec<f64>) -> Result<(), CodecError> {
    let info = chunk_info(data)?;
    let body = &data[5..];
    for i in 0..info.count {
        let b: [u8; 8] = body[i * 8..i * 8 + 8].try_into().expect("length checked");
        ts.push(i64::from_le_bytes(b));
    }
    let body = &body[info.count * 8..];
    for i in 0..info.count {
        let b: [u8; 8] = body[i * 8..i * 8 + 8].try_into().expect("length checked");
        vals.push(f64::from_bits(u64::from_le_bytes(b)));
    }
    Ok(())
}

/// Reads the chunk's header: count and codecs, without decoding the samples.
pub fn chunk_info(data: &[u8]) -> Result<ChunkCodecInfo, CodecError> {
    if data.len() < 5 || data[0] != 0 {
        return Err(CodecError("bad chunk header".into()));
    }
    let count = u32::from_le_bytes(data[1..5].try_into().expect("length checked")) as usize;
    if data.len() - 5 != count * 16 {
        return Err(CodecError("chunk length does not match its count".into()));
    }
    Ok(ChunkCodecInfo {
        count,
        ts_codec: "raw",
        value_codec: "raw",
        ts_bytes: 5 + count * 8,
        value_bytes: count * 8,
    })
}
