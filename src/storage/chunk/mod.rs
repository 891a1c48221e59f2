//! Chunk encoding: a time-ordered run of samples of one series, compressed.
//!
//! Owns the chunk byte format (docs/format/chunk.md): a header byte with the format version and
//! value mode, the sample count, a timestamp column and a value section. Timestamps and decimal
//! values are integer columns (raw, delta or delta-of-delta, bit-packed in groups with outliers
//! as exceptions); values that are not short decimals fall back to Gorilla XOR.
//!
//! Pure format code: bytes in, samples out. It must never do I/O or know about series, and
//! decoding must never panic, loop unboundedly or allocate more than [`MAX_SAMPLES`] samples,
//! whatever bytes it is given.

pub(crate) mod append;
mod column;
mod decimal;
pub mod histogram;
mod xor;

#[cfg(test)]
mod tests;

use crate::encoding::{self, Decbuf, put_uvarint};
use crate::model::Sample;
use decimal::Scale;

/// Version in the high nibble of the header byte; bump it when the layout changes.
pub const FORMAT_VERSION: u8 = 1;

/// Most samples one chunk may hold; bounds what a corrupt count can make the decoder allocate.
pub const MAX_SAMPLES: usize = 1 << 16;

const MODE_XOR: u8 = 0;
const MODE_DECIMAL_DIV: u8 = 1;
const MODE_DECIMAL_MUL: u8 = 2;
/// Histogram chunks ([`histogram`]): integer and float histogram samples.
const MODE_HISTOGRAM: u8 = 8;
const MODE_FLOAT_HISTOGRAM: u8 = 9;

const EXP_MASK: u8 = 0x1f;
const EXP_EXCEPTIONS: u8 = 0x80;
const EXP_RESERVED: u8 = 0x60;

/// A chunk could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    /// The bytes are not a valid chunk; `offset` is where decoding noticed, within the chunk.
    #[error("chunk corrupt at byte {offset}: {reason}")]
    Corrupt {
        /// Byte offset inside the chunk.
        offset: usize,
        /// What was wrong.
        reason: &'static str,
    },
    /// The chunk was written by a format version this build does not read.
    #[error("chunk format version {0} is not supported")]
    UnsupportedVersion(u8),
}

impl From<encoding::Error> for ChunkError {
    fn from(e: encoding::Error) -> Self {
        ChunkError::Corrupt {
            offset: e.offset(),
            reason: e.reason(),
        }
    }
}

/// A corruption error located at a cursor.
trait CorruptAt {
    fn corrupt(&self, reason: &'static str) -> ChunkError;
}

impl CorruptAt for Decbuf<'_> {
    fn corrupt(&self, reason: &'static str) -> ChunkError {
        ChunkError::Corrupt {
            offset: self.pos(),
            reason,
        }
    }
}

/// Encodes samples (strictly increasing timestamps) into one chunk.
///
/// # Panics
/// If `samples.len() > MAX_SAMPLES`; callers cut chunks far smaller than that.
pub fn encode(samples: &[Sample]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + samples.len() * 2);
    encode_into(samples, &mut out);
    out
}

/// Appends the encoding of `samples` (strictly increasing timestamps) to `out`.
///
/// Any input round-trips bit-exactly, even unordered timestamps; order only affects size.
///
/// # Panics
/// If `samples.len() > MAX_SAMPLES`.
pub fn encode_into(samples: &[Sample], out: &mut Vec<u8>) {
    assert!(
        samples.len() <= MAX_SAMPLES,
        "chunk of {} samples exceeds MAX_SAMPLES ({MAX_SAMPLES})",
        samples.len()
    );
    let header_at = out.len();
    out.push(FORMAT_VERSION << 4 | MODE_XOR);
    put_uvarint(out, samples.len() as u64);
    if samples.is_empty() {
        return;
    }
    let mut sc = column::Scratch::default();
    let ts: Vec<i64> = samples.iter().map(|s| s.t).collect();
    let tplan = column::plan(&ts, column::Orders::DeltaOnly, &mut sc);
    column::write(&ts, &tplan, &mut sc, out);

    let values: Vec<f64> = samples.iter().map(|s| s.v).collect();
    if let Some(mode) = write_value_section(&values, &mut sc, out, false) {
        out[header_at] = FORMAT_VERSION << 4 | mode;
    }
}

