//! End-to-end storage paths through the public API: append, reopen, flush, compact, retention.

use tidemark::model::{Labels, Matcher, Sample};
use tidemark::storage::{Db, Options, StorageError};

const H: i64 = 3_600_000;

fn labels(name: &str, inst: &str) -> Labels {
    Labels::new([("__name__", name), ("instance", inst)]).unwrap()
}

#[test]
fn samples_survive_reopen_flush_and_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        retention_time: 0,
        ..Options::default()
    };
    let want: Vec<(Labels, Vec<Sample>)>;
    {
        let db = Db::open(dir.path(), opts.clone()).unwrap();
        let series: Vec<Labels> = (0..7).map(|i| labels("m", &format!("h{i}:9100"))).collect();
        let mut per: Vec<Vec<Sample>> = vec![Vec::new(); series.len()];
        // 13 hours of irregular 15s-ish scrapes.
        let mut t = 1_700_000_000_123i64;
        let end = t + 13 * H;
        let mut k = 0u64;
        while t < end {
            let mut app = db.appender();
            for (i, l) in series.iter().enumerate() {
                k = k
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                if k >> 60 == 0 {
                    continue; // a missed scrape
                }
                let v = (k >> 11) as f64 / 1e3;
                app.append(l, t, v).unwrap();
                per[i].push(Sample::new(t, v));
            }
            let st = app.commit().unwrap();
            assert_eq!(st.out_of_order + st.duplicate, 0);
            t += 15_000 + (k % 7) as i64;
        }
        let flushed = db.flush().unwrap();
        assert!(
            flushed.len() >= 4,
            "13h of data flushes at least 4 blocks, got {}",
            flushed.len()
        );
        while db.compact().unwrap().is_some() {}
        want = series.into_iter().zip(per).collect();
        db.close().unwrap();
    }
    let db = Db::open(dir.path(), opts).unwrap();
    let q = db.querier();
    for (l, samples) in &want {
        let got = q
            .select(
                &[Matcher::equal("instance", l.get("instance").unwrap())],
                i64::MIN,
                i64::MAX,
            )
            .unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(&got[0].samples, samples, "{l}");
        // A range selects exactly the points inside it, bounds included.
        let (lo, hi) = (samples[100].t, samples[1000].t);
        let got = q
            .samples(
                &[Matcher::equal("instance", l.get("instance").unwrap())],
                lo,
                hi,
            )
            .unwrap();
        assert_eq!(got.len(), 901);
    }
    assert!(
        db.catalog().blocks.iter().any(|b| b.meta().level > 1),
        "compaction merged blocks"
    );
}

#[test]
fn second_open_of_a_data_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _db = Db::open(dir.path(), Options::default()).unwrap();
    let err = Db::open(dir.path(), Options::default()).err().unwrap();
    assert!(err.to_string().contains("in use"), "{err}");
}

/// A writer's handle to a series that garbage collection took out of the head (a scrape target's
/// cache entry) is refused, and appending by the handle's labels stores the sample in a live
/// series: a stale handle loses nothing and writes to no dead series.
#[test]
fn a_handle_to_a_collected_series_is_refused_and_its_labels_store_again() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        block_duration: 60_000,
        ..Options::default()
    };
    let db = Db::open(dir.path(), opts).unwrap();
    let t0 = 1_712_000_000_000i64;
    let gone = labels("gone", "a");
    let live = labels("live", "a");
    let mut app = db.appender_at(t0);
    let handle = app.append_with_handle(&gone, t0, 1.0).unwrap();
    app.commit().unwrap();
    // Only `live` goes on, long enough for a flush to cut the window `gone` ended in.
    for k in 1..200 {
        let t = t0 + k * 1000;
        let mut app = db.appender_at(t);
        app.append(&live, t, k as f64).unwrap();
        app.commit().unwrap();
    }
    assert!(!db.flush().unwrap().is_empty());
    assert_eq!(db.head().num_series(), 1, "`gone` was collected");

    let t = t0 + 200_000;
    let mut app = db.appender_at(t);
    assert!(matches!(
        app.append_handle(&handle, t, 2.0),
        Err(StorageError::UnknownRef(_))
    ));
    let again = app.append_with_handle(&handle.labels(), t, 2.0).unwrap();
    app.commit().unwrap();
    let mut app = db.appender_at(t + 1000);
    app.append_handle(&again, t + 1000, 3.0).unwrap();
    app.commit().unwrap();

    let got = db
        .querier()
        .select(&[Matcher::equal("__name__", "gone")], 0, i64::MAX)
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].samples,
        vec![
            Sample::new(t0, 1.0),
            Sample::new(t, 2.0),
            Sample::new(t + 1000, 3.0)
        ]
    );
}
