//! `tidemark inspect`: what a data directory holds, read safely beside a running agent.

use std::collections::{BTreeMap, HashMap, HashSet};

use anyhow::Context;
use serde_json::json;

use super::DataDir;
use crate::model::{Labels, METRIC_NAME, format_rfc3339};
use crate::storage::chunk::histogram::is_histogram_chunk;
use crate::storage::sstable::Block;
use crate::storage::{ReadOnlyDb, list_quarantined};

#[derive(clap::Args)]
pub(super) struct Args {
    #[command(flatten)]
    dir: DataDir,
    /// Print JSON instead of tables.
    #[arg(long)]
    json: bool,
    /// How many metric names and labels to list in the cardinality tables.
    #[arg(long, default_value_t = 10)]
    top: usize,
}

pub(super) fn run(a: Args) -> anyhow::Result<()> {
    // Every block is checked in full (each chunk's checksum), so a damaged block is reported
    // as corrupt here even before the agent's scrub or a query has read it.
    let db = ReadOnlyDb::open_verified(&a.dir.data_dir)
        .with_context(|| format!("opening {}", a.dir.data_dir.display()))?;
    let mut report = build(&db, a.top)?;
    let quarantined: Vec<_> = list_quarantined(&a.dir.data_dir)?
        .into_iter()
        .map(|q| json!({"path": q.path.display().to_string(), "bytes": q.size_bytes, "reason": q.reason}))
        .collect();
    report["quarantinedBlocks"] = quarantined.into();
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_text(&report);
    }
    Ok(())
}

/// How many of a block's series hold histogram samples, and how many histogram samples it
/// holds (its `samples` count both kinds): each chunk's header byte says its kind.
fn histogram_counts(b: &Block) -> anyhow::Result<(u64, u64)> {
    let (mut series, mut samples) = (0u64, 0u64);
    let mut bytes = Vec::new();
    for id in 0..b.num_series() {
        let (_, chunks) = b.series(id)?;
        let mut any = false;
        for c in &chunks {
            b.read_chunk_into(c, &mut bytes)?;
            if is_histogram_chunk(&bytes) {
                samples += u64::from(c.num_samples);
                any = true;
            }
        }
        series += u64::from(any);
    }
    Ok((series, samples))
}

fn build(db: &ReadOnlyDb, top: usize) -> anyhow::Result<serde_json::Value> {
    let blocks: Vec<_> = db
        .catalog()
        .blocks
        .iter()
        .map(|b| {
            let m = b.meta();
            let (hseries, hsamples) = histogram_counts(b)?;
            Ok(json!({
                "id": m.id.as_str(), "minTime": format_rfc3339(m.mint), "maxTime": format_rfc3339(m.maxt),
                "level": m.level, "series": m.num_series, "samples": m.num_samples, "chunks": m.num_chunks,
                "histogramSeries": hseries, "histogramSamples": hsamples,
                "bytes": m.size_bytes,
                "bytesPerSample": if m.num_samples > 0 { m.size_bytes as f64 / m.num_samples as f64 } else { 0.0 },
            }))
        })
        .collect::<anyhow::Result<_>>()?;
    let refused: Vec<_> = db
        .refused_blocks()
        .iter()
        .map(|r| json!({"path": r.path.display().to_string(), "reason": r.reason}))
        .collect();

    let head = db.head();
    // Samples deleted through the admin API stay in the head until it is flushed; they are not
    // stored data any more, so they are not counted.
    let deleted = db.tombstones();
    let (mut head_samples, mut head_histograms, mut head_histogram_series) =
        (0usize, 0usize, 0usize);
    for mut s in head.select(&[], i64::MIN, i64::MAX)? {
        deleted.filter(&s.labels, &mut s.samples);
        deleted.filter_histograms(&s.labels, &mut s.histograms);
        // Every sample counts; histogram ones are also counted on their own.
        head_samples += s.samples.len() + s.histograms.len();
        head_histograms += s.histograms.len();
        head_histogram_series += usize::from(!s.histograms.is_empty());
    }
    let range = head.time_range();
    let rs = db.replay_stats();
    let wal = json!({
        "segments": rs.segments, "records": rs.records, "seriesRecords": rs.series,
        "samples": rs.samples, "histogramSamples": rs.histograms, "checkpoint": rs.checkpoint,
        "samplesOutOfRange": db.replay_out_of_range(),
        "corruptions": rs.corruptions.iter().map(|c| json!({
            "segment": c.segment.display().to_string(), "offset": c.offset, "reason": c.reason,
        })).collect::<Vec<_>>(),
    });

    // Cardinality over every stored series, each counted once however many blocks hold it.
    let all: HashSet<Labels> = db
        .querier()
        .series(&[], i64::MIN, i64::MAX)?
        .into_iter()
        .collect();
    let mut by_name: HashMap<&str, u64> = HashMap::new();
    let mut values: BTreeMap<&str, HashSet<&str>> = BTreeMap::new();
    for l in &all {
        *by_name.entry(l.metric_name().unwrap_or("")).or_default() += 1;
        for (n, v) in l.iter().filter(|(n, _)| *n != METRIC_NAME) {
            values.entry(n).or_default().insert(v);
        }
    }
    let mut names: Vec<_> = by_name.into_iter().collect();
    names.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let mut labels: Vec<_> = values.iter().map(|(n, v)| (*n, v.len())).collect();
    labels.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));

    Ok(json!({
        "blocks": blocks,
        "refusedBlocks": refused,
        "head": {
            "series": head.num_series(), "chunks": head.num_chunks(), "samples": head_samples,
            "histogramSeries": head_histogram_series, "histogramSamples": head_histograms,
            "minTime": range.map(|r| format_rfc3339(r.0)), "maxTime": range.map(|r| format_rfc3339(r.1)),
        },
        "wal": wal,
        "tombstonedSeries": deleted.num_series(),
        "series": all.len(),
        "topMetricNames": names.iter().take(top).map(|(n, c)| json!({"name": n, "series": c})).collect::<Vec<_>>(),
        "topLabels": labels.iter().take(top).map(|(n, c)| json!({"name": n, "values": c})).collect::<Vec<_>>(),
    }))
}