/// Writes the values section of `values` (non-empty): the decimal coding when it is no larger
/// than XOR, else the XOR stream (length-prefixed when `prefixed`, for a section that is not
/// the last of its chunk). Returns the decimal mode, or `None` for XOR.
fn write_value_section(
    values: &[f64],
    sc: &mut column::Scratch,
    out: &mut Vec<u8>,
    prefixed: bool,
) -> Option<u8> {
    let dec = decimal::plan(values, sc);
    // XOR costs at least 8 bytes plus a bit per later value; skip it when decimal already wins.
    let xor_floor = 8 + (values.len() - 1).div_ceil(8);
    let dec = match dec {
        Some(p) if p.cost <= xor_floor => Ok(p),
        other => {
            let mut x = Vec::with_capacity(values.len() * 2);
            xor::encode(values.iter().map(|v| v.to_bits()), &mut x);
            match other {
                Some(p) if p.cost <= x.len() => Ok(p),
                _ => Err(x),
            }
        }
    };
    match dec {
        Ok(p) => {
            let mode = match p.scale {
                Scale::Div => MODE_DECIMAL_DIV,
                Scale::Mul => MODE_DECIMAL_MUL,
            };
            decimal::write(&p, sc, out);
            Some(mode)
        }
        Err(x) => {
            if prefixed {
                put_uvarint(out, x.len() as u64);
            }
            out.extend_from_slice(&x);
            None
        }
    }
}

/// A values section inside a histogram chunk: a mode byte, then the section as a float
/// chunk's (an XOR stream length-prefixed).
fn write_values(values: &[f64], sc: &mut column::Scratch, out: &mut Vec<u8>) {
    let at = out.len();
    out.push(MODE_XOR);
    if let Some(mode) = write_value_section(values, sc, out, true) {
        out[at] = mode;
    }
}

/// Reads a values section [`write_values`] wrote, of `n >= 1` values, into `out` (cleared
/// first).
fn read_values(r: &mut Decbuf<'_>, n: usize, out: &mut Vec<f64>) -> Result<(), ChunkError> {
    out.clear();
    let mode = r.u8()?;
    match mode {
        MODE_XOR => {
            let at = r.pos();
            let bytes = r.uvarint_bytes()?;
            out.reserve(n);
            xor::decode(bytes, at, n, |v| out.push(v))
        }
        MODE_DECIMAL_DIV | MODE_DECIMAL_MUL => {
            out.resize(n, 0.0);
            read_decimal(r, mode, out, |v| v)
        }
        _ => Err(r.corrupt("unknown value mode")),
    }
}

/// Reads a decimal values section (exponent byte, mantissa column, exceptions) into the
/// value slots of `items` (`slot` says where an item keeps its value).
fn read_decimal<T>(
    r: &mut Decbuf<'_>,
    mode: u8,
    items: &mut [T],
    slot: impl Fn(&mut T) -> &mut f64 + Copy,
) -> Result<(), ChunkError> {
    let n = items.len();
    let scale = if mode == MODE_DECIMAL_DIV {
        Scale::Div
    } else {
        Scale::Mul
    };
    let eb = r.u8()?;
    if eb & EXP_RESERVED != 0 {
        return Err(r.corrupt("reserved exponent bits set"));
    }
    let e = eb & EXP_MASK;
    if e > decimal::MAX_E {
        return Err(r.corrupt("decimal exponent out of range"));
    }
    let f = decimal::factor(e, scale);
    {
        let mut it = items.iter_mut();
        let mut set = |v: f64| {
            if let Some(s) = it.next() {
                *slot(s) = v;
            }
        };
        // One monomorphised loop per arithmetic, so the hot loop carries no mode branch.
        match (scale, e) {
            (_, 0) => column::decode(r, n, &mut |m| set(m as f64))?,
            (Scale::Div, _) => column::decode(r, n, &mut |m| set(m as f64 / f))?,
            (Scale::Mul, _) => column::decode(r, n, &mut |m| set(m as f64 * f))?,
        }
    }
    if eb & EXP_EXCEPTIONS != 0 {
        read_exceptions(r, items, slot)?;
    }
    Ok(())
}

