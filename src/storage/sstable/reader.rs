//! Opens a published block: checks header, footer and every index section it loads, keeps the
//! index compact in memory and reads chunks with positional reads.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::format::{
    self, CHUNK_CRC_LEN, Codec, Cursor, FOOTER_LEN, Footer, FormatError, HEADER_LEN, PostingsIndex,
    SectionInfo, SeriesBounds, Symbols,
};
use super::{BlockId, BlockMeta, ChunkMeta, Section, SstError};
use crate::model::Labels;

/// Read size for sequential scans in `verify`.
const SCAN_BUF: usize = 1 << 20;

/// An open block. Immutable and `Send + Sync`: every read is a positional read on a shared file.
pub struct Block {
    file: File,
    meta: BlockMeta,
    footer: Footer,
    chunks: SectionInfo,
    symbols: Symbols,
    /// Decoded series section and the offset of each series entry in it.
    series: Vec<u8>,
    series_at: Vec<u32>,
    bounds: SeriesBounds,
    postings: PostingsIndex,
}

impl Block {
    /// Writes an exact copy of the block file to `dest` through the open handle, so it works
    /// even after a compaction has unlinked the file; the copy is fsynced.
    pub fn copy_to(&self, dest: &Path) -> std::io::Result<u64> {
        use std::io::Write;
        use std::os::unix::fs::FileExt;
        let len = self.file.metadata()?.len();
        let mut out = std::fs::File::create(dest)?;
        let mut buf = vec![0u8; 1 << 20];
        let mut at = 0u64;
        while at < len {
            let n = buf.len().min((len - at) as usize);
            self.file.read_exact_at(&mut buf[..n], at)?;
            out.write_all(&buf[..n])?;
            at += n as u64;
        }
        out.sync_all()?;
        Ok(len)
    }

    /// Opens a block, verifying magic, footer CRC and layout, and the CRC of every index section
    /// (symbols, series, postings, sources). Chunk CRCs are checked by `read_chunk` and `verify`.
    pub fn open(path: &Path) -> Result<Block, SstError> {
        let file = File::open(path).map_err(|e| SstError::io(path, e))?;
        let file_len = file.metadata().map_err(|e| SstError::io(path, e))?.len();
        let corrupt = |section, offset, reason: String| SstError::Corrupt {
            path: path.to_path_buf(),
            section,
            offset,
            reason,
        };
        if file_len < HEADER_LEN {
            return Err(corrupt(
                Section::Header,
                0,
                format!("file is {file_len} bytes, shorter than the header"),
            ));
        }
        let header = read_at(&file, path, 0, HEADER_LEN as usize)?;
        format::decode_header(&header).map_err(|e| located(path, e, 0))?;
        if file_len < HEADER_LEN + FOOTER_LEN {
            return Err(corrupt(
                Section::Footer,
                file_len,
                format!("file is {file_len} bytes, too short for a footer"),
            ));
        }
        let footer_at = file_len - FOOTER_LEN;
        let footer_bytes = read_at(&file, path, footer_at, FOOTER_LEN as usize)?;
        let footer = Footer::decode(&footer_bytes).map_err(|e| located(path, e, footer_at))?;
        footer
            .check_layout(file_len)
            .map_err(|e| located(path, e, footer_at))?;

        let symbols = load_section(&file, path, &footer, Section::Symbols)?;
        let symbols = Symbols::decode(&symbols).map_err(|e| section_error(path, &footer, e))?;
        let num_symbols = u32::try_from(symbols.len()).map_err(|_| {
            corrupt(
                Section::Symbols,
                footer.section(Section::Symbols).offset,
                "too many symbols".into(),
            )
        })?;
        // num_series <= u32::MAX was checked by check_layout.
        let num_series = footer.num_series as u32;

        let series = load_section(&file, path, &footer, Section::Series)?;
        let series_at =
            index_series(&series, num_series).map_err(|e| section_error(path, &footer, e))?;

        let postings = load_section(&file, path, &footer, Section::Postings)?;
        let postings = PostingsIndex::decode(postings, num_symbols, num_series)
            .map_err(|e| section_error(path, &footer, e))?;

        let sources = load_section(&file, path, &footer, Section::Sources)?;
        let sources = format::decode_sources(&sources, footer.num_sources)
            .map_err(|e| section_error(path, &footer, e))?;

        let chunks = footer.section(Section::Chunks);
        let bounds = SeriesBounds {
            num_symbols,
            empty_symbol: (symbols.get(0) == Some("")).then_some(0),
            chunks_start: chunks.offset,
            chunks_end: chunks.end(),
            mint: footer.mint,
            maxt: footer.maxt,
        };
        let meta = BlockMeta {
            id: BlockId::from_u128(footer.id),
            mint: footer.mint,
            maxt: footer.maxt,
            num_series: footer.num_series,
            num_samples: footer.num_samples,
            num_chunks: footer.num_chunks,
            level: footer.level,
            sources: sources.into_iter().map(BlockId::from_u128).collect(),
            size_bytes: file_len,
            path: path.to_path_buf(),
        };
        Ok(Block {
            file,
            meta,
            footer,
            chunks,
            symbols,
            series,
            series_at,
            bounds,
            postings,
        })
    }

