//! CPU cost of the whole scrape path after the fetch (parse, target labels, metric relabeling,
//! limits, staleness, append into WAL + head) for 1,000 targets of 1,000 series each, as a share
//! of one core at a 15s interval. Prints figures; not a criterion bench.
//!
//! Each target's body is real text exposition: the node_exporter fixture's metric families with
//! the target's values moving every round, about 1,000 samples per target. One thread ingests
//! every target once per round, as the scrape loops would spread over the interval; the first
//! round creates the series and is reported apart.
//!
//! `cargo bench --bench scrape`

use std::time::{Duration, Instant};

use tidemark::model::Labels;
use tidemark::relabel::{Action, RelabelConfig, Rule};
use tidemark::scrape::ingest::{IngestOptions, ScrapeState};
use tidemark::scrape::parse::Format;
use tidemark::storage::{Db, Options};

const TARGETS: usize = 1000;
const SERIES: usize = 1000;
const ROUNDS: usize = 4;

fn cpu_time() -> Duration {
    // Thread CPU time from /proc: the figure is the share of a core, not of the wall clock.
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = f.get(11).and_then(|u| u.parse().ok()).unwrap_or(0)
        + f.get(12).and_then(|s| s.parse().ok()).unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

/// A body of `SERIES` samples: families like node_exporter's, labelled per series.
fn body(round: usize, target: usize) -> Vec<u8> {
    let mut out = String::with_capacity(SERIES * 70);
    let families = [
        "node_cpu_seconds_total",
        "node_network_receive_bytes_total",
        "node_disk_io_time_seconds_total",
        "node_filesystem_avail_bytes",
        "go_memstats_alloc_bytes",
    ];
    for i in 0..SERIES {
        let fam = families[i % families.len()];
        if i < families.len() {
            out.push_str(&format!("# HELP {fam} A metric.\n# TYPE {fam} counter\n"));
        }
        let v = (round * 1_000 + i * 7 + target) as f64 * 1.25;
        out.push_str(&format!(
            "{fam}{{device=\"dev{}\",mode=\"m{}\"}} {v}\n",
            i / 10,
            i % 10
        ));
    }
    out.into_bytes()
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options::default()).unwrap();
    let drop_go = Rule::new(RelabelConfig {
        source_labels: vec!["__name__".into()],
        regex: "go_gc_.*".into(),
        action: Action::Drop,
        ..Default::default()
    })
    .unwrap();
    let opts = IngestOptions {
        honor_timestamps: true,
        metric_relabel: vec![drop_go],
        ..Default::default()
    };
    let targets: Vec<Labels> = (0..TARGETS)
        .map(|i| {
            Labels::new([
                ("job", "node".to_string()),
                ("instance", format!("host-{i:04}:9100")),
            ])
            .unwrap()
        })
        .collect();
    let mut states: Vec<ScrapeState> = (0..TARGETS).map(|_| ScrapeState::default()).collect();
    let t0 = 1_700_000_000_000i64;
    println!(
        "scrape path: {TARGETS} targets x {SERIES} series, parse + relabel + append, one thread"
    );
    for round in 0..ROUNDS {
        let bodies: Vec<Vec<u8>> = (0..TARGETS).map(|t| body(round, t)).collect();
        let (wall, cpu) = (Instant::now(), cpu_time());
        let mut samples = 0u64;
        for (i, st) in states.iter_mut().enumerate() {
            let r = st
                .ingest(
                    &db,
                    &targets[i],
                    Ok((&bodies[i], Format::PrometheusText)),
                    t0 + round as i64 * 15_000,
                    0.01,
                    &opts,
                )
                .unwrap();
            assert!(r.up, "{r:?}");
            samples += r.commit.appended;
        }
        let (wall, cpu) = (wall.elapsed(), cpu_time() - cpu);
        let share = cpu.as_secs_f64() / 15.0 * 100.0;
        let kind = if round == 0 {
            "first round (creates series)"
        } else {
            "steady round"
        };
        println!(
            "round {round}: {kind}: {samples} samples, wall {:.3}s, cpu {:.3}s = {share:.1}% of one core at a 15s interval ({:.2}M samples/s)",
            wall.as_secs_f64(),
            cpu.as_secs_f64(),
            samples as f64 / wall.as_secs_f64() / 1e6
        );
    }
}
