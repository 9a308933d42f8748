//! Value codecs. Every function here handles `n >= 1` values; empty chunks have no value
//! section at all.

use super::bitpack::{
    bit_width, pack, packed_len, prefix_sum, prefix_sum_u64, read_for_block, read_for_header,
    unpack, ForStream, BLOCK,
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
/// Like [`V_FLOAT_DELTA`], but each block's reference is stored at the precision its width
/// needs, and outlying deltas are patched in after a narrower packing (exceptions).
pub const V_FLOAT_PATCHED: u8 = 7;

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
        V_FLOAT_PATCHED => "float-patched",
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
    // A decimal `v = k / 10^e` gives `|x - k| <= |k| 2^-52`; anything further from an
    // integer is not one, and costs no division to reject (true floats try every `e`).
    if (x - r).abs() > x.abs() * (1.0 / (1u64 << 50) as f64) {
        return None;
    }
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
    // Top bit set: clear it; clear: invert everything. Branch-free so that it vectorises.
    k ^ ((k >> 63).wrapping_sub(1) | (1 << 63))
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
            // Most of the sample already fails: not decimal (true floats stop here).
            if misses * 2 > samples && !force {
                return None;
            }
        }
        // One branch-free pass that the compiler vectorises: every value's integer and
        // whether it comes back exactly (the check of `scale`); a second, serial pass only
        // when some value does not.
        let p = POW10[usize::from(e)];
        let mut ints = vec![0i64; n];
        let mut bad = 0usize;
        for (k, &v) in ints.iter_mut().zip(vals) {
            let x = v * p;
            let m = x + MAGIC;
            let r = m - MAGIC;
            let back = if e == 0 { r } else { r / p };
            let ok = (back.to_bits() == v.to_bits()) & (x.abs() < MAX_SCALED);
            *k = (m.to_bits() as i64).wrapping_sub(MAGIC_BITS);
            bad += usize::from(!ok);
        }
        if bad * 4 > n && !force {
            return None;
        }
        let mut exceptions = Vec::with_capacity(bad);
        if bad > 0 {
            let mut prev = 0i64;
            for (i, (k, &v)) in ints.iter_mut().zip(vals).enumerate() {
                match scale(v, e) {
                    Some(x) => prev = x,
                    None => exceptions.push((i as u32, v.to_bits())),
                }
                *k = prev;
            }
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

/// Low bits of a patched block's reference that are not stored: the reference is
/// `q << ref_shift(w)`, so it costs about 4 bits plus the size of the block's offset.
#[inline(always)]
fn ref_shift(w: u32) -> u32 {
    w.saturating_sub(4)
}

/// How one block of a [`FloatPatched`] stream is written: width, stored reference `q`, and
/// the exact byte length of the block.
#[derive(Clone, Copy)]
struct PatchFrame {
    w: u32,
    q: i64,
    bytes: usize,
}

impl PatchFrame {
    /// The frame for width `w` and reference `q`, with its exact length (exceptions are the
    /// values whose offset from the reference does not fit in `w` bits).
    fn sized(block: &[u64], w: u32, q: i64) -> PatchFrame {
        let r = (q as u64) << ref_shift(w);
        let mut exc = 0usize;
        let mut exc_bytes = 0usize;
        if w < 64 {
            for &d in block {
                let hi = d.wrapping_sub(r) >> w;
                if hi != 0 {
                    exc += 1;
                    exc_bytes += 1 + varint_len(hi);
                }
            }
        }
        PatchFrame {
            w,
            q,
            bytes: 1
                + varint_len(zigzag(q))
                + varint_len(exc as u64)
                + packed_len(block.len(), w)
                + exc_bytes,
        }
    }

    /// Plain frame of reference (no exception): the block minimum rounded down to the
    /// stored precision, and the width that then covers the maximum.
    fn plain(block: &[u64]) -> PatchFrame {
        // Four independent minima and maxima (64-bit compares do not vectorise on the
        // baseline target; one chain costs two dependent steps per value).
        let (mut lo4, mut hi4) = ([i64::MAX; 4], [i64::MIN; 4]);
        let mut quads = block.chunks_exact(4);
        for q in quads.by_ref() {
            for j in 0..4 {
                lo4[j] = lo4[j].min(q[j] as i64);
                hi4[j] = hi4[j].max(q[j] as i64);
            }
        }
        for &d in quads.remainder() {
            lo4[0] = lo4[0].min(d as i64);
            hi4[0] = hi4[0].max(d as i64);
        }
        let lo = lo4.into_iter().min().unwrap_or(i64::MAX);
        let hi = hi4.into_iter().max().unwrap_or(i64::MIN);
        let full = bit_width(hi.wrapping_sub(lo) as u64);
        for w in full..64 {
            let q = lo >> ref_shift(w);
            let r = (q as u64) << ref_shift(w);
            if (hi as u64).wrapping_sub(r) >> w == 0 {
                return PatchFrame {
                    w,
                    q,
                    bytes: 1 + varint_len(zigzag(q)) + 1 + packed_len(block.len(), w),
                };
            }
        }
        PatchFrame::sized(block, 64, lo >> ref_shift(64))
    }

    /// The cheaper of the plain frame and a patched one: a window centred on the block's
    /// (sampled) median whose width minimises packed bits plus (estimated) exception bytes.
    fn choose(block: &[u64]) -> PatchFrame {
        let plain = PatchFrame::plain(block);
        if plain.w < 12 || block.len() < 16 {
            return plain;
        }
        // The centre: the median of 32 values spread over the block (a full selection
        // took a seventh of the encoding time of random walks, for 0.004 bytes per sample).
        let mut sample = [0i64; 32];
        for (i, x) in sample.iter_mut().enumerate() {
            *x = block[i * block.len() / 32] as i64;
        }
        sample.sort_unstable();
        let c = sample[16];
        // hist[k]: values whose distance from the median takes k bits (four histograms
        // filled in turn, so that increments of the same bin do not wait on each other).
        let mut hist4 = [[0u32; 65]; 4];
        let mut quads = block.chunks_exact(4);
        for q in quads.by_ref() {
            for (h, &d) in hist4.iter_mut().zip(q) {
                h[bit_width((d as i64).abs_diff(c)) as usize] += 1;
            }
        }
        for &d in quads.remainder() {
            hist4[0][bit_width((d as i64).abs_diff(c)) as usize] += 1;
        }
        // A window of width w around c holds the distances of at most w - 1 bits.
        let n = block.len();
        let mut best: Option<(usize, u32)> = None;
        let mut outside = 0usize;
        for w in (1..plain.w).rev() {
            outside += hist4.iter().map(|h| h[w as usize] as usize).sum::<usize>();
            // With a quarter of the block out, exceptions (two bytes or more each) cost
            // about what narrower windows save: not worth trying.
            if outside * 4 > n {
                break;
            }
            let exc_bits = outside * 8 * (1 + (plain.w - w + 1).div_ceil(7) as usize);
            let bits = n * w as usize + exc_bits;
            if best.is_none_or(|(b, _)| bits < b) {
                best = Some((bits, w));
            }
        }
        let Some((_, w)) = best else { return plain };
        let r0 = c.wrapping_sub(1i64 << (w - 1));
        let patched = PatchFrame::sized(block, w, r0 >> ref_shift(w));
        if patched.bytes < plain.bytes {
            patched
        } else {
            plain
        }
    }

    fn write(&self, block: &[u64], out: &mut Vec<u8>) {
        let w = self.w;
        let r = (self.q as u64) << ref_shift(w);
        let mask = if w == 64 { u64::MAX } else { (1u64 << w) - 1 };
        let mut tmp = [0u64; BLOCK];
        let mut exc: [(u8, u64); BLOCK] = [(0, 0); BLOCK];
        let mut n_exc = 0;
        for (i, (t, &d)) in tmp.iter_mut().zip(block).enumerate() {
            let u = d.wrapping_sub(r);
            *t = u & mask;
            if w < 64 && u >> w != 0 {
                exc[n_exc] = (i as u8, u >> w);
                n_exc += 1;
            }
        }
        out.push(w as u8);
        put_varint(out, zigzag(self.q));
        put_varint(out, n_exc as u64);
        pack(&tmp[..block.len()], w, out);
        for &(i, hi) in &exc[..n_exc] {
            out.push(i);
            put_varint(out, hi);
        }
    }
}

/// Deltas of the order-preserving image, patched frame of reference per block.
struct FloatPatched {
    first: u64,
    deltas: Vec<u64>,
    frames: Vec<PatchFrame>,
    len: usize,
}

impl FloatPatched {
    fn new(vals: &[f64]) -> Self {
        let deltas: Vec<u64> = vals
            .windows(2)
            .map(|w| ordered(w[1].to_bits()).wrapping_sub(ordered(w[0].to_bits())))
            .collect();
        let frames: Vec<PatchFrame> = deltas.chunks(BLOCK).map(PatchFrame::choose).collect();
        let len = 8 + frames.iter().map(|f| f.bytes).sum::<usize>();
        FloatPatched {
            first: vals[0].to_bits(),
            deltas,
            frames,
            len,
        }
    }
}

impl Candidate for FloatPatched {
    fn id(&self) -> u8 {
        V_FLOAT_PATCHED
    }
    fn estimate(&self) -> Option<usize> {
        Some(self.len)
    }
    fn write(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&self.first.to_le_bytes());
        for (f, b) in self.frames.iter().zip(self.deltas.chunks(BLOCK)) {
            f.write(b, out);
        }
        debug_assert_eq!(out.len() - start, self.len);
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
    // `float-patched` supersedes `float-delta` (on the devops random walks it is 0.15 bytes per
    // sample shorter; it can lose a few bytes a block where rounding its reference costs a
    // bit of width, or where the deltas share a common multiplier), so the encoder sizes only
    // the former; `float-delta` stays available when forced, and decodable.
    let fdelta = if force == Some(V_FLOAT_DELTA) {
        Some(FloatDelta::new(vals))
    } else {
        None
    };
    let fpatched = if try_floats && forced(V_FLOAT_PATCHED) {
        Some(FloatPatched::new(vals))
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
    if let Some(f) = &fpatched {
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
        V_FLOAT_PATCHED => return decode_patched(r, n, out),
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

fn decode_patched(mut r: Reader<'_>, n: usize, out: &mut Vec<f64>) -> Result<(), CodecError> {
    let first = r.u64_le()?;
    let start = out.len();
    out.resize(start + n, 0.0);
    let dst = &mut out[start..];
    dst[0] = f64::from_bits(first);
    let mut k = ordered(first) as i64;
    let mut buf = [0u64; BLOCK];
    let mut ints = [0i64; BLOCK];
    for block in dst[1..].chunks_mut(BLOCK) {
        let len = block.len();
        let w = u32::from(r.u8()?);
        if w > 64 {
            return Err(CodecError(format!("bit width {w} > 64")));
        }
        let rf = (unzigzag(r.varint()?) as u64) << ref_shift(w);
        let n_exc = r.varint()?;
        if n_exc > len as u64 {
            return Err(CodecError("too many patched exceptions".into()));
        }
        let b = &mut buf[..len];
        let need = packed_len(len, w);
        let src = r.rest();
        if src.len() < need {
            return Err(CodecError("packed block truncated".into()));
        }
        unpack(src, w, b);
        r.bytes(need)?;
        let mut next = 0usize;
        for _ in 0..n_exc {
            let i = usize::from(r.u8()?);
            let hi = r.varint()?;
            if i < next || i >= len {
                return Err(CodecError("patched exception index out of order".into()));
            }
            if !(w == 0 || (w < 64 && hi >> (64 - w) == 0)) {
                return Err(CodecError("patched exception too wide".into()));
            }
            b[i] |= hi << (w & 63);
            next = i + 1;
        }
        let ib = &mut ints[..len];
        for (x, &u) in ib.iter_mut().zip(b.iter()) {
            *x = rf.wrapping_add(u) as i64;
        }
        prefix_sum(ib, &mut k);
        for (o, &x) in block.iter_mut().zip(ib.iter()) {
            *o = f64::from_bits(unordered(x as u64));
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
    let mut ints = [0i64; 2];
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
    // The integers stay in `buf` from unpacking to conversion, as u64 (wrapping arithmetic
    // is the same on both): reference (added while unpacking) and multiplier, then the
    // running sums, in place.
    let (mut prev, mut delta) = (prev as u64, delta as u64);
    while pos < n {
        let len = (n - pos).min(BLOCK);
        let b = &mut buf[..len];
        read_for_block(&mut r, true, g, b)?;
        match id {
            V_DEC_FOR => {}
            V_DEC_DELTA => prefix_sum_u64(b, &mut prev),
            _ => {
                prefix_sum_u64(b, &mut delta);
                prefix_sum_u64(b, &mut prev);
            }
        }
        convert_u64(b, e, p, out);
        pos += len;
    }
    r.finish()?;
    let dst = &mut out[start..];
    for (i, bits) in exceptions {
        dst[i] = f64::from_bits(bits);
    }
    Ok(())
}

/// [`convert`] of integers held as u64 bit patterns.
#[inline]
fn convert_u64(ints: &[u64], e: u8, p: f64, out: &mut Vec<f64>) {
    if e == 0 {
        out.extend(ints.iter().map(|&k| int_to_f64(k as i64)));
    } else {
        out.extend(ints.iter().map(|&k| int_to_f64(k as i64) / p));
    }
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
    fn patched_frames_take_outliers_out() {
        // A walk near 50 with two drops to 0.0 (and back) in one block: the plain frame
        // needs 64 bits a value, the patched one packs the rest at the walk's width (48
        // bits: steps up to 0.7 at 2^-47 a unit) and the four jumps as exceptions.
        let mut vals: Vec<f64> = (0..129)
            .map(|i| 50.0 + (f64::from(i) * 0.7).sin())
            .collect();
        vals[40] = 0.0;
        vals[90] = 0.0;
        let deltas: Vec<u64> = vals
            .windows(2)
            .map(|w| ordered(w[1].to_bits()).wrapping_sub(ordered(w[0].to_bits())))
            .collect();
        let plain = PatchFrame::plain(&deltas);
        let best = PatchFrame::choose(&deltas);
        assert_eq!(plain.w, 64);
        assert_eq!(best.w, 48);
        assert!(best.bytes < plain.bytes * 4 / 5, "{}", best.bytes);
        let mut out = Vec::new();
        best.write(&deltas, &mut out);
        assert_eq!(out.len(), best.bytes);
        let mut sec = Vec::new();
        assert_eq!(
            encode_values(&vals, Some(V_FLOAT_PATCHED), &mut sec),
            Some(V_FLOAT_PATCHED)
        );
        let mut back = Vec::new();
        decode_values(V_FLOAT_PATCHED, &sec, vals.len(), &mut back).unwrap();
        let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&back), bits(&vals));
        // An exception wider than the bits above the width is an error, not other data.
        let mut bad = sec.clone();
        let w = bad[8];
        assert_eq!(usize::from(w), best.w as usize);
        bad.truncate(8);
        bad.extend_from_slice(&[1, 0, 1]); // w = 1, q = 0, one exception
        bad.extend_from_slice(&[0; 16]); // 128 values of 1 bit
        bad.extend_from_slice(&[
            0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
        ]);
        assert!(decode_values(V_FLOAT_PATCHED, &bad, vals.len(), &mut Vec::new()).is_err());
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
