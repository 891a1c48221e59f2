//! The WAL's byte format: file headers, record frames and record payloads.
//!
//! Pure format code: it turns records into bytes and bytes into records and never touches a file,
//! so every rule about what is valid lives here and can be tested without a disk. The layout is
//! drawn out in `docs/format/wal.md`.

use crate::encoding::{self, Decbuf, put_u32_le, put_uvarint, put_uvarint_bytes, put_varint};
use crate::model::histogram::{CounterResetHint, FloatHistogram, Histogram, Span, is_valid_schema};
use crate::model::{HistogramValue, Labels};

/// Magic at the start of every segment file.
pub(crate) const SEGMENT_MAGIC: [u8; 4] = *b"TMWL";
/// Magic at the start of every checkpoint file.
pub(crate) const CHECKPOINT_MAGIC: [u8; 4] = *b"TMCK";
/// Format version written into file headers; readers refuse any other.
pub(crate) const VERSION: u8 = 1;
/// Bytes of a file header: magic, version, three reserved zero bytes.
pub(crate) const FILE_HEADER_LEN: usize = 8;
/// Bytes of a frame header: payload length (u32 LE), type byte, CRC32C (u32 LE).
pub(crate) const FRAME_HEADER_LEN: usize = 9;
/// Largest payload a frame may declare. A larger length can only be corruption, and refusing it
/// keeps a flipped length byte from making the reader allocate gigabytes.
pub(crate) const MAX_PAYLOAD: usize = 64 << 20;
/// Entries are appended to one payload until it reaches this size, then a new frame starts, so a
/// checkpoint of millions of series becomes many bounded frames instead of one huge one.
const SPLIT_PAYLOAD: usize = 1 << 20;
/// Payloads shorter than this are never worth a snappy attempt.
const MIN_COMPRESS: usize = 32;
/// Set in the type byte when the payload is snappy-compressed (raw snappy block format).
const SNAPPY_FLAG: u8 = 0x80;

const KIND_SERIES: u8 = 1;
const KIND_SAMPLES: u8 = 2;
const KIND_CHUNKS: u8 = 3;
const KIND_CHECKPOINT_END: u8 = 4;
const KIND_HISTOGRAMS: u8 = 5;
const KIND_FLOAT_HISTOGRAMS: u8 = 6;

/// A new series: the ref the head gave it and its full label set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesRecord {
    /// The series' ref, valid until the next restart (replay re-establishes it).
    pub sref: u64,
    /// Full label set, `__name__` included.
    pub labels: Labels,
}

/// One sample of a series known through an earlier [`SeriesRecord`].
#[derive(Debug, Clone, Copy)]
pub struct SampleRecord {
    /// Ref of the series.
    pub sref: u64,
    /// Milliseconds since the Unix epoch.
    pub t: i64,
    /// Value, stored bit-exact (NaN payloads and the staleness marker survive).
    pub v: f64,
}

/// Bit-exact equality, so NaN equals NaN and the staleness marker differs from a normal NaN.
impl PartialEq for SampleRecord {
    fn eq(&self, other: &Self) -> bool {
        self.sref == other.sref && self.t == other.t && self.v.to_bits() == other.v.to_bits()
    }
}
impl Eq for SampleRecord {}

/// One histogram sample of a series known through an earlier [`SeriesRecord`]. Integer and
/// float histograms are written as frames of two types (5 and 6); a record of both kinds is
/// written as runs of frames in its order.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramRecord {
    /// Ref of the series.
    pub sref: u64,
    /// Milliseconds since the Unix epoch.
    pub t: i64,
    /// The histogram, stored bit-exact (floats by their bits, spans as written).
    pub h: HistogramValue,
}

// Equality of histograms is bitwise on floats, so it is reflexive.
impl Eq for HistogramRecord {}

/// An already encoded chunk of one series, carried by checkpoints; the WAL never looks inside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkRecord {
    /// Ref of the series.
    pub sref: u64,
    /// First timestamp in the chunk.
    pub mint: i64,
    /// Last timestamp in the chunk.
    pub maxt: i64,
    /// The chunk's bytes, opaque to the WAL.
    pub data: Vec<u8>,
}

/// One decoded WAL record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// New series.
    Series(Vec<SeriesRecord>),
    /// Samples of known series.
    Samples(Vec<SampleRecord>),
    /// Encoded chunks of known series (checkpoints only).
    Chunks(Vec<ChunkRecord>),
    /// Histogram samples of known series (one frame holds one kind, integer or float).
    Histograms(Vec<HistogramRecord>),
}

/// Why a file header was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum HeaderError {
    #[error("file header torn: {have} of {FILE_HEADER_LEN} bytes")]
    Short { have: usize },
    #[error("bad magic {found:02x?}")]
    BadMagic { found: [u8; 4] },
    #[error("unsupported format version {0}")]
    Version(u8),
}

/// Checks a file header. `bytes` is whatever the file starts with (possibly fewer bytes).
pub(crate) fn check_file_header(bytes: &[u8], magic: [u8; 4]) -> Result<(), HeaderError> {
    let Some(h) = bytes.get(..FILE_HEADER_LEN) else {
        return Err(HeaderError::Short { have: bytes.len() });
    };
    if h[..4] != magic {
        return Err(HeaderError::BadMagic {
            found: [h[0], h[1], h[2], h[3]],
        });
    }
    if h[4] != VERSION {
        return Err(HeaderError::Version(h[4]));
    }
    Ok(())
}

/// The header that starts a file with `magic`.
pub(crate) fn file_header(magic: [u8; 4]) -> [u8; FILE_HEADER_LEN] {
    [magic[0], magic[1], magic[2], magic[3], VERSION, 0, 0, 0]
}

/// Why a frame could not be read; every variant means "truncate here".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FrameError {
    #[error("torn frame header: {have} of {FRAME_HEADER_LEN} bytes")]
    TornHeader { have: usize },
    #[error("bad length {len} (limit {MAX_PAYLOAD})")]
    BadLength { len: u32 },
    #[error("length {len} runs past the end of the file ({available} bytes left)")]
    PastEnd { len: usize, available: u64 },
    #[error("unknown record type {0:#04x}")]
    UnknownType(u8),
    #[error("crc mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Crc { stored: u32, computed: u32 },
    #[error("snappy payload undecodable: {0}")]
    Snappy(String),
    #[error("payload undecodable: {0}")]
    Payload(&'static str),
    #[error("payload undecodable at byte {offset}: {0}", offset = .0.offset())]
    Bytes(#[from] encoding::Error),
}

/// A parsed frame header whose length and type are plausible; the CRC is checked with the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FrameHeader {
    /// Payload bytes that follow the header.
    pub len: usize,
    kind: u8,
    crc: u32,
}

