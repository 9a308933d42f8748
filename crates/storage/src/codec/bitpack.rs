//! Bit-packing of u64 sequences, and the frame-of-reference ("FOR") block stream.
//!
//! Packed layout: value `i` of a run packed at width `w` occupies bits `[i*w, (i+1)*w)` of
//! the run's bit string, bit `k` of the string being bit `k % 8` of byte `k / 8` (LSB first),
//! and the value's least significant bit first. A run of `n` values takes `ceil(n*w/8)` bytes;
//! unused high bits of the last byte are zero.

use super::io::{put_varint, unzigzag, varint_len, zigzag, Reader};
use super::CodecError;

/// Values per block of a FOR stream (the decoder works on one block at a time).
pub(crate) const BLOCK: usize = 128;

/// Bits needed to represent `x` (0 for 0).
#[inline]
pub(crate) fn bit_width(x: u64) -> u32 {
    64 - x.leading_zeros()
}

/// Bytes taken by `n` values at width `w`.
#[inline]
pub(crate) fn packed_len(n: usize, w: u32) -> usize {
    (n * w as usize).div_ceil(8)
}

/// Appends `vals` packed at width `w` (every value must fit in `w` bits).
pub(crate) fn pack(vals: &[u64], w: u32, out: &mut Vec<u8>) {
    if w == 0 {
        return;
    }
    let start = out.len();
    let mut acc: u64 = 0;
    let mut nbits: u32 = 0;
    for &v in vals {
        acc |= v << nbits;
        let total = nbits + w;
        if total >= 64 {
            out.extend_from_slice(&acc.to_le_bytes());
            // The bits of `v` that did not fit in `acc`.
            acc = if nbits == 0 { 0 } else { v >> (64 - nbits) };
            nbits = total - 64;
        } else {
            nbits = total;
        }
    }
    if nbits > 0 {
        out.extend_from_slice(&acc.to_le_bytes()[..nbits.div_ceil(8) as usize]);
    }
    debug_assert_eq!(out.len() - start, packed_len(vals.len(), w));
}

/// Bytes past the packed run that [`unpack_padded`] may read.
const PAD: usize = 16;

/// Reads `out.len()` (at most [`BLOCK`]) values packed at width `w` (at most 64) from the
/// start of `src`, which holds at least `packed_len(out.len(), w)` bytes (checked by the
/// caller).
#[inline]
pub(crate) fn unpack(src: &[u8], w: u32, out: &mut [u64]) {
    unpack_add(src, w, out, 0);
}

/// [`unpack`], adding `base` (wrapping) to every value as it is written: one pass instead of
/// two, and no vector loads of values just stored one by one.
#[inline]
pub(crate) fn unpack_add(src: &[u8], w: u32, out: &mut [u64], base: u64) {
    let need = packed_len(out.len(), w);
    debug_assert!(src.len() >= need && out.len() <= BLOCK && w <= 64);
    if w == 0 {
        out.fill(base);
    } else if src.len() >= need + PAD {
        unpack_padded(src, w, out, base);
    } else {
        // Near the end of the input: copy to a padded buffer so that every read is whole.
        let mut buf = [0u8; BLOCK * 8 + PAD];
        buf[..need].copy_from_slice(&src[..need]);
        unpack_padded(&buf, w, out, base);
    }
}

/// `unpack_add` where `src` has at least [`PAD`] readable bytes past the packed bits:
/// dispatches to a copy of the loop specialised for the width, whose shifts are constants.
fn unpack_padded(src: &[u8], w: u32, out: &mut [u64], base: u64) {
    macro_rules! by_width {
        ($($w:literal)*) => {
            match w {
                $($w => unpack_w::<$w>(src, out, base),)*
                _ => {}
            }
        };
    }
    by_width!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30
        31 32 33 34 35 36 37 38 39 40 41 42 43 44 45 46 47 48 49 50 51 52 53 54 55 56 57 58 59
        60 61 62 63 64);
}

