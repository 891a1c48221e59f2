//! Chunk encoding: a time-ordered run of samples of one series, compressed.
//!
//! Pure format code: bytes in, samples out. It must never do I/O or know about series.

use crate::model::Sample;

/// A chunk could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum ChunkError {
    #[error("chunk corrupt: {0}")]
    Corrupt(&'static str),
}

/// Encodes samples (non-empty, strictly increasing timestamps) into one chunk.
pub fn encode(samples: &[Sample]) -> Vec<u8> {
    // Placeholder raw encoding; replaced by the real codec.
    let mut out = Vec::with_capacity(4 + samples.len() * 16);
    out.extend_from_slice(&(samples.len() as u32).to_le_bytes());
    for s in samples {
        out.extend_from_slice(&s.t.to_le_bytes());
        out.extend_from_slice(&s.v.to_bits().to_le_bytes());
    }
    out
}

/// Decodes a chunk, appending its samples to `out`.
pub fn decode(data: &[u8], out: &mut Vec<Sample>) -> Result<(), ChunkError> {
    let n = data
        .get(..4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .ok_or(ChunkError::Corrupt("short header"))?;
    let body = &data[4..];
    if body.len() != n * 16 {
        return Err(ChunkError::Corrupt("length mismatch"));
    }
    for c in body.chunks_exact(16) {
        let mut t = [0u8; 8];
        let mut v = [0u8; 8];
        t.copy_from_slice(&c[..8]);
        v.copy_from_slice(&c[8..]);
        out.push(Sample::new(
            i64::from_le_bytes(t),
            f64::from_bits(u64::from_le_bytes(v)),
        ));
    }
    Ok(())
}