impl FrameHeader {
    /// True for a Samples or Histograms frame, which a reader may skip without decoding its
    /// payload.
    pub(crate) fn is_samples(&self) -> bool {
        matches!(
            self.kind & !SNAPPY_FLAG,
            KIND_SAMPLES | KIND_HISTOGRAMS | KIND_FLOAT_HISTOGRAMS
        )
    }
}

/// Parses a frame header, refusing impossible lengths and unknown types before any payload is read.
pub(crate) fn parse_frame_header(h: &[u8; FRAME_HEADER_LEN]) -> Result<FrameHeader, FrameError> {
    let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
    let kind = h[4];
    let crc = u32::from_le_bytes([h[5], h[6], h[7], h[8]]);
    if len as usize > MAX_PAYLOAD {
        return Err(FrameError::BadLength { len });
    }
    match kind & !SNAPPY_FLAG {
        KIND_SERIES
        | KIND_SAMPLES
        | KIND_CHUNKS
        | KIND_CHECKPOINT_END
        | KIND_HISTOGRAMS
        | KIND_FLOAT_HISTOGRAMS => {}
        _ => return Err(FrameError::UnknownType(kind)),
    }
    Ok(FrameHeader {
        len: len as usize,
        kind,
        crc,
    })
}

/// What a frame held.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Decoded {
    /// A data record.
    Record(Record),
    /// The last frame of a checkpoint, with the number of frames before it.
    CheckpointEnd { frames: u64 },
}

/// Verifies the CRC over the exact stored bytes (type byte + payload as written), then
/// decompresses if flagged and decodes the payload.
pub(crate) fn decode_frame(h: &FrameHeader, payload: &[u8]) -> Result<Decoded, FrameError> {
    decode_frame_with(h, payload, &mut Vec::new())
}

/// [`decode_frame`] decompressing into `scratch`, which a reader keeps from frame to frame
/// instead of allocating (and zeroing) a payload-sized buffer for each.
pub(crate) fn decode_frame_with(
    h: &FrameHeader,
    payload: &[u8],
    scratch: &mut Vec<u8>,
) -> Result<Decoded, FrameError> {
    let computed = crc32c::crc32c_append(crc32c::crc32c(&[h.kind]), payload);
    if computed != h.crc {
        return Err(FrameError::Crc {
            stored: h.crc,
            computed,
        });
    }
    let body = if h.kind & SNAPPY_FLAG != 0 {
        let n =
            snap::raw::decompress_len(payload).map_err(|e| FrameError::Snappy(e.to_string()))?;
        if n > MAX_PAYLOAD {
            return Err(FrameError::Snappy(format!(
                "decompressed length {n} over limit"
            )));
        }
        // Only grown, never cleared: the decoder writes every byte it reports.
        if scratch.len() < n {
            scratch.resize(n, 0);
        }
        let got = snap::raw::Decoder::new()
            .decompress(payload, &mut scratch[..n])
            .map_err(|e| FrameError::Snappy(e.to_string()))?;
        &scratch[..got]
    } else {
        payload
    };
    let mut r = Decbuf::new(body);
    Ok(match h.kind & !SNAPPY_FLAG {
        KIND_SERIES => Decoded::Record(Record::Series(decode_series(&mut r)?)),
        KIND_SAMPLES => Decoded::Record(Record::Samples(decode_samples(&mut r)?)),
        KIND_CHUNKS => Decoded::Record(Record::Chunks(decode_chunks(&mut r)?)),
        KIND_HISTOGRAMS => Decoded::Record(Record::Histograms(decode_histograms(&mut r, false)?)),
        KIND_FLOAT_HISTOGRAMS => {
            Decoded::Record(Record::Histograms(decode_histograms(&mut r, true)?))
        }
        KIND_CHECKPOINT_END => {
            let frames = r.uvarint()?;
            if !r.is_empty() {
                return Err(FrameError::Payload("trailing bytes after checkpoint end"));
            }
            Decoded::CheckpointEnd { frames }
        }
        _ => return Err(FrameError::UnknownType(h.kind)),
    })
}

/// A single entry's encoding would exceed the frame limit on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("record of {len} bytes exceeds the frame limit of {MAX_PAYLOAD} bytes")]
pub struct TooLarge {
    /// Encoded size of the offending payload.
    pub len: usize,
}

/// Turns records into frames. Holds scratch buffers and the snappy tables so one encoder can be
/// reused across many records.
pub(crate) struct Encoder {
    snappy: snap::raw::Encoder,
    payload: Vec<u8>,
    compressed: Vec<u8>,
}

/// Delta state carried from entry to entry within one payload; reset at every frame so each frame
/// decodes on its own (a truncated neighbour never makes a frame unreadable).
#[derive(Default)]
struct Deltas {
    sref: u64,
    t: i64,
}

impl Default for Encoder {
    fn default() -> Self {
        Encoder::new()
    }
}

impl Encoder {
    pub(crate) fn new() -> Self {
        Encoder {
            snappy: snap::raw::Encoder::new(),
            payload: Vec::new(),
            compressed: Vec::new(),
        }
    }

    /// Drops buffers grown past `max` bytes, so one huge record does not pin its memory in an
    /// encoder kept for reuse.
    pub(crate) fn trim(&mut self, max: usize) {
        if self.payload.capacity() > max {
            self.payload = Vec::new();
        }
        if self.compressed.capacity() > max {
            self.compressed = Vec::new();
        }
    }

    /// Appends the frames of `record` to `out`; returns how many frames were written (none for
    /// an empty record).
    pub(crate) fn record(&mut self, record: &Record, out: &mut Vec<u8>) -> Result<u64, TooLarge> {
        match record {
            Record::Series(s) => self.series(s, out),
            Record::Samples(s) => self.samples(s, out),
            Record::Chunks(c) => self.chunks(c, out),
            Record::Histograms(h) => self.histograms(h, out),
        }
    }