/// Eight values at width `W` take exactly `W` bytes: unpack a group of eight with constant
/// offsets, group after group.
#[inline(always)]
fn unpack_w<const W: usize>(src: &[u8], out: &mut [u64], base: u64) {
    let mask = if W == 64 { u64::MAX } else { (1u64 << W) - 1 };
    let done = out.len() / 8 * 8;
    let mut groups = out.chunks_exact_mut(8);
    for (gi, group) in groups.by_ref().enumerate() {
        let s = &src[gi * W..gi * W + W + PAD];
        for (j, o) in group.iter_mut().enumerate() {
            let bit = j * W;
            *o = (read_bits::<W>(s, bit) & mask).wrapping_add(base);
        }
    }
    for (j, o) in groups.into_remainder().iter_mut().enumerate() {
        let bit = (done + j) * W;
        *o = (read_bits::<W>(&src[bit / 8..bit / 8 + PAD], bit % 8) & mask).wrapping_add(base);
    }
}

/// The (unmasked) bits of `s` from bit `bit` on; `s` extends at least 16 bytes past
/// `bit / 8`.
#[inline(always)]
fn read_bits<const W: usize>(s: &[u8], bit: usize) -> u64 {
    let byte = bit / 8;
    let sh = bit % 8;
    if W <= 56 {
        let mut a = [0u8; 8];
        a.copy_from_slice(&s[byte..byte + 8]);
        u64::from_le_bytes(a) >> sh
    } else {
        let mut a = [0u8; 16];
        a.copy_from_slice(&s[byte..byte + 16]);
        (u128::from_le_bytes(a) >> sh) as u64
    }
}

/// Running sum of `v` starting from `acc`, in place (wrapping; [`prefix_sum_u64`] on the
/// same bits).
#[inline]
pub(crate) fn prefix_sum(v: &mut [i64], acc: &mut i64) {
    let mut a = *acc as u64;
    prefix_sum_u64(bytemuck::cast_slice_mut(v), &mut a);
    *acc = a as i64;
}

/// Running sum of `v` starting from `acc`, in place, wrapping; four values per step so that
/// the dependency chain through `acc` is one add per four values.
#[inline]
pub(crate) fn prefix_sum_u64(v: &mut [u64], acc: &mut u64) {
    let mut a = *acc;
    let mut quads = v.chunks_exact_mut(4);
    for q in quads.by_ref() {
        let s01 = q[0].wrapping_add(q[1]);
        let s012 = s01.wrapping_add(q[2]);
        let s = s012.wrapping_add(q[3]);
        q[0] = a.wrapping_add(q[0]);
        q[1] = a.wrapping_add(s01);
        q[2] = a.wrapping_add(s012);
        q[3] = a.wrapping_add(s);
        a = a.wrapping_add(s);
    }
    for x in quads.into_remainder() {
        a = a.wrapping_add(*x);
        *x = a;
    }
    *acc = a;
}

/// Greatest common divisor (binary algorithm).
fn gcd(mut a: u64, mut b: u64) -> u64 {
    if a == 0 {
        return b;
    }
    if b == 0 {
        return a;
    }
    let shift = (a | b).trailing_zeros();
    a >>= a.trailing_zeros();
    loop {
        b >>= b.trailing_zeros();
        if a > b {
            std::mem::swap(&mut a, &mut b);
        }
        b -= a;
        if b == 0 {
            return a << shift;
        }
    }
}

/// The largest `g` dividing every `v - vals[0]` (1 if there is none).
fn stream_gcd(vals: &[u64], signed: bool) -> u64 {
    let Some(&x0) = vals.first() else { return 1 };
    let mut g = 0u64;
    for &v in &vals[1..] {
        let d = if signed {
            (v as i64).abs_diff(x0 as i64)
        } else {
            v.abs_diff(x0)
        };
        g = gcd(g, d);
        if g == 1 {
            return 1;
        }
    }
    g.max(1)
}

/// Exact division by a fixed `g`: shift out its power of two, multiply by the inverse of its
/// odd part modulo 2^64 (valid only for multiples of `g`).
#[derive(Clone, Copy)]
struct ExactDiv {
    shift: u32,
    inv: u64,
}

impl ExactDiv {
    fn new(g: u64) -> Self {
        let shift = g.trailing_zeros();
        let m = g >> shift;
        // Newton's iteration doubles the correct low bits each step: 1 -> 64 in 6 steps.
        let mut inv = m;
        for _ in 0..6 {
            inv = inv.wrapping_mul(2u64.wrapping_sub(m.wrapping_mul(inv)));
        }
        debug_assert_eq!(m.wrapping_mul(inv), 1);
        ExactDiv { shift, inv }
    }

