//! SSTable blocks: immutable files holding the chunks, labels and postings of a time range.
//!
//! `sstable` owns the block file format (docs/format/block.md): `format` encodes and decodes
//! bytes without I/O, `writer` builds a block under a temp name and publishes it atomically,
//! `reader` opens a published block and serves labels, postings and chunks. Chunk bytes are
//! opaque here; the chunk codec lives in `storage::chunk`.
//!
//! It must never modify a published block, never hand out bytes whose checksum it has not
//! verified, never panic or allocate beyond the file size on any byte pattern, and never
//! depend on the head, the WAL or anything above `storage`.

mod format;
mod reader;
mod ulid;
mod writer;

#[cfg(test)]
mod tests;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

pub use reader::Block;
pub use ulid::BlockId;
pub use writer::BlockWriter;

/// Extension of a published block file.
pub const BLOCK_EXTENSION: &str = "sst";
/// Suffix of a block still being written; such files are never blocks.
pub const TEMP_SUFFIX: &str = ".sst.tmp";

/// One chunk handed to the writer: opaque encoded samples and their time range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkData {
    /// Timestamp of the first sample (ms).
    pub mint: i64,
    /// Timestamp of the last sample (ms, inclusive).
    pub maxt: i64,
    /// Number of samples encoded in `data`.
    pub num_samples: u32,
    /// The encoded chunk, as produced by `storage::chunk`.
    pub data: Vec<u8>,
}

/// Where a chunk lives inside a block, and what it covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkMeta {
    /// Timestamp of the first sample (ms).
    pub mint: i64,
    /// Timestamp of the last sample (ms, inclusive).
    pub maxt: i64,
    /// Number of samples in the chunk.
    pub num_samples: u32,
    /// File offset of the chunk bytes (its CRC32C follows them).
    pub offset: u64,
    /// Length of the chunk bytes, CRC excluded.
    pub len: u32,
}

/// What a block holds, read from its footer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockMeta {
    /// The block's ULID.
    pub id: BlockId,
    /// Smallest sample timestamp (ms).
    pub mint: i64,
    /// Largest sample timestamp (ms, inclusive).
    pub maxt: i64,
    /// Number of series.
    pub num_series: u64,
    /// Number of samples over all chunks.
    pub num_samples: u64,
    /// Number of chunks.
    pub num_chunks: u64,
    /// Compaction level: 0 for a head flush, +1 per compaction.
    pub level: u32,
    /// Blocks this one was compacted from (empty for a head flush).
    pub sources: Vec<BlockId>,
    /// File size in bytes.
    pub size_bytes: u64,
    /// Path of the block file.
    pub path: PathBuf,
}

/// The parts of a block file, named in corruption errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Section {
    /// Magic and version at the start of the file.
    Header,
    /// The chunk bytes, each followed by its CRC32C.
    Chunks,
    /// Sorted unique strings.
    Symbols,
    /// Per-series labels and chunk metas.
    Series,
    /// Label pair to series ids.
    Postings,
    /// Ids of the blocks this one was compacted from.
    Sources,
    /// The fixed-size trailer locating everything else.
    Footer,
}

impl Section {
    /// Lower-case name used in messages.
    pub fn name(self) -> &'static str {
        match self {
            Section::Header => "header",
            Section::Chunks => "chunks",
            Section::Symbols => "symbols",
            Section::Series => "series",
            Section::Postings => "postings",
            Section::Sources => "sources",
            Section::Footer => "footer",
        }
    }
}