    /// Appends histogram frames to `out`: each run of one kind (integer or float) in frames
    /// of its type, so the order of the samples is kept.
    pub(crate) fn histograms(
        &mut self,
        histograms: &[HistogramRecord],
        out: &mut Vec<u8>,
    ) -> Result<u64, TooLarge> {
        let is_float = |h: &HistogramRecord| matches!(h.h, HistogramValue::Float(_));
        let mut frames = 0;
        let mut rest = histograms;
        while let Some(first) = rest.first() {
            let float = is_float(first);
            let n = rest
                .iter()
                .position(|h| is_float(h) != float)
                .unwrap_or(rest.len());
            let (run, after) = rest.split_at(n);
            rest = after;
            let kind = if float {
                KIND_FLOAT_HISTOGRAMS
            } else {
                KIND_HISTOGRAMS
            };
            frames += self.entries(kind, run, out, |p, d, h| {
                put_varint(p, h.sref.wrapping_sub(d.sref) as i64);
                put_varint(p, h.t.wrapping_sub(d.t));
                d.sref = h.sref;
                d.t = h.t;
                put_histogram(p, &h.h);
            })?;
        }
        Ok(frames)
    }

    /// Appends series frames to `out`.
    pub(crate) fn series(
        &mut self,
        series: &[SeriesRecord],
        out: &mut Vec<u8>,
    ) -> Result<u64, TooLarge> {
        self.entries(KIND_SERIES, series, out, |p, d, s| {
            put_varint(p, s.sref.wrapping_sub(d.sref) as i64);
            d.sref = s.sref;
            put_uvarint(p, s.labels.len() as u64);
            for (n, v) in s.labels.iter() {
                put_uvarint_bytes(p, n.as_bytes());
                put_uvarint_bytes(p, v.as_bytes());
            }
        })
    }

    /// Appends samples frames to `out`.
    pub(crate) fn samples(
        &mut self,
        samples: &[SampleRecord],
        out: &mut Vec<u8>,
    ) -> Result<u64, TooLarge> {
        self.entries(KIND_SAMPLES, samples, out, |p, d, s| {
            put_varint(p, s.sref.wrapping_sub(d.sref) as i64);
            put_varint(p, s.t.wrapping_sub(d.t));
            d.sref = s.sref;
            d.t = s.t;
            put_value(p, s.v.to_bits());
        })
    }

    /// Appends chunk frames to `out`.
    pub(crate) fn chunks(
        &mut self,
        chunks: &[ChunkRecord],
        out: &mut Vec<u8>,
    ) -> Result<u64, TooLarge> {
        self.entries(KIND_CHUNKS, chunks, out, |p, d, c| {
            put_varint(p, c.sref.wrapping_sub(d.sref) as i64);
            put_varint(p, c.mint.wrapping_sub(d.t));
            put_varint(p, c.maxt.wrapping_sub(c.mint));
            d.sref = c.sref;
            d.t = c.mint;
            put_uvarint_bytes(p, &c.data);
        })
    }

    /// Appends the frame that closes a checkpoint of `frames` frames.
    pub(crate) fn checkpoint_end(&mut self, frames: u64, out: &mut Vec<u8>) {
        self.payload.clear();
        put_uvarint(&mut self.payload, frames);
        self.frame(KIND_CHECKPOINT_END, out);
    }

    fn entries<T>(
        &mut self,
        kind: u8,
        items: &[T],
        out: &mut Vec<u8>,
        put: impl Fn(&mut Vec<u8>, &mut Deltas, &T),
    ) -> Result<u64, TooLarge> {
        let mut frames = 0;
        let mut d = Deltas::default();
        self.payload.clear();
        for item in items {
            let before = self.payload.len();
            put(&mut self.payload, &mut d, item);
            if self.payload.len() > MAX_PAYLOAD {
                // Only one entry can be at fault: payloads are cut at SPLIT_PAYLOAD, far below.
                return Err(TooLarge {
                    len: self.payload.len() - before,
                });
            }
            if self.payload.len() >= SPLIT_PAYLOAD {
                self.frame(kind, out);
                frames += 1;
                self.payload.clear();
                d = Deltas::default();
            }
        }
        if !self.payload.is_empty() {
            self.frame(kind, out);
            frames += 1;
        }
        Ok(frames)
    }

    /// Frames `self.payload`, compressing it when that saves at least an eighth: below that the
    /// decompression on replay costs more than the bytes are worth.
    fn frame(&mut self, kind: u8, out: &mut Vec<u8>) {
        let raw = self.payload.as_slice();
        let mut body = raw;
        let mut kind = kind;
        if raw.len() >= MIN_COMPRESS {
            let room = snap::raw::max_compress_len(raw.len());
            // Zeroed only as it grows: snappy writes before it reads.
            if self.compressed.len() < room {
                self.compressed.resize(room, 0);
            }
            // An error here means the input is over snappy's 4 GiB limit, impossible below
            // MAX_PAYLOAD; falling back to the raw payload is always correct.
            if let Ok(n) = self.snappy.compress(raw, &mut self.compressed)
                && n + n / 8 < raw.len()
            {
                body = &self.compressed[..n];
                kind |= SNAPPY_FLAG;
            }
        }
        let crc = crc32c::crc32c_append(crc32c::crc32c(&[kind]), body);
        out.reserve(FRAME_HEADER_LEN + body.len());
        put_u32_le(out, body.len() as u32);
        out.push(kind);
        put_u32_le(out, crc);
        out.extend_from_slice(body);
    }
}

fn decode_series(r: &mut Decbuf<'_>) -> Result<Vec<SeriesRecord>, FrameError> {
    let mut out = Vec::new();
    let mut sref = 0u64;
    while !r.is_empty() {
        sref = sref.wrapping_add(r.varint()? as u64);
        let n = r.uvarint()?;
        // Each label takes at least two length bytes, which bounds a corrupt count.
        if n > (r.remaining() / 2) as u64 {
            return Err(FrameError::Payload("label count exceeds payload"));
        }
        let mut pairs: Vec<(String, String)> = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let name = read_string(r)?;
            let value = read_string(r)?;
            if let Some((prev, _)) = pairs.last()
                && *prev >= name
            {
                return Err(FrameError::Payload("label names not strictly sorted"));
            }
            pairs.push((name, value));
        }
        out.push(SeriesRecord {
            sref,
            labels: Labels::from_sorted_unchecked(pairs),
        });
    }
    Ok(out)
}