    /// What the footer says about this block.
    pub fn meta(&self) -> &BlockMeta {
        &self.meta
    }

    /// Number of series; ids run from 0 to this, in `Labels` order.
    pub fn num_series(&self) -> u32 {
        self.series_at.len() as u32
    }

    /// Every label name used in the block, sorted.
    pub fn label_names(&self) -> Vec<&str> {
        self.postings
            .names()
            .filter_map(|s| self.symbols.get(s))
            .collect()
    }

    /// Every value of label `name`, sorted.
    pub fn label_values(&self, name: &str) -> Vec<&str> {
        let Some(n) = self.symbols.find(name) else {
            return Vec::new();
        };
        self.postings
            .values(n)
            .iter()
            .filter_map(|v| self.symbols.get(v.sym))
            .collect()
    }

    /// Sorted ids of the series with label `name` = `value` (empty when none).
    pub fn postings(&self, name: &str, value: &str) -> Vec<u32> {
        let mut out = Vec::new();
        let (Some(n), Some(v)) = (self.symbols.find(name), self.symbols.find(value)) else {
            return out;
        };
        let values = self.postings.values(n);
        if let Ok(i) = values.binary_search_by_key(&v, |e| e.sym) {
            self.postings.ids(&values[i], &mut out);
        }
        out
    }

    /// The labels and chunk metas of series `id`.
    pub fn series(&self, id: u32) -> Result<(Labels, Vec<ChunkMeta>), SstError> {
        let mut syms = Vec::new();
        let mut chunks = Vec::new();
        self.decode_series(id, &mut syms, &mut chunks)?;
        Ok((self.labels_of(&syms), chunks))
    }

    /// Reads a chunk's bytes after checking its CRC32C.
    pub fn read_chunk(&self, c: &ChunkMeta) -> Result<Vec<u8>, SstError> {
        let mut buf = Vec::new();
        self.read_chunk_into(c, &mut buf)?;
        Ok(buf)
    }

    /// Like `read_chunk`, reusing `buf` (cleared first).
    pub fn read_chunk_into(&self, c: &ChunkMeta, buf: &mut Vec<u8>) -> Result<(), SstError> {
        let total = u64::from(c.len) + CHUNK_CRC_LEN;
        let inside = c.offset >= self.chunks.offset
            && c.offset
                .checked_add(total)
                .is_some_and(|end| end <= self.chunks.end());
        if !inside || c.len == 0 {
            return Err(SstError::InvalidChunkRef {
                path: self.meta.path.clone(),
                offset: c.offset,
                len: c.len,
            });
        }
        buf.clear();
        // Bounded by the chunk section, which lies inside the file.
        buf.resize(total as usize, 0);
        self.file
            .read_exact_at(buf, c.offset)
            .map_err(|e| SstError::io(&self.meta.path, e))?;
        let data_len = c.len as usize;
        check_chunk_crc(
            &self.meta.path,
            c.offset,
            &buf[..data_len],
            &buf[data_len..],
        )?;
        buf.truncate(data_len);
        Ok(())
    }

