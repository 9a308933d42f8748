//! Value codecs. Every function here handles `n >= 1` values; empty chunks have no value
//! section at all.

use super::bitpack::{
    pack, packed_len, prefix_sum, read_for_block, read_for_block_raw, read_for_header, unpack,
    ForStream, BLOCK,
};
use super::io::{put_varint, unzigzag, varint_len, zigzag, Reader};
use super::{Candidate, CodecError};

/// Raw: `n` × f64 bits as u64 little-endian.
pub const V_RAW: u8 = 0;
/// Constant: one f64 bit pattern (u64 LE) shared by every sample.
pub const V_CONST: u8 = 1;
/// Decimal-scaled integers, frame of reference: each value is `k / 10^e`.
pub const V_DEC_FOR: u8 = 2;
/// Decimal-scaled integers, delta-coded (counters, slowly moving gauges).
pub const V_DEC_DELTA: u8 = 3;
/// Decimal-scaled integers, delta-of-delta-coded (smooth counters).
pub const V_DEC_DOD: u8 = 4;
/// XOR of consecutive bit patterns, packed per block between the block's common leading
/// and trailing zero bits.
pub const V_XOR: u8 = 5;
/// Deltas of the order-preserving integer image of the bit patterns (random walks).
pub const V_FLOAT_DELTA: u8 = 6;

/// Name of a value codec id (without the zstd flag).
pub(crate) fn value_codec_name(id: u8) -> Option<&'static str> {
    Some(match id {
        V_RAW => "raw",
        V_CONST => "const",
        V_DEC_FOR => "decimal-for",
        V_DEC_DELTA => "decimal-delta",
        V_DEC_DOD => "decimal-dod",
        V_XOR => "xor",
        V_FLOAT_DELTA => "float-delta",
        _ => return None,
    })
}

/// See `encode_values`: above this many bytes per sample for the best decimal codec, the
/// float codecs are sized too.
const FLOAT_SKIP_BYTES: usize = 2;

/// Largest decimal exponent the decimal codecs use.
pub const MAX_DECIMAL_EXP: u8 = 18;
/// Scaled integers stay below this magnitude (2^51), so that they convert to f64 exactly
/// with the add-magic-number trick the decoder vectorises with.
const MAX_SCALED: f64 = 2_251_799_813_685_248.0;
/// 1.5 * 2^52: adding it to an f64 of magnitude below 2^51 rounds it to an integer in the
/// low mantissa bits.
const MAGIC: f64 = 6_755_399_441_055_744.0;
const MAGIC_BITS: i64 = 0x4338_0000_0000_0000;

const POW10: [f64; 19] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18,
];

/// Exact i64 -> f64 for |k| < 2^51, branch-free so the compiler can vectorise it.
#[inline(always)]
fn int_to_f64(k: i64) -> f64 {
    f64::from_bits(k.wrapping_add(MAGIC_BITS) as u64) - MAGIC
}

/// The integer `k` with `k / 10^e == v` bit-exactly, if any (and `|k| < 2^51`).
#[inline(always)]
fn scale(v: f64, e: u8) -> Option<i64> {
    let p = POW10[usize::from(e)];
    let x = v * p;
    if x.is_nan() || x.abs() >= MAX_SCALED {
        return None;
    }
    let r = (x + MAGIC) - MAGIC;
    let k = r as i64;
    let back = if e == 0 { r } else { r / p };
    (back.to_bits() == v.to_bits()).then_some(k)
}

/// Smallest exponent at which `v` is a scaled integer.
fn min_exp(v: f64) -> Option<u8> {
    (0..=MAX_DECIMAL_EXP).find(|&e| scale(v, e).is_some())
}

/// Order-preserving map from f64 bits to u64 (negatives reversed below positives).
#[inline(always)]
fn ordered(bits: u64) -> u64 {
    if bits >> 63 == 1 {
        !bits
    } else {
        bits | (1 << 63)
    }
}

#[inline(always)]
fn unordered(k: u64) -> u64 {
    if k >> 63 == 1 {
        k & !(1 << 63)
    } else {
        !k
    }
}

