//! Samples in and out of block chunks: the chunk codec applied to `sstable` blocks, whose chunk
//! bytes are opaque to the block format. Every write of samples into a block (flush,
//! compaction, clean, import) cuts them with [`to_chunks`]; every read of samples from a block
//! (queries, compaction, deletion) goes through [`read_samples`], the one place a chunk that
//! passed its checksum but does not decode becomes [`StorageError::CorruptChunk`].

use super::sstable::{Block, ChunkData, ChunkMeta};
use super::{StorageError, chunk};
use crate::model::Sample;

/// Samples per chunk in blocks: 2h of 15s scrapes, so a 2h block holds one chunk per series.
pub const BLOCK_CHUNK_SAMPLES: usize = 480;

/// Splits time-ordered samples into block chunks of at most [`BLOCK_CHUNK_SAMPLES`].
pub fn to_chunks(samples: &[Sample]) -> Vec<ChunkData> {
    samples
        .chunks(BLOCK_CHUNK_SAMPLES)
        .map(|c| ChunkData {
            mint: c[0].t,
            maxt: c[c.len() - 1].t,
            num_samples: c.len() as u32,
            data: chunk::encode(c),
        })
        .collect()
}

/// Reads chunk `c` of `block` (its checksum checked) into `bytes`, a buffer reused across
/// calls, and appends its samples to `out`. A chunk that does not decode is
/// [`StorageError::CorruptChunk`] naming the block's file and the chunk's offset, and `out` is
/// left as it was.
#[inline]
pub(crate) fn read_samples(
    block: &Block,
    c: &ChunkMeta,
    bytes: &mut Vec<u8>,
    out: &mut Vec<Sample>,
) -> Result<(), StorageError> {
    block.read_chunk_into(c, bytes)?;
    chunk::decode(bytes, out).map_err(|e| StorageError::CorruptChunk {
        path: block.meta().path.clone(),
        offset: c.offset,
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Labels;
    use crate::storage::sstable::BlockWriter;

    fn samples(n: usize) -> Vec<Sample> {
        (0..n as i64)
            .map(|i| Sample::new(i * 15_000, i as f64))
            .collect()
    }

    #[test]
    fn chunks_hold_at_most_the_block_chunk_size_and_cover_every_sample() {
        assert!(to_chunks(&[]).is_empty());
        for n in [
            1,
            BLOCK_CHUNK_SAMPLES - 1,
            BLOCK_CHUNK_SAMPLES,
            BLOCK_CHUNK_SAMPLES + 1,
        ] {
            let s = samples(n);
            let cs = to_chunks(&s);
            assert_eq!(cs.len(), n.div_ceil(BLOCK_CHUNK_SAMPLES), "{n}");
            let mut back = Vec::new();
            for c in &cs {
                assert!(c.num_samples as usize <= BLOCK_CHUNK_SAMPLES);
                chunk::decode(&c.data, &mut back).unwrap();
                assert_eq!(c.mint, back[back.len() - c.num_samples as usize].t);
                assert_eq!(c.maxt, back[back.len() - 1].t);
            }
            assert_eq!(back, s);
        }
    }

    /// A block of one series whose second chunk passes its checksum but does not decode.
    fn block_with_undecodable_chunk(dir: &std::path::Path) -> (Block, Vec<ChunkMeta>) {
        let mut cs = to_chunks(&samples(BLOCK_CHUNK_SAMPLES + 3));
        cs[1].data = vec![0xff; 5];
        let mut w = BlockWriter::new(dir, 1, Vec::new()).unwrap();
        let l = Labels::new([("__name__", "up")]).unwrap();
        w.add_series(&l, &cs).unwrap();
        let b = Block::open(&w.finish().unwrap().path).unwrap();
        let (_, metas) = b.series(0).unwrap();
        (b, metas)
    }

    #[test]
    fn reads_append_and_an_undecodable_chunk_names_file_and_offset() {
        let dir = tempfile::tempdir().unwrap();
        let (b, metas) = block_with_undecodable_chunk(dir.path());
        let mut bytes = Vec::new();
        let mut out = vec![Sample::new(-1, 0.0)];
        read_samples(&b, &metas[0], &mut bytes, &mut out).unwrap();
        assert_eq!(
            out.len(),
            1 + BLOCK_CHUNK_SAMPLES,
            "appended after what was there"
        );
        assert_eq!(out[1..], samples(BLOCK_CHUNK_SAMPLES)[..]);
        match read_samples(&b, &metas[1], &mut bytes, &mut out) {
            Err(StorageError::CorruptChunk { path, offset, .. }) => {
                assert_eq!(path, b.meta().path);
                assert_eq!(offset, metas[1].offset);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            out.len(),
            1 + BLOCK_CHUNK_SAMPLES,
            "a failed read appends nothing"
        );
    }
}
