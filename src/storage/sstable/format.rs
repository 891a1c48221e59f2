//! Pure encoding of the block file format drawn in docs/format/block.md: bytes in, structures
//! out. No I/O; every decoder checks bounds and returns a [`FormatError`] instead of panicking.

use super::{ChunkMeta, Section};
use crate::encoding::{self, Decbuf, put_uvarint, put_uvarint_bytes, put_varint};

/// First bytes of every block file.
pub(crate) const HEADER_MAGIC: [u8; 4] = *b"TMBK";
/// Last bytes of every block file.
pub(crate) const FOOTER_MAGIC: [u8; 4] = *b"TMFT";
/// The only format version this code reads and writes.
pub(crate) const FORMAT_VERSION: u8 = 1;
/// Magic, version byte, three zero bytes.
pub(crate) const HEADER_LEN: u64 = 8;
/// Fixed size of the footer.
pub(crate) const FOOTER_LEN: u64 = 240;
/// Every chunk's bytes are followed by their CRC32C.
pub(crate) const CHUNK_CRC_LEN: u64 = 4;
/// Snappy's densest operation turns 3 bytes into 64, so a section claiming to expand more than
/// this is corrupt; the bound keeps allocation proportional to the file size.
pub(crate) const MAX_SNAPPY_RATIO: u64 = 22;
/// Index sections are addressed with u32 offsets in memory.
pub(crate) const MAX_INDEX_SECTION: u64 = u32::MAX as u64;
/// Sections after the header, in file order, as the footer lists them.
pub(crate) const SECTION_ORDER: [Section; 5] = [
    Section::Chunks,
    Section::Symbols,
    Section::Series,
    Section::Postings,
    Section::Sources,
];
const FOOTER_BODY_LEN: usize = 232;
const SECTION_ENTRY_LEN: usize = 32;

/// Bytes that break the format, located inside the (decompressed) section they came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FormatError {
    pub section: Section,
    /// Offset within the decoded section (or within the header / footer).
    pub pos: u64,
    pub reason: String,
}

impl FormatError {
    /// A failed read of `section`'s bytes, located where the read started.
    fn read(section: Section, e: encoding::Error) -> FormatError {
        FormatError {
            section,
            pos: e.offset() as u64,
            reason: e.to_string(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// A bounds-checked cursor whose errors name the section.

/// Reads forward through one section's bytes.
pub(crate) struct Cursor<'a> {
    d: Decbuf<'a>,
    section: Section,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(buf: &'a [u8], section: Section) -> Self {
        Cursor {
            d: Decbuf::new(buf),
            section,
        }
    }

    /// A cursor over `buf` starting at `pos` (clamped to the end).
    pub(crate) fn at(buf: &'a [u8], pos: usize, section: Section) -> Self {
        Cursor {
            d: Decbuf::at(buf, pos),
            section,
        }
    }

    pub(crate) fn pos(&self) -> usize {
        self.d.pos()
    }

    pub(crate) fn remaining(&self) -> usize {
        self.d.remaining()
    }

    pub(crate) fn err(&self, reason: impl Into<String>) -> FormatError {
        FormatError {
            section: self.section,
            pos: self.pos() as u64,
            reason: reason.into(),
        }
    }

    #[inline]
    pub(crate) fn uvarint(&mut self) -> Result<u64, FormatError> {
        self.d
            .uvarint()
            .map_err(|e| FormatError::read(self.section, e))
    }

    #[inline]
    pub(crate) fn svarint(&mut self) -> Result<i64, FormatError> {
        self.d
            .varint()
            .map_err(|e| FormatError::read(self.section, e))
    }

    /// A varint that must fit in 32 bits.
    pub(crate) fn u32v(&mut self, what: &str) -> Result<u32, FormatError> {
        let start = self.pos();
        let v = self.uvarint()?;
        u32::try_from(v).map_err(|_| FormatError {
            section: self.section,
            pos: start as u64,
            reason: format!("{what} {v} exceeds 32 bits"),
        })
    }

    /// A varint length that must fit in the remaining bytes.
    pub(crate) fn len_prefix(&mut self, what: &str) -> Result<usize, FormatError> {
        let v = self.uvarint()?;
        match usize::try_from(v) {
            Ok(n) if n <= self.remaining() => Ok(n),
            _ => Err(self.err(format!(
                "{what} {v} exceeds the {} bytes left",
                self.remaining()
            ))),
        }
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Result<&'a [u8], FormatError> {
        self.d
            .bytes(n)
            .map_err(|e| FormatError::read(self.section, e))
    }
}

// ---------------------------------------------------------------------------------------------
// Header and footer.

/// The 8-byte file header.
pub(crate) fn encode_header() -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[..4].copy_from_slice(&HEADER_MAGIC);
    h[4] = FORMAT_VERSION;
    h
}

/// Checks the header; returns the format version it names.
pub(crate) fn decode_header(b: &[u8]) -> Result<u8, FormatError> {
    let err = |pos: u64, reason: String| FormatError {
        section: Section::Header,
        pos,
        reason,
    };
    if b.len() != HEADER_LEN as usize {
        return Err(err(0, format!("header is {} bytes, not 8", b.len())));
    }
    if b[..4] != HEADER_MAGIC {
        return Err(err(0, format!("bad magic {:02x?}", &b[..4])));
    }
    if b[4] != FORMAT_VERSION {
        return Err(err(4, format!("unsupported format version {}", b[4])));
    }
    if b[5..] != [0, 0, 0] {
        return Err(err(5, "reserved header bytes are not zero".into()));
    }
    Ok(b[4])
}

/// How a section's stored bytes relate to its decoded bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Codec {
    None = 0,
    Snappy = 1,
}

/// One section's entry in the footer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SectionInfo {
    /// File offset of the stored bytes.
    pub offset: u64,
    /// Stored length.
    pub len: u64,
    /// Length after decompression (equal to `len` for `Codec::None`).
    pub raw_len: u64,
    /// CRC32C of the stored bytes.
    pub crc: u32,
    pub codec: Codec,
}

