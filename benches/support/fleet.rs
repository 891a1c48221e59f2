//! Many node_exporter targets from one day of series: every target exposes the same series
//! under its own `instance`, with the target labels a service-discovery config typically adds.
//!
//! Labels per series: `__name__` (285 metric names), the exporter's own labels (cpu, mode,
//! device, …), `instance`, `job`, `env` and `zone`. The host name in `node_uname_info`'s
//! `nodename` is the target's own, as it is on a real fleet, which makes that one label pair
//! unique to a single series.

use tidemark::model::Labels;

/// Scrape interval of every target, in milliseconds.
pub const SCRAPE_MS: i64 = 15_000;

/// Host name of target `target`.
pub fn host(target: usize) -> String {
    format!("host-{target:04}")
}

/// The `instance` label value of target `target`.
pub fn instance(target: usize) -> String {
    format!("{}:9100", host(target))
}

/// `base` (a series as the exporter exposes it) as stored for target `target`.
pub fn target_labels(base: &Labels, target: usize) -> Labels {
    let mut b = base.to_builder();
    b.set("instance", instance(target));
    b.set("job", "node");
    b.set("env", ["prod", "prod", "prod", "staging"][target % 4]);
    b.set("zone", format!("eu-west-{}", 1 + target % 3));
    if b.get("nodename").is_some() {
        b.set("nodename", host(target));
    }
    b.build()
        .unwrap_or_else(|e| panic!("target labels of {base}: {e}"))
}

/// Offset of the target's scrapes within the interval, as a scrape manager spreads them.
pub fn scrape_offset(target: usize) -> i64 {
    (target as i64 * 7_919) % SCRAPE_MS
}

/// Where in the day target `target` starts, so targets do not all carry identical values.
pub fn day_offset(target: usize, day_len: usize) -> usize {
    (target * 293) % day_len.max(1)
}