struct Raw<'a>(&'a [f64]);
impl Candidate for Raw<'_> {
    fn id(&self) -> u8 {
        V_RAW
    }
    fn estimate(&self) -> Option<usize> {
        Some(self.0.len() * 8)
    }
    fn write(&self, out: &mut Vec<u8>) {
        for v in self.0 {
            out.extend_from_slice(&v.to_bits().to_le_bytes());
        }
    }
}

/// Decimal analysis of a chunk: the scaled integers, with the previous integer standing in
/// at each exception (a value that is not `k / 10^e`).
struct Decimal {
    e: u8,
    ints: Vec<i64>,
    exceptions: Vec<(u32, u64)>,
}

impl Decimal {
    /// `None` when the chunk does not look decimal (most sampled values are not, or more
    /// than a quarter are exceptions); `force` accepts any number of exceptions.
    fn analyse(vals: &[f64], force: bool) -> Option<Decimal> {
        let n = vals.len();
        let samples = n.min(32);
        let mut e = 0u8;
        let mut misses = 0;
        for i in 0..samples {
            match min_exp(vals[i * n / samples]) {
                Some(x) => e = e.max(x),
                None => misses += 1,
            }
        }
        if misses * 2 > samples && !force {
            return None;
        }
        let mut ints = Vec::with_capacity(n);
        let mut exceptions = Vec::new();
        let mut prev = 0i64;
        for (i, &v) in vals.iter().enumerate() {
            match scale(v, e) {
                Some(k) => prev = k,
                None => exceptions.push((i as u32, v.to_bits())),
            }
            ints.push(prev);
        }
        if exceptions.len() * 4 > n && !force {
            return None;
        }
        Some(Decimal {
            e,
            ints,
            exceptions,
        })
    }

    fn header_len(&self) -> usize {
        let mut len = 1 + varint_len(self.exceptions.len() as u64);
        let mut next = 0u32;
        for &(i, _) in &self.exceptions {
            len += varint_len(u64::from(i - next)) + 8;
            next = i + 1;
        }
        len
    }

    fn write_header(&self, out: &mut Vec<u8>) {
        out.push(self.e);
        put_varint(out, self.exceptions.len() as u64);
        let mut next = 0u32;
        for &(i, bits) in &self.exceptions {
            put_varint(out, u64::from(i - next));
            out.extend_from_slice(&bits.to_le_bytes());
            next = i + 1;
        }
    }
}

/// One of the three integer layouts over a [`Decimal`] analysis.
struct DecimalCand<'a> {
    id: u8,
    dec: &'a Decimal,
    /// Fixed varints before the stream (first value, first delta), zigzagged.
    prefix: Vec<u64>,
    stream: Vec<u64>,
    len: usize,
    g: u64,
}

impl<'a> DecimalCand<'a> {
    fn new(id: u8, dec: &'a Decimal) -> Self {
        let ints = &dec.ints;
        let (prefix, stream): (Vec<u64>, Vec<u64>) = match id {
            V_DEC_FOR => (Vec::new(), ints.iter().map(|&k| k as u64).collect()),
            V_DEC_DELTA => (
                vec![zigzag(ints[0])],
                ints.windows(2)
                    .map(|w| w[1].wrapping_sub(w[0]) as u64)
                    .collect(),
            ),
            _ => {
                let mut prefix = vec![zigzag(ints[0])];
                if ints.len() >= 2 {
                    prefix.push(zigzag(ints[1].wrapping_sub(ints[0])));
                }
                let stream = ints
                    .windows(3)
                    .map(|w| {
                        w[2].wrapping_sub(w[1])
                            .wrapping_sub(w[1].wrapping_sub(w[0])) as u64
                    })
                    .collect();
                (prefix, stream)
            }
        };
        let fs = ForStream::new(&stream, true);
        let len =
            dec.header_len() + prefix.iter().map(|&p| varint_len(p)).sum::<usize>() + fs.len();
        let g = fs.gcd();
        DecimalCand {
            id,
            dec,
            prefix,
            stream,
            len,
            g,
        }
    }
}

impl Candidate for DecimalCand<'_> {
    fn id(&self) -> u8 {
        self.id
    }
    fn estimate(&self) -> Option<usize> {
        Some(self.len)
    }
    fn write(&self, out: &mut Vec<u8>) {
        self.dec.write_header(out);
        for &p in &self.prefix {
            put_varint(out, p);
        }
        ForStream::with_gcd(&self.stream, true, self.g).write(out);
    }
}