/// Reads the header and returns the sample count, without decoding the samples.
pub fn num_samples(data: &[u8]) -> Result<usize, ChunkError> {
    let mut r = Decbuf::new(data);
    read_header(&mut r).map(|(_, n)| n)
}

fn read_header(r: &mut Decbuf<'_>) -> Result<(u8, usize), ChunkError> {
    let h = r.u8()?;
    if h >> 4 != FORMAT_VERSION {
        return Err(ChunkError::UnsupportedVersion(h >> 4));
    }
    let mode = h & 0x0f;
    if mode > MODE_DECIMAL_MUL {
        return Err(r.corrupt("unknown value mode"));
    }
    let n = r.uvarint()?;
    if n > MAX_SAMPLES as u64 {
        return Err(r.corrupt("sample count above MAX_SAMPLES"));
    }
    Ok((mode, n as usize))
}

/// Decodes a chunk, appending its samples to `out`. On error `out` is left as it was.
pub fn decode(data: &[u8], out: &mut Vec<Sample>) -> Result<(), ChunkError> {
    let start = out.len();
    let res = decode_inner(data, out, start);
    if res.is_err() {
        out.truncate(start);
    }
    res
}

fn decode_inner(data: &[u8], out: &mut Vec<Sample>, start: usize) -> Result<(), ChunkError> {
    let mut r = Decbuf::new(data);
    let (mode, n) = read_header(&mut r)?;
    if n == 0 {
        return match r.remaining() {
            0 => Ok(()),
            _ => Err(r.corrupt("bytes after an empty chunk")),
        };
    }
    out.reserve(n);
    column::decode(&mut r, n, &mut |t| out.push(Sample::new(t, 0.0)))?;
    let samples = &mut out[start..];
    if mode == MODE_XOR {
        let mut it = samples.iter_mut();
        return xor::decode(r.rest(), r.pos(), n, |v| {
            if let Some(s) = it.next() {
                s.v = v;
            }
        });
    }
    read_decimal(&mut r, mode, samples, |s| &mut s.v)?;
    if r.remaining() != 0 {
        return Err(r.corrupt("trailing bytes after value section"));
    }
    Ok(())
}

fn read_exceptions<T>(
    r: &mut Decbuf<'_>,
    samples: &mut [T],
    slot: impl Fn(&mut T) -> &mut f64,
) -> Result<(), ChunkError> {
    let n = samples.len();
    let k = r.uvarint()?;
    if k == 0 || k > n as u64 {
        return Err(r.corrupt("exception count out of range"));
    }
    let mut idx = 0usize;
    for j in 0..k {
        let h = r.uvarint()?;
        let gap = h >> 1;
        if j > 0 && gap == 0 {
            return Err(r.corrupt("exception indexes not increasing"));
        }
        let next = (idx as u64).saturating_add(gap);
        if next >= n as u64 {
            return Err(r.corrupt("exception index out of range"));
        }
        idx = next as usize;
        let v = slot(&mut samples[idx]);
        if h & 1 == decimal::EXC_RAW {
            *v = f64::from_bits(r.u64_le()?);
        } else {
            let k = r.varint()?;
            *v = f64::from_bits((v.to_bits() as i64).wrapping_add(k) as u64);
        }
    }
    Ok(())
}