fn print_text(r: &serde_json::Value) {
    let s = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "-".into(),
        v => v.to_string(),
    };
    let empty = Vec::new();
    let list = |k: &str| r[k].as_array().unwrap_or(&empty).clone();
    println!("BLOCKS");
    println!(
        "{:<26}  {:<24}  {:<24}  {:>5}  {:>8}  {:>11}  {:>8}  {:>11}  {:>12}  {:>8}",
        "ID",
        "MIN TIME",
        "MAX TIME",
        "LEVEL",
        "SERIES",
        "SAMPLES",
        "H.SERIES",
        "H.SAMPLES",
        "BYTES",
        "B/SAMPLE"
    );
    for b in list("blocks") {
        println!(
            "{:<26}  {:<24}  {:<24}  {:>5}  {:>8}  {:>11}  {:>8}  {:>11}  {:>12}  {:>8.3}",
            s(&b["id"]),
            s(&b["minTime"]),
            s(&b["maxTime"]),
            s(&b["level"]),
            s(&b["series"]),
            s(&b["samples"]),
            s(&b["histogramSeries"]),
            s(&b["histogramSamples"]),
            s(&b["bytes"]),
            b["bytesPerSample"].as_f64().unwrap_or(0.0)
        );
    }
    for b in list("refusedBlocks") {
        println!("CORRUPT  {}: {}", s(&b["path"]), s(&b["reason"]));
    }
    for b in list("quarantinedBlocks") {
        println!(
            "QUARANTINED  {} ({} bytes): {}",
            s(&b["path"]),
            s(&b["bytes"]),
            s(&b["reason"])
        );
    }
    let h = &r["head"];
    println!(
        "\nHEAD     series {}  chunks {}  samples {}  histogram series {}  histogram samples {}  from {} to {}",
        s(&h["series"]),
        s(&h["chunks"]),
        s(&h["samples"]),
        s(&h["histogramSeries"]),
        s(&h["histogramSamples"]),
        s(&h["minTime"]),
        s(&h["maxTime"])
    );
    let w = &r["wal"];
    println!(
        "WAL      segments {}  records {}  samples {}  histogram samples {}  checkpoint {}",
        s(&w["segments"]),
        s(&w["records"]),
        s(&w["samples"]),
        s(&w["histogramSamples"]),
        s(&w["checkpoint"])
    );
    if w["samplesOutOfRange"].as_u64().unwrap_or(0) > 0 {
        println!(
            "WAL OUT OF RANGE  {} samples outside years 0000 to 9999 (written by an older version); an agent drops them at open",
            s(&w["samplesOutOfRange"])
        );
    }
    for c in w["corruptions"].as_array().unwrap_or(&empty) {
        println!(
            "WAL CORRUPTION  {} at offset {}: {}",
            s(&c["segment"]),
            s(&c["offset"]),
            s(&c["reason"])
        );
    }
    println!("\nSERIES   {}", s(&r["series"]));
    println!("\nTOP METRIC NAMES BY SERIES");
    for n in list("topMetricNames") {
        println!("{:>10}  {}", s(&n["series"]), s(&n["name"]));
    }
    println!("\nHIGHEST-CARDINALITY LABELS");
    for n in list("topLabels") {
        println!("{:>10}  {}", s(&n["values"]), s(&n["name"]));
    }
}