struct Xor<'a>(&'a [f64]);

impl Xor<'_> {
    /// Per block: (trailing zeros shared by the block, width of the significant window).
    fn frame(block: &[u64]) -> (u32, u32) {
        let or = block.iter().fold(0u64, |a, &x| a | x);
        if or == 0 {
            return (0, 0);
        }
        let tz = or.trailing_zeros();
        (tz, 64 - or.leading_zeros() - tz)
    }

    fn xors(&self) -> Vec<u64> {
        self.0
            .windows(2)
            .map(|w| w[0].to_bits() ^ w[1].to_bits())
            .collect()
    }
}

impl Candidate for Xor<'_> {
    fn id(&self) -> u8 {
        V_XOR
    }
    fn estimate(&self) -> Option<usize> {
        let xs = self.xors();
        Some(
            8 + xs
                .chunks(BLOCK)
                .map(|b| 2 + packed_len(b.len(), Xor::frame(b).1))
                .sum::<usize>(),
        )
    }
    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.0[0].to_bits().to_le_bytes());
        let xs = self.xors();
        let mut tmp = [0u64; BLOCK];
        for b in xs.chunks(BLOCK) {
            let (tz, w) = Xor::frame(b);
            out.push(tz as u8);
            out.push(w as u8);
            for (t, &x) in tmp.iter_mut().zip(b) {
                *t = x >> tz;
            }
            pack(&tmp[..b.len()], w, out);
        }
    }
}

struct FloatDelta {
    first: u64,
    deltas: Vec<u64>,
    g: u64,
    len: usize,
}

impl FloatDelta {
    fn new(vals: &[f64]) -> Self {
        let deltas: Vec<u64> = vals
            .windows(2)
            .map(|w| ordered(w[1].to_bits()).wrapping_sub(ordered(w[0].to_bits())))
            .collect();
        let fs = ForStream::new(&deltas, true);
        let (g, len) = (fs.gcd(), 8 + fs.len());
        FloatDelta {
            first: vals[0].to_bits(),
            deltas,
            g,
            len,
        }
    }
}

impl Candidate for FloatDelta {
    fn id(&self) -> u8 {
        V_FLOAT_DELTA
    }
    fn estimate(&self) -> Option<usize> {
        Some(self.len)
    }
    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.first.to_le_bytes());
        ForStream::with_gcd(&self.deltas, true, self.g).write(out);
    }
}

struct Const(u64);
impl Candidate for Const {
    fn id(&self) -> u8 {
        V_CONST
    }
    fn estimate(&self) -> Option<usize> {
        Some(8)
    }
    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.0.to_le_bytes());
    }
}

/// Chooses the smallest value codec for `vals` (`vals.len() >= 1`), or the codec `force`
/// names if it is eligible, appends its section to `out` and returns its id (`None`: the
/// forced codec is not eligible, nothing was written).
pub(crate) fn encode_values(vals: &[f64], force: Option<u8>, out: &mut Vec<u8>) -> Option<u8> {
    let first = vals[0].to_bits();
    let is_const = vals.iter().all(|v| v.to_bits() == first);
    if is_const && force.is_none() {
        return Some(write_cand(&Const(first), out));
    }
    let forced = |id: u8| force.is_none_or(|f| f == id);
    let dec = if forced(V_DEC_FOR) || forced(V_DEC_DELTA) || forced(V_DEC_DOD) {
        Decimal::analyse(vals, force.is_some())
    } else {
        None
    };
    let dec_cands: Vec<DecimalCand<'_>> = match &dec {
        Some(d) => [V_DEC_FOR, V_DEC_DELTA, V_DEC_DOD]
            .into_iter()
            .filter(|&id| forced(id))
            .map(|id| DecimalCand::new(id, d))
            .collect(),
        None => Vec::new(),
    };
    // Speed: when a decimal codec already fits in FLOAT_SKIP_BYTES per sample, the float
    // codecs (whose costs follow the mantissa bits that change) are not sized at all.
    let dec_best = dec_cands.iter().map(|c| c.len).min();
    let try_floats = force.is_some() || dec_best.is_none_or(|b| b > FLOAT_SKIP_BYTES * vals.len());
    let raw = Raw(vals);
    let constant = Const(first);
    let xor = Xor(vals);
    let fdelta = if try_floats && forced(V_FLOAT_DELTA) {
        Some(FloatDelta::new(vals))
    } else {
        None
    };
    let mut cands: Vec<&dyn Candidate> = vec![&raw];
    if try_floats && forced(V_XOR) {
        cands.push(&xor);
    }
    if is_const {
        cands.push(&constant);
    }
    if let Some(f) = &fdelta {
        cands.push(f);
    }
    cands.extend(dec_cands.iter().map(|c| c as &dyn Candidate));
    match force {
        None => Some(write_cand(super::smallest(&cands), out)),
        Some(f) => cands
            .iter()
            .find(|c| c.id() == f)
            .map(|c| write_cand(*c, out)),
    }
}