    /// Full check: re-reads the footer and every section from disk and checks their CRCs,
    /// every chunk's CRC, the series order, that chunks tile the chunk section, that the
    /// footer's counts and time range match the series, and that postings match the labels.
    pub fn verify(&self) -> Result<(), SstError> {
        let path = &self.meta.path;
        let footer_at = self.meta.size_bytes - FOOTER_LEN;
        let on_disk = read_at(&self.file, path, footer_at, FOOTER_LEN as usize)?;
        if on_disk[..] != self.footer.encode()[..] {
            return Err(SstError::Corrupt {
                path: path.clone(),
                section: Section::Footer,
                offset: footer_at,
                reason: "footer changed on disk since the block was opened".into(),
            });
        }
        for s in [
            Section::Symbols,
            Section::Series,
            Section::Postings,
            Section::Sources,
        ] {
            self.scan_crc(s)?;
        }

        let mut scan = ChunkScan::new(self);
        let mut labels_all: Vec<Vec<(u32, u32)>> = Vec::with_capacity(self.series_at.len());
        let (mut syms, mut metas) = (Vec::new(), Vec::new());
        let (mut mint, mut maxt) = (i64::MAX, i64::MIN);
        let (mut num_chunks, mut num_samples) = (0u64, 0u64);
        for id in 0..self.num_series() {
            self.decode_series(id, &mut syms, &mut metas)?;
            if labels_all.last().is_some_and(|prev| prev[..] >= syms[..]) {
                return Err(
                    self.series_corrupt(id, "series not in strictly increasing label order")
                );
            }
            for m in &metas {
                scan.next_chunk(m)?;
                mint = mint.min(m.mint);
                maxt = maxt.max(m.maxt);
                num_samples += u64::from(m.num_samples);
            }
            num_chunks += metas.len() as u64;
            labels_all.push(std::mem::take(&mut syms));
        }
        scan.finish()?;
        let f = &self.footer;
        if (mint, maxt, num_chunks, num_samples) != (f.mint, f.maxt, f.num_chunks, f.num_samples) {
            return Err(SstError::Corrupt {
                path: path.clone(),
                section: Section::Footer,
                offset: footer_at,
                reason: format!(
                    "footer says [{}, {}] with {} chunks and {} samples; series say [{mint}, {maxt}] with {num_chunks} and {num_samples}",
                    f.mint, f.maxt, f.num_chunks, f.num_samples
                ),
            });
        }
        self.verify_postings(&labels_all)
    }

