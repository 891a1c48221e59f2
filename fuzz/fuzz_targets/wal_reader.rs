//! Arbitrary bytes as a WAL file, through the read-only replay and through `Wal::open` (which
//! repairs). Neither may panic or allocate beyond the input; both apply the same rules, so
//! they deliver the same records; a repaired directory replays clean.
//!
//! The first byte picks the file and the mode: the bytes as they are, or patches (offset, xor)
//! applied to a valid segment or checkpoint written once by the real writer, which reaches the
//! record decoders without a seed corpus.
#![no_main]
#![forbid(unsafe_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tidemark::model::{Labels, STALE_NAN};
use tidemark::storage::wal::{
    self, FsyncPolicy, Record, SampleRecord, SeriesRecord, Wal, WalOptions,
};

/// A directory of this process for scratch files: tmpfs when there is one.
fn scratch(name: &str) -> PathBuf {
    let base = if Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    base.join(format!("tidemark-fuzz-{name}-{}", std::process::id()))
}

fn options() -> WalOptions {
    WalOptions {
        // No background thread per input.
        fsync: FsyncPolicy::Always,
        segment_size: 1 << 20,
    }
}

/// A valid segment (series and samples records) and a valid checkpoint (series, samples and
/// an end frame), as the writer produces them.
fn references() -> &'static (Vec<u8>, Vec<u8>) {
    static REF: OnceLock<(Vec<u8>, Vec<u8>)> = OnceLock::new();
    REF.get_or_init(|| {
        let dir = scratch("wal-ref");
        let _ = fs::remove_dir_all(&dir);
        let (w, _) = Wal::open(&dir, options(), |_| {}).unwrap();
        let series: Vec<SeriesRecord> = (0..3u64)
            .map(|i| SeriesRecord {
                sref: i + 1,
                labels: Labels::new([("__name__", "up"), ("job", ["a", "bc", "d"][i as usize])])
                    .unwrap(),
            })
            .collect();
        let samples: Vec<SampleRecord> = [(1, 1.5), (2, -0.0), (3, STALE_NAN), (1, f64::NAN)]
            .iter()
            .enumerate()
            .map(|(k, &(sref, v))| SampleRecord {
                sref,
                t: 1_712_000_000_000 + k as i64 * 15_001,
                v,
            })
            .collect();
        w.commit(&series, &samples).unwrap();
        w.commit(&[], &samples[1..]).unwrap();
        let upto = w.cut().unwrap();
        let segment = fs::read(dir.join(format!("{upto:08}"))).unwrap();
        w.checkpoint(
            upto,
            vec![
                Record::Series(series.clone()),
                Record::Samples(samples.clone()),
            ],
        )
        .unwrap();
        w.close().unwrap();
        let checkpoint = fs::read(dir.join(format!("checkpoint.{upto:08}"))).unwrap();
        let _ = fs::remove_dir_all(&dir);
        (segment, checkpoint)
    })
}

/// `data` itself, or `data` read as (u16 offset, xor byte) patches over `base`.
fn build(data: &[u8], base: Option<&[u8]>) -> Vec<u8> {
    let Some(base) = base else {
        return data.to_vec();
    };
    let mut out = base.to_vec();
    let mut patches = data.chunks_exact(3);
    // A patch past the end truncates there instead: torn tails are the common damage.
    for p in &mut patches {
        let at = usize::from(u16::from_le_bytes([p[0], p[1]]));
        if at >= out.len() {
            out.truncate(at % (out.len() + 1));
        } else {
            out[at] ^= p[2];
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let (segment, checkpoint) = references();
    let dir = scratch("wal");
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    let (name, bytes) = match mode % 4 {
        0 => ("00000001", build(rest, None)),
        1 => ("00000001", build(rest, Some(segment))),
        2 => ("checkpoint.00000001", build(rest, None)),
        _ => ("checkpoint.00000001", build(rest, Some(checkpoint))),
    };
    let path = dir.join(name);
    fs::write(&path, &bytes).unwrap();
    if mode & 4 != 0 {
        // A later, intact segment: damage in an earlier file must not hide it.
        fs::write(dir.join("00000002"), segment).unwrap();
    }

    let mut ro_records = 0u64;
    let ro = wal::read_only(&dir, |_| ro_records += 1);
    assert_eq!(
        fs::read(&path).unwrap(),
        bytes,
        "read-only replay changed the file"
    );
    let mut open_records = 0u64;
    let opened = Wal::open(&dir, options(), |_| open_records += 1);
    match (&ro, &opened) {
        (Ok(ro), Ok((_, st))) => {
            assert_eq!(ro.records, st.records);
            assert_eq!(ro.corruptions.len(), st.corruptions.len());
            assert_eq!(ro_records, open_records);
        }
        // A damaged checkpoint or a newer format version is an error for both.
        (Err(_), Err(_)) => {}
        (ro, opened) => panic!(
            "read-only and open disagree: {:?} vs {:?}",
            ro.as_ref().map(|s| s.records),
            opened.as_ref().map(|(_, s)| s.records)
        ),
    }
    if let Ok((w, st)) = opened {
        w.close().unwrap();
        // The repair is complete: replaying again finds nothing wrong and the same records.
        let again = wal::read_only(&dir, |_| {}).unwrap();
        assert!(again.corruptions.is_empty(), "{:?}", again.corruptions);
        assert_eq!(again.records, st.records);
    }
    let _ = fs::remove_dir_all(&dir);
});