fn write_cand(c: &dyn Candidate, out: &mut Vec<u8>) -> u8 {
    c.write(out);
    c.id()
}

/// Decodes a value section of `n >= 1` samples, appending to `out`.
pub(crate) fn decode_values(
    id: u8,
    sec: &[u8],
    n: usize,
    out: &mut Vec<f64>,
) -> Result<(), CodecError> {
    let mut r = Reader::new(sec);
    match id {
        V_RAW => {
            if sec.len() != n * 8 {
                return Err(CodecError("raw value section has the wrong length".into()));
            }
            out.extend(sec.chunks_exact(8).map(|c| {
                let mut a = [0u8; 8];
                a.copy_from_slice(c);
                f64::from_bits(u64::from_le_bytes(a))
            }));
            return Ok(());
        }
        V_CONST => {
            let v = f64::from_bits(r.u64_le()?);
            r.finish()?;
            out.resize(out.len() + n, v);
            return Ok(());
        }
        V_DEC_FOR | V_DEC_DELTA | V_DEC_DOD => return decode_decimal(id, r, n, out),
        V_XOR | V_FLOAT_DELTA => {}
        _ => return Err(CodecError(format!("unknown value codec {id}"))),
    }
    let first = r.u64_le()?;
    let start = out.len();
    out.resize(start + n, 0.0);
    let dst = &mut out[start..];
    dst[0] = f64::from_bits(first);
    let mut buf = [0u64; BLOCK];
    if id == V_XOR {
        let mut bits = first;
        for block in dst[1..].chunks_mut(BLOCK) {
            let tz = u32::from(r.u8()?);
            let w = u32::from(r.u8()?);
            if tz > 63 || tz + w > 64 {
                return Err(CodecError("xor block frame out of range".into()));
            }
            let b = &mut buf[..block.len()];
            let need = packed_len(b.len(), w);
            let src = r.rest();
            if src.len() < need {
                return Err(CodecError("xor block truncated".into()));
            }
            unpack(src, w, b);
            r.bytes(need)?;
            for (o, &x) in block.iter_mut().zip(b.iter()) {
                bits ^= x << tz;
                *o = f64::from_bits(bits);
            }
        }
    } else {
        let mut k = ordered(first);
        let g = read_for_header(&mut r)?;
        for block in dst[1..].chunks_mut(BLOCK) {
            let b = &mut buf[..block.len()];
            read_for_block(&mut r, true, g, b)?;
            for (o, &d) in block.iter_mut().zip(b.iter()) {
                k = k.wrapping_add(d);
                *o = f64::from_bits(unordered(k));
            }
        }
    }
    r.finish()
}