impl SectionInfo {
    pub(crate) fn end(&self) -> u64 {
        self.offset.saturating_add(self.len)
    }
}

/// The fixed-size trailer of a block file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Footer {
    pub version: u32,
    pub id: u128,
    pub mint: i64,
    pub maxt: i64,
    pub num_series: u64,
    pub num_samples: u64,
    pub num_chunks: u64,
    pub level: u32,
    pub num_sources: u32,
    /// In [`SECTION_ORDER`].
    pub sections: [SectionInfo; 5],
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

impl Footer {
    pub(crate) fn section(&self, s: Section) -> SectionInfo {
        let i = SECTION_ORDER.iter().position(|&x| x == s).unwrap_or(0);
        self.sections[i]
    }

    pub(crate) fn encode(&self) -> [u8; FOOTER_LEN as usize] {
        let mut b = [0u8; FOOTER_LEN as usize];
        b[0..4].copy_from_slice(&self.version.to_le_bytes());
        // b[4..8]: flags, zero in version 1.
        b[8..24].copy_from_slice(&self.id.to_be_bytes());
        b[24..32].copy_from_slice(&self.mint.to_le_bytes());
        b[32..40].copy_from_slice(&self.maxt.to_le_bytes());
        b[40..48].copy_from_slice(&self.num_series.to_le_bytes());
        b[48..56].copy_from_slice(&self.num_samples.to_le_bytes());
        b[56..64].copy_from_slice(&self.num_chunks.to_le_bytes());
        b[64..68].copy_from_slice(&self.level.to_le_bytes());
        b[68..72].copy_from_slice(&self.num_sources.to_le_bytes());
        for (i, s) in self.sections.iter().enumerate() {
            let at = 72 + i * SECTION_ENTRY_LEN;
            b[at..at + 8].copy_from_slice(&s.offset.to_le_bytes());
            b[at + 8..at + 16].copy_from_slice(&s.len.to_le_bytes());
            b[at + 16..at + 24].copy_from_slice(&s.raw_len.to_le_bytes());
            b[at + 24..at + 28].copy_from_slice(&s.crc.to_le_bytes());
            b[at + 28] = s.codec as u8;
        }
        let crc = crc32c::crc32c(&b[..FOOTER_BODY_LEN]);
        b[FOOTER_BODY_LEN..FOOTER_BODY_LEN + 4].copy_from_slice(&crc.to_le_bytes());
        b[FOOTER_BODY_LEN + 4..].copy_from_slice(&FOOTER_MAGIC);
        b
    }

