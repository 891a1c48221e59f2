//! Gorilla-style XOR float coding, the fallback for values that are not short decimals.
//!
//! Bits are written least-significant first. Per value after the first (raw 64 bits):
//! `0` same as previous; `1 0` + bits inside the previous leading/trailing-zero window;
//! `1 1` + 6-bit leading zeros + 6-bit (significant bits - 1) + the significant bits.

use super::ChunkError;

/// Appends bits least-significant first.
struct BitWriter<'a> {
    out: &'a mut Vec<u8>,
    acc: u64,
    n: u32,
}

impl<'a> BitWriter<'a> {
    fn new(out: &'a mut Vec<u8>) -> Self {
        BitWriter { out, acc: 0, n: 0 }
    }

    /// Writes the low `bits` bits of `x` (`bits <= 64`, higher bits of `x` zero).
    #[inline]
    fn write(&mut self, x: u64, bits: u32) {
        if bits == 0 {
            return;
        }
        let space = 64 - self.n;
        if bits < space {
            self.acc |= x << self.n;
            self.n += bits;
        } else {
            self.acc |= x << self.n;
            self.out.extend_from_slice(&self.acc.to_le_bytes());
            self.acc = if space == 64 { 0 } else { x >> space };
            self.n = bits - space;
        }
    }

    fn finish(self) {
        let bytes = self.n.div_ceil(8) as usize;
        self.out.extend_from_slice(&self.acc.to_le_bytes()[..bytes]);
    }
}

/// Reads bits least-significant first; past the end it reads zeros and remembers the overrun.
struct BitReader<'a> {
    data: &'a [u8],
    pos: usize,
    acc: u64,
    n: u32,
}

impl<'a> BitReader<'a> {
    fn new(data: &'a [u8]) -> Self {
        BitReader {
            data,
            pos: 0,
            acc: 0,
            n: 0,
        }
    }

    #[inline]
    fn refill(&mut self) {
        if let Some(b) = self.data.get(self.pos..self.pos + 8) {
            let mut w = [0u8; 8];
            w.copy_from_slice(b);
            // Bits beyond the new count duplicate the next bytes, so a later OR is idempotent.
            self.acc |= u64::from_le_bytes(w) << self.n;
            let k = (63 - self.n) >> 3;
            self.pos += k as usize;
            self.n += k * 8;
        } else {
            while self.n <= 56 {
                let b = self.data.get(self.pos).copied().unwrap_or(0);
                self.acc |= u64::from(b) << self.n;
                self.pos += 1;
                self.n += 8;
            }
        }
    }

    /// Reads `bits <= 56` bits.
    #[inline]
    fn read(&mut self, bits: u32) -> u64 {
        if self.n < bits {
            self.refill();
        }
        let x = self.acc & ((1u64 << bits) - 1);
        self.acc >>= bits;
        self.n -= bits;
        x
    }

    /// Reads `bits <= 64` bits.
    #[inline]
    fn read_wide(&mut self, bits: u32) -> u64 {
        if bits <= 56 {
            self.read(bits)
        } else {
            let lo = self.read(32);
            lo | (self.read(bits - 32) << 32)
        }
    }

    /// Bits consumed so far, counting zeros read past the end.
    fn consumed_bits(&self) -> usize {
        self.pos * 8 - self.n as usize
    }
}

/// Appends the XOR coding of `values` (at least one) to `out`.
pub(super) fn encode(values: impl Iterator<Item = u64>, out: &mut Vec<u8>) {
    let mut w = BitWriter::new(out);
    let mut prev = 0u64;
    let mut window: Option<(u32, u32)> = None;
    for (i, v) in values.enumerate() {
        if i == 0 {
            w.write(v, 64);
            prev = v;
            continue;
        }
        let x = v ^ prev;
        prev = v;
        if x == 0 {
            w.write(0, 1);
            continue;
        }
        let lead = x.leading_zeros();
        let trail = x.trailing_zeros();
        match window {
            Some((pl, pt)) if lead >= pl && trail >= pt => {
                w.write(0b01, 2);
                w.write(x >> pt, 64 - pl - pt);
            }
            _ => {
                let sig = 64 - lead - trail;
                w.write(0b11, 2);
                w.write(u64::from(lead), 6);
                w.write(u64::from(sig - 1), 6);
                w.write(x >> trail, sig);
                window = Some((lead, trail));
            }
        }
    }
    w.finish();
}

