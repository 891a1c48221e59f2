//! Samples in and out of block chunks: the chunk codec applied to `sstable` blocks, whose chunk
//! bytes are opaque to the block format. Every write of samples into a block (flush,
//! compaction, clean, import) cuts them with [`to_chunks`]; every read of samples from a block
//! (queries, compaction, deletion) goes through [`read_samples`], the one place a chunk that
//! passed its checksum but does not decode becomes [`StorageError::CorruptChunk`].

use super::chunk::histogram as hcodec;
use super::sstable::{Block, ChunkData, ChunkMeta};
use super::{StorageError, chunk};
use crate::model::{HistogramSample, Sample};

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

/// Splits time-ordered histogram samples into block chunks: runs of one kind, each at most
/// [`BLOCK_CHUNK_SAMPLES`] and within the histogram codec's limits.
pub fn to_histogram_chunks(samples: &[HistogramSample]) -> Vec<ChunkData> {
    let mut out = Vec::new();
    let mut rest = samples;
    while !rest.is_empty() {
        let n = hcodec::chunk_len(rest, BLOCK_CHUNK_SAMPLES);
        if n == 0 {
            // Appends refuse a histogram no chunk can hold, so only a damaged source gets
            // here; the sample is left out rather than the block refused.
            tracing::warn!(
                t = rest[0].t,
                "histogram sample too large for a chunk left out"
            );
            rest = &rest[1..];
            continue;
        }
        let (c, after) = rest.split_at(n);
        rest = after;
        out.push(ChunkData {
            mint: c[0].t,
            maxt: c[c.len() - 1].t,
            num_samples: c.len() as u32,
            data: hcodec::encode(c),
        });
    }
    out
}

/// One series' float and histogram samples (each time-ordered, never at one timestamp) as
/// block chunks in time order: where the series switches kinds a chunk ends, so chunks never
/// overlap. A series without histograms is cut exactly as [`to_chunks`] cuts it.
pub fn series_chunks(samples: &[Sample], histograms: &[HistogramSample]) -> Vec<ChunkData> {
    if histograms.is_empty() {
        return to_chunks(samples);
    }
    if samples.is_empty() {
        return to_histogram_chunks(histograms);
    }
    let mut out = Vec::new();
    let (mut f, mut h) = (samples, histograms);
    while !f.is_empty() || !h.is_empty() {
        match (f.first(), h.first()) {
            (Some(a), Some(b)) if a.t < b.t => {
                let n = f.partition_point(|s| s.t < b.t);
                out.extend(to_chunks(&f[..n]));
                f = &f[n..];
            }
            (Some(a), Some(_)) => {
                let n = h.partition_point(|s| s.t < a.t);
                out.extend(to_histogram_chunks(&h[..n]));
                h = &h[n..];
            }
            (Some(_), None) => {
                out.extend(to_chunks(f));
                f = &[];
            }
            (None, _) => {
                out.extend(to_histogram_chunks(h));
                h = &[];
            }
        }
    }
    out
}