    /// Bytes of RAM the open block holds: decoded sections plus the offset tables.
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.symbols.memory_bytes()
            + self.series.capacity()
            + self.series_at.capacity() * 4
            + self.postings.memory_bytes()
            + self.meta.sources.capacity() * std::mem::size_of::<BlockId>()
    }

    /// Bytes of the decoded index sections alone (what `memory_bytes` adds tables to).
    pub fn index_section_bytes(&self) -> usize {
        self.series.len()
            + self.postings.section_bytes()
            + self.footer.section(Section::Symbols).raw_len as usize
    }

    fn decode_series(
        &self,
        id: u32,
        syms: &mut Vec<(u32, u32)>,
        chunks: &mut Vec<ChunkMeta>,
    ) -> Result<(), SstError> {
        let Some(&at) = self.series_at.get(id as usize) else {
            return Err(SstError::UnknownSeries {
                path: self.meta.path.clone(),
                id,
                num_series: self.num_series(),
            });
        };
        format::decode_series(&self.series, at as usize, &self.bounds, syms, chunks)
            .map_err(|e| section_error(&self.meta.path, &self.footer, e))
    }

    fn labels_of(&self, syms: &[(u32, u32)]) -> Labels {
        // decode_series checked the ids and that names strictly increase; symbols are sorted,
        // so the strings are sorted too.
        let pairs = syms
            .iter()
            .map(|&(n, v)| {
                (
                    self.symbols.get(n).unwrap_or_default().to_string(),
                    self.symbols.get(v).unwrap_or_default().to_string(),
                )
            })
            .collect();
        Labels::from_sorted_unchecked(pairs)
    }

    fn series_corrupt(&self, id: u32, reason: &str) -> SstError {
        SstError::Corrupt {
            path: self.meta.path.clone(),
            section: Section::Series,
            offset: self.footer.section(Section::Series).offset,
            reason: format!("series {id}: {reason}"),
        }
    }

    /// Streams a section from disk through CRC32C.
    fn scan_crc(&self, section: Section) -> Result<(), SstError> {
        let info = self.footer.section(section);
        let mut crc = 0u32;
        let mut buf = vec![0u8; SCAN_BUF.min(info.len as usize)];
        let mut at = info.offset;
        while at < info.end() {
            let n = (info.end() - at).min(buf.len() as u64) as usize;
            self.file
                .read_exact_at(&mut buf[..n], at)
                .map_err(|e| SstError::io(&self.meta.path, e))?;
            crc = crc32c::crc32c_append(crc, &buf[..n]);
            at += n as u64;
        }
        check_section_crc(&self.meta.path, section, &info, crc)
    }

    /// Postings must list exactly the (name, value, series) triples the series carry.
    fn verify_postings(&self, labels_all: &[Vec<(u32, u32)>]) -> Result<(), SstError> {
        let corrupt = |reason: String| SstError::Corrupt {
            path: self.meta.path.clone(),
            section: Section::Postings,
            offset: self.footer.section(Section::Postings).offset,
            reason,
        };
        let mut found = 0u64;
        let mut ids = Vec::new();
        for name in self.postings.names() {
            for v in self.postings.values(name) {
                ids.clear();
                self.postings.ids(v, &mut ids);
                for &id in &ids {
                    let has = labels_all
                        .get(id as usize)
                        .is_some_and(|l| l.binary_search(&(name, v.sym)).is_ok());
                    if !has {
                        return Err(corrupt(format!(
                            "series {id} listed under a label pair it does not have"
                        )));
                    }
                }
                found += ids.len() as u64;
            }
        }
        let expected: u64 = labels_all.iter().map(|l| l.len() as u64).sum();
        if found != expected {
            return Err(corrupt(format!(
                "{found} postings entries for {expected} series labels"
            )));
        }
        Ok(())
    }
}

impl std::fmt::Debug for Block {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The decoded sections can be megabytes; the meta identifies the block.
        f.debug_struct("Block")
            .field("meta", &self.meta)
            .finish_non_exhaustive()
    }
}

/// Walks the chunk section in order during `verify`, reading through a window so that small
/// chunks do not cost one system call each.
struct ChunkScan<'b> {
    block: &'b Block,
    window: Vec<u8>,
    window_at: u64,
    next: u64,
    crc: u32,
}

impl<'b> ChunkScan<'b> {
    fn new(block: &'b Block) -> Self {
        ChunkScan {
            block,
            window: Vec::new(),
            window_at: block.chunks.offset,
            next: block.chunks.offset,
            crc: 0,
        }
    }

    fn next_chunk(&mut self, m: &ChunkMeta) -> Result<(), SstError> {
        let path = &self.block.meta.path;
        if m.offset != self.next {
            return Err(SstError::Corrupt {
                path: path.clone(),
                section: Section::Series,
                offset: self.block.footer.section(Section::Series).offset,
                reason: format!(
                    "chunk at {} where the previous chunk ended at {}",
                    m.offset, self.next
                ),
            });
        }
        // decode_series checked that the chunk lies inside the chunk section.
        let total = u64::from(m.len) + CHUNK_CRC_LEN;
        let window_end = self.window_at + self.window.len() as u64;
        if m.offset + total > window_end {
            let n = (self.block.chunks.end() - m.offset).min((SCAN_BUF as u64).max(total));
            self.window.resize(n as usize, 0);
            self.block
                .file
                .read_exact_at(&mut self.window, m.offset)
                .map_err(|e| SstError::io(path, e))?;
            self.window_at = m.offset;
        }
        let start = (m.offset - self.window_at) as usize;
        let bytes = &self.window[start..start + total as usize];
        let data_len = m.len as usize;
        check_chunk_crc(path, m.offset, &bytes[..data_len], &bytes[data_len..])?;
        self.crc = crc32c::crc32c_append(self.crc, bytes);
        self.next += total;
        Ok(())
    }

