//! Writes one block: chunks stream to a temp file as series arrive; the index sections and the
//! footer follow in `finish`, which then fsyncs and publishes the file by renaming it.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::format::{
    self, Codec, FORMAT_VERSION, Footer, HEADER_LEN, MAX_INDEX_SECTION, SectionInfo,
};
use super::{
    BlockId, BlockMeta, ChunkData, ChunkMeta, Section, SstError, block_file_name, temp_file_name,
};
use crate::model::Labels;
use crate::storage::fsutil;

/// Builds a block file. Dropping it before `finish` removes the temp file.
pub struct BlockWriter {
    dir: PathBuf,
    tmp_path: PathBuf,
    file: Option<BufWriter<File>>,
    id: BlockId,
    level: u32,
    sources: Vec<u128>,
    source_ids: Vec<BlockId>,
    /// Next file offset to write.
    pos: u64,
    chunks_crc: u32,
    /// String to provisional symbol id (order of first use); sorted ids are assigned in finish.
    symbols: HashMap<Box<str>, u32>,
    /// Provisional (name, value) symbol ids of every series, flattened.
    label_syms: Vec<u32>,
    label_ends: Vec<u32>,
    /// Encoded chunk metas of every series, final already.
    chunk_metas: Vec<u8>,
    chunk_meta_ends: Vec<u32>,
    postings: HashMap<(u32, u32), Vec<u32>>,
    prev_labels: Option<Labels>,
    mint: i64,
    maxt: i64,
    num_samples: u64,
    num_chunks: u64,
    failed: bool,
    published: bool,
}

