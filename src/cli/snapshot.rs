//! `tidemark snapshot`: a consistent copy of a data directory's blocks and head, safe to take
//! while an agent runs on it; start tidemark on the copy to restore it.

use std::path::PathBuf;

use anyhow::Context;

use super::DataDir;
use crate::model::parse_duration;
use crate::storage::{ReadOnlyDb, write_snapshot};

#[derive(clap::Args)]
pub(super) struct Args {
    #[command(flatten)]
    dir: DataDir,
    /// Where to write the snapshot: a new or empty directory.
    out: PathBuf,
    /// Span of the blocks the head's samples are written into.
    #[arg(long, default_value = "2h")]
    block_duration: String,
}

pub(super) fn run(a: Args) -> anyhow::Result<()> {
    let bd = parse_duration(&a.block_duration)
        .with_context(|| format!("invalid --block-duration {:?}", a.block_duration))?;
    let db = ReadOnlyDb::open(&a.dir.data_dir)
        .with_context(|| format!("cannot read {}", a.dir.data_dir.display()))?;
    for r in db.refused_blocks() {
        eprintln!(
            "warning: corrupt block {} is not in the snapshot: {}",
            r.path.display(),
            r.reason
        );
    }
    let stats = write_snapshot(&db.querier(), &a.out, bd)
        .with_context(|| format!("cannot write the snapshot to {}", a.out.display()))?;
    println!(
        "snapshot of {} written to {}: {} blocks copied, {} head series ({} samples) in {} new blocks",
        a.dir.data_dir.display(),
        a.out.display(),
        stats.blocks_copied,
        stats.head_series,
        stats.head_samples,
        stats.head_blocks
    );
    Ok(())
}
