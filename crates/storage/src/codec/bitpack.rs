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

/// Reads `out.len()` values packed at width `w` from the start of `src`, which holds at
/// least `packed_len(out.len(), w)` bytes (checked by the caller).
#[inline]
pub(crate) fn unpack(src: &[u8], w: u32, out: &mut [u64]) {
    let need = packed_len(out.len(), w);
    debug_assert!(src.len() >= need && out.len() <= BLOCK);
    if w == 0 {
        out.fill(0);
    } else if src.len() >= need + 9 {
        unpack_padded(src, w, out);
    } else {
        // Near the end of the input: copy to a padded buffer so that every read is 8 bytes.
        let mut buf = [0u8; BLOCK * 8 + 16];
        buf[..need].copy_from_slice(&src[..need]);
        unpack_padded(&buf, w, out);
    }
}

/// `unpack` where `src` has at least 9 readable bytes past the packed bits.
#[inline]
fn unpack_padded(src: &[u8], w: u32, out: &mut [u64]) {
    let w = w as usize;
    let mask = if w == 64 { u64::MAX } else { (1u64 << w) - 1 };
    if w <= 56 {
        for (i, o) in out.iter_mut().enumerate() {
            let bit = i * w;
            let byte = bit >> 3;
            let mut a = [0u8; 8];
            a.copy_from_slice(&src[byte..byte + 8]);
            *o = (u64::from_le_bytes(a) >> (bit & 7)) & mask;
        }
    } else {
        for (i, o) in out.iter_mut().enumerate() {
            let bit = i * w;
            let byte = bit >> 3;
            let sh = (bit & 7) as u32;
            let mut a = [0u8; 8];
            a.copy_from_slice(&src[byte..byte + 8]);
            let lo = u64::from_le_bytes(a) >> sh;
            // Up to 7 more bits come from the ninth byte, shifted to bit 64 - sh (for sh == 0
            // the two shifts push them out entirely).
            let hi = (u64::from(src[byte + 8]) << 8) << (56 - sh);
            *o = (lo | hi) & mask;
        }
    }
}

/// Block reference and width of a FOR block: min and bits of (max - min).
#[inline]
fn block_frame(block: &[u64], signed: bool) -> (u64, u32) {
    let flip = if signed { 1u64 << 63 } else { 0 };
    let mut lo = u64::MAX;
    let mut hi = 0u64;
    for &v in block {
        let k = v ^ flip;
        lo = lo.min(k);
        hi = hi.max(k);
    }
    (lo ^ flip, bit_width(hi.wrapping_sub(lo)))
}

#[inline]
fn ref_code(min: u64, signed: bool) -> u64 {
    if signed {
        zigzag(min as i64)
    } else {
        min
    }
}

/// Exact byte length [`write_for`] will produce.
pub(crate) fn for_len(vals: &[u64], signed: bool) -> usize {
    vals.chunks(BLOCK)
        .map(|b| {
            let (min, w) = block_frame(b, signed);
            varint_len(ref_code(min, signed)) + 1 + packed_len(b.len(), w)
        })
        .sum()
}

/// Appends a FOR stream: per block of [`BLOCK`] values, the block minimum as a varint
/// (zigzag of the i64 minimum if `signed`), the width as one byte, then the packed
/// differences `v - min`.
pub(crate) fn write_for(vals: &[u64], signed: bool, out: &mut Vec<u8>) {
    let mut tmp = [0u64; BLOCK];
    for b in vals.chunks(BLOCK) {
        let (min, w) = block_frame(b, signed);
        put_varint(out, ref_code(min, signed));
        out.push(w as u8);
        for (t, &v) in tmp.iter_mut().zip(b) {
            *t = v.wrapping_sub(min);
        }
        pack(&tmp[..b.len()], w, out);
    }
}

/// Reads one FOR block of `out.len()` (at most [`BLOCK`]) values.
#[inline]
pub(crate) fn read_for_block(
    r: &mut Reader<'_>,
    signed: bool,
    out: &mut [u64],
) -> Result<(), CodecError> {
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
    unpack(src, w, out);
    r.bytes(need)?;
    for v in out.iter_mut() {
        *v = v.wrapping_add(min);
    }
    Ok(())
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
        let vals: Vec<u64> = (0..300i64)
            .map(|i| (i * i - 5000 + i64::MIN / 3) as u64)
            .collect();
        for signed in [false, true] {
            let mut buf = Vec::new();
            write_for(&vals, signed, &mut buf);
            assert_eq!(buf.len(), for_len(&vals, signed));
            let mut r = Reader::new(&buf);
            let mut got = Vec::new();
            for b in vals.chunks(BLOCK) {
                let mut tmp = vec![0u64; b.len()];
                read_for_block(&mut r, signed, &mut tmp).unwrap();
                got.extend(tmp);
            }
            r.finish().unwrap();
            assert_eq!(got, vals);
        }
    }
}