fn decode_samples(r: &mut Decbuf<'_>) -> Result<Vec<SampleRecord>, FrameError> {
    // At least three bytes per sample: ref delta, time delta, value control byte.
    let mut out = Vec::with_capacity(r.remaining() / 3);
    let mut d = Deltas::default();
    while !r.is_empty() {
        d.sref = d.sref.wrapping_add(r.varint()? as u64);
        d.t = d.t.wrapping_add(r.varint()?);
        let v = f64::from_bits(read_value(r)?);
        out.push(SampleRecord {
            sref: d.sref,
            t: d.t,
            v,
        });
    }
    // The bound above is about three times what a typical payload holds, and a replay keeps a
    // few decoded records in flight: give the rest back (a shrink in place, not a copy).
    out.shrink_to_fit();
    Ok(out)
}

fn decode_chunks(r: &mut Decbuf<'_>) -> Result<Vec<ChunkRecord>, FrameError> {
    let mut out = Vec::new();
    let mut d = Deltas::default();
    while !r.is_empty() {
        d.sref = d.sref.wrapping_add(r.varint()? as u64);
        d.t = d.t.wrapping_add(r.varint()?);
        let maxt = d.t.wrapping_add(r.varint()?);
        let data = r.uvarint_bytes()?.to_vec();
        out.push(ChunkRecord {
            sref: d.sref,
            mint: d.t,
            maxt,
            data,
        });
    }
    Ok(out)
}

fn decode_histograms(r: &mut Decbuf<'_>, float: bool) -> Result<Vec<HistogramRecord>, FrameError> {
    let mut out = Vec::new();
    let mut d = Deltas::default();
    while !r.is_empty() {
        d.sref = d.sref.wrapping_add(r.varint()? as u64);
        d.t = d.t.wrapping_add(r.varint()?);
        let h = read_histogram(r, float)?;
        out.push(HistogramRecord {
            sref: d.sref,
            t: d.t,
            h,
        });
    }
    Ok(out)
}

/// A histogram's fields after its sample's ref and time (the layout is in
/// `docs/format/wal.md`): hint, schema, zero threshold, then the counts (integers for an
/// integer histogram, trimmed floats for a float one), sum, spans, buckets, custom bounds.
fn put_histogram(p: &mut Vec<u8>, h: &HistogramValue) {
    fn spans(p: &mut Vec<u8>, spans: &[Span]) {
        put_uvarint(p, spans.len() as u64);
        for s in spans {
            put_varint(p, i64::from(s.offset));
            put_uvarint(p, u64::from(s.length));
        }
    }
    fn floats(p: &mut Vec<u8>, v: &[f64]) {
        put_uvarint(p, v.len() as u64);
        for x in v {
            put_value(p, x.to_bits());
        }
    }
    match h {
        HistogramValue::Int(h) => {
            p.push(h.counter_reset_hint.as_u8());
            put_varint(p, i64::from(h.schema));
            put_value(p, h.zero_threshold.to_bits());
            put_uvarint(p, h.zero_count);
            put_uvarint(p, h.count);
            put_value(p, h.sum.to_bits());
            spans(p, &h.positive_spans);
            spans(p, &h.negative_spans);
            for b in [&h.positive_buckets, &h.negative_buckets] {
                put_uvarint(p, b.len() as u64);
                for x in b.iter() {
                    put_varint(p, *x);
                }
            }
            floats(p, &h.custom_values);
        }
        HistogramValue::Float(h) => {
            p.push(h.counter_reset_hint.as_u8());
            put_varint(p, i64::from(h.schema));
            put_value(p, h.zero_threshold.to_bits());
            put_value(p, h.zero_count.to_bits());
            put_value(p, h.count.to_bits());
            put_value(p, h.sum.to_bits());
            spans(p, &h.positive_spans);
            spans(p, &h.negative_spans);
            floats(p, &h.positive_buckets);
            floats(p, &h.negative_buckets);
            floats(p, &h.custom_values);
        }
    }
}

/// A count of entries of at least `min_bytes` bytes each, refused when the payload left
/// cannot hold them (so a corrupt count never makes the reader allocate).
fn read_count(
    r: &mut Decbuf<'_>,
    min_bytes: usize,
    what: &'static str,
) -> Result<usize, FrameError> {
    let n = r.uvarint()?;
    if n > (r.remaining() / min_bytes) as u64 {
        return Err(FrameError::Payload(what));
    }
    Ok(n as usize)
}

fn read_spans(r: &mut Decbuf<'_>) -> Result<(Vec<Span>, u64), FrameError> {
    let n = read_count(r, 2, "histogram span count exceeds payload")?;
    let mut spans = Vec::with_capacity(n);
    let mut buckets = 0u64;
    for i in 0..n {
        let offset = i32::try_from(r.varint()?)
            .ok()
            .filter(|o| i == 0 || *o >= 0)
            .ok_or(FrameError::Payload("histogram span offset out of range"))?;
        let length = u32::try_from(r.uvarint()?)
            .map_err(|_| FrameError::Payload("histogram span length out of range"))?;
        buckets += u64::from(length);
        spans.push(Span { offset, length });
    }
    Ok((spans, buckets))
}

fn read_floats(r: &mut Decbuf<'_>, what: &'static str) -> Result<Vec<f64>, FrameError> {
    let n = read_count(r, 1, what)?;
    (0..n).map(|_| read_value(r).map(f64::from_bits)).collect()
}

