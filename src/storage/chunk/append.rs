//! The head's open chunk: samples compressed as they arrive, one at a time.
//!
//! A closed chunk ([`super::encode`]) is planned over all its samples at once, so it cannot
//! grow. The open chunk of a head series takes one sample per scrape and must stay small
//! meanwhile: raw, it costs 16 bytes per sample. Here each sample is appended to a bit stream:
//!
//! - the first sample: its timestamp and value bits, 64 bits each;
//! - every later timestamp as the change of its delta (delta-of-delta; deltas and their
//!   changes computed with wrapping arithmetic, so any pair of `i64` round-trips), in the
//!   smallest of these that holds it, signed: `0` (no change), `10` + 7 bits (the jitter of a
//!   loaded scraper, tens of milliseconds), `110` + 14 bits, `1110` + 20 bits, `11110` + 32
//!   bits, `11111` + 64 bits;
//! - every later value as the XOR of its bits with the previous value's (Gorilla): `0` (same
//!   bits), `10` + the XOR's bits inside the previous window of significant bits, or `11` +
//!   5 bits of leading zeros + 6 bits of (significant bits − 1) + the significant bits.
//!
//! The buffer grows by small steps (a quarter of its size, at least 16 bytes), never doubles,
//! and [`OpenChunk::take`] hands the samples over when the chunk is cut, keeping the room for
//! the next chunk ([`OpenChunk::clear`] frees it when a truncation empties the chunk). The
//! stream exists only in memory and is written and read by this process, never by input; the
//! reader still stops at the end of the buffer rather than read past it.
//!
//! The newest timestamp and value are kept in fields, so appends and duplicate checks never
//! decode; they outlive a cut, since the newest sample of a series is then in its last closed
//! chunk.

use crate::model::Sample;

/// Bytes the buffer grows by at least.
const MIN_STEP: usize = 16;

/// Payload bits of a delta-of-delta after a prefix of `k` one bits (and a zero bit, but for
/// the last class, whose five ones are the whole prefix).
const DOD_BITS: [u32; 6] = [0, 7, 14, 20, 32, 64];
const DOD_MAX_ONES: usize = DOD_BITS.len() - 1;

/// No previous XOR window yet.
const NO_WINDOW: u8 = 0xff;

/// An open chunk being appended to.
#[derive(Debug, Clone)]
pub struct OpenChunk {
    buf: Vec<u8>,
    /// Unused low bits of the last byte of `buf`.
    free: u8,
    /// Leading and trailing zero bits of the previous XOR window, `NO_WINDOW` before one.
    lead: u8,
    trail: u8,
    /// Samples in the chunk.
    n: u32,
    last_t: i64,
    last_delta: i64,
    last_v: u64,
}

impl Default for OpenChunk {
    fn default() -> Self {
        OpenChunk {
            buf: Vec::new(),
            free: 0,
            lead: NO_WINDOW,
            trail: 0,
            n: 0,
            last_t: 0,
            last_delta: 0,
            last_v: 0,
        }
    }
}

/// Sign-extends the low `bits` bits of `x`.
fn sign_extend(x: u64, bits: u32) -> i64 {
    let shift = 64 - bits;
    ((x << shift) as i64) >> shift
}

/// True when `x` survives truncation to `bits` bits and sign extension.
fn fits(x: i64, bits: u32) -> bool {
    bits == 64 || sign_extend(x as u64, bits) == x
}

impl OpenChunk {
    /// Samples held.
    pub fn len(&self) -> usize {
        self.n as usize
    }

    /// True when it holds no sample.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Oldest timestamp held, `None` when empty.
    pub fn first_t(&self) -> Option<i64> {
        // The stream starts with it, all 64 bits, most significant first.
        let head = self.buf.get(..8)?.try_into().ok()?;
        (self.n > 0).then(|| i64::from_be_bytes(head))
    }

    /// Newest timestamp held, `None` when empty.
    pub fn last_t(&self) -> Option<i64> {
        (self.n > 0).then_some(self.last_t)
    }

    /// Bits of the newest value appended since the chunk was made, whether or not it was cut
    /// since; 0 before any append.
    pub fn last_value_bits(&self) -> u64 {
        self.last_v
    }

    /// Bytes of the buffer in use and reserved.
    #[cfg(test)]
    fn bytes(&self) -> (usize, usize) {
        (self.buf.len(), self.buf.capacity())
    }