/// Decodes `n >= 1` values from `data`, which must hold exactly the stream; `offset` locates
/// `data` inside the chunk for error reports.
pub(super) fn decode(
    data: &[u8],
    offset: usize,
    n: usize,
    mut emit: impl FnMut(f64),
) -> Result<(), ChunkError> {
    let corrupt = |at: usize, reason| ChunkError::Corrupt {
        offset: offset + at,
        reason,
    };
    let mut r = BitReader::new(data);
    let mut prev = r.read_wide(64);
    emit(f64::from_bits(prev));
    let mut window: Option<(u32, u32)> = None;
    for _ in 1..n {
        if r.read(1) == 0 {
            emit(f64::from_bits(prev));
            continue;
        }
        let (lead, trail) = if r.read(1) == 0 {
            window.ok_or_else(|| corrupt(r.consumed_bits() / 8, "xor window reused before set"))?
        } else {
            let lead = r.read(6) as u32;
            let sig = r.read(6) as u32 + 1;
            if lead + sig > 64 {
                return Err(corrupt(
                    r.consumed_bits() / 8,
                    "xor window wider than 64 bits",
                ));
            }
            let w = (lead, 64 - lead - sig);
            window = Some(w);
            w
        };
        let sig = 64 - lead - trail;
        prev ^= r.read_wide(sig) << trail;
        emit(f64::from_bits(prev));
        if r.consumed_bits() > data.len() * 8 {
            return Err(corrupt(data.len(), "xor stream truncated"));
        }
    }
    let used = r.consumed_bits();
    if used > data.len() * 8 {
        return Err(corrupt(data.len(), "xor stream truncated"));
    }
    if used.div_ceil(8) != data.len() {
        return Err(corrupt(used.div_ceil(8), "trailing bytes after xor stream"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(vals: &[f64]) -> usize {
        let mut out = Vec::new();
        encode(vals.iter().map(|v| v.to_bits()), &mut out);
        let mut got = Vec::new();
        decode(&out, 0, vals.len(), |v| got.push(v.to_bits())).unwrap();
        let want: Vec<u64> = vals.iter().map(|v| v.to_bits()).collect();
        assert_eq!(got, want);
        out.len()
    }

    #[test]
    fn special_values_round_trip() {
        round_trip(&[
            f64::NAN,
            f64::from_bits(0x7ff0_0000_0000_0002),
            f64::INFINITY,
            f64::NEG_INFINITY,
            -0.0,
            0.0,
            f64::MIN_POSITIVE / 3.0,
            f64::from_bits(1),
            f64::from_bits(u64::MAX),
            1.5,
        ]);
    }

    #[test]
    fn repeated_values_cost_one_bit() {
        let len = round_trip(&[0.1234f64; 801]);
        assert_eq!(len, 8 + 100);
    }

    #[test]
    fn truncation_is_detected() {
        let vals = [1.0f64, 2.5, 3.75, 1e300, -7.0];
        let mut out = Vec::new();
        encode(vals.iter().map(|v| v.to_bits()), &mut out);
        for cut in 0..out.len() {
            assert!(
                decode(&out[..cut], 0, vals.len(), |_| {}).is_err(),
                "cut {cut}"
            );
        }
        let mut longer = out.clone();
        longer.push(0);
        assert!(decode(&longer, 0, vals.len(), |_| {}).is_err());
    }
}