/// A histogram as [`put_histogram`] writes it. Checked: hint, schema, every count against the
/// bytes left, and each side's bucket count against its spans' lengths, so what a reader
/// builds from it indexes safely.
fn read_histogram(r: &mut Decbuf<'_>, float: bool) -> Result<HistogramValue, FrameError> {
    let counter_reset_hint = CounterResetHint::from_u8(r.u8()?)
        .ok_or(FrameError::Payload("bad histogram counter reset hint"))?;
    let schema = i32::try_from(r.varint()?)
        .ok()
        .filter(|s| is_valid_schema(*s))
        .ok_or(FrameError::Payload("bad histogram schema"))?;
    let zero_threshold = f64::from_bits(read_value(r)?);
    let h = if float {
        let zero_count = f64::from_bits(read_value(r)?);
        let count = f64::from_bits(read_value(r)?);
        let sum = f64::from_bits(read_value(r)?);
        let (positive_spans, np) = read_spans(r)?;
        let (negative_spans, nn) = read_spans(r)?;
        let positive_buckets = read_floats(r, "histogram bucket count exceeds payload")?;
        let negative_buckets = read_floats(r, "histogram bucket count exceeds payload")?;
        if positive_buckets.len() as u64 != np || negative_buckets.len() as u64 != nn {
            return Err(FrameError::Payload(
                "histogram bucket count differs from its spans",
            ));
        }
        let custom_values = read_floats(r, "histogram custom bound count exceeds payload")?;
        HistogramValue::Float(Box::new(FloatHistogram {
            counter_reset_hint,
            schema,
            zero_threshold,
            zero_count,
            count,
            sum,
            positive_spans,
            negative_spans,
            positive_buckets,
            negative_buckets,
            custom_values,
        }))
    } else {
        let zero_count = r.uvarint()?;
        let count = r.uvarint()?;
        let sum = f64::from_bits(read_value(r)?);
        let (positive_spans, np) = read_spans(r)?;
        let (negative_spans, nn) = read_spans(r)?;
        let mut deltas = |want: u64| -> Result<Vec<i64>, FrameError> {
            let n = read_count(r, 1, "histogram bucket count exceeds payload")?;
            if n as u64 != want {
                return Err(FrameError::Payload(
                    "histogram bucket count differs from its spans",
                ));
            }
            (0..n)
                .map(|_| r.varint().map_err(FrameError::from))
                .collect()
        };
        let positive_buckets = deltas(np)?;
        let negative_buckets = deltas(nn)?;
        let custom_values = read_floats(r, "histogram custom bound count exceeds payload")?;
        HistogramValue::Int(Box::new(Histogram {
            counter_reset_hint,
            schema,
            zero_threshold,
            zero_count,
            count,
            sum,
            positive_spans,
            negative_spans,
            positive_buckets,
            negative_buckets,
            custom_values,
        }))
    };
    Ok(h)
}

/// A float's bits with zero bytes trimmed from both ends: one control byte, then the significant
/// bytes big-endian. Control 0 is the value 0.0; otherwise it is `1 + 8 * lead + trail` with
/// `lead` and `trail` the dropped zero bytes. Metric values are mostly zero, small integers or
/// short binary fractions, whose low mantissa bytes are zero, so this averages 4-6 bytes instead
/// of 8 and leaves repetitions for snappy to find (XOR against the previous sample measured
/// worse after snappy; see docs/format/wal.md).
fn put_value(out: &mut Vec<u8>, bits: u64) {
    if bits == 0 {
        out.push(0);
        return;
    }
    let lead = bits.leading_zeros() / 8;
    let trail = bits.trailing_zeros() / 8;
    out.push((1 + 8 * lead + trail) as u8);
    let n = (8 - lead - trail) as usize;
    let be = (bits >> (8 * trail)).to_be_bytes();
    out.extend_from_slice(&be[8 - n..]);
}

/// A length-prefixed UTF-8 string: a label name or value.
fn read_string(r: &mut Decbuf<'_>) -> Result<String, FrameError> {
    std::str::from_utf8(r.uvarint_bytes()?)
        .map(str::to_owned)
        .map_err(|_| FrameError::Payload("label is not UTF-8"))
}

/// A value as [`put_value`] writes it.
fn read_value(r: &mut Decbuf<'_>) -> Result<u64, FrameError> {
    let c = u32::from(r.u8()?);
    if c == 0 {
        return Ok(0);
    }
    if c > 64 {
        return Err(FrameError::Payload("bad value control byte"));
    }
    let (lead, trail) = ((c - 1) / 8, (c - 1) % 8);
    if lead + trail > 7 {
        return Err(FrameError::Payload("bad value control byte"));
    }
    let n = (8 - lead - trail) as usize;
    let mut be = [0u8; 8];
    be[8 - n..].copy_from_slice(r.bytes(n)?);
    Ok(u64::from_be_bytes(be) << (8 * trail))
}

