//! Byte-level building blocks of every binary format tidemark reads or writes (WAL records,
//! block files, chunks, tombstones, remote write bodies): LEB128 varints, zigzag, fixed-width
//! integers, and [`Decbuf`], a bounds-checked cursor over a byte slice.
//!
//! Writers append to a `Vec<u8>`. Reading never panics and never allocates: every read of
//! [`Decbuf`] returns an [`Error`] naming what was wrong and the offset where the failed read
//! started, and leaves the cursor where it was. Each format maps that error into its own, which
//! says which file, section or field it was in.
//!
//! Like `model`, this module imports no other tidemark module.

/// Most bytes a varint of a 64-bit value takes.
pub(crate) const MAX_VARINT_LEN: usize = 10;

/// A read that ran past the end of the bytes or met a malformed varint.
///
/// Its message says what went wrong, not where: [`Error::offset`] is where the failed read
/// started, and each caller locates it in its own terms (segment, file and section, field).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Error {
    /// The bytes end inside a varint.
    #[error("truncated varint")]
    TruncatedVarint {
        /// Where the varint starts.
        offset: usize,
    },
    /// A varint of more than 64 bits: its tenth byte carries more than the 64th bit.
    #[error("varint overflows 64 bits")]
    VarintOverflow {
        /// Where the varint starts.
        offset: usize,
    },
    /// Fewer bytes are left than a fixed-width value or a length prefix asks for.
    #[error("needs {needed} bytes, {left} left")]
    Truncated {
        /// Where the missing bytes would start.
        offset: usize,
        /// Bytes asked for (a length prefix can ask for more than memory holds).
        needed: u64,
        /// Bytes there were.
        left: usize,
    },
}

impl Error {
    /// Where the read that failed started, from the start of the bytes the [`Decbuf`] was made on.
    pub(crate) fn offset(&self) -> usize {
        match *self {
            Error::TruncatedVarint { offset }
            | Error::VarintOverflow { offset }
            | Error::Truncated { offset, .. } => offset,
        }
    }

