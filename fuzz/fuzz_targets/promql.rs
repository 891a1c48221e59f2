//! Arbitrary text as a PromQL query, parsed and evaluated over a tiny store (gauges, a counter
//! with a reset, classic histogram buckets, a staleness marker) at times picked by the input,
//! extreme ones included. Nothing may panic, overflow a stack or run past its timeout by
//! much; what parses is also formatted, and `format_query`'s formatter must write exactly
//! what `promql-parser`'s own `prettify` writes.
//!
//! The first byte picks instant or range and the times, the rest is the query.
#![no_main]
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use tidemark::model::{Labels, STALE_NAN};
use tidemark::query::{Engine, EngineOptions};
use tidemark::storage::{Db, Options};

/// A directory of this process for scratch files: tmpfs when there is one.
fn scratch(name: &str) -> PathBuf {
    let base = if Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    base.join(format!("tidemark-fuzz-{name}-{}", std::process::id()))
}

/// Samples every 15 s for 10 minutes from this time (ms).
const T0: i64 = 1_700_000_000_000;

fn store() -> &'static (Db, Engine) {
    static STORE: OnceLock<(Db, Engine)> = OnceLock::new();
    STORE.get_or_init(|| {
        let dir = scratch("promql");
        let _ = std::fs::remove_dir_all(&dir);
        let db = Db::open(&dir, Options::default()).unwrap();
        let mut app = db.appender();
        let series = [
            ("temp", vec![("job", "a"), ("instance", "x")]),
            ("temp", vec![("job", "b"), ("instance", "y")]),
            ("reqs_total", vec![("job", "a"), ("code", "200")]),
            ("reqs_total", vec![("job", "a"), ("code", "500")]),
            ("lat_bucket", vec![("job", "a"), ("le", "0.1")]),
            ("lat_bucket", vec![("job", "a"), ("le", "1")]),
            ("lat_bucket", vec![("job", "a"), ("le", "+Inf")]),
        ];
        for (k, (name, labels)) in series.iter().enumerate() {
            let mut pairs = vec![("__name__", *name)];
            pairs.extend(labels.iter().copied());
            let l = Labels::new(pairs).unwrap();
            for i in 0..40i64 {
                let v = match *name {
                    // A counter that resets halfway.
                    "reqs_total" => ((i % 20) * (k as i64 + 1)) as f64,
                    "lat_bucket" => (i * (k as i64 - 3)) as f64,
                    _ if i == 30 && k == 1 => STALE_NAN,
                    _ => (i as f64).sin() * 10.0 + k as f64,
                };
                app.append(&l, T0 + i * 15_000, v).unwrap();
            }
        }
        app.commit().unwrap();
        let engine = Engine::new(EngineOptions {
            timeout: Duration::from_millis(500),
            max_samples: 200_000,
            max_points_per_series: 2_000,
            ..EngineOptions::default()
        });
        (db, engine)
    })
}

/// Times the input may pick: inside the data, around it, and at the ends of the clock.
const TIMES: [i64; 8] = [
    T0 + 300_000,
    T0,
    T0 + 600_000,
    0,
    -1,
    i64::MAX,
    i64::MIN,
    T0 - 86_400_000,
];
const STEPS: [i64; 4] = [15_000, 60_000, 1, i64::MAX];

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let Ok(query) = std::str::from_utf8(rest) else {
        return;
    };
    let (db, engine) = store();
    let q = db.querier();
    let start = TIMES[usize::from(mode & 7)];
    if mode & 0x80 == 0 {
        let _ = engine.instant_blocking(&q, query, start);
    } else {
        let end = start.saturating_add(TIMES[usize::from((mode >> 3) & 3)] % 3_600_000);
        let step = STEPS[usize::from((mode >> 5) & 3)];
        let _ = engine.range_blocking(&q, query, start, end, step);
    }
    // promql-parser's `prettify` is cubic in the depth: compare on small queries only, on a
    // thread with room for the recursion.
    if query.len() <= 512 {
        std::thread::scope(|s| {
            std::thread::Builder::new()
                .stack_size(64 << 20)
                .spawn_scoped(s, || {
                    // Through the guard, as every tidemark path parses: the parser panics on
                    // some inputs the guard refuses first.
                    if let Ok(e) = tidemark::query::parse(query) {
                        assert_eq!(tidemark::query::prettify(&e), e.prettify(), "{query}");
                    }
                })
                .unwrap()
                .join()
                .unwrap();
        });
    }
});
