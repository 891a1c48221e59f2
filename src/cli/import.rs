//! `tidemark import`: backfill OpenMetrics text with timestamps into blocks.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{Context, bail};

use super::{DataDir, Progress};
use crate::model::{
    Labels, MAX_TIME, MIN_TIME, Sample, format_rfc3339, is_storable_time, parse_duration,
};
use crate::scrape::parse::{Entry, Format, Parser};
use crate::storage;

#[derive(clap::Args)]
pub(super) struct Args {
    #[command(flatten)]
    dir: DataDir,
    /// OpenMetrics text file; every sample must carry a timestamp. Ends with `# EOF`.
    file: PathBuf,
    /// Time span of each written block.
    #[arg(long, default_value = "2h")]
    block_duration: String,
}

/// Every series of an OpenMetrics body, each with its samples sorted by time. A sample outside
/// the storable range, or after `max_t` (the clock plus the future bound the agent applies),
/// refuses the whole body: a block from the future would make retention, counted from the
/// newest stored sample, delete every other block.
pub(crate) fn parse_openmetrics(
    body: &[u8],
    max_t: i64,
) -> anyhow::Result<Vec<(Labels, Vec<Sample>)>> {
    let mut index: HashMap<&str, usize> = HashMap::new();
    let mut series: Vec<(Labels, Vec<(Sample, u32)>)> = Vec::new();
    let total_lines = body.iter().filter(|&&b| b == b'\n').count() as u64;
    let mut progress = Progress::new("parsing", total_lines);
    let mut lines = 0u64;
    for entry in Parser::new(body, Format::OpenMetrics) {
        let Entry::Sample(s) = entry? else { continue };
        let Some(t) = s.timestamp() else {
            bail!(
                "line {}: sample without a timestamp; import needs one on every sample",
                s.line()
            );
        };
        if !is_storable_time(t) {
            bail!(
                "line {}: timestamp {t} ms is outside the storable range {} to {} ({MIN_TIME} to {MAX_TIME} ms); nothing was imported",
                s.line(),
                format_rfc3339(MIN_TIME),
                format_rfc3339(MAX_TIME)
            );
        }
        if t > max_t {
            bail!(
                "line {}: timestamp {} is more than {} ahead of this machine's clock; nothing was imported (retention counts from the newest sample, so a block from the future would delete every older one)",
                s.line(),
                format_rfc3339(t),
                crate::model::format_duration(storage::MAX_AHEAD_MS)
            );
        }
        let i = match index.get(s.series()) {
            Some(&i) => i,
            None => {
                let labels = s.to_labels()?;
                series.push((labels, Vec::new()));
                index.insert(s.series(), series.len() - 1);
                series.len() - 1
            }
        };
        series[i].1.push((Sample::new(t, s.value()), s.line()));
        lines += 1;
        if lines.is_multiple_of(65_536) {
            progress.set(u64::from(s.line()));
        }
    }
    progress.finish();
    // One series may be spelled in two ways (label order, escapes): merge by identity.
    let mut merged: HashMap<Labels, Vec<(Sample, u32)>> = HashMap::new();
    for (l, s) in series {
        merged.entry(l).or_default().extend(s);
    }
    let mut out = Vec::with_capacity(merged.len());
    for (labels, mut samples) in merged {
        samples.sort_by_key(|(s, line)| (s.t, *line));
        let mut kept: Vec<Sample> = Vec::with_capacity(samples.len());
        let mut prev_line = 0;
        for (s, line) in samples {
            if let Some(last) = kept.last().filter(|last| last.t == s.t) {
                if last.v.to_bits() != s.v.to_bits() {
                    bail!(
                        "lines {prev_line} and {line}: two different values for {labels} at timestamp {} ms",
                        s.t
                    );
                }
                continue;
            }
            kept.push(s);
            prev_line = line;
        }
        out.push((labels, kept));
    }
    Ok(out)
}

pub(super) fn run(a: Args) -> anyhow::Result<()> {
    let bd = parse_duration(&a.block_duration)?;
    if bd <= 0 {
        bail!("--block-duration must be positive");
    }
    let body = std::fs::read(&a.file).with_context(|| format!("reading {}", a.file.display()))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let max_t = now.saturating_add(storage::MAX_AHEAD_MS);
    let series =
        parse_openmetrics(&body, max_t).with_context(|| format!("{}", a.file.display()))?;
    let samples: u64 = series.iter().map(|(_, s)| s.len() as u64).sum();
    if samples == 0 {
        bail!("{}: no samples to import", a.file.display());
    }
    let n_series = series.len();
    let mut progress = Progress::new("writing", samples);
    let blocks = storage::write_blocks(&a.dir.data_dir, series, bd, |done| progress.set(done))?;
    progress.finish();
    let bytes: u64 = blocks.iter().map(|b| b.size_bytes).sum();
    println!(
        "imported {n_series} series, {samples} samples into {} blocks, {bytes} bytes ({:.3} bytes/sample) in {}",
        blocks.len(),
        bytes as f64 / samples as f64,
        a.dir.data_dir.join("blocks").display()
    );
    Ok(())
}