fn decode_decimal(
    id: u8,
    mut r: Reader<'_>,
    n: usize,
    out: &mut Vec<f64>,
) -> Result<(), CodecError> {
    let e = r.u8()?;
    if e > MAX_DECIMAL_EXP {
        return Err(CodecError(format!("decimal exponent {e} out of range")));
    }
    let n_exc = r.varint()?;
    // Each exception takes at least 9 bytes: validate before allocating.
    if n_exc > n as u64 || n_exc.saturating_mul(9) > r.remaining() as u64 {
        return Err(CodecError("too many decimal exceptions".into()));
    }
    let mut exceptions = Vec::with_capacity(n_exc as usize);
    let mut next = 0u64;
    for _ in 0..n_exc {
        let i = next.saturating_add(r.varint()?);
        if i >= n as u64 {
            return Err(CodecError("decimal exception index out of range".into()));
        }
        exceptions.push((i as usize, r.u64_le()?));
        next = i + 1;
    }
    let mut prev = 0i64;
    let mut delta = 0i64;
    let mut skip = 0;
    if id != V_DEC_FOR {
        prev = unzigzag(r.varint()?);
        skip = 1;
        if id == V_DEC_DOD && n >= 2 {
            delta = unzigzag(r.varint()?);
            skip = 2;
        }
    }
    let start = out.len();
    out.reserve(n);
    let p = POW10[usize::from(e)];
    let mut ints = [0i64; BLOCK];
    let mut buf = [0u64; BLOCK];
    // The leading integers that sit in the prefix rather than in the stream.
    if skip >= 1 {
        ints[0] = prev;
    }
    if skip == 2 {
        prev = prev.wrapping_add(delta);
        ints[1] = prev;
    }
    let g = read_for_header(&mut r)?;
    let mut pos = 0;
    if skip > 0 {
        let m = skip.min(n);
        convert(&ints[..m], e, p, out);
        pos = m;
    }
    while pos < n {
        let len = (n - pos).min(BLOCK);
        let b = &mut buf[..len];
        let min = read_for_block_raw(&mut r, true, b)? as i64;
        let ib = &mut ints[..len];
        let gi = g as i64;
        match id {
            V_DEC_FOR if g == 1 => {
                for (k, &x) in ib.iter_mut().zip(b.iter()) {
                    *k = (x as i64).wrapping_add(min);
                }
            }
            V_DEC_FOR => {
                for (k, &x) in ib.iter_mut().zip(b.iter()) {
                    *k = (x as i64).wrapping_mul(gi).wrapping_add(min);
                }
            }
            V_DEC_DELTA => {
                for (k, &x) in ib.iter_mut().zip(b.iter()) {
                    *k = (x as i64).wrapping_mul(gi).wrapping_add(min);
                }
                prefix_sum(ib, &mut prev);
            }
            _ => {
                for (k, &x) in ib.iter_mut().zip(b.iter()) {
                    *k = (x as i64).wrapping_mul(gi).wrapping_add(min);
                }
                prefix_sum(ib, &mut delta);
                prefix_sum(ib, &mut prev);
            }
        }
        convert(ib, e, p, out);
        pos += len;
    }
    r.finish()?;
    let dst = &mut out[start..];
    for (i, bits) in exceptions {
        dst[i] = f64::from_bits(bits);
    }
    Ok(())
}

/// Scaled integers to floats, a block at a time, appended to `out` (vectorised: add,
/// subtract, divide).
#[inline]
fn convert(ints: &[i64], e: u8, p: f64, out: &mut Vec<f64>) {
    if e == 0 {
        out.extend(ints.iter().map(|&k| int_to_f64(k)));
    } else {
        out.extend(ints.iter().map(|&k| int_to_f64(k) / p));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_scaling_is_exact() {
        assert_eq!(scale(0.1, 1), Some(1));
        assert_eq!(scale(0.2345678, 7), Some(2_345_678));
        assert_eq!(min_exp(0.2345678), Some(7));
        assert_eq!(min_exp(123.0), Some(0));
        assert_eq!(scale(-0.0, 0), None);
        assert_eq!(scale(f64::NAN, 0), None);
        assert_eq!(scale(f64::INFINITY, 3), None);
        assert_eq!(min_exp(std::f64::consts::PI), None);
        for k in [-(1i64 << 50), -1, 0, 1, 12345, 1 << 50] {
            assert_eq!(int_to_f64(k), k as f64);
        }
    }

    #[test]
    fn ordered_is_monotone_and_invertible() {
        let xs = [
            f64::NEG_INFINITY,
            -1e300,
            -1.0,
            -0.0,
            0.0,
            1e-300,
            1.0,
            f64::INFINITY,
        ];
        for w in xs.windows(2) {
            assert!(ordered(w[0].to_bits()) < ordered(w[1].to_bits()));
        }
        for x in xs {
            assert_eq!(unordered(ordered(x.to_bits())), x.to_bits());
        }
    }
}