    /// What went wrong, in words that need no allocation.
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            Error::TruncatedVarint { .. } => "truncated varint",
            Error::VarintOverflow { .. } => "varint overflows 64 bits",
            Error::Truncated { .. } => "truncated",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Writers.

/// Maps signed integers to unsigned so that small magnitudes of either sign get short varints:
/// 0, -1, 1, -2 become 0, 1, 2, 3.
#[inline]
pub(crate) fn zigzag(x: i64) -> u64 {
    ((x << 1) ^ (x >> 63)) as u64
}

/// Inverse of [`zigzag`].
#[inline]
pub(crate) fn unzigzag(u: u64) -> i64 {
    ((u >> 1) as i64) ^ -((u & 1) as i64)
}

/// Appends `x` as an unsigned LEB128 varint: 7 bits a byte, low bits first, the high bit set on
/// every byte but the last.
#[inline]
pub(crate) fn put_uvarint(out: &mut Vec<u8>, mut x: u64) {
    while x >= 0x80 {
        out.push((x as u8) | 0x80);
        x >>= 7;
    }
    out.push(x as u8);
}

/// Appends `x` zigzagged as a varint.
#[inline]
pub(crate) fn put_varint(out: &mut Vec<u8>, x: i64) {
    put_uvarint(out, zigzag(x));
}

/// Appends `b` after its length as a varint.
#[inline]
pub(crate) fn put_uvarint_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_uvarint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// Bytes [`put_uvarint`] writes for `x`, for sizes that must match the writer exactly.
#[inline]
pub(crate) fn uvarint_len(x: u64) -> usize {
    (64 - (x | 1).leading_zeros()).div_ceil(7) as usize
}

/// Bytes [`put_varint`] writes for `x`.
#[inline]
pub(crate) fn varint_len(x: i64) -> usize {
    uvarint_len(zigzag(x))
}

/// Appends `x` as 4 little-endian bytes.
#[inline]
pub(crate) fn put_u32_le(out: &mut Vec<u8>, x: u32) {
    out.extend_from_slice(&x.to_le_bytes());
}

/// Appends `x` as 8 little-endian bytes.
#[inline]
pub(crate) fn put_u64_le(out: &mut Vec<u8>, x: u64) {
    out.extend_from_slice(&x.to_le_bytes());
}

// ---------------------------------------------------------------------------------------------
// Reader.

/// A bounds-checked cursor over bytes. Offsets, in errors and from [`Decbuf::pos`], count from
/// the start of the slice it was made on.
#[derive(Debug, Clone)]
pub(crate) struct Decbuf<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Decbuf<'a> {
    /// A cursor at the start of `buf`.
    #[inline]
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Decbuf { buf, pos: 0 }
    }

    /// A cursor over `buf` at `pos` (clamped to the end).
    #[inline]
    pub(crate) fn at(buf: &'a [u8], pos: usize) -> Self {
        Decbuf {
            buf,
            pos: pos.min(buf.len()),
        }
    }

    /// Offset of the next byte to read.
    #[inline]
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    /// Bytes left to read.
    #[inline]
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// True when every byte has been read.
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.pos == self.buf.len()
    }

    /// The bytes left, without consuming them.
    #[inline]
    pub(crate) fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }

    #[inline]
    fn truncated(&self, needed: u64) -> Error {
        Error::Truncated {
            offset: self.pos,
            needed,
            left: self.remaining(),
        }
    }

    /// The next `n` bytes.
    #[inline]
    pub(crate) fn bytes(&mut self, n: usize) -> Result<&'a [u8], Error> {
        if n > self.remaining() {
            return Err(self.truncated(n as u64));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// Moves past the next `n` bytes.
    #[inline]
    pub(crate) fn skip(&mut self, n: usize) -> Result<(), Error> {
        self.bytes(n).map(|_| ())
    }

    /// The next `N` bytes, as an array.
    #[inline]
    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], Error> {
        match self.rest().first_chunk::<N>() {
            Some(&a) => {
                self.pos += N;
                Ok(a)
            }
            None => Err(self.truncated(N as u64)),
        }
    }

    /// One byte.
    #[inline]
    pub(crate) fn u8(&mut self) -> Result<u8, Error> {
        match self.buf.get(self.pos) {
            Some(&b) => {
                self.pos += 1;
                Ok(b)
            }
            None => Err(self.truncated(1)),
        }
    }

    /// 4 little-endian bytes.
    #[inline]
    pub(crate) fn u32_le(&mut self) -> Result<u32, Error> {
        self.array().map(u32::from_le_bytes)
    }

    /// 8 little-endian bytes.
    #[inline]
    pub(crate) fn u64_le(&mut self) -> Result<u64, Error> {
        self.array().map(u64::from_le_bytes)
    }

    /// An unsigned LEB128 varint of at most 64 bits. Refused: a varint the bytes end inside,
    /// and one whose tenth byte carries more than the 64th bit (whose value no u64 holds).
    /// Overlong encodings of small values (`0x80 0x00` for 0) are accepted, as Go's reader does.
    #[inline]
    pub(crate) fn uvarint(&mut self) -> Result<u64, Error> {
        let rest = self.rest();
        let mut x = 0u64;
        for (i, &b) in rest.iter().take(MAX_VARINT_LEN).enumerate() {
            if i == MAX_VARINT_LEN - 1 && b > 1 {
                return Err(Error::VarintOverflow { offset: self.pos });
            }
            x |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                self.pos += i + 1;
                return Ok(x);
            }
        }
        // The tenth byte either ends the varint or overflows, so only running out gets here.
        Err(Error::TruncatedVarint { offset: self.pos })
    }

    /// A zigzagged varint.
    #[inline]
    pub(crate) fn varint(&mut self) -> Result<i64, Error> {
        self.uvarint().map(unzigzag)
    }

    /// A varint length, then that many bytes. On error the cursor stays before the length.
    #[inline]
    pub(crate) fn uvarint_bytes(&mut self) -> Result<&'a [u8], Error> {
        let start = self.pos;
        let n = self.uvarint()?;
        match usize::try_from(n) {
            Ok(n) if n <= self.remaining() => self.bytes(n),
            _ => {
                let e = self.truncated(n);
                self.pos = start;
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uvarint_bytes(x: u64) -> Vec<u8> {
        let mut v = Vec::new();
        put_uvarint(&mut v, x);
        v
    }

    #[test]
    fn uvarints_round_trip_at_every_length_boundary() {
        let mut edges = vec![0u64, u64::MAX, u64::MAX - 1, u32::MAX as u64];
        for bits in (7..64).step_by(7) {
            edges.extend([(1u64 << bits) - 1, 1u64 << bits]);
        }
        for x in edges {
            let v = uvarint_bytes(x);
            assert_eq!(v.len(), uvarint_len(x), "{x}");
            assert!(v.len() <= MAX_VARINT_LEN);
            let mut d = Decbuf::new(&v);
            assert_eq!(d.uvarint(), Ok(x));
            assert!(d.is_empty(), "{x}");
        }
        assert_eq!(uvarint_bytes(0), [0]);
        assert_eq!(uvarint_bytes(127), [0x7f]);
        assert_eq!(uvarint_bytes(128), [0x80, 0x01]);
        assert_eq!(uvarint_bytes(300), [0xac, 0x02]);
        assert_eq!(uvarint_bytes(u64::MAX).last(), Some(&0x01));
    }

    #[test]
    fn signed_varints_round_trip_and_stay_short_near_zero() {
        for x in [
            0,
            1,
            -1,
            63,
            -64,
            64,
            -65,
            i64::MAX,
            i64::MIN,
            -1_700_000_000_123,
        ] {
            let mut v = Vec::new();
            put_varint(&mut v, x);
            assert_eq!(v.len(), varint_len(x), "{x}");
            assert_eq!(Decbuf::new(&v).varint(), Ok(x));
            assert_eq!(unzigzag(zigzag(x)), x);
        }
        assert_eq!([0, -1, 1, -2].map(zigzag), [0, 1, 2, 3]);
        assert_eq!(varint_len(-64), 1);
        assert_eq!(varint_len(64), 2);
        assert_eq!(zigzag(i64::MIN), u64::MAX);
    }

    #[test]
    fn a_tenth_byte_beyond_the_64th_bit_is_an_overflow_not_a_wrapped_value() {
        // The remote write receiver's copy took these bytes as a value with its high bits
        // dropped; every tenth byte above 1 is refused now.
        for tenth in [0x02u8, 0x7f, 0x80, 0xff] {
            let mut v = vec![0xffu8; 9];
            v.push(tenth);
            v.push(0x00);
            let mut d = Decbuf::new(&v);
            assert_eq!(
                d.uvarint(),
                Err(Error::VarintOverflow { offset: 0 }),
                "{tenth}"
            );
            assert_eq!(d.pos(), 0, "the cursor does not move on an error");
        }
        let mut max = vec![0xffu8; 9];
        max.push(0x01);
        assert_eq!(Decbuf::new(&max).uvarint(), Ok(u64::MAX));
        assert_eq!(
            Decbuf::new(&[0xff; 11]).uvarint(),
            Err(Error::VarintOverflow { offset: 0 })
        );
    }

    #[test]
    fn a_truncated_varint_is_an_error_located_at_its_start() {
        // The chunk reader located this at the end of the bytes, the WAL's nowhere at all.
        for input in [&[][..], &[0x80], &[0x01, 0xff, 0xff]] {
            let mut d = Decbuf::new(input);
            if input.len() == 3 {
                assert_eq!(d.uvarint(), Ok(1));
            }
            let at = d.pos();
            assert_eq!(d.uvarint(), Err(Error::TruncatedVarint { offset: at }));
            assert_eq!(d.pos(), at);
        }
    }

    #[test]
    fn overlong_encodings_of_small_values_are_accepted() {
        assert_eq!(Decbuf::new(&[0x80, 0x00]).uvarint(), Ok(0));
        assert_eq!(Decbuf::new(&[0x81, 0x80, 0x00]).uvarint(), Ok(1));
    }

    #[test]
    fn fixed_width_values_round_trip_little_endian() {
        let mut v = Vec::new();
        put_u32_le(&mut v, 0x0102_0304);
        put_u64_le(&mut v, u64::MAX - 5);
        put_u64_le(&mut v, (-2i64) as u64);
        assert_eq!(&v[..4], &[4, 3, 2, 1]);
        let mut d = Decbuf::new(&v);
        assert_eq!(d.u32_le(), Ok(0x0102_0304));
        assert_eq!(d.u64_le(), Ok(u64::MAX - 5));
        assert_eq!(d.u64_le().map(|x| x as i64), Ok(-2));
        assert!(d.is_empty());
    }

    #[test]
    fn short_reads_fail_with_what_was_asked_and_left_and_move_nothing() {
        let mut d = Decbuf::new(&[1, 2, 3]);
        assert_eq!(d.u8(), Ok(1));
        let short = Error::Truncated {
            offset: 1,
            needed: 4,
            left: 2,
        };
        assert_eq!(d.u32_le(), Err(short));
        assert_eq!(d.bytes(4), Err(short));
        assert_eq!(d.skip(4), Err(short));
        assert_eq!(d.array::<4>(), Err(short));
        assert_eq!(short.to_string(), "needs 4 bytes, 2 left");
        assert_eq!(short.offset(), 1);
        assert_eq!(d.pos(), 1);
        assert_eq!(d.bytes(2), Ok(&[2u8, 3][..]));
        assert_eq!(
            d.u8(),
            Err(Error::Truncated {
                offset: 3,
                needed: 1,
                left: 0
            })
        );
        assert_eq!(d.bytes(0), Ok(&[][..]));
        assert_eq!(d.bytes(usize::MAX).unwrap_err().offset(), 3);
    }

    #[test]
    fn length_prefixed_bytes_refuse_lengths_past_the_end_even_huge_ones() {
        let mut v = Vec::new();
        put_uvarint_bytes(&mut v, b"abc");
        v.push(4);
        v.extend_from_slice(b"de");
        assert_eq!(&v[..4], b"\x03abc");
        let mut d = Decbuf::new(&v);
        assert_eq!(d.uvarint_bytes(), Ok(&b"abc"[..]));
        assert_eq!(
            d.uvarint_bytes(),
            Err(Error::Truncated {
                offset: 5,
                needed: 4,
                left: 2
            })
        );
        assert_eq!(d.pos(), 4, "the cursor stays before the length");
        let huge = uvarint_bytes(u64::MAX);
        assert_eq!(
            Decbuf::new(&huge).uvarint_bytes(),
            Err(Error::Truncated {
                offset: 10,
                needed: u64::MAX,
                left: 0
            })
        );
    }

    #[test]
    fn a_cursor_placed_past_the_end_is_clamped_and_reads_nothing() {
        let mut d = Decbuf::at(&[1, 2], 7);
        assert_eq!((d.pos(), d.remaining(), d.is_empty()), (2, 0, true));
        assert_eq!(d.rest(), &[] as &[u8]);
        assert_eq!(d.uvarint(), Err(Error::TruncatedVarint { offset: 2 }));
        let mut d = Decbuf::at(&[1, 2], 1);
        assert_eq!(d.u8(), Ok(2));
    }

    #[test]
    fn reasons_name_the_failure_without_allocating() {
        assert_eq!(
            Error::TruncatedVarint { offset: 3 }.reason(),
            "truncated varint"
        );
        assert_eq!(
            Error::VarintOverflow { offset: 3 }.to_string(),
            Error::VarintOverflow { offset: 3 }.reason()
        );
        let t = Error::Truncated {
            offset: 9,
            needed: 2,
            left: 1,
        };
        assert_eq!((t.reason(), t.offset()), ("truncated", 9));
    }
}