/// Decodes every frame in `buf` (no file header), for tests and tools that hold a whole stream in
/// memory. Stops at the first bad frame and returns its offset and reason.
#[cfg(test)]
pub(crate) fn decode_all(buf: &[u8]) -> (Vec<Decoded>, Option<(usize, FrameError)>) {
    let mut scratch = vec![0xA5; 4096];
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let rest = &buf[pos..];
        let Some(h) = rest.first_chunk::<FRAME_HEADER_LEN>() else {
            return (
                out,
                Some((pos, FrameError::TornHeader { have: rest.len() })),
            );
        };
        let h = match parse_frame_header(h) {
            Ok(h) => h,
            Err(e) => return (out, Some((pos, e))),
        };
        let Some(payload) = rest.get(FRAME_HEADER_LEN..FRAME_HEADER_LEN + h.len) else {
            let available = (rest.len() - FRAME_HEADER_LEN) as u64;
            return (
                out,
                Some((
                    pos,
                    FrameError::PastEnd {
                        len: h.len,
                        available,
                    },
                )),
            );
        };
        // One scratch for every frame, as a reader keeps it, starting with stale bytes that
        // must never show through.
        match decode_frame_with(&h, payload, &mut scratch) {
            Ok(d) => out.push(d),
            Err(e) => return (out, Some((pos, e))),
        }
        pos += FRAME_HEADER_LEN + h.len;
    }
    (out, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::histogram::CUSTOM_BUCKETS_SCHEMA;
    use crate::model::{STALE_NAN, STALE_NAN_BITS};
    use proptest::prelude::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        Labels::new(pairs.iter().copied()).unwrap()
    }

    fn encode(records: &[Record]) -> Vec<u8> {
        let mut enc = Encoder::new();
        let mut out = Vec::new();
        for r in records {
            enc.record(r, &mut out).unwrap();
        }
        out
    }

    /// Decodes and merges consecutive frames of one kind, undoing the encoder's splitting.
    fn decode(buf: &[u8]) -> Vec<Record> {
        let (frames, err) = decode_all(buf);
        assert_eq!(err, None);
        let mut out: Vec<Record> = Vec::new();
        for f in frames {
            let Decoded::Record(r) = f else {
                panic!("unexpected {f:?}")
            };
            match (out.last_mut(), r) {
                (Some(Record::Series(a)), Record::Series(b)) => a.extend(b),
                (Some(Record::Samples(a)), Record::Samples(b)) => a.extend(b),
                (Some(Record::Chunks(a)), Record::Chunks(b)) => a.extend(b),
                (Some(Record::Histograms(a)), Record::Histograms(b)) => a.extend(b),
                (_, r) => out.push(r),
            }
        }
        out
    }

    #[test]
    fn special_values_round_trip_bit_exact() {
        let odd_nan = f64::from_bits(0x7ff8_dead_beef_0001);
        let values = [
            STALE_NAN,
            f64::NAN,
            odd_nan,
            f64::INFINITY,
            f64::NEG_INFINITY,
            -0.0,
            0.0,
            f64::MIN_POSITIVE,
            f64::MAX,
            5e-324,
            1.0 / 3.0,
            -17.25,
        ];
        let samples: Vec<_> = values
            .iter()
            .enumerate()
            .map(|(i, &v)| SampleRecord {
                sref: [7, 3, u64::MAX, 0, 912_345][i % 5],
                t: [i64::MIN, -1, 1_712_000_001_337, i64::MAX, 0][i % 5],
                v,
            })
            .collect();
        let rec = Record::Samples(samples.clone());
        let back = decode(&encode(std::slice::from_ref(&rec)));
        assert_eq!(back, vec![rec]);
        let Record::Samples(got) = &back[0] else {
            unreachable!()
        };
        assert_eq!(got[0].v.to_bits(), STALE_NAN_BITS);
        assert_eq!(got[2].v.to_bits(), odd_nan.to_bits());
        assert_eq!(got[5].v.to_bits(), (-0.0f64).to_bits());
    }

    #[test]
    fn unicode_and_quoted_labels_round_trip() {
        let rec = Record::Series(vec![
            SeriesRecord {
                sref: 41,
                labels: labels(&[
                    ("__name__", "http_requests_total"),
                    ("path", "/a\"b\\c\nd"),
                    ("user", "Zoë 日本 \u{1F600}"),
                ]),
            },
            SeriesRecord {
                sref: 3,
                labels: labels(&[
                    ("__name__", "m"),
                    ("path", "ünï\u{1F600}\"'"),
                    ("z", "\0\t"),
                ]),
            },
        ]);
        assert_eq!(decode(&encode(std::slice::from_ref(&rec))), vec![rec]);
    }

    #[test]
    fn large_records_split_into_bounded_frames() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let samples: Vec<_> = (0..300_000u64)
            .map(|i| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                SampleRecord {
                    sref: state % 50_000,
                    t: 1_700_000_000_000 + (i as i64) * 15_000 + (state % 977) as i64,
                    v: f64::from_bits(state),
                }
            })
            .collect();
        let rec = Record::Samples(samples);
        let buf = encode(std::slice::from_ref(&rec));
        let (frames, err) = decode_all(&buf);
        assert_eq!(err, None);
        assert!(frames.len() > 1, "{} frames", frames.len());
        assert_eq!(decode(&buf), vec![rec]);
    }

    #[test]
    fn a_reused_decompression_buffer_never_shows_an_earlier_frame() {
        let big = Record::Samples(
            (0..5000)
                .map(|i| SampleRecord {
                    sref: i % 7,
                    t: 1_700_000_000_000 + i as i64 * 15_000,
                    v: (i % 3) as f64,
                })
                .collect(),
        );
        let small = Record::Series(vec![SeriesRecord {
            sref: 3,
            labels: labels(&[
                ("__name__", "up"),
                ("job", "jjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjj"),
            ]),
        }]);
        let buf = encode(&[big.clone(), small.clone(), big.clone()]);
        let mut scratch = Vec::new();
        let mut pos = 0;
        let mut got = Vec::new();
        while pos < buf.len() {
            let h = parse_frame_header(buf[pos..].first_chunk().unwrap()).unwrap();
            assert_ne!(h.kind & SNAPPY_FLAG, 0, "every frame here is compressed");
            let payload = &buf[pos + FRAME_HEADER_LEN..pos + FRAME_HEADER_LEN + h.len];
            let fresh = decode_frame(&h, payload).unwrap();
            let reused = decode_frame_with(&h, payload, &mut scratch).unwrap();
            assert_eq!(reused, fresh);
            got.push(reused);
            pos += FRAME_HEADER_LEN + h.len;
        }
        assert_eq!(got, [big.clone(), small, big].map(Decoded::Record));
    }

    #[test]
    fn empty_records_write_no_frame() {
        assert!(encode(&[Record::Samples(vec![]), Record::Series(vec![])]).is_empty());
    }

    #[test]
    fn every_corruption_of_a_frame_is_detected() {
        let rec = Record::Samples(
            (0..40)
                .map(|i| SampleRecord {
                    sref: 1000 + i * 3,
                    t: 1_700_000_000_123 + (i as i64 % 3) * 7,
                    v: (i as f64) * 1.37 - 4.0,
                })
                .collect(),
        );
        let buf = encode(&[rec]);
        for i in 0..buf.len() {
            for bit in [0x01u8, 0x80] {
                let mut bad = buf.clone();
                bad[i] ^= bit;
                let (frames, err) = decode_all(&bad);
                assert!(
                    frames.is_empty(),
                    "byte {i} bit {bit:#x} decoded as {frames:?}"
                );
                assert_eq!(err.map(|e| e.0), Some(0), "byte {i}");
            }
        }
    }

    #[test]
    fn header_checks() {
        let h = file_header(SEGMENT_MAGIC);
        assert_eq!(check_file_header(&h, SEGMENT_MAGIC), Ok(()));
        assert!(matches!(
            check_file_header(&h, CHECKPOINT_MAGIC),
            Err(HeaderError::BadMagic { .. })
        ));
        assert_eq!(
            check_file_header(&h[..5], SEGMENT_MAGIC),
            Err(HeaderError::Short { have: 5 })
        );
        let mut v2 = h;
        v2[4] = 2;
        assert_eq!(
            check_file_header(&v2, SEGMENT_MAGIC),
            Err(HeaderError::Version(2))
        );
        let mut big = [0u8; FRAME_HEADER_LEN];
        big[..4].copy_from_slice(&(MAX_PAYLOAD as u32 + 1).to_le_bytes());
        big[4] = KIND_SAMPLES;
        assert!(matches!(
            parse_frame_header(&big),
            Err(FrameError::BadLength { .. })
        ));
        let zeros = [0u8; FRAME_HEADER_LEN];
        assert_eq!(parse_frame_header(&zeros), Err(FrameError::UnknownType(0)));
    }

    #[test]
    fn malformed_payloads_are_errors_not_panics() {
        let cases: &[(u8, &[u8])] = &[
            (KIND_SAMPLES, &[0x02, 0x02]),          // value missing
            (KIND_SAMPLES, &[0x02, 0x02, 65]),      // control byte out of range
            (KIND_SAMPLES, &[0x02, 0x02, 0x3f, 1]), // lead+trail > 7
            (KIND_SERIES, &[0x02, 0x05, 1, b'a']),  // label count beyond payload
            (
                KIND_SERIES,
                &[0x02, 0x02, 1, b'b', 1, b'x', 1, b'a', 1, b'y'],
            ), // unsorted
            (KIND_SERIES, &[0x02, 0x01, 2, 0xff, 0xfe, 1, b'y']), // not UTF-8
            (KIND_SERIES, &[0xff; 12]),             // varint overflow
            (KIND_CHUNKS, &[0x02, 0x02, 0x02, 0x10, 1]), // data shorter than its length
            (KIND_CHECKPOINT_END, &[0x03, 0x00]),   // trailing bytes
            (KIND_SAMPLES | SNAPPY_FLAG, &[0x05, 0x00]), // bad snappy
        ];
        for (kind, payload) in cases {
            let crc = crc32c::crc32c_append(crc32c::crc32c(&[*kind]), payload);
            let h = FrameHeader {
                len: payload.len(),
                kind: *kind,
                crc,
            };
            assert!(
                decode_frame(&h, payload).is_err(),
                "{kind:#x} {payload:?} decoded"
            );
        }
    }

    #[test]
    fn payload_errors_say_where_in_the_payload() {
        let frame = |kind: u8, payload: &[u8]| {
            let crc = crc32c::crc32c_append(crc32c::crc32c(&[kind]), payload);
            let h = FrameHeader {
                len: payload.len(),
                kind,
                crc,
            };
            decode_frame(&h, payload)
        };
        // One whole sample (ref +1, time +1, value 0.0), then a time delta cut short.
        let e = frame(KIND_SAMPLES, &[0x02, 0x02, 0x00, 0x02, 0x80]).unwrap_err();
        assert_eq!(
            e,
            FrameError::Bytes(encoding::Error::TruncatedVarint { offset: 4 })
        );
        assert_eq!(
            e.to_string(),
            "payload undecodable at byte 4: truncated varint"
        );
        // A ref delta whose tenth byte carries bits past the 64th.
        let mut over = vec![0x02, 0x02, 0x00];
        over.extend([0xff; 9]);
        over.push(0x02);
        assert_eq!(
            frame(KIND_SAMPLES, &over),
            Err(FrameError::Bytes(encoding::Error::VarintOverflow {
                offset: 3
            }))
        );
        // A chunk's data, 16 bytes announced and one there.
        assert_eq!(
            frame(KIND_CHUNKS, &[0x02, 0x02, 0x02, 0x10, 1]),
            Err(FrameError::Bytes(encoding::Error::Truncated {
                offset: 4,
                needed: 16,
                left: 1
            }))
        );
    }

    /// Bytes per sample of one scrape-shaped record: every sample at the same timestamp, refs
    /// ascending, values shaped like node_exporter's (zeros, small counts, byte counters,
    /// fractional seconds, a few stale markers).
    #[test]
    fn samples_record_size_per_sample() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let samples: Vec<_> = (0..500u64)
            .map(|i| {
                let r = next();
                let v = match r % 6 {
                    0 | 1 => 0.0,
                    2 => (r >> 40) as f64,                       // counters
                    3 => ((r >> 20) % 4096) as f64 * 4096.0,     // byte sizes
                    4 => (r >> 11) as f64 / (1u64 << 40) as f64, // fractional seconds
                    _ => {
                        if i % 97 == 0 {
                            STALE_NAN
                        } else {
                            1.0
                        }
                    }
                };
                SampleRecord {
                    sref: 3000 + i,
                    t: 1_712_345_678_901,
                    v,
                }
            })
            .collect();
        let rec = Record::Samples(samples);
        let buf = encode(std::slice::from_ref(&rec));
        let per_sample = buf.len() as f64 / 500.0;
        assert!(per_sample < 5.0, "{per_sample:.2} bytes/sample");
        assert_eq!(decode(&buf), vec![rec]);
    }

    fn arb_labels() -> impl Strategy<Value = Labels> {
        let name = "[a-zA-Z_][a-zA-Z0-9_]{0,12}";
        let value = "(\\PC|\"|\\\\|\n){1,16}";
        (
            "[a-zA-Z_:][a-zA-Z0-9_:]{0,20}",
            prop::collection::btree_map(name, value, 0..6),
        )
            .prop_map(|(metric, rest)| {
                let mut b = crate::model::LabelsBuilder::default();
                b.push("__name__", metric);
                for (n, v) in rest {
                    if n != "__name__" {
                        b.push(n, v);
                    }
                }
                b.build().unwrap()
            })
    }

    fn arb_value() -> impl Strategy<Value = f64> {
        prop_oneof![
            any::<f64>(),
            any::<u64>().prop_map(f64::from_bits),
            Just(STALE_NAN),
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            Just(-0.0),
            (-1000i64..1000).prop_map(|i| i as f64),
        ]
    }

    /// A histogram written out with its floats as bits, so equal texts mean bit-equal values.
    fn hist_bits(h: &HistogramValue) -> String {
        match h {
            HistogramValue::Int(h) => format!(
                "I{} {} {:x} {} {} {:x} {:?} {:?} {:?} {:?} {:?}",
                h.counter_reset_hint.as_u8(),
                h.schema,
                h.zero_threshold.to_bits(),
                h.zero_count,
                h.count,
                h.sum.to_bits(),
                h.positive_spans,
                h.negative_spans,
                h.positive_buckets,
                h.negative_buckets,
                h.custom_values
                    .iter()
                    .map(|x| x.to_bits())
                    .collect::<Vec<_>>()
            ),
            HistogramValue::Float(h) => {
                let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                format!(
                    "F{} {} {:x} {:x} {:x} {:x} {:?} {:?} {:?} {:?} {:?}",
                    h.counter_reset_hint.as_u8(),
                    h.schema,
                    h.zero_threshold.to_bits(),
                    h.zero_count.to_bits(),
                    h.count.to_bits(),
                    h.sum.to_bits(),
                    h.positive_spans,
                    h.negative_spans,
                    bits(&h.positive_buckets),
                    bits(&h.negative_buckets),
                    bits(&h.custom_values)
                )
            }
        }
    }

    fn arb_spans() -> impl Strategy<Value = Vec<Span>> {
        prop::collection::vec(
            (prop_oneof![Just(0), -3i32..3, any::<i32>()], 0u32..5),
            0..4,
        )
        .prop_map(|v| {
            v.into_iter()
                .enumerate()
                .map(|(i, (o, l))| Span::new(if i == 0 { o } else { o.max(0) }, l))
                .collect()
        })
    }

    /// Histograms of both kinds with spans and bucket counts that agree (what append lets
    /// through), every other field arbitrary.
    pub(crate) fn arb_histogram() -> impl Strategy<Value = HistogramValue> {
        (
            any::<bool>(),
            0u8..4,
            prop_oneof![-4i32..=8, Just(CUSTOM_BUCKETS_SCHEMA)],
            arb_value(),
            any::<u64>(),
            any::<u64>(),
            arb_value(),
            arb_spans(),
            arb_spans(),
            // Two sides of at most four spans of at most four buckets.
            prop::collection::vec(any::<i64>(), 32),
            prop::collection::vec(arb_value(), 32),
            prop::collection::vec(arb_value(), 0..3),
        )
            .prop_map(
                |(float, hint, schema, zt, zc, count, sum, pos, neg, ints, floats, custom)| {
                    let np: usize = pos.iter().map(|s| s.length as usize).sum();
                    let nn: usize = neg.iter().map(|s| s.length as usize).sum();
                    let counter_reset_hint = CounterResetHint::from_u8(hint).unwrap();
                    if float {
                        HistogramValue::Float(Box::new(FloatHistogram {
                            counter_reset_hint,
                            schema,
                            zero_threshold: zt,
                            zero_count: f64::from_bits(zc),
                            count: f64::from_bits(count),
                            sum,
                            positive_spans: pos,
                            negative_spans: neg,
                            positive_buckets: floats[..np].to_vec(),
                            negative_buckets: floats[np..np + nn].to_vec(),
                            custom_values: custom,
                        }))
                    } else {
                        HistogramValue::Int(Box::new(Histogram {
                            counter_reset_hint,
                            schema,
                            zero_threshold: zt,
                            zero_count: zc,
                            count,
                            sum,
                            positive_spans: pos,
                            negative_spans: neg,
                            positive_buckets: ints[..np].to_vec(),
                            negative_buckets: ints[np..np + nn].to_vec(),
                            custom_values: custom,
                        }))
                    }
                },
            )
    }

    fn arb_record() -> impl Strategy<Value = Record> {
        prop_oneof![
            prop::collection::vec((any::<u64>(), any::<i64>(), arb_histogram()), 0..30).prop_map(
                |v| {
                    Record::Histograms(
                        v.into_iter()
                            .map(|(sref, t, h)| HistogramRecord { sref, t, h })
                            .collect(),
                    )
                }
            ),
            prop::collection::vec((any::<u64>(), arb_labels()), 0..20).prop_map(|v| {
                Record::Series(
                    v.into_iter()
                        .map(|(sref, labels)| SeriesRecord { sref, labels })
                        .collect(),
                )
            }),
            prop::collection::vec((any::<u64>(), any::<i64>(), arb_value()), 0..200).prop_map(
                |v| {
                    Record::Samples(
                        v.into_iter()
                            .map(|(sref, t, v)| SampleRecord { sref, t, v })
                            .collect(),
                    )
                }
            ),
            prop::collection::vec(
                (
                    any::<u64>(),
                    any::<i64>(),
                    any::<i64>(),
                    prop::collection::vec(any::<u8>(), 0..300)
                ),
                0..10
            )
            .prop_map(|v| {
                Record::Chunks(
                    v.into_iter()
                        .map(|(sref, mint, maxt, data)| ChunkRecord {
                            sref,
                            mint,
                            maxt,
                            data,
                        })
                        .collect(),
                )
            }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn records_round_trip(records in prop::collection::vec(arb_record(), 0..8)) {
            let buf = encode(&records);
            let non_empty: Vec<Record> = records
                .into_iter()
                .filter(|r| match r {
                    Record::Series(v) => !v.is_empty(),
                    Record::Samples(v) => !v.is_empty(),
                    Record::Chunks(v) => !v.is_empty(),
                    Record::Histograms(v) => !v.is_empty(),
                })
                .collect();
            // Adjacent records of one kind merge in `decode`, so compare flattened entries.
            let flat = |rs: &[Record]| -> Vec<String> {
                rs.iter()
                    .flat_map(|r| match r {
                        Record::Series(v) => v.iter().map(|s| format!("S{}{:?}", s.sref, s.labels)).collect::<Vec<_>>(),
                        Record::Samples(v) => v.iter().map(|s| format!("P{} {} {:x}", s.sref, s.t, s.v.to_bits())).collect(),
                        Record::Chunks(v) => v.iter().map(|c| format!("C{} {} {} {:?}", c.sref, c.mint, c.maxt, c.data)).collect(),
                        Record::Histograms(v) => v.iter().map(|h| format!("H{} {} {}", h.sref, h.t, hist_bits(&h.h))).collect(),
                    })
                    .collect()
            };
            prop_assert_eq!(flat(&decode(&buf)), flat(&non_empty));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400), kind in any::<u8>()) {
            let mut h = [0u8; FRAME_HEADER_LEN];
            h[..4].copy_from_slice(&(bytes.len() as u32).to_le_bytes());
            h[4] = kind;
            h[5..].copy_from_slice(&crc32c::crc32c_append(crc32c::crc32c(&[kind]), &bytes).to_le_bytes());
            if let Ok(fh) = parse_frame_header(&h) {
                let _ = decode_frame(&fh, &bytes);
            }
            let _ = decode_all(&bytes);
        }
    }
}