    /// Appends a sample. Timestamps are meant to increase, but any sequence round-trips.
    pub fn push(&mut self, t: i64, v: f64) {
        let bits = v.to_bits();
        if self.n == 0 {
            self.write(t as u64, 64);
            self.write(bits, 64);
            self.last_delta = 0;
            self.lead = NO_WINDOW;
        } else {
            let delta = t.wrapping_sub(self.last_t);
            self.write_dod(delta.wrapping_sub(self.last_delta));
            self.last_delta = delta;
            self.write_xor(bits ^ self.last_v);
        }
        self.last_t = t;
        self.last_v = bits;
        self.n += 1;
    }

    fn write_dod(&mut self, dod: i64) {
        if dod == 0 {
            self.write(0, 1);
            return;
        }
        for (ones, &bits) in DOD_BITS.iter().enumerate().skip(1) {
            if fits(dod, bits) {
                let ones = ones as u32;
                if ones as usize == DOD_MAX_ONES {
                    self.write((1 << ones) - 1, ones);
                } else {
                    self.write(((1 << ones) - 1) << 1, ones + 1);
                }
                self.write(dod as u64, bits);
                return;
            }
        }
    }

    fn write_xor(&mut self, x: u64) {
        if x == 0 {
            self.write(0, 1);
            return;
        }
        // At most 31 leading zeros are written; more are taken into the significant bits.
        let lead = (x.leading_zeros() as u8).min(31);
        let trail = x.trailing_zeros() as u8;
        if self.lead != NO_WINDOW && lead >= self.lead && trail >= self.trail {
            let sig = 64 - u32::from(self.lead) - u32::from(self.trail);
            self.write(0b10, 2);
            self.write(x >> self.trail, sig);
            return;
        }
        let sig = 64 - u32::from(lead) - u32::from(trail);
        self.write(0b11, 2);
        self.write(u64::from(lead), 5);
        self.write(u64::from(sig - 1), 6);
        self.write(x >> trail, sig);
        self.lead = lead;
        self.trail = trail;
    }

    /// Writes the low `n` bits of `x` (`n <= 64`), most significant first.
    fn write(&mut self, x: u64, mut n: u32) {
        while n > 0 {
            if self.free == 0 {
                if self.buf.len() == self.buf.capacity() {
                    let step = (self.buf.len() / 4).max(MIN_STEP);
                    self.buf.reserve_exact(step);
                }
                self.buf.push(0);
                self.free = 8;
            }
            let take = n.min(u32::from(self.free));
            let chunk = (x >> (n - take)) & ((1u64 << take) - 1);
            if let Some(last) = self.buf.last_mut() {
                *last |= (chunk as u8) << (u32::from(self.free) - take);
            }
            self.free -= take as u8;
            n -= take;
        }
    }

    /// The samples, oldest first.
    pub fn iter(&self) -> Iter<'_> {
        Iter {
            r: BitReader {
                buf: &self.buf,
                pos: 0,
            },
            left: self.n,
            started: false,
            t: 0,
            delta: 0,
            v: 0,
            lead: 0,
            trail: 0,
        }
    }

    /// Appends the samples to `out`.
    pub fn decode_into(&self, out: &mut Vec<Sample>) {
        out.reserve(self.len());
        out.extend(self.iter());
    }

    /// Empties the chunk and returns its samples, keeping its buffer's room for the next chunk
    /// (a series cut once fills about as much again; freeing and regrowing the buffer at every
    /// cut left the allocator's heap riddled with holes). The newest value stays readable
    /// through [`OpenChunk::last_value_bits`].
    pub fn take(&mut self) -> Vec<Sample> {
        let mut out = Vec::new();
        self.decode_into(&mut out);
        self.reset();
        out
    }

    /// Empties the chunk and frees its buffer (the series has nothing left to append to it);
    /// the newest value stays readable.
    pub fn clear(&mut self) {
        self.reset();
        self.buf = Vec::new();
    }

    fn reset(&mut self) {
        self.buf.clear();
        self.free = 0;
        self.n = 0;
        self.lead = NO_WINDOW;
    }
}

struct BitReader<'a> {
    buf: &'a [u8],
    /// Bit position.
    pos: usize,
}

