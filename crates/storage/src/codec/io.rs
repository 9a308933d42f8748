//! Byte-level helpers: a bounds-checked reader, LEB128 varints and zigzag.

use super::CodecError;

/// Maps a signed integer to an unsigned one so that small magnitudes stay small.
#[inline]
pub(crate) fn zigzag(x: i64) -> u64 {
    ((x << 1) ^ (x >> 63)) as u64
}

/// Inverse of [`zigzag`].
#[inline]
pub(crate) fn unzigzag(x: u64) -> i64 {
    ((x >> 1) as i64) ^ -((x & 1) as i64)
}

/// Number of bytes [`put_varint`] writes for `x`.
#[inline]
pub(crate) fn varint_len(x: u64) -> usize {
    // 1 byte per started 7 bits, at least one.
    let bits = 64 - (x | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Appends `x` as unsigned LEB128 (7 bits per byte, low group first, high bit = more).
#[inline]
pub(crate) fn put_varint(out: &mut Vec<u8>, mut x: u64) {
    while x >= 0x80 {
        out.push((x as u8) | 0x80);
        x >>= 7;
    }
    out.push(x as u8);
}

/// A cursor over a byte slice whose every read is bounds-checked.
pub(crate) struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// Starts reading at the beginning of `data`.
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Reader { data, pos: 0 }
    }

    /// Bytes not read yet.
    #[inline]
    pub(crate) fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    /// Current offset from the start.
    #[inline]
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    /// The unread bytes (the reader does not advance).
    #[inline]
    pub(crate) fn rest(&self) -> &'a [u8] {
        &self.data[self.pos..]
    }

    /// Reads one byte.
    #[inline]
    pub(crate) fn u8(&mut self) -> Result<u8, CodecError> {
        let b = *self.data.get(self.pos).ok_or_else(truncated)?;
        self.pos += 1;
        Ok(b)
    }

    /// Reads `n` bytes.
    #[inline]
    pub(crate) fn bytes(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        if self.remaining() < n {
            return Err(truncated());
        }
        let s = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// Reads a little-endian u64.
    #[inline]
    pub(crate) fn u64_le(&mut self) -> Result<u64, CodecError> {
        let b = self.bytes(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    /// Reads an unsigned LEB128 varint of at most 10 bytes that fits in u64.
    #[inline]
    pub(crate) fn varint(&mut self) -> Result<u64, CodecError> {
        let mut x = 0u64;
        for i in 0..10 {
            let b = self.u8()?;
            if i == 9 && b > 1 {
                return Err(CodecError("varint overflows u64".into()));
            }
            x |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(x);
            }
        }
        Err(CodecError("varint longer than 10 bytes".into()))
    }

    /// Fails unless every byte was read.
    pub(crate) fn finish(&self) -> Result<(), CodecError> {
        if self.remaining() != 0 {
            return Err(CodecError(format!("{} trailing bytes", self.remaining())));
        }
        Ok(())
    }
}

fn truncated() -> CodecError {
    CodecError("chunk truncated".into())
}
