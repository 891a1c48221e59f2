//! Arbitrary bytes as a block file through `Block::open`, then every accessor a query or a
//! compaction uses, and `verify`. Nothing may panic or allocate beyond the file's size; a block
//! that verifies must read back completely and decode.
//!
//! The first byte picks the mode: the bytes as they are, or patches (offset, xor) over a valid
//! block written once by the real writer, which gets past the footer and section CRCs only
//! where a patch hits bytes they do not cover (or fixes them up), and otherwise exercises every
//! refusal path with realistic layouts.
#![no_main]
#![forbid(unsafe_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tidemark::model::{Labels, STALE_NAN, Sample};
use tidemark::storage::chunk;
use tidemark::storage::sstable::{Block, BlockWriter, ChunkData};

fn scratch(name: &str) -> PathBuf {
    let base = if Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    base.join(format!("tidemark-fuzz-{name}-{}", std::process::id()))
}

/// A small valid block: a few series, two with two chunks, irregular samples.
fn reference() -> &'static Vec<u8> {
    static REF: OnceLock<Vec<u8>> = OnceLock::new();
    REF.get_or_init(|| {
        let dir = scratch("block-ref");
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let mut w = BlockWriter::new(&dir, 0, Vec::new()).unwrap();
        let mut series: Vec<Labels> = (0..5)
            .map(|i| {
                Labels::new([
                    ("__name__", if i % 2 == 0 { "cpu" } else { "mem" }),
                    ("host", ["a", "b", "c", "d", "e"][i]),
                ])
                .unwrap()
            })
            .collect();
        series.sort();
        for (i, l) in series.iter().enumerate() {
            let mut t = 1_712_000_000_000 + i as i64 * 7;
            let samples: Vec<Sample> = (0..(3 + i * 5))
                .map(|k| {
                    t += 14_000 + (k as i64 * 37) % 2_000;
                    let v = match k % 7 {
                        0 => STALE_NAN,
                        1 => f64::NAN,
                        _ => k as f64 * 0.25,
                    };
                    Sample::new(t, v)
                })
                .collect();
            let chunks: Vec<ChunkData> = samples
                .chunks(8)
                .map(|c| ChunkData {
                    mint: c[0].t,
                    maxt: c[c.len() - 1].t,
                    num_samples: c.len() as u32,
                    data: chunk::encode(c),
                })
                .collect();
            w.add_series(l, &chunks).unwrap();
        }
        let meta = w.finish().unwrap();
        let bytes = fs::read(&meta.path).unwrap();
        let _ = fs::remove_dir_all(&dir);
        bytes
    })
}

fn build(data: &[u8], base: Option<&[u8]>) -> Vec<u8> {
    let Some(base) = base else {
        return data.to_vec();
    };
    let mut out = base.to_vec();
    for p in data.chunks_exact(3) {
        let at = usize::from(u16::from_le_bytes([p[0], p[1]]));
        if at >= out.len() {
            out.truncate(at % (out.len() + 1));
        } else {
            out[at] ^= p[2];
        }
    }
    out
}

/// Reads everything the block offers; returns false at the first error.
fn read_everything(b: &Block) -> bool {
    let n = b.num_series();
    for name in b.label_names() {
        for value in b.label_values(name) {
            let ids = b.postings(name, value);
            assert!(ids.windows(2).all(|w| w[0] < w[1]), "postings unsorted");
            assert!(ids.iter().all(|&id| id < n), "posting past the series");
        }
    }
    let mut ok = true;
    let mut samples = Vec::new();
    for id in 0..n {
        let Ok((labels, chunks)) = b.series(id) else {
            ok = false;
            continue;
        };
        assert!(!labels.is_empty());
        for c in &chunks {
            match b.read_chunk(c) {
                Ok(bytes) => {
                    samples.clear();
                    if chunk::decode(&bytes, &mut samples).is_err() {
                        ok = false;
                    }
                }
                Err(_) => ok = false,
            }
        }
    }
    ok
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let bytes = build(rest, (mode & 1 != 0).then(|| reference().as_slice()));
    let dir = scratch("block");
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    let path = dir.join("1712000000000-1712000099999-01HV5Z8G9Q3K2M4N6P7R8S9T0V.sst");
    fs::write(&path, &bytes).unwrap();
    if let Ok(b) = Block::open(&path) {
        assert_eq!(b.meta().size_bytes, bytes.len() as u64);
        assert!(b.meta().mint <= b.meta().maxt);
        let read_ok = read_everything(&b);
        if b.verify().is_ok() {
            // Every checksum matched: then every read succeeds and every chunk decodes.
            assert!(read_ok, "a verified block failed a read");
        }
    }
    let _ = fs::remove_dir_all(&dir);
});