impl BlockWriter {
    /// Starts a block in `blocks_dir` under a temp name. `level` is 0 for a head flush and
    /// `sources` names the blocks a compaction merged.
    pub fn new(blocks_dir: &Path, level: u32, sources: Vec<BlockId>) -> Result<Self, SstError> {
        let raw_sources = sources
            .iter()
            .map(BlockId::to_u128)
            .collect::<Result<Vec<_>, _>>()?;
        // Normalised (upper case), so the meta matches what a reader decodes.
        let source_ids = raw_sources.iter().map(|&s| BlockId::from_u128(s)).collect();
        let id = BlockId::generate();
        let tmp_path = blocks_dir.join(temp_file_name(&id));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp_path)
            .map_err(|e| SstError::io(&tmp_path, e))?;
        let mut w = BlockWriter {
            dir: blocks_dir.to_path_buf(),
            tmp_path,
            file: Some(BufWriter::with_capacity(256 * 1024, file)),
            id,
            level,
            sources: raw_sources,
            source_ids,
            pos: 0,
            chunks_crc: 0,
            symbols: HashMap::new(),
            label_syms: Vec::new(),
            label_ends: Vec::new(),
            chunk_metas: Vec::new(),
            chunk_meta_ends: Vec::new(),
            postings: HashMap::new(),
            prev_labels: None,
            mint: i64::MAX,
            maxt: i64::MIN,
            num_samples: 0,
            num_chunks: 0,
            failed: false,
            published: false,
        };
        w.write(&format::encode_header())?;
        Ok(w)
    }

    /// The id the block will have.
    pub fn id(&self) -> &BlockId {
        &self.id
    }

    /// Number of series added so far.
    pub fn num_series(&self) -> usize {
        self.label_ends.len()
    }

    /// Adds a series and its chunks. Series must come in strictly increasing `Labels` order;
    /// chunks must be non-empty, time-ordered and non-overlapping. A rejected series leaves
    /// the writer usable; an I/O error does not.
    pub fn add_series(&mut self, labels: &Labels, chunks: &[ChunkData]) -> Result<(), SstError> {
        if self.failed {
            return Err(SstError::WriterFailed {
                path: self.tmp_path.clone(),
            });
        }
        check_series(labels, chunks)?;
        if let Some(prev) = &self.prev_labels
            && labels <= prev
        {
            return Err(SstError::OutOfOrder {
                prev: prev.to_string(),
                next: labels.to_string(),
            });
        }
        // Checked before anything is written, so a refused series leaves no trace.
        let next_series = u32::try_from(self.label_ends.len()).map_err(|_| SstError::TooLarge {
            section: Section::Series,
            len: self.label_ends.len() as u64,
        })?;

        let mut metas = Vec::with_capacity(chunks.len());
        for c in chunks {
            let offset = self.pos;
            self.write(&c.data)?;
            let crc = crc32c::crc32c(&c.data);
            self.write(&crc.to_le_bytes())?;
            self.chunks_crc = crc32c::crc32c_append(self.chunks_crc, &c.data);
            self.chunks_crc = crc32c::crc32c_append(self.chunks_crc, &crc.to_le_bytes());
            metas.push(ChunkMeta {
                mint: c.mint,
                maxt: c.maxt,
                num_samples: c.num_samples,
                offset,
                // check_series bounded the length.
                len: c.data.len() as u32,
            });
            self.num_samples += u64::from(c.num_samples);
        }
        self.num_chunks += chunks.len() as u64;
        self.mint = self.mint.min(chunks[0].mint);
        self.maxt = self.maxt.max(chunks[chunks.len() - 1].maxt);
        format::encode_chunk_metas(&metas, &mut self.chunk_metas);
        let meta_end = self.index_len(self.chunk_metas.len())?;
        self.chunk_meta_ends.push(meta_end);

        for (name, value) in labels.iter() {
            let n = self.intern(name);
            let v = self.intern(value);
            self.label_syms.push(n);
            self.label_syms.push(v);
            self.postings.entry((n, v)).or_default().push(next_series);
        }
        let label_end = self.index_len(self.label_syms.len())?;
        self.label_ends.push(label_end);
        self.prev_labels = Some(labels.clone());
        Ok(())
    }

    /// Writes the index sections and footer, fsyncs, renames the file to
    /// `<mint>-<maxt>-<ulid>.sst` and fsyncs the directory. An empty block is an error. On any
    /// error nothing is published (the temp file is removed when the writer drops).
    pub fn finish(mut self) -> Result<BlockMeta, SstError> {
        if self.failed {
            return Err(SstError::WriterFailed {
                path: self.tmp_path.clone(),
            });
        }
        let num_series = self.label_ends.len();
        if num_series == 0 {
            return Err(SstError::EmptyBlock);
        }
        let chunks = SectionInfo {
            offset: HEADER_LEN,
            len: self.pos - HEADER_LEN,
            raw_len: self.pos - HEADER_LEN,
            crc: self.chunks_crc,
            codec: Codec::None,
        };

        // Final symbol ids follow string order, so comparing ids compares strings.
        let mut sorted: Vec<(&str, u32)> = self.symbols.iter().map(|(s, &p)| (&**s, p)).collect();
        sorted.sort_unstable();
        let mut remap = vec![0u32; sorted.len()];
        for (final_id, &(_, provisional)) in sorted.iter().enumerate() {
            remap[provisional as usize] = final_id as u32;
        }
        let mut raw = Vec::new();
        format::encode_symbols(sorted.iter().map(|&(s, _)| s), &mut raw);
        drop(sorted);
        let symbols = self.write_section(Section::Symbols, raw, true)?;

        let mut raw = Vec::new();
        let (mut labels_buf, mut label_start, mut meta_start) = (Vec::new(), 0usize, 0usize);
        for (&label_end, &meta_end) in self.label_ends.iter().zip(&self.chunk_meta_ends) {
            let pairs = &self.label_syms[label_start..label_end as usize];
            labels_buf.clear();
            format::encode_labels(
                pairs
                    .chunks_exact(2)
                    .map(|p| (remap[p[0] as usize], remap[p[1] as usize])),
                &mut labels_buf,
            );
            let metas = &self.chunk_metas[meta_start..meta_end as usize];
            format::put_series_entry(&labels_buf, metas, &mut raw);
            label_start = label_end as usize;
            meta_start = meta_end as usize;
        }
        let series = self.write_section(Section::Series, raw, true)?;

        let mut entries: Vec<((u32, u32), Vec<u32>)> = std::mem::take(&mut self.postings)
            .into_iter()
            .map(|((n, v), ids)| ((remap[n as usize], remap[v as usize]), ids))
            .collect();
        entries.sort_unstable_by_key(|e| e.0);
        let mut raw = Vec::new();
        format::encode_postings(&entries, &mut raw);
        drop(entries);
        let postings = self.write_section(Section::Postings, raw, true)?;

        let mut raw = Vec::new();
        format::encode_sources(&self.sources, &mut raw);
        let sources = self.write_section(Section::Sources, raw, false)?;

        let footer = Footer {
            version: u32::from(FORMAT_VERSION),
            id: self.id.to_u128()?,
            mint: self.mint,
            maxt: self.maxt,
            num_series: num_series as u64,
            num_samples: self.num_samples,
            num_chunks: self.num_chunks,
            level: self.level,
            num_sources: u32::try_from(self.sources.len()).map_err(|_| SstError::TooLarge {
                section: Section::Sources,
                len: self.sources.len() as u64,
            })?,
            sections: [chunks, symbols, series, postings, sources],
        };
        self.write(&footer.encode())?;
        self.publish()?;

        Ok(BlockMeta {
            id: self.id.clone(),
            mint: self.mint,
            maxt: self.maxt,
            num_series: num_series as u64,
            num_samples: self.num_samples,
            num_chunks: self.num_chunks,
            level: self.level,
            sources: std::mem::take(&mut self.source_ids),
            size_bytes: self.pos,
            path: self
                .dir
                .join(block_file_name(self.mint, self.maxt, &self.id)),
        })
    }

    fn publish(&mut self) -> Result<(), SstError> {
        let tmp = self.tmp_path.clone();
        let file = self
            .file
            .take()
            .ok_or_else(|| SstError::WriterFailed { path: tmp.clone() })?
            .into_inner()
            .map_err(|e| SstError::io(&tmp, e.into_error()))?;
        let path = self
            .dir
            .join(block_file_name(self.mint, self.maxt, &self.id));
        fsutil::rename_into_place(file, &tmp, &path)?;
        if let Err(e) = fsutil::sync_dir(&self.dir) {
            // Without the directory fsync the rename may not survive a crash; report the
            // block as not written rather than leave the caller unsure. The name is new, so
            // removing it takes nothing else away.
            let _ = std::fs::remove_file(&path);
            return Err(e.into());
        }
        self.published = true;
        Ok(())
    }

    fn write_section(
        &mut self,
        section: Section,
        raw: Vec<u8>,
        compress: bool,
    ) -> Result<SectionInfo, SstError> {
        let raw_len = raw.len() as u64;
        if raw_len > MAX_INDEX_SECTION {
            return Err(SstError::TooLarge {
                section,
                len: raw_len,
            });
        }
        let (stored, codec) = if compress {
            format::compress_section(raw)
        } else {
            (raw, Codec::None)
        };
        let info = SectionInfo {
            offset: self.pos,
            len: stored.len() as u64,
            raw_len,
            crc: crc32c::crc32c(&stored),
            codec,
        };
        self.write(&stored)?;
        Ok(info)
    }

    fn write(&mut self, b: &[u8]) -> Result<(), SstError> {
        let res = match self.file.as_mut() {
            Some(f) => f.write_all(b),
            None => Err(std::io::Error::other("file already closed")),
        };
        match res {
            Ok(()) => {
                self.pos += b.len() as u64;
                Ok(())
            }
            Err(e) => {
                self.failed = true;
                Err(SstError::io(&self.tmp_path, e))
            }
        }
    }

    fn intern(&mut self, s: &str) -> u32 {
        if let Some(&id) = self.symbols.get(s) {
            return id;
        }
        // Two strings per label bound the count far below u32::MAX before memory runs out.
        let id = self.symbols.len() as u32;
        self.symbols.insert(s.into(), id);
        id
    }

    /// Converts an in-memory index length to u32; past that, the chunks already written have
    /// no series entry, so the writer cannot continue.
    fn index_len(&mut self, len: usize) -> Result<u32, SstError> {
        u32::try_from(len).map_err(|_| {
            self.failed = true;
            SstError::TooLarge {
                section: Section::Series,
                len: len as u64,
            }
        })
    }
}