    fn finish(self) -> Result<(), SstError> {
        let info = &self.block.chunks;
        if self.next != info.end() {
            return Err(SstError::Corrupt {
                path: self.block.meta.path.clone(),
                section: Section::Chunks,
                offset: self.next,
                reason: format!("no chunk covers bytes {}..{}", self.next, info.end()),
            });
        }
        check_section_crc(&self.block.meta.path, Section::Chunks, info, self.crc)
    }
}

fn check_chunk_crc(path: &Path, offset: u64, data: &[u8], crc: &[u8]) -> Result<(), SstError> {
    let mut stored = [0u8; 4];
    stored.copy_from_slice(crc);
    let stored = u32::from_le_bytes(stored);
    let computed = crc32c::crc32c(data);
    if stored != computed {
        return Err(SstError::Corrupt {
            path: path.to_path_buf(),
            section: Section::Chunks,
            offset,
            reason: format!("chunk CRC32C mismatch: stored {stored:08x}, computed {computed:08x}"),
        });
    }
    Ok(())
}

fn check_section_crc(
    path: &Path,
    section: Section,
    info: &SectionInfo,
    computed: u32,
) -> Result<(), SstError> {
    if computed != info.crc {
        return Err(SstError::Corrupt {
            path: path.to_path_buf(),
            section,
            offset: info.offset,
            reason: format!(
                "section CRC32C mismatch: footer says {:08x}, computed {computed:08x}",
                info.crc
            ),
        });
    }
    Ok(())
}

/// Reads one index section, checks its CRC, then decompresses it.
fn load_section(
    file: &File,
    path: &Path,
    footer: &Footer,
    section: Section,
) -> Result<Vec<u8>, SstError> {
    let info = footer.section(section);
    // check_layout placed the section inside the file, so its length is bounded by the file.
    let stored = read_at(file, path, info.offset, info.len as usize)?;
    check_section_crc(path, section, &info, crc32c::crc32c(&stored))?;
    format::decompress_section(section, &info, stored).map_err(|e| section_error(path, footer, e))
}

/// Finds where each series entry starts, hopping over length prefixes.
fn index_series(raw: &[u8], num_series: u32) -> Result<Vec<u32>, FormatError> {
    let mut c = Cursor::new(raw, Section::Series);
    // An entry takes at least two bytes, so a larger count cannot be honest.
    if u64::from(num_series) > raw.len() as u64 / 2 {
        return Err(c.err(format!(
            "{num_series} series cannot fit in {} bytes",
            raw.len()
        )));
    }
    let mut at = Vec::with_capacity(num_series as usize);
    for _ in 0..num_series {
        // Sections are at most MAX_INDEX_SECTION bytes, so offsets fit in u32.
        at.push(c.pos() as u32);
        format::skip_series(&mut c)?;
    }
    if c.remaining() != 0 {
        return Err(c.err("bytes after the last series"));
    }
    Ok(at)
}

fn read_at(file: &File, path: &Path, offset: u64, len: usize) -> Result<Vec<u8>, SstError> {
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, offset)
        .map_err(|e| SstError::io(path, e))?;
    Ok(buf)
}

/// A format error in the header or footer, at its exact file offset.
fn located(path: &Path, e: FormatError, base: u64) -> SstError {
    SstError::Corrupt {
        path: path.to_path_buf(),
        section: e.section,
        offset: base + e.pos,
        reason: e.reason,
    }
}

/// A format error inside a section: exact file offset for raw sections; for compressed ones the
/// section's offset, with the position in the decompressed bytes in the reason.
fn section_error(path: &Path, footer: &Footer, e: FormatError) -> SstError {
    let info = footer.section(e.section);
    let (offset, reason) = match info.codec {
        Codec::None => (info.offset + e.pos, e.reason),
        Codec::Snappy => (
            info.offset,
            format!(
                "{} (at byte {} of the decompressed section)",
                e.reason, e.pos
            ),
        ),
    };
    SstError::Corrupt {
        path: path.to_path_buf(),
        section: e.section,
        offset,
        reason,
    }
}
