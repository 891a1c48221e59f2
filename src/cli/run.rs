//! `tidemark run`: the agent. So far it opens the storage, replays the WAL, runs flush,
//! compaction and retention in the background, and shuts down cleanly on SIGTERM or SIGINT.
//! Scraping and the HTTP API are wired in as they land.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tracing::{error, info};

use crate::model::parse_duration;
use crate::storage::wal::FsyncPolicy;
use crate::storage::{Db, Options};

#[derive(clap::Parser)]
pub(super) struct Args {
    /// Data directory.
    #[arg(long, default_value = "./data")]
    data_dir: PathBuf,
    /// WAL fsync policy: `always`, or a group-commit interval such as `1s`.
    #[arg(long, default_value = "1s")]
    wal_fsync: String,
    /// Delete blocks older than this (Prometheus duration; `0` keeps data forever).
    #[arg(long, default_value = "15d")]
    retention_time: String,
}

/// Parses the `storage.wal_fsync` setting.
pub(crate) fn parse_fsync(s: &str) -> anyhow::Result<FsyncPolicy> {
    if s == "always" {
        return Ok(FsyncPolicy::Always);
    }
    let ms = parse_duration(s).with_context(|| "wal_fsync wants `always` or a duration")?;
    anyhow::ensure!(ms > 0, "wal_fsync interval must be positive (or `always`)");
    Ok(FsyncPolicy::Interval(Duration::from_millis(ms as u64)))
}

pub(super) fn run(a: Args) -> anyhow::Result<()> {
    let data_dir = a.data_dir;
    let opts = Options {
        fsync: parse_fsync(&a.wal_fsync)?,
        retention_time: parse_duration(&a.retention_time)?,
        ..Options::default()
    };
    let db = Arc::new(
        Db::open(&data_dir, opts).with_context(|| format!("opening {}", data_dir.display()))?,
    );
    info!(data_dir = %data_dir.display(), "tidemark started");

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let maint = {
            let db = db.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(60));
                loop {
                    tick.tick().await;
                    let db = db.clone();
                    match tokio::task::spawn_blocking(move || db.maintain()).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => error!(error = %e, "storage maintenance failed"),
                        Err(e) => error!(error = %e, "storage maintenance task panicked"),
                    }
                }
            })
        };
        shutdown_signal().await;
        maint.abort();
    });
    info!("shutting down");
    let db =
        Arc::try_unwrap(db).map_err(|_| anyhow::anyhow!("storage still in use at shutdown"))?;
    db.close()?;
    info!("storage closed");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
