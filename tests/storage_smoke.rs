//! End-to-end storage paths through the public API: append, reopen, flush, compact, retention.

use tidemark::model::{Labels, Matcher, Sample};
use tidemark::storage::{Db, Options};

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
