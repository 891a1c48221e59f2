//! The node_exporter day of `node_day.rs` as the storage benches feed it to a `Db`: timestamps
//! moved to a UTC midnight, label sets parsed from the series text by the scraper's parser, and
//! a one-line description of the mix.
//!
//! Moving the day to midnight makes it fill exactly one 24h compaction window and twelve 2h
//! block windows (both ours and Prometheus's are aligned to multiples of their length since the
//! epoch), so block counts and per-block index overhead are the same on both sides of a
//! comparison. Only timestamps move; every delta and value stays as generated.
//!
//! Set `TIDEMARK_OPENMETRICS_OUT=/path/day.om` to also write the moved day as OpenMetrics text.

use std::path::Path;

use tidemark::model::Labels;
use tidemark::scrape::parse::{Entry, Format, Parser};

use crate::node_day::{self, Kind, Series};

/// Milliseconds in a day: the length of the largest compaction window the benches reach.
pub const DAY_MS: i64 = 86_400_000;

/// The generated day with its first scrape moved to the next UTC midnight.
pub fn aligned_day() -> Vec<Series> {
    let mut day = node_day::day();
    let first = day[0].samples[0].t;
    let shift = first.div_euclid(DAY_MS) * DAY_MS + DAY_MS - first;
    for s in &mut day {
        for p in &mut s.samples {
            p.t += shift;
        }
    }
    if let Some(path) = std::env::var_os("TIDEMARK_OPENMETRICS_OUT") {
        let path = Path::new(&path);
        node_day::write_openmetrics(&day, path)
            .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        eprintln!("wrote OpenMetrics day to {}", path.display());
    }
    day
}

/// The label set of every series, parsed from its text the way a scrape parses it.
pub fn labels_of(day: &[Series]) -> Vec<Labels> {
    let body: String = day.iter().map(|s| format!("{} 0\n", s.id)).collect();
    let labels: Vec<Labels> = Parser::new(body.as_bytes(), Format::PrometheusText)
        .filter_map(|e| match e {
            Ok(Entry::Sample(s)) => Some(
                s.to_labels()
                    .unwrap_or_else(|e| panic!("fixture series: {e}")),
            ),
            Ok(_) => None,
            Err(e) => panic!("fixture series text does not parse: {e}"),
        })
        .collect();
    assert_eq!(labels.len(), day.len(), "one label set per series");
    labels
}

/// "N series of M families: counters, gauges, …, K samples each".
pub fn describe(day: &[Series]) -> String {
    let mut families: Vec<&str> = day.iter().map(|s| s.family.as_str()).collect();
    families.sort_unstable();
    families.dedup();
    let count = |k: Kind| day.iter().filter(|s| s.kind == k).count();
    format!(
        "{} series of {} families ({} counter, {} gauge, {} summary, {} untyped series), \
         {} samples each",
        day.len(),
        families.len(),
        count(Kind::Counter),
        count(Kind::Gauge),
        count(Kind::Summary),
        count(Kind::Untyped),
        day.first().map_or(0, |s| s.samples.len()),
    )
}