impl BitReader<'_> {
    /// The next `n` bits (`n <= 64`), or `None` past the end.
    fn read(&mut self, mut n: u32) -> Option<u64> {
        let mut x = 0u64;
        while n > 0 {
            let byte = *self.buf.get(self.pos / 8)?;
            let used = (self.pos % 8) as u32;
            let take = n.min(8 - used);
            let bits = (u64::from(byte) >> (8 - used - take)) & ((1u64 << take) - 1);
            x = (x << take) | bits;
            self.pos += take as usize;
            n -= take;
        }
        Some(x)
    }

    fn bit(&mut self) -> Option<bool> {
        self.read(1).map(|b| b == 1)
    }
}

/// Samples of an [`OpenChunk`], oldest first.
pub struct Iter<'a> {
    r: BitReader<'a>,
    left: u32,
    started: bool,
    t: i64,
    delta: i64,
    v: u64,
    lead: u32,
    trail: u32,
}

impl Iter<'_> {
    fn next_sample(&mut self) -> Option<Sample> {
        if !self.started {
            self.t = self.r.read(64)? as i64;
            self.v = self.r.read(64)?;
            self.started = true;
            return Some(Sample::new(self.t, f64::from_bits(self.v)));
        }
        let mut ones = 0;
        while ones < DOD_MAX_ONES && self.r.bit()? {
            ones += 1;
        }
        let dod = match DOD_BITS[ones] {
            0 => 0,
            bits => sign_extend(self.r.read(bits)?, bits),
        };
        self.delta = self.delta.wrapping_add(dod);
        self.t = self.t.wrapping_add(self.delta);
        if self.r.bit()? {
            if self.r.bit()? {
                self.lead = self.r.read(5)? as u32;
                let sig = self.r.read(6)? as u32 + 1;
                self.trail = 64u32.saturating_sub(self.lead + sig);
            }
            let sig = 64u32.saturating_sub(self.lead + self.trail);
            let x = self.r.read(sig)?;
            self.v ^= x.checked_shl(self.trail).unwrap_or(0);
        }
        Some(Sample::new(self.t, f64::from_bits(self.v)))
    }
}

