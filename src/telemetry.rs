//! The agent's own metrics, in the Prometheus text format, served at `/metrics` and scraped by
//! the embedded default configuration.
//!
//! Reads counters that storage and scraping keep; it must never change them.

use std::fmt::Write;
use std::sync::atomic::Ordering;

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
    family(
        &mut o,
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since the Unix epoch in seconds.",
    );
    let _ = writeln!(o, "process_start_time_seconds {start_time_secs}");

    let c = db.counters();
    family(
        &mut o,
        "tidemark_samples_appended_total",
        "counter",
        "Samples stored.",
    );
    let _ = writeln!(
        o,
        "tidemark_samples_appended_total {}",
        c.appended.load(Ordering::Relaxed)
    );
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
            n.load(Ordering::Relaxed)
        );
    }
    family(
        &mut o,
        "tidemark_head_series",
        "gauge",
        "Series in the head.",
    );
    let _ = writeln!(o, "tidemark_head_series {}", db.head().num_series());
    family(
        &mut o,
        "tidemark_head_flushes_total",
        "counter",
        "Head windows flushed to blocks.",
    );
    let _ = writeln!(
        o,
        "tidemark_head_flushes_total {}",
        c.flushes.load(Ordering::Relaxed)
    );
    family(
        &mut o,
        "tidemark_compactions_total",
        "counter",
        "Block compactions done.",
    );
    let _ = writeln!(
        o,
        "tidemark_compactions_total {}",
        c.compactions.load(Ordering::Relaxed)
    );
    family(
        &mut o,
        "tidemark_retention_deleted_blocks_total",
        "counter",
        "Blocks deleted by retention.",
    );
    let _ = writeln!(
        o,
        "tidemark_retention_deleted_blocks_total {}",
        c.retention_deletes.load(Ordering::Relaxed)
    );

    let cat = db.catalog();
    family(&mut o, "tidemark_blocks", "gauge", "Published blocks.");
    let _ = writeln!(o, "tidemark_blocks {}", cat.blocks.len());
    family(
        &mut o,
        "tidemark_blocks_bytes",
        "gauge",
        "Bytes of the published blocks on disk.",
    );
    let _ = writeln!(o, "tidemark_blocks_bytes {}", cat.size_bytes());
    family(
        &mut o,
        "tidemark_blocks_refused",
        "gauge",
        "Blocks refused as corrupt at open.",
    );
    let _ = writeln!(o, "tidemark_blocks_refused {}", db.refused_blocks().len());

    let w = db.wal_stats();
    family(
        &mut o,
        "tidemark_wal_segments",
        "gauge",
        "WAL segment files.",
    );
    let _ = writeln!(o, "tidemark_wal_segments {}", w.segments);
    family(
        &mut o,
        "tidemark_wal_bytes",
        "gauge",
        "Bytes of WAL segments and checkpoint.",
    );
    let _ = writeln!(o, "tidemark_wal_bytes {}", w.total_bytes);
    family(
        &mut o,
        "tidemark_wal_fsyncs_total",
        "counter",
        "WAL fsyncs.",
    );
    let _ = writeln!(o, "tidemark_wal_fsyncs_total {}", w.fsyncs);
    family(
        &mut o,
        "tidemark_wal_fsync_seconds_total",
        "counter",
        "Time spent in WAL fsyncs.",
    );
    let _ = writeln!(
        o,
        "tidemark_wal_fsync_seconds_total {}",
        w.fsync_time.as_secs_f64()
    );
    family(
        &mut o,
        "tidemark_wal_written_bytes_total",
        "counter",
        "Bytes written to the WAL.",
    );
    let _ = writeln!(o, "tidemark_wal_written_bytes_total {}", w.bytes_written);

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
