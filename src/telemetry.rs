//! The agent's own metrics, in the Prometheus text format, served at `/metrics` and scraped by
//! the embedded default configuration.
//!
//! Reads counters that storage and scraping keep; it must never change them.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::storage::Db;

/// Target counts by job and health, supplied by whoever knows the targets.
pub struct TargetCounts(pub Vec<(String, String, u64)>);

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Renders every self-metric.
pub fn render(db: &Db, targets: &TargetCounts, start_time_secs: f64) -> String {
    let mut o = String::with_capacity(4096);
    family(
        &mut o,
        "tidemark_build_info",
        "gauge",
        "Build information; the value is 1.",
    );
    let _ = writeln!(
        o,
        "tidemark_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );

    let c = db.counters();
    let cat = db.catalog();
    let w = db.wal_stats();
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64;
    let singles: [(&str, &str, &str, f64); 14] = [
        (
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since the Unix epoch in seconds.",
            start_time_secs,
        ),
        (
            "tidemark_samples_appended_total",
            "counter",
            "Samples stored.",
            load(&c.appended),
        ),
        (
            "tidemark_head_series",
            "gauge",
            "Series in the head.",
            db.head().num_series() as f64,
        ),
        (
            "tidemark_head_flushes_total",
            "counter",
            "Head windows flushed to blocks.",
            load(&c.flushes),
        ),
        (
            "tidemark_compactions_total",
            "counter",
            "Block compactions done.",
            load(&c.compactions),
        ),
        (
            "tidemark_retention_deleted_blocks_total",
            "counter",
            "Blocks deleted by retention.",
            load(&c.retention_deletes),
        ),
        (
            "tidemark_blocks",
            "gauge",
            "Published blocks.",
            cat.blocks.len() as f64,
        ),
        (
            "tidemark_blocks_bytes",
            "gauge",
            "Bytes of the published blocks on disk.",
            cat.size_bytes() as f64,
        ),
        (
            "tidemark_blocks_refused",
            "gauge",
            "Blocks refused as corrupt at open.",
            db.refused_blocks().len() as f64,
        ),
        (
            "tidemark_wal_segments",
            "gauge",
            "WAL segment files.",
            w.segments as f64,
        ),
        (
            "tidemark_wal_bytes",
            "gauge",
            "Bytes of WAL segments and checkpoint.",
            w.total_bytes as f64,
        ),
        (
            "tidemark_wal_fsyncs_total",
            "counter",
            "WAL fsyncs.",
            w.fsyncs as f64,
        ),
        (
            "tidemark_wal_fsync_seconds_total",
            "counter",
            "Time spent in WAL fsyncs.",
            w.fsync_time.as_secs_f64(),
        ),
        (
            "tidemark_wal_written_bytes_total",
            "counter",
            "Bytes written to the WAL.",
            w.bytes_written as f64,
        ),
    ];
    for (name, kind, help, v) in singles {
        family(&mut o, name, kind, help);
        let _ = writeln!(o, "{name} {v}");
    }

    family(
        &mut o,
        "tidemark_samples_rejected_total",
        "counter",
        "Samples not stored, by reason.",
    );
    for (reason, n) in [
        ("duplicate_ignored", &c.duplicates_ignored),
        ("duplicate", &c.duplicate),
        ("out_of_order", &c.out_of_order),
        ("out_of_bounds", &c.out_of_bounds),
    ] {
        let _ = writeln!(
            o,
            "tidemark_samples_rejected_total{{reason=\"{reason}\"}} {}",
            load(n)
        );
    }
    family(
        &mut o,
        "tidemark_scrape_targets",
        "gauge",
        "Scrape targets by job and health.",
    );
    for (job, health, n) in &targets.0 {
        let _ = writeln!(
            o,
            "tidemark_scrape_targets{{job=\"{}\",health=\"{}\"}} {n}",
            escape(job),
            escape(health)
        );
    }
    o
}