    /// Decodes and checks the footer's own integrity (magic, CRC, reserved bytes, codecs).
    pub(crate) fn decode(b: &[u8]) -> Result<Footer, FormatError> {
        let err = |pos: usize, reason: String| FormatError {
            section: Section::Footer,
            pos: pos as u64,
            reason,
        };
        if b.len() != FOOTER_LEN as usize {
            return Err(err(
                0,
                format!("footer is {} bytes, not {FOOTER_LEN}", b.len()),
            ));
        }
        let magic_at = FOOTER_BODY_LEN + 4;
        if b[magic_at..] != FOOTER_MAGIC {
            return Err(err(
                magic_at,
                format!("bad footer magic {:02x?}", &b[magic_at..]),
            ));
        }
        let stored = le_u32(b, FOOTER_BODY_LEN);
        let computed = crc32c::crc32c(&b[..FOOTER_BODY_LEN]);
        if stored != computed {
            return Err(err(
                FOOTER_BODY_LEN,
                format!("footer CRC32C mismatch: stored {stored:08x}, computed {computed:08x}"),
            ));
        }
        let version = le_u32(b, 0);
        if version != u32::from(FORMAT_VERSION) {
            return Err(err(0, format!("unsupported format version {version}")));
        }
        if le_u32(b, 4) != 0 {
            return Err(err(4, "unknown footer flags".into()));
        }
        let mut id = [0u8; 16];
        id.copy_from_slice(&b[8..24]);
        let mut sections = [SectionInfo {
            offset: 0,
            len: 0,
            raw_len: 0,
            crc: 0,
            codec: Codec::None,
        }; 5];
        for (i, s) in sections.iter_mut().enumerate() {
            let at = 72 + i * SECTION_ENTRY_LEN;
            let codec = match b[at + 28] {
                0 => Codec::None,
                1 => Codec::Snappy,
                c => return Err(err(at + 28, format!("unknown codec {c}"))),
            };
            if b[at + 29..at + 32] != [0, 0, 0] {
                return Err(err(at + 29, "reserved section bytes are not zero".into()));
            }
            *s = SectionInfo {
                offset: le_u64(b, at),
                len: le_u64(b, at + 8),
                raw_len: le_u64(b, at + 16),
                crc: le_u32(b, at + 24),
                codec,
            };
        }
        Ok(Footer {
            version,
            id: u128::from_be_bytes(id),
            mint: le_u64(b, 24) as i64,
            maxt: le_u64(b, 32) as i64,
            num_series: le_u64(b, 40),
            num_samples: le_u64(b, 48),
            num_chunks: le_u64(b, 56),
            level: le_u32(b, 64),
            num_sources: le_u32(b, 68),
            sections,
        })
    }