    #[inline(always)]
    fn div(self, x: u64) -> u64 {
        (x >> self.shift).wrapping_mul(self.inv)
    }
}

/// Block reference and width of a FOR block: min and bits of `(max - min) / g`.
#[inline]
fn block_frame(block: &[u64], signed: bool, div: ExactDiv) -> (u64, u32) {
    let flip = if signed { 1u64 << 63 } else { 0 };
    // Four independent minima and maxima: 64-bit compares do not vectorise on the baseline
    // target, and one chain through `lo` and `hi` costs two dependent steps per value.
    let mut lo = [u64::MAX; 4];
    let mut hi = [0u64; 4];
    let mut quads = block.chunks_exact(4);
    for q in quads.by_ref() {
        for j in 0..4 {
            let k = q[j] ^ flip;
            lo[j] = lo[j].min(k);
            hi[j] = hi[j].max(k);
        }
    }
    for &v in quads.remainder() {
        let k = v ^ flip;
        lo[0] = lo[0].min(k);
        hi[0] = hi[0].max(k);
    }
    let lo = lo[0].min(lo[1]).min(lo[2].min(lo[3]));
    let hi = hi[0].max(hi[1]).max(hi[2].max(hi[3]));
    (lo ^ flip, bit_width(div.div(hi.wrapping_sub(lo))))
}

#[inline]
fn ref_code(min: u64, signed: bool) -> u64 {
    if signed {
        zigzag(min as i64)
    } else {
        min
    }
}

/// A FOR stream ready to be sized or written.
pub(crate) struct ForStream<'a> {
    vals: &'a [u64],
    signed: bool,
    g: u64,
    len: usize,
}

impl<'a> ForStream<'a> {
    /// Plans the stream of `vals` (as i64 bit patterns if `signed`).
    pub(crate) fn new(vals: &'a [u64], signed: bool) -> Self {
        let g = stream_gcd(vals, signed);
        let div = ExactDiv::new(g);
        let len = varint_len(g)
            + vals
                .chunks(BLOCK)
                .map(|b| {
                    let (min, w) = block_frame(b, signed, div);
                    varint_len(ref_code(min, signed)) + 1 + packed_len(b.len(), w)
                })
                .sum::<usize>();
        ForStream {
            vals,
            signed,
            g,
            len,
        }
    }

    /// Exact byte length [`ForStream::write`] appends.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The common multiplier the stream uses.
    pub(crate) fn gcd(&self) -> u64 {
        self.g
    }

    /// A stream to write whose multiplier is already known (from [`ForStream::gcd`] of a
    /// stream over the same values); its `len` is not computed.
    pub(crate) fn with_gcd(vals: &'a [u64], signed: bool, g: u64) -> Self {
        ForStream {
            vals,
            signed,
            g,
            len: 0,
        }
    }

    /// Appends the stream: the multiplier `g` as a varint, then per block of [`BLOCK`]
    /// values the block minimum as a varint (zigzag of the i64 minimum if signed), the width
    /// as one byte, then the packed `(v - min) / g`.
    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        put_varint(out, self.g);
        let div = ExactDiv::new(self.g);
        let mut tmp = [0u64; BLOCK];
        for b in self.vals.chunks(BLOCK) {
            let (min, w) = block_frame(b, self.signed, div);
            put_varint(out, ref_code(min, self.signed));
            out.push(w as u8);
            for (t, &v) in tmp.iter_mut().zip(b) {
                *t = div.div(v.wrapping_sub(min));
            }
            pack(&tmp[..b.len()], w, out);
        }
    }
}

/// Reads the header of a FOR stream: its multiplier `g` (at least 1).
#[inline]
pub(crate) fn read_for_header(r: &mut Reader<'_>) -> Result<u64, CodecError> {
    match r.varint()? {
        0 => Err(CodecError("FOR stream multiplier is 0".into())),
        g => Ok(g),
    }
}

