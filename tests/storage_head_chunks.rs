//! The head's chunk file (`<data>/chunks_head/`) through `Db`: it is derived data, rebuilt from
//! the WAL on every open whatever a previous run left there, and a chunk damaged on disk is an
//! error to queries and flushes, never other data, with nothing stored lost.

#[path = "common/store.rs"]
mod store;
use store::{Store, read_all};

use std::os::unix::fs::FileExt;
use std::path::Path;

use tidemark::model::Labels;
use tidemark::storage::{Db, Options};

/// Appends `series` series × `samples` samples at 15 s with values that compress poorly (so
/// the chunks fill the chunk file's write buffer and reach the file), and returns them.
fn fill(db: &Db, series: usize, samples: i64) -> Store {
    let labels: Vec<Labels> = (0..series)
        .map(|i| Labels::new([("__name__", "m"), ("i", i.to_string().as_str())]).unwrap())
        .collect();
    let mut want = Store::new();
    let t0 = 1_700_000_000_000i64;
    let mut k = 7u64;
    for n in 0..samples {
        let t = t0 + n * 15_000;
        let mut app = db.appender();
        for l in &labels {
            k = k
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let v = (k >> 11) as f64 / 1e3;
            app.append(l, t, v).unwrap();
            want.entry(l.clone()).or_default().push((t, v.to_bits()));
        }
        app.commit().unwrap();
    }
    want
}

fn segment(dir: &Path) -> std::path::PathBuf {
    dir.join("chunks_head").join("00000000")
}

#[test]
fn a_damaged_head_chunk_is_an_error_and_a_reopen_rebuilds_it_from_the_wal() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options::default()).unwrap();
    // 800 samples at 15 s: 3 h 20 min, enough for a flush; six chunks cut per series.
    let want = fill(&db, 300, 800);
    assert_eq!(read_all(&db.querier()), want);
    assert_eq!(
        db.head().num_chunks(),
        300 * 7,
        "six closed and one open per series"
    );

    // Damage one byte of a chunk already in the file, in place (the mapping sees it).
    let path = segment(dir.path());
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, 1000).unwrap();
    f.write_all_at(&[b[0] ^ 0x40], 1000).unwrap();

    let all =
        tidemark::model::Matcher::new(tidemark::model::MatchOp::Regex, "__name__", ".+").unwrap();
    let e = db.querier().select(&[all], i64::MIN, i64::MAX).unwrap_err();
    // A checksum mismatch, or a length past the end if the byte was a chunk's length.
    assert!(e.to_string().contains("head chunk: "), "{e}");
    assert!(e.to_string().contains("chunks_head"), "{e}");
    // A flush reads the same chunks: it fails and drops nothing.
    assert!(db.flush().is_err());
    assert_eq!(db.head().num_chunks(), 300 * 7);
    db.close().unwrap();

    // The WAL still has every sample: the reopened head answers in full.
    let db = Db::open(dir.path(), Options::default()).unwrap();
    assert_eq!(read_all(&db.querier()), want);
    let flushed = db.flush().unwrap();
    assert!(!flushed.is_empty());
    assert_eq!(read_all(&db.querier()), want);
}

#[test]
fn whatever_a_previous_run_left_in_chunks_head_is_discarded_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let want = {
        let db = Db::open(dir.path(), Options::default()).unwrap();
        let want = fill(&db, 40, 500);
        db.close().unwrap();
        want
    };
    // Junk where the segments were, a stray file and a directory.
    let ch = dir.path().join("chunks_head");
    std::fs::write(segment(dir.path()), vec![0xAB; 4096]).unwrap();
    std::fs::write(ch.join("00000007"), b"stray").unwrap();
    std::fs::create_dir_all(ch.join("sub")).unwrap();
    let db = Db::open(dir.path(), Options::default()).unwrap();
    assert_eq!(read_all(&db.querier()), want);
    assert!(!ch.join("00000007").exists() && !ch.join("sub").exists());
    // New chunks go to the rebuilt file and read back (the first 500 samples again are
    // ignored duplicates).
    let more = fill(&db, 40, 700);
    assert_eq!(read_all(&db.querier()), more);
}
