//! Byte-level helpers shared by the column and value codecs: varints, zigzag, a checked cursor.

use super::ChunkError;

/// Maps signed integers to unsigned so that small magnitudes of either sign get short codes.
#[inline]
pub(super) fn zigzag(x: i64) -> u64 {
    ((x << 1) ^ (x >> 63)) as u64
}

/// Inverse of [`zigzag`].
#[inline]
pub(super) fn unzigzag(u: u64) -> i64 {
    ((u >> 1) as i64) ^ -((u & 1) as i64)
}

/// Appends `x` as a LEB128 varint.
#[inline]
pub(super) fn put_uvarint(out: &mut Vec<u8>, mut x: u64) {
    while x >= 0x80 {
        out.push((x as u8) | 0x80);
        x >>= 7;
    }
    out.push(x as u8);
}

/// Appends `x` zigzagged as a varint.
#[inline]
pub(super) fn put_ivarint(out: &mut Vec<u8>, x: i64) {
    put_uvarint(out, zigzag(x));
}

/// Encoded length of `x` as a varint, for cost estimates that must match the writer exactly.
#[inline]
pub(super) fn uvarint_len(x: u64) -> usize {
    (64 - (x | 1).leading_zeros()).div_ceil(7) as usize
}

/// Encoded length of `x` zigzagged as a varint.
#[inline]
pub(super) fn ivarint_len(x: i64) -> usize {
    uvarint_len(zigzag(x))
}

/// A bounds-checked cursor over chunk bytes; every failure names the offset it happened at.
pub(super) struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(super) fn new(data: &'a [u8]) -> Self {
        Reader { data, pos: 0 }
    }

    /// A corruption error located at the cursor.
    pub(super) fn corrupt(&self, reason: &'static str) -> ChunkError {
        ChunkError::Corrupt {
            offset: self.pos,
            reason,
        }
    }

    pub(super) fn pos(&self) -> usize {
        self.pos
    }

    pub(super) fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    /// Everything after the cursor, without consuming it.
    pub(super) fn rest(&self) -> &'a [u8] {
        &self.data[self.pos..]
    }

    /// Moves the cursor forward; the caller has checked `n <= remaining()`.
    pub(super) fn advance(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.data.len());
    }

    #[inline]
    pub(super) fn u8(&mut self) -> Result<u8, ChunkError> {
        match self.data.get(self.pos) {
            Some(&b) => {
                self.pos += 1;
                Ok(b)
            }
            None => Err(self.corrupt("truncated")),
        }
    }

    #[inline]
    pub(super) fn uvarint(&mut self) -> Result<u64, ChunkError> {
        let mut x = 0u64;
        let mut shift = 0u32;
        loop {
            let b = self.u8()?;
            if shift == 63 && b > 1 {
                return Err(self.corrupt("varint overflows 64 bits"));
            }
            x |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(x);
            }
            shift += 7;
            if shift > 63 {
                return Err(self.corrupt("varint longer than 10 bytes"));
            }
        }
    }

    #[inline]
    pub(super) fn ivarint(&mut self) -> Result<i64, ChunkError> {
        self.uvarint().map(unzigzag)
    }

    pub(super) fn bytes(&mut self, n: usize) -> Result<&'a [u8], ChunkError> {
        if n > self.remaining() {
            return Err(self.corrupt("truncated"));
        }
        let s = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zigzag_round_trips_extremes() {
        for x in [0, 1, -1, 63, -64, i64::MAX, i64::MIN, 1_700_000_000_000] {
            assert_eq!(unzigzag(zigzag(x)), x);
        }
        assert_eq!(zigzag(-1), 1);
        assert_eq!(zigzag(1), 2);
    }

    #[test]
    fn varint_length_matches_writer() {
        for x in [0u64, 1, 127, 128, 16_383, 16_384, u64::MAX >> 1, u64::MAX] {
            let mut v = Vec::new();
            put_uvarint(&mut v, x);
            assert_eq!(v.len(), uvarint_len(x), "{x}");
            let mut r = Reader::new(&v);
            assert_eq!(r.uvarint().unwrap(), x);
            assert_eq!(r.remaining(), 0);
        }
    }

    #[test]
    fn overlong_varints_are_rejected() {
        let eleven = [0xffu8; 11];
        assert!(Reader::new(&eleven).uvarint().is_err());
        let mut too_big = vec![0xffu8; 9];
        too_big.push(0x02);
        assert!(Reader::new(&too_big).uvarint().is_err());
        assert!(Reader::new(&[0x80]).uvarint().is_err());
    }
}