/// Reads one FOR block of `out.len()` (at most [`BLOCK`]) values of a stream whose
/// multiplier is `g`.
#[inline]
pub(crate) fn read_for_block(
    r: &mut Reader<'_>,
    signed: bool,
    g: u64,
    out: &mut [u64],
) -> Result<(), CodecError> {
    if g == 1 {
        read_block(r, signed, out, true)?;
    } else {
        let min = read_block(r, signed, out, false)?;
        for v in out.iter_mut() {
            *v = v.wrapping_mul(g).wrapping_add(min);
        }
    }
    Ok(())
}

/// Reads one FOR block's header and packed integers `p` into `out`, adding the block
/// reference `min` to them if `add_min`; returns `min` (values are `min + g * p`, wrapping).
#[inline]
fn read_block(
    r: &mut Reader<'_>,
    signed: bool,
    out: &mut [u64],
    add_min: bool,
) -> Result<u64, CodecError> {
    let code = r.varint()?;
    let min = if signed { unzigzag(code) as u64 } else { code };
    let w = u32::from(r.u8()?);
    if w > 64 {
        return Err(CodecError(format!("bit width {w} > 64")));
    }
    let need = packed_len(out.len(), w);
    let src = r.rest();
    if src.len() < need {
        return Err(CodecError("packed block truncated".into()));
    }
    unpack_add(src, w, out, if add_min { min } else { 0 });
    r.bytes(need)?;
    Ok(min)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_unpack_every_width() {
        for w in 0..=64u32 {
            for n in [0usize, 1, 7, 63, 64, 65, 127, 128] {
                let mask = if w == 64 { u64::MAX } else { (1u64 << w) - 1 };
                let vals: Vec<u64> = (0..n as u64)
                    .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(i as u32) & mask)
                    .collect();
                let mut buf = Vec::new();
                pack(&vals, w, &mut buf);
                assert_eq!(buf.len(), packed_len(n, w));
                let mut got = vec![1u64; n];
                unpack(&buf, w, &mut got);
                assert_eq!(got, vals, "w={w} n={n}");
                // Also with trailing padding (the fast path).
                buf.extend_from_slice(&[0xff; 16]);
                let mut got2 = vec![1u64; n];
                unpack(&buf, w, &mut got2);
                assert_eq!(got2, vals, "padded w={w} n={n}");
            }
        }
    }

    #[test]
    fn for_stream_round_trip_and_len() {
        let shapes: Vec<Vec<u64>> = vec![
            (0..300i64)
                .map(|i| (i * i - 5000 + i64::MIN / 3) as u64)
                .collect(),
            (0..300i64).map(|i| (i * 4096 * 3 - 77) as u64).collect(),
            vec![i64::MIN as u64, i64::MAX as u64, 0, u64::MAX, 1 << 63],
            vec![u64::MAX, 0, u64::MAX - 6],
            vec![],
        ];
        for vals in &shapes {
            for signed in [false, true] {
                let s = ForStream::new(vals, signed);
                let mut buf = Vec::new();
                s.write(&mut buf);
                assert_eq!(buf.len(), s.len());
                let mut r = Reader::new(&buf);
                let g = read_for_header(&mut r).unwrap();
                let mut got = Vec::new();
                for b in vals.chunks(BLOCK) {
                    let mut tmp = vec![0u64; b.len()];
                    read_for_block(&mut r, signed, g, &mut tmp).unwrap();
                    got.extend(tmp);
                }
                r.finish().unwrap();
                assert_eq!(&got, vals);
            }
        }
    }

    #[test]
    fn gcd_and_exact_division() {
        assert_eq!(gcd(0, 0), 0);
        assert_eq!(gcd(12, 18), 6);
        assert_eq!(gcd(4096 * 3, 4096 * 5), 4096);
        assert_eq!(stream_gcd(&[7, 7, 7], false), 1);
        assert_eq!(stream_gcd(&[10, 40, 25], false), 15);
        for g in [1u64, 2, 3, 15_000, 4096, u64::MAX, 1 << 63] {
            let d = ExactDiv::new(g);
            for k in [0u64, 1, 2, 12345] {
                if let Some(x) = g.checked_mul(k) {
                    assert_eq!(d.div(x), k);
                }
            }
        }
    }
}