impl Iterator for Iter<'_> {
    type Item = Sample;

    fn next(&mut self) -> Option<Sample> {
        if self.left == 0 {
            return None;
        }
        let s = self.next_sample();
        self.left = if s.is_some() { self.left - 1 } else { 0 };
        s
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.left as usize))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn build(samples: &[Sample]) -> OpenChunk {
        let mut c = OpenChunk::default();
        for s in samples {
            c.push(s.t, s.v);
        }
        c
    }

    /// Samples compared by bits, so NaN payloads and -0.0 count.
    fn bits(samples: &[Sample]) -> Vec<(i64, u64)> {
        samples.iter().map(|s| (s.t, s.v.to_bits())).collect()
    }

    fn round_trip(samples: &[Sample]) {
        let c = build(samples);
        assert_eq!(c.len(), samples.len());
        let got: Vec<Sample> = c.iter().collect();
        assert_eq!(bits(&got), bits(samples));
        assert_eq!(c.first_t(), samples.first().map(|s| s.t));
        assert_eq!(c.last_t(), samples.last().map(|s| s.t));
        if let Some(last) = samples.last() {
            assert_eq!(c.last_value_bits(), last.v.to_bits());
        }
    }

    #[test]
    fn empty_and_one() {
        let c = OpenChunk::default();
        assert!(c.is_empty());
        assert_eq!(c.iter().count(), 0);
        assert_eq!(
            (c.first_t(), c.last_t(), c.last_value_bits()),
            (None, None, 0)
        );
        assert_eq!(c.bytes(), (0, 0), "an empty chunk allocates nothing");
        round_trip(&[Sample::new(5, 1.0)]);
    }

    #[test]
    fn extreme_values_and_times_round_trip() {
        let stale = f64::from_bits(0x7ff0_0000_0000_0002);
        let payload_nan = f64::from_bits(0xfff8_dead_beef_0001);
        let values = [
            0.0,
            -0.0,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
            stale,
            payload_nan,
            f64::MIN_POSITIVE,
            f64::from_bits(1),
            f64::MAX,
            f64::MIN,
            1.0,
            1.0,
            -1.5e300,
        ];
        let times = [
            i64::MIN,
            i64::MIN + 1,
            -1,
            0,
            1,
            15_000,
            30_001,
            1 << 40,
            (1 << 40) + 1,
            i64::MAX - (1 << 33),
            i64::MAX - 2,
            i64::MAX - 1,
            i64::MAX,
            i64::MAX,
        ];
        let samples: Vec<Sample> = times
            .iter()
            .zip(values.iter().cycle())
            .map(|(&t, &v)| Sample::new(t, v))
            .collect();
        round_trip(&samples);
        // Every delta-of-delta class boundary, both signs.
        let mut t = 0i64;
        let mut delta = 0i64;
        let mut s = vec![Sample::new(t, 0.0)];
        for bits in [7u32, 14, 20, 32] {
            for dod in [
                (1i64 << (bits - 1)) - 1,
                -(1i64 << (bits - 1)),
                1i64 << (bits - 1),
                -(1i64 << (bits - 1)) - 1,
            ] {
                delta = delta.wrapping_add(dod);
                t = t.wrapping_add(delta);
                s.push(Sample::new(t, f64::from(bits)));
            }
        }
        round_trip(&s);
    }

    #[test]
    fn take_keeps_room_clear_frees_and_both_keep_the_newest_value() {
        let samples: Vec<Sample> = (0..120)
            .map(|i| Sample::new(1_000 + i * 15_000, i as f64 * 0.25))
            .collect();
        let mut c = build(&samples);
        let (used, cap) = c.bytes();
        assert!(
            used < samples.len() * 4,
            "{used} bytes for 120 regular samples"
        );
        assert!(
            cap - used <= used / 4 + MIN_STEP,
            "grows by small steps: {used} of {cap}"
        );
        let got = c.take();
        assert_eq!(bits(&got), bits(&samples));
        assert!(c.is_empty());
        assert_eq!(c.bytes(), (0, cap), "the next chunk reuses the room");
        assert_eq!(c.last_value_bits(), 29.75f64.to_bits());
        let mut cleared = build(&samples);
        cleared.clear();
        assert!(cleared.is_empty() && cleared.iter().next().is_none());
        assert_eq!(cleared.bytes(), (0, 0));
        assert_eq!(cleared.last_value_bits(), 29.75f64.to_bits());
        // A new chunk after the cut starts from a fresh window and base.
        c.push(9_000_000, -3.0);
        c.push(9_015_000, 7.5);
        assert_eq!(
            bits(&c.iter().collect::<Vec<_>>()),
            bits(&[Sample::new(9_000_000, -3.0), Sample::new(9_015_000, 7.5)])
        );
    }

    #[test]
    fn a_truncated_buffer_ends_the_samples_early() {
        let samples: Vec<Sample> = (0..50)
            .map(|i| Sample::new(i * 1_000 + i * i, (i as f64).sqrt()))
            .collect();
        let full = build(&samples);
        for cut in 0..full.buf.len() {
            let mut c = full.clone();
            c.buf.truncate(cut);
            let got: Vec<Sample> = c.iter().collect();
            assert!(got.len() < samples.len());
            assert_eq!(bits(&got), bits(&samples[..got.len()]));
        }
    }

    fn sample_runs() -> impl Strategy<Value = Vec<Sample>> {
        let step = prop_oneof![
            4 => Just(15_000i64),
            4 => 14_990i64..15_010,
            1 => 1i64..5_000_000_000,
            1 => any::<i64>().prop_map(|d| d.unsigned_abs() as i64 / 2),
        ];
        let value = prop_oneof![
            3 => (0u32..4).prop_map(f64::from),
            3 => -1e6f64..1e6,
            2 => any::<u64>().prop_map(f64::from_bits),
            1 => Just(f64::from_bits(0x7ff0_0000_0000_0002)),
            1 => Just(-0.0f64),
        ];
        (
            any::<i64>(),
            proptest::collection::vec((step, value), 0..300),
        )
            .prop_map(|(t0, steps)| {
                let mut t = t0;
                steps
                    .into_iter()
                    .map(|(d, v)| {
                        t = t.wrapping_add(d);
                        Sample::new(t, v)
                    })
                    .collect()
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn matches_the_raw_samples(samples in sample_runs()) {
            let c = build(&samples);
            let got: Vec<Sample> = c.iter().collect();
            prop_assert_eq!(bits(&got), bits(&samples));
            prop_assert_eq!(c.last_t(), samples.last().map(|s| s.t));
        }
    }
}