    /// Checks that the sections tile the file between header and footer in order, and that
    /// counts and lengths are plausible, before any length is used to allocate.
    pub(crate) fn check_layout(&self, file_len: u64) -> Result<(), FormatError> {
        let err = |pos: usize, reason: String| FormatError {
            section: Section::Footer,
            pos: pos as u64,
            reason,
        };
        let mut expected = HEADER_LEN;
        for (i, (s, name)) in self.sections.iter().zip(SECTION_ORDER).enumerate() {
            let at = 72 + i * SECTION_ENTRY_LEN;
            if s.offset != expected {
                return Err(err(
                    at,
                    format!("{name} section at {}, expected {expected}", s.offset),
                ));
            }
            expected = s
                .offset
                .checked_add(s.len)
                .ok_or_else(|| err(at + 8, format!("{name} section length {} overflows", s.len)))?;
            match s.codec {
                Codec::None if s.raw_len != s.len => {
                    return Err(err(
                        at + 16,
                        format!("{name} section is stored raw but lengths differ"),
                    ));
                }
                Codec::Snappy if matches!(name, Section::Chunks | Section::Sources) => {
                    return Err(err(at + 28, format!("{name} section cannot be compressed")));
                }
                Codec::Snappy if s.raw_len > s.len.saturating_mul(MAX_SNAPPY_RATIO) => {
                    return Err(err(
                        at + 16,
                        format!(
                            "{name} section claims {} bytes from {} compressed",
                            s.raw_len, s.len
                        ),
                    ));
                }
                _ => {}
            }
            if name != Section::Chunks && s.raw_len > MAX_INDEX_SECTION {
                return Err(err(at + 16, format!("{name} section too large")));
            }
        }
        let body_end = file_len.saturating_sub(FOOTER_LEN);
        if expected != body_end {
            return Err(err(
                72 + 4 * SECTION_ENTRY_LEN,
                format!("sections end at {expected}, footer starts at {body_end}"),
            ));
        }
        if self.mint > self.maxt {
            return Err(err(24, format!("mint {} > maxt {}", self.mint, self.maxt)));
        }
        if self.num_series == 0 || self.num_series > u64::from(u32::MAX) {
            return Err(err(40, format!("bad series count {}", self.num_series)));
        }
        if self.num_chunks < self.num_series || self.num_samples < self.num_chunks {
            return Err(err(
                48,
                format!(
                    "inconsistent counts: {} series, {} chunks, {} samples",
                    self.num_series, self.num_chunks, self.num_samples
                ),
            ));
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Section compression.

/// Chooses how to store an index section: snappy when it shrinks the bytes.
pub(crate) fn compress_section(raw: Vec<u8>) -> (Vec<u8>, Codec) {
    if raw.is_empty() {
        return (raw, Codec::None);
    }
    match snap::raw::Encoder::new().compress_vec(&raw) {
        Ok(c) if c.len() < raw.len() => (c, Codec::Snappy),
        _ => (raw, Codec::None),
    }
}

/// Decompresses a section whose stored bytes have passed their CRC check.
pub(crate) fn decompress_section(
    section: Section,
    info: &SectionInfo,
    stored: Vec<u8>,
) -> Result<Vec<u8>, FormatError> {
    let err = |reason: String| FormatError {
        section,
        pos: 0,
        reason,
    };
    match info.codec {
        Codec::None => Ok(stored),
        Codec::Snappy => {
            let claimed = snap::raw::decompress_len(&stored)
                .map_err(|e| err(format!("bad snappy header: {e}")))?;
            if claimed as u64 != info.raw_len {
                return Err(err(format!(
                    "snappy says {claimed} bytes, footer says {}",
                    info.raw_len
                )));
            }
            // raw_len was bounded by check_layout, so this allocation is proportional to the file.
            let mut out = vec![0u8; claimed];
            let n = snap::raw::Decoder::new()
                .decompress(&stored, &mut out)
                .map_err(|e| err(format!("snappy: {e}")))?;
            if n != claimed {
                return Err(err(format!("snappy produced {n} of {claimed} bytes")));
            }
            Ok(out)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Symbols.

/// Encodes sorted unique strings: count, then length-prefixed bytes.
pub(crate) fn encode_symbols<'s>(
    sorted: impl ExactSizeIterator<Item = &'s str>,
    out: &mut Vec<u8>,
) {
    put_uvarint(out, sorted.len() as u64);
    for s in sorted {
        put_uvarint_bytes(out, s.as_bytes());
    }
}

/// The symbol table held by an open block: one string buffer and the end offset of each symbol.
#[derive(Debug)]
pub(crate) struct Symbols {
    buf: String,
    ends: Vec<u32>,
}

impl Symbols {
    pub(crate) fn decode(raw: &[u8]) -> Result<Symbols, FormatError> {
        let mut c = Cursor::new(raw, Section::Symbols);
        let count = c.uvarint()?;
        // Each symbol takes at least its one-byte length.
        if count > c.remaining() as u64 {
            return Err(c.err(format!("{count} symbols cannot fit")));
        }
        let mut ends = Vec::with_capacity(count as usize);
        let mut buf: Vec<u8> = Vec::with_capacity(raw.len());
        let mut prev_start = 0usize;
        for _ in 0..count {
            let len = c.len_prefix("symbol length")?;
            let at = c.pos();
            let s = c.bytes(len)?;
            if !ends.is_empty() && s <= &buf[prev_start..] {
                return Err(FormatError {
                    section: Section::Symbols,
                    pos: at as u64,
                    reason: "symbols not strictly sorted".into(),
                });
            }
            prev_start = buf.len();
            buf.extend_from_slice(s);
            // raw is at most MAX_INDEX_SECTION bytes, so every end fits in u32.
            ends.push(u32::try_from(buf.len()).map_err(|_| c.err("symbols too large"))?);
        }
        if c.remaining() != 0 {
            return Err(c.err("trailing bytes after the last symbol"));
        }
        let buf = String::from_utf8(buf).map_err(|e| FormatError {
            section: Section::Symbols,
            pos: e.utf8_error().valid_up_to() as u64,
            reason: "symbol is not UTF-8".into(),
        })?;
        // Valid as a whole is not enough: each symbol must also start and end on a character.
        if let Some(&end) = ends.iter().find(|&&e| !buf.is_char_boundary(e as usize)) {
            return Err(FormatError {
                section: Section::Symbols,
                pos: u64::from(end),
                reason: "symbol splits a UTF-8 character".into(),
            });
        }
        Ok(Symbols { buf, ends })
    }

    pub(crate) fn len(&self) -> usize {
        self.ends.len()
    }

    pub(crate) fn get(&self, id: u32) -> Option<&str> {
        let i = id as usize;
        let end = *self.ends.get(i)? as usize;
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        self.buf.get(start..end)
    }

    /// The id of `s`, by binary search over the sorted table.
    pub(crate) fn find(&self, s: &str) -> Option<u32> {
        let (mut lo, mut hi) = (0usize, self.ends.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.get(mid as u32)?.cmp(s) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Some(mid as u32),
            }
        }
        None
    }

    pub(crate) fn memory_bytes(&self) -> usize {
        self.buf.capacity() + self.ends.capacity() * 4
    }
}

// ---------------------------------------------------------------------------------------------
// Series.

/// Encodes a series' label pairs as symbol ids.
pub(crate) fn encode_labels(pairs: impl ExactSizeIterator<Item = (u32, u32)>, out: &mut Vec<u8>) {
    put_uvarint(out, pairs.len() as u64);
    for (n, v) in pairs {
        put_uvarint(out, u64::from(n));
        put_uvarint(out, u64::from(v));
    }
}

/// Encodes a series' chunk metas: the first absolutely, the rest as gaps from the previous one.
/// Chunks of one series are stored back to back, so only the first offset is written.
pub(crate) fn encode_chunk_metas(chunks: &[ChunkMeta], out: &mut Vec<u8>) {
    put_uvarint(out, chunks.len() as u64);
    let mut prev: Option<&ChunkMeta> = None;
    for c in chunks {
        match prev {
            None => put_varint(out, c.mint),
            // The writer checked mint > prev.maxt, so the gap is non-negative.
            Some(p) => put_uvarint(out, (c.mint as u64).wrapping_sub(p.maxt as u64) - 1),
        }
        put_uvarint(out, (c.maxt as u64).wrapping_sub(c.mint as u64));
        put_uvarint(out, u64::from(c.num_samples));
        put_uvarint(out, u64::from(c.len));
        if prev.is_none() {
            put_uvarint(out, c.offset);
        }
        prev = Some(c);
    }
}

/// Appends one series entry: a length prefix, then the encoded labels and chunk metas.
pub(crate) fn put_series_entry(labels: &[u8], chunks: &[u8], out: &mut Vec<u8>) {
    put_uvarint(out, (labels.len() + chunks.len()) as u64);
    out.extend_from_slice(labels);
    out.extend_from_slice(chunks);
}

/// What a decoded series entry must agree with.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SeriesBounds {
    pub num_symbols: u32,
    /// The id of the empty string, if the table has one; no label value may use it.
    pub empty_symbol: Option<u32>,
    pub chunks_start: u64,
    pub chunks_end: u64,
    pub mint: i64,
    pub maxt: i64,
}

/// Skips one series entry, returning where its payload starts.
pub(crate) fn skip_series(c: &mut Cursor<'_>) -> Result<usize, FormatError> {
    let len = c.len_prefix("series entry length")?;
    if len == 0 {
        return Err(c.err("empty series entry"));
    }
    let start = c.pos();
    c.bytes(len)?;
    Ok(start)
}

/// Decodes the series entry starting at `at` (its length prefix) into label symbol pairs and
/// chunk metas, checking every value against `b`.
pub(crate) fn decode_series(
    raw: &[u8],
    at: usize,
    b: &SeriesBounds,
    labels: &mut Vec<(u32, u32)>,
    chunks: &mut Vec<ChunkMeta>,
) -> Result<(), FormatError> {
    labels.clear();
    chunks.clear();
    let mut outer = Cursor::at(raw, at, Section::Series);
    let start = skip_series(&mut outer)?;
    let mut c = Cursor::at(&raw[..outer.pos()], start, Section::Series);

    let nlabels = c.uvarint()?;
    if nlabels == 0 {
        return Err(c.err("series without labels"));
    }
    for _ in 0..nlabels {
        let n = c.u32v("label name symbol")?;
        let v = c.u32v("label value symbol")?;
        if n >= b.num_symbols || v >= b.num_symbols {
            return Err(c.err(format!(
                "symbol id {} out of range ({} symbols)",
                n.max(v),
                b.num_symbols
            )));
        }
        if labels.last().is_some_and(|&(pn, _)| pn >= n) {
            return Err(c.err("label names not strictly sorted"));
        }
        if b.empty_symbol == Some(v) || b.empty_symbol == Some(n) {
            return Err(c.err("empty label name or value"));
        }
        labels.push((n, v));
    }

    let nchunks = c.uvarint()?;
    if nchunks == 0 {
        return Err(c.err("series without chunks"));
    }
    let mut next_offset = 0u64;
    let mut prev_maxt = 0i128;
    for i in 0..nchunks {
        let mint = if i == 0 {
            i128::from(c.svarint()?)
        } else {
            prev_maxt + 1 + i128::from(c.uvarint()?)
        };
        let maxt = mint + i128::from(c.uvarint()?);
        let num_samples = c.u32v("sample count")?;
        let len = c.u32v("chunk length")?;
        let offset = if i == 0 { c.uvarint()? } else { next_offset };
        if mint < i128::from(b.mint) || maxt > i128::from(b.maxt) {
            return Err(c.err(format!(
                "chunk [{mint}, {maxt}] outside the block's [{}, {}]",
                b.mint, b.maxt
            )));
        }
        if num_samples == 0 || len == 0 {
            return Err(c.err("empty chunk"));
        }
        // Timestamps strictly increase, so n samples span at least n - 1 ms.
        if maxt - mint < i128::from(num_samples) - 1 {
            return Err(c.err(format!(
                "{num_samples} samples cannot fit in [{mint}, {maxt}]"
            )));
        }
        let end = offset
            .checked_add(u64::from(len) + CHUNK_CRC_LEN)
            .filter(|&e| offset >= b.chunks_start && e <= b.chunks_end)
            .ok_or_else(|| {
                c.err(format!(
                    "chunk at {offset} len {len} outside the chunk section [{}, {})",
                    b.chunks_start, b.chunks_end
                ))
            })?;
        // Bounded by the block range checked above, so these fit in i64.
        chunks.push(ChunkMeta {
            mint: mint as i64,
            maxt: maxt as i64,
            num_samples,
            offset,
            len,
        });
        next_offset = end;
        prev_maxt = maxt;
    }
    if c.remaining() != 0 {
        return Err(c.err("trailing bytes in series entry"));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Postings.

/// Encodes postings sorted by (name symbol, value symbol), each with strictly increasing ids.
pub(crate) fn encode_postings(entries: &[((u32, u32), Vec<u32>)], out: &mut Vec<u8>) {
    let mut names = entries.iter().map(|((n, _), _)| *n).collect::<Vec<_>>();
    names.dedup();
    put_uvarint(out, names.len() as u64);
    let mut scratch = Vec::new();
    let mut i = 0;
    while i < entries.len() {
        let name = entries[i].0.0;
        let group = entries[i..]
            .iter()
            .take_while(|((n, _), _)| *n == name)
            .count();
        put_uvarint(out, u64::from(name));
        put_uvarint(out, group as u64);
        for ((_, value), ids) in &entries[i..i + group] {
            put_uvarint(out, u64::from(*value));
            put_uvarint(out, ids.len() as u64);
            scratch.clear();
            let mut prev = None;
            for &id in ids {
                put_uvarint(&mut scratch, u64::from(id - prev.unwrap_or(0)));
                prev = Some(id);
            }
            put_uvarint(out, scratch.len() as u64);
            out.extend_from_slice(&scratch);
        }
        i += group;
    }
}

#[derive(Debug, Clone, Copy)]
struct NameEntry {
    sym: u32,
    first_value: u32,
}

/// One label value's postings list inside the decoded postings bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ValueEntry {
    pub sym: u32,
    ids_at: u32,
    num_ids: u32,
}

/// The postings of an open block: the decoded section bytes plus two small offset tables.
#[derive(Debug)]
pub(crate) struct PostingsIndex {
    bytes: Vec<u8>,
    names: Vec<NameEntry>,
    values: Vec<ValueEntry>,
}

impl PostingsIndex {
    /// Decodes and fully validates the postings, so that later lookups cannot fail.
    pub(crate) fn decode(
        bytes: Vec<u8>,
        num_symbols: u32,
        num_series: u32,
    ) -> Result<PostingsIndex, FormatError> {
        let mut names = Vec::new();
        let mut values = Vec::new();
        let mut c = Cursor::new(&bytes, Section::Postings);
        let num_names = c.uvarint()?;
        let sym_check = |c: &Cursor<'_>, s: u32| {
            if s >= num_symbols {
                Err(c.err(format!(
                    "symbol id {s} out of range ({num_symbols} symbols)"
                )))
            } else {
                Ok(())
            }
        };
        for _ in 0..num_names {
            let name = c.u32v("name symbol")?;
            sym_check(&c, name)?;
            if names.last().is_some_and(|p: &NameEntry| p.sym >= name) {
                return Err(c.err("label names not strictly sorted"));
            }
            let num_values = c.uvarint()?;
            if num_values == 0 {
                return Err(c.err("label name without values"));
            }
            names.push(NameEntry {
                sym: name,
                first_value: u32::try_from(values.len()).map_err(|_| c.err("too many values"))?,
            });
            let mut prev_value: Option<u32> = None;
            for _ in 0..num_values {
                let value = c.u32v("value symbol")?;
                sym_check(&c, value)?;
                if prev_value.is_some_and(|p| p >= value) {
                    return Err(c.err("label values not strictly sorted"));
                }
                prev_value = Some(value);
                let num_ids = c.u32v("postings length")?;
                if num_ids == 0 {
                    return Err(c.err("empty postings list"));
                }
                let byte_len = c.len_prefix("postings byte length")?;
                let ids_at = c.pos();
                let list = c.bytes(byte_len)?;
                check_ids(list, ids_at, num_ids, num_series)?;
                values.push(ValueEntry {
                    sym: value,
                    // bytes is at most MAX_INDEX_SECTION long.
                    ids_at: u32::try_from(ids_at).map_err(|_| c.err("postings too large"))?,
                    num_ids,
                });
            }
        }
        if c.remaining() != 0 {
            return Err(c.err("trailing bytes after the last label name"));
        }
        Ok(PostingsIndex {
            bytes,
            names,
            values,
        })
    }

    /// Label name symbols, in sorted order.
    pub(crate) fn names(&self) -> impl Iterator<Item = u32> + '_ {
        self.names.iter().map(|n| n.sym)
    }

    /// The values of `name_sym`, sorted by symbol.
    pub(crate) fn values(&self, name_sym: u32) -> &[ValueEntry] {
        let Ok(i) = self.names.binary_search_by_key(&name_sym, |n| n.sym) else {
            return &[];
        };
        let start = self.names[i].first_value as usize;
        let end = self
            .names
            .get(i + 1)
            .map_or(self.values.len(), |n| n.first_value as usize);
        self.values.get(start..end).unwrap_or(&[])
    }

    /// Appends the series ids of one value entry to `out`.
    pub(crate) fn ids(&self, e: &ValueEntry, out: &mut Vec<u32>) {
        let mut c = Decbuf::at(&self.bytes, e.ids_at as usize);
        let mut acc = 0u64;
        out.reserve(e.num_ids as usize);
        for _ in 0..e.num_ids {
            // Validated at decode time; stopping on error keeps this total anyway.
            let Ok(d) = c.uvarint() else { break };
            acc += d;
            out.push(acc as u32);
        }
    }

    pub(crate) fn memory_bytes(&self) -> usize {
        self.bytes.capacity()
            + self.names.capacity() * std::mem::size_of::<NameEntry>()
            + self.values.capacity() * std::mem::size_of::<ValueEntry>()
    }

    pub(crate) fn section_bytes(&self) -> usize {
        self.bytes.len()
    }
}

/// Checks a postings list: exactly `num_ids` strictly increasing ids below `num_series`,
/// filling the list exactly.
fn check_ids(list: &[u8], at: usize, num_ids: u32, num_series: u32) -> Result<(), FormatError> {
    let mut c = Cursor::new(list, Section::Postings);
    let rebase = |mut e: FormatError| {
        e.pos += at as u64;
        e
    };
    let mut acc = 0u64;
    for i in 0..num_ids {
        let d = c.uvarint().map_err(rebase)?;
        if i > 0 && d == 0 {
            return Err(rebase(c.err("postings not strictly increasing")));
        }
        acc = acc.saturating_add(d);
        if acc >= u64::from(num_series) {
            return Err(rebase(c.err(format!(
                "series id {acc} out of range ({num_series} series)"
            ))));
        }
    }
    if c.remaining() != 0 {
        return Err(rebase(c.err("trailing bytes in postings list")));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Sources.

/// Encodes source block ids: count, then 16 big-endian bytes each.
pub(crate) fn encode_sources(ids: &[u128], out: &mut Vec<u8>) {
    put_uvarint(out, ids.len() as u64);
    for id in ids {
        out.extend_from_slice(&id.to_be_bytes());
    }
}

pub(crate) fn decode_sources(raw: &[u8], expected: u32) -> Result<Vec<u128>, FormatError> {
    let mut c = Cursor::new(raw, Section::Sources);
    let count = c.uvarint()?;
    if count != u64::from(expected) {
        return Err(c.err(format!("{count} sources, footer says {expected}")));
    }
    if count > (c.remaining() / 16) as u64 {
        return Err(c.err(format!("{count} sources cannot fit")));
    }
    let mut out = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let mut a = [0u8; 16];
        a.copy_from_slice(c.bytes(16)?);
        out.push(u128::from_be_bytes(a));
    }
    if c.remaining() != 0 {
        return Err(c.err("trailing bytes after the last source"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn varint_edges() {
        for v in [0u64, 1, 127, 128, 16_383, 16_384, u32::MAX as u64, u64::MAX] {
            let mut b = Vec::new();
            put_uvarint(&mut b, v);
            let mut c = Cursor::new(&b, Section::Series);
            assert_eq!(c.uvarint().unwrap(), v);
            assert_eq!(c.remaining(), 0);
        }
        for v in [0i64, -1, 1, i64::MIN, i64::MAX, -1_700_000_000_123] {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            assert_eq!(Cursor::new(&b, Section::Series).svarint().unwrap(), v);
        }
        // Eleven continuation bytes, and a tenth byte carrying more than one bit.
        assert!(Cursor::new(&[0xff; 11], Section::Series).uvarint().is_err());
        let mut over = vec![0xff; 9];
        over.push(0x02);
        assert!(Cursor::new(&over, Section::Series).uvarint().is_err());
        assert!(
            Cursor::new(&[0x80, 0x80], Section::Series)
                .uvarint()
                .is_err()
        );
    }

    #[test]
    fn footer_round_trip_and_crc() {
        let f = Footer {
            version: 1,
            id: 0x0123_4567_89ab_cdef_0011_2233_4455_6677,
            mint: -5_000,
            maxt: 1_700_000_123_457,
            num_series: 3,
            num_samples: 1_234,
            num_chunks: 7,
            level: 2,
            num_sources: 1,
            sections: [SectionInfo {
                offset: 8,
                len: 99,
                raw_len: 99,
                crc: 0xdead_beef,
                codec: Codec::None,
            }; 5],
        };
        let b = f.encode();
        assert_eq!(Footer::decode(&b).unwrap(), f);
        for i in 0..b.len() {
            let mut m = b;
            m[i] ^= 0x10;
            assert!(Footer::decode(&m).is_err(), "flip at {i} accepted");
        }
    }

    #[test]
    fn symbols_reject_unsorted_duplicates_and_split_utf8() {
        let mut ok = Vec::new();
        encode_symbols(["", "a", "b\"c", "é"].into_iter(), &mut ok);
        let s = Symbols::decode(&ok).unwrap();
        assert_eq!(s.len(), 4);
        assert_eq!(s.get(3), Some("é"));
        assert_eq!(s.find("b\"c"), Some(2));
        assert_eq!(s.find("bb"), None);
        assert_eq!(s.get(4), None);

        let mut dup = Vec::new();
        encode_symbols(["a", "a"].into_iter(), &mut dup);
        assert!(Symbols::decode(&dup).is_err());
        // "é" split across two symbols: the buffer is valid UTF-8 but neither symbol is.
        let split: &[u8] = &[2, 1, 0xc3, 1, 0xa9];
        assert!(Symbols::decode(split).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 64,
            rng_seed: proptest::test_runner::RngSeed::Fixed(0xf0_4a7),
            ..ProptestConfig::default()
        })]

        #[test]
        fn decoders_never_panic_on_garbage(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Symbols::decode(&bytes);
            let _ = PostingsIndex::decode(bytes.clone(), 50, 50);
            let _ = decode_sources(&bytes, 2);
            let _ = Footer::decode(&bytes);
            let bounds = SeriesBounds {
                num_symbols: 50,
                empty_symbol: Some(0),
                chunks_start: 8,
                chunks_end: 5_000,
                mint: i64::MIN,
                maxt: i64::MAX,
            };
            let (mut l, mut c) = (Vec::new(), Vec::new());
            let _ = decode_series(&bytes, 0, &bounds, &mut l, &mut c);
            let _ = decode_series(&bytes, bytes.len() / 2, &bounds, &mut l, &mut c);
        }

        #[test]
        fn chunk_metas_round_trip(
            start in any::<i32>(),
            spans in proptest::collection::vec((0u32..100_000, 1u32..500, 0u32..50_000, 1u32..9_000), 1..20),
        ) {
            let mut t = i64::from(start) * 1_000;
            let mut offset = 8u64;
            let mut metas = Vec::new();
            for (gap, n, extra, len) in spans {
                let mint = t + i64::from(gap);
                let maxt = mint + i64::from(n) - 1 + i64::from(extra);
                metas.push(ChunkMeta { mint, maxt, num_samples: n, offset, len });
                offset += u64::from(len) + CHUNK_CRC_LEN;
                t = maxt + 1;
            }
            let mut labels = Vec::new();
            encode_labels([(1u32, 2u32), (3, 4)].into_iter(), &mut labels);
            let mut chunks = Vec::new();
            encode_chunk_metas(&metas, &mut chunks);
            let mut raw = Vec::new();
            put_series_entry(&labels, &chunks, &mut raw);
            let bounds = SeriesBounds {
                num_symbols: 5,
                empty_symbol: None,
                chunks_start: 8,
                chunks_end: offset,
                mint: metas[0].mint,
                maxt: metas[metas.len() - 1].maxt,
            };
            let (mut l, mut c) = (Vec::new(), Vec::new());
            decode_series(&raw, 0, &bounds, &mut l, &mut c).unwrap();
            prop_assert_eq!(l, vec![(1, 2), (3, 4)]);
            prop_assert_eq!(c, metas);
        }
    }
}