/// Reads chunk `c` of `block` (its checksum checked) into `bytes`, a buffer reused across
/// calls, and appends its samples to `out`, or to `hout` when it is a histogram chunk. A chunk
/// that does not decode is [`StorageError::CorruptChunk`] naming the block's file and the
/// chunk's offset, and `out` and `hout` are left as they were.
#[inline]
pub(crate) fn read_samples(
    block: &Block,
    c: &ChunkMeta,
    bytes: &mut Vec<u8>,
    out: &mut Vec<Sample>,
    hout: &mut Vec<HistogramSample>,
) -> Result<(), StorageError> {
    block.read_chunk_into(c, bytes)?;
    let r = if hcodec::is_histogram_chunk(bytes) {
        hcodec::decode(bytes, hout)
    } else {
        chunk::decode(bytes, out)
    };
    r.map_err(|e| StorageError::CorruptChunk {
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
        read_samples(&b, &metas[0], &mut bytes, &mut out, &mut Vec::new()).unwrap();
        assert_eq!(
            out.len(),
            1 + BLOCK_CHUNK_SAMPLES,
            "appended after what was there"
        );
        assert_eq!(out[1..], samples(BLOCK_CHUNK_SAMPLES)[..]);
        match read_samples(&b, &metas[1], &mut bytes, &mut out, &mut Vec::new()) {
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

    fn hist(t: i64, float: bool) -> HistogramSample {
        use crate::model::histogram::{Histogram, Span};
        let h = Histogram {
            schema: 1,
            count: t as u64,
            sum: t as f64 / 3.0,
            positive_spans: vec![Span::new(1, 2)],
            positive_buckets: vec![t, 1],
            ..Histogram::default()
        };
        HistogramSample {
            t,
            h: if float {
                crate::model::HistogramValue::Float(Box::new(h.to_float()))
            } else {
                crate::model::HistogramValue::Int(Box::new(h))
            },
        }
    }

    #[test]
    fn a_series_switching_kinds_gets_chunks_that_never_overlap_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        // Floats, integer histograms, floats, float histograms, then integer ones: five runs,
        // the first histogram run long enough for two chunks.
        let f: Vec<Sample> = (0..10)
            .chain(700..705)
            .map(|t| Sample::new(t, t as f64))
            .collect();
        let h: Vec<HistogramSample> = (10..700)
            .map(|t| hist(t, false))
            .chain((705..710).map(|t| hist(t, true)))
            .chain((710..712).map(|t| hist(t, false)))
            .collect();
        let cs = series_chunks(&f, &h);
        let spans: Vec<(i64, i64)> = cs.iter().map(|c| (c.mint, c.maxt)).collect();
        assert_eq!(
            spans,
            [
                (0, 9),
                (10, 489),
                (490, 699),
                (700, 704),
                (705, 709),
                (710, 711)
            ]
        );
        let mut w = BlockWriter::new(dir.path(), 1, Vec::new()).unwrap();
        let l = Labels::new([("__name__", "h")]).unwrap();
        w.add_series(&l, &cs).unwrap();
        let b = Block::open(&w.finish().unwrap().path).unwrap();
        let (_, metas) = b.series(0).unwrap();
        let (mut bytes, mut fo, mut ho) = (Vec::new(), Vec::new(), Vec::new());
        for m in &metas {
            read_samples(&b, m, &mut bytes, &mut fo, &mut ho).unwrap();
        }
        assert_eq!((fo, ho), (f, h));
        // Without histograms, exactly the float cut.
        assert_eq!(
            series_chunks(&samples(1000), &[])
                .iter()
                .map(|c| c.data.clone())
                .collect::<Vec<_>>(),
            to_chunks(&samples(1000))
                .iter()
                .map(|c| c.data.clone())
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn an_undecodable_histogram_chunk_is_corruption_naming_file_and_offset() {
        let dir = tempfile::tempdir().unwrap();
        let h: Vec<HistogramSample> = (0..20).map(|t| hist(t, false)).collect();
        let mut cs = to_histogram_chunks(&h);
        // A histogram header, then garbage: passes the block's checksum, fails the codec.
        let n = cs[0].data.len();
        cs[0].data.truncate(n - 2);
        let mut w = BlockWriter::new(dir.path(), 1, Vec::new()).unwrap();
        let l = Labels::new([("__name__", "h")]).unwrap();
        w.add_series(&l, &cs).unwrap();
        let b = Block::open(&w.finish().unwrap().path).unwrap();
        let (_, metas) = b.series(0).unwrap();
        let mut ho = Vec::new();
        match read_samples(&b, &metas[0], &mut Vec::new(), &mut Vec::new(), &mut ho) {
            Err(StorageError::CorruptChunk {
                path,
                offset,
                reason,
            }) => {
                assert_eq!(path, b.meta().path);
                assert_eq!(offset, metas[0].offset);
                assert!(reason.contains("corrupt"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        assert!(ho.is_empty());
    }
}