impl fmt::Display for Section {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Errors of writing or reading blocks.
#[derive(Debug, thiserror::Error)]
pub enum SstError {
    /// An operating-system call failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The file's bytes are not a valid block; it must be excluded, never read as data.
    #[error("corrupt block {path}: {section} section at file offset {offset}: {reason}")]
    Corrupt {
        path: PathBuf,
        section: Section,
        offset: u64,
        reason: String,
    },
    /// `add_series` was called with labels not strictly after the previous series.
    #[error("series out of order: {next} does not sort after {prev}")]
    OutOfOrder { prev: String, next: String },
    /// A series or its chunks break the writer's contract.
    #[error("invalid series {labels}: {reason}")]
    InvalidSeries { labels: String, reason: String },
    /// `finish` was called before any series was added.
    #[error("refusing to write an empty block")]
    EmptyBlock,
    /// An index section would not fit the format's 32-bit offsets.
    #[error("{section} section of {len} bytes exceeds the format limit")]
    TooLarge { section: Section, len: u64 },
    /// A string is not a ULID.
    #[error("invalid block id {0:?}")]
    InvalidBlockId(String),
    /// A series id past the end of the block.
    #[error("series id {id} out of range: {path} has {num_series} series")]
    UnknownSeries {
        path: PathBuf,
        id: u32,
        num_series: u32,
    },
    /// A chunk meta that does not point inside this block's chunk section.
    #[error("chunk at offset {offset} len {len} is outside the chunk section of {path}")]
    InvalidChunkRef {
        path: PathBuf,
        offset: u64,
        len: u32,
    },
    /// An earlier write failed, leaving the writer's file in an unknown state.
    #[error("block writer for {path} is unusable after an earlier error")]
    WriterFailed { path: PathBuf },
}

impl SstError {
    /// The corrupt section, when this is a corruption error.
    pub fn corrupt_section(&self) -> Option<Section> {
        match self {
            SstError::Corrupt { section, .. } => Some(*section),
            _ => None,
        }
    }

    fn io(path: &Path, source: io::Error) -> Self {
        SstError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

impl From<crate::storage::fsutil::IoError> for SstError {
    fn from(e: crate::storage::fsutil::IoError) -> Self {
        SstError::Io {
            path: e.path,
            source: e.source,
        }
    }
}

/// Published block files in `blocks_dir`, sorted by file name. Temp files of unfinished writers
/// are never listed.
pub fn list_blocks(blocks_dir: &Path) -> Result<Vec<PathBuf>, SstError> {
    let mut out = Vec::new();
    for name in dir_file_names(blocks_dir)? {
        if parse_block_file_name(&name).is_some() {
            out.push(blocks_dir.join(name));
        }
    }
    out.sort();
    Ok(out)
}

/// Removes temp files left by writers that never finished (a crash before the rename); returns
/// how many were removed. Call it only when no writer is active in `blocks_dir`.
pub fn remove_temp_files(blocks_dir: &Path) -> Result<usize, SstError> {
    let mut removed = 0;
    for name in dir_file_names(blocks_dir)? {
        if is_temp_file_name(&name) {
            let path = blocks_dir.join(&name);
            std::fs::remove_file(&path).map_err(|e| SstError::io(&path, e))?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Splits a published block file name `<mint>-<maxt>-<ulid>.sst` into its parts.
pub fn parse_block_file_name(name: &str) -> Option<(i64, i64, BlockId)> {
    let stem = name.strip_suffix(".sst")?;
    let (range, ulid) = stem.rsplit_once('-')?;
    let id = BlockId::parse(ulid).ok()?;
    // Either bound may be negative, so try every '-' as the separator.
    range.char_indices().skip(1).find_map(|(i, c)| {
        if c != '-' {
            return None;
        }
        let mint = range[..i].parse::<i64>().ok()?;
        let maxt = range[i + 1..].parse::<i64>().ok()?;
        (mint <= maxt).then(|| (mint, maxt, id.clone()))
    })
}

fn block_file_name(mint: i64, maxt: i64, id: &BlockId) -> String {
    format!("{mint}-{maxt}-{id}.{BLOCK_EXTENSION}")
}

fn temp_file_name(id: &BlockId) -> String {
    format!(".{id}{TEMP_SUFFIX}")
}

fn is_temp_file_name(name: &str) -> bool {
    name.starts_with('.') && name.ends_with(TEMP_SUFFIX)
}

fn dir_file_names(dir: &Path) -> Result<Vec<String>, SstError> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| SstError::io(dir, e))? {
        let entry = entry.map_err(|e| SstError::io(dir, e))?;
        let is_file = entry
            .file_type()
            .map_err(|e| SstError::io(&entry.path(), e))?
            .is_file();
        // Names that are not UTF-8 were not written by us.
        if let (true, Ok(name)) = (is_file, entry.file_name().into_string()) {
            names.push(name);
        }
    }
    Ok(names)
}