impl Drop for BlockWriter {
    fn drop(&mut self) {
        if !self.published {
            drop(self.file.take());
            if let Err(e) = std::fs::remove_file(&self.tmp_path)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(path = %self.tmp_path.display(), error = %e, "cannot remove unfinished block");
            }
        }
    }
}

/// Checks the writer's contract for one series before anything is written.
fn check_series(labels: &Labels, chunks: &[ChunkData]) -> Result<(), SstError> {
    let invalid = |reason: String| SstError::InvalidSeries {
        labels: labels.to_string(),
        reason,
    };
    if labels.is_empty() {
        return Err(invalid("empty label set".into()));
    }
    if let Some((name, _)) = labels.iter().find(|(n, v)| n.is_empty() || v.is_empty()) {
        return Err(invalid(format!(
            "label {name:?} has an empty name or value"
        )));
    }
    if chunks.is_empty() {
        return Err(invalid("no chunks".into()));
    }
    let mut prev_maxt: Option<i64> = None;
    for (i, c) in chunks.iter().enumerate() {
        if c.num_samples == 0 || c.data.is_empty() {
            return Err(invalid(format!("chunk {i} is empty")));
        }
        if u32::try_from(c.data.len()).is_err() {
            return Err(invalid(format!("chunk {i} is {} bytes", c.data.len())));
        }
        // Timestamps strictly increase, so n samples span at least n - 1 ms.
        if i128::from(c.maxt) - i128::from(c.mint) < i128::from(c.num_samples) - 1 {
            return Err(invalid(format!(
                "chunk {i} has {} samples in [{}, {}]",
                c.num_samples, c.mint, c.maxt
            )));
        }
        if let Some(p) = prev_maxt
            && c.mint <= p
        {
            return Err(invalid(format!(
                "chunk {i} starts at {} but the previous one ends at {p}",
                c.mint
            )));
        }
        prev_maxt = Some(c.maxt);
    }
    Ok(())
}
