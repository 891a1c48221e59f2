//! `tidemark run`: the agent. Opens storage, serves the API, scrapes the configured targets,
//! reloads on SIGHUP or `/-/reload`, and shuts down cleanly on SIGTERM or SIGINT.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use tokio::sync::{mpsc, oneshot};
use tracing::{error, info, warn};

use crate::api::{self, ActiveTarget, ApiState, DroppedTarget, MetadataRef, TargetsView};
use crate::config::{self, Config, WalFsync};
use crate::model::{format_duration, format_rfc3339, parse_duration};
use crate::query::{Engine, EngineOptions};
use crate::remote_write::RemoteWrite;
use crate::scrape::fetch::Fetcher;
use crate::scrape::job;
use crate::scrape::manager::{JobSpec, Manager, join_all};
use crate::storage::wal::FsyncPolicy;
use crate::storage::{Db, Options};

#[derive(clap::Parser)]
pub(super) struct Args {
    /// Configuration file (Prometheus-compatible YAML); without it the embedded default runs,
    /// scraping tidemark itself.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Data directory (overrides `storage.path`).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Listen address (overrides `web.listen_address`); port 0 picks a free port.
    #[arg(long)]
    listen: Option<String>,
    /// WAL fsync policy, `always` or a duration (overrides `storage.wal_fsync`).
    #[arg(long)]
    wal_fsync: Option<String>,
    /// Delete blocks older than this, `0` keeps forever (overrides `storage.retention.time`).
    #[arg(long)]
    retention_time: Option<String>,
    /// Serve `/-/reload` (overrides `web.enable_lifecycle`).
    #[arg(long)]
    enable_lifecycle: bool,
}

/// Parses a `--wal-fsync` value.
fn parse_fsync(s: &str) -> anyhow::Result<FsyncPolicy> {
    if s == "always" {
        return Ok(FsyncPolicy::Always);
    }
    let ms = parse_duration(s).with_context(|| "--wal-fsync wants `always` or a duration")?;
    anyhow::ensure!(
        ms > 0,
        "--wal-fsync interval must be positive (or `always`)"
    );
    Ok(FsyncPolicy::Interval(Duration::from_millis(ms as u64)))
}

fn load_config(path: Option<&PathBuf>) -> anyhow::Result<(Config, String)> {
    match path {
        None => Ok((
            Config::default_embedded(),
            config::DEFAULT_CONFIG_YAML.to_string(),
        )),
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            Ok((Config::load(p)?, redact(&text)))
        }
    }
}

/// Hides inline secrets (`password`, `credentials`, `bearer_token`, inline TLS `key`) in YAML
/// text, line by line, as `/api/v1/status/config` must not show them.
fn redact(yaml: &str) -> String {
    const SECRET_KEYS: [&str; 4] = ["password", "credentials", "bearer_token", "key"];
    let indent = |l: &str| l.len() - l.trim_start().len();
    let mut out = Vec::new();
    // Inside a redacted block scalar (`key: |`): lines indented deeper than its key.
    let mut block_indent: Option<usize> = None;
    for line in yaml.lines() {
        if let Some(i) = block_indent {
            if line.trim().is_empty() || indent(line) > i {
                continue;
            }
            block_indent = None;
        }
        let body = line.trim_start().trim_start_matches("- ");
        let secret = body
            .split_once(':')
            .filter(|(k, v)| SECRET_KEYS.contains(&k.trim()) && !v.trim().is_empty());
        match (secret, line.find(':')) {
            (Some((_, v)), Some(i)) => {
                out.push(format!("{}: <secret>", &line[..i]));
                if v.trim().starts_with(['|', '>']) {
                    block_indent = Some(indent(line));
                }
            }
            _ => out.push(line.to_string()),
        }
    }
    out.join("\n")
}

/// Every job of the configuration, with file-discovered targets read now.
fn jobs(cfg: &Config) -> anyhow::Result<Vec<JobSpec<Fetcher>>> {
    let mut out = Vec::new();
    for sc in &cfg.scrape_configs {
        let mut groups = Vec::new();
        for fsd in &sc.file_sd_configs {
            match config::file_sd::load(&fsd.files) {
                Ok(gs) => groups.extend(gs.into_iter().map(|g| (g.targets, g.labels))),
                // A broken target file keeps the job's other targets running, as in Prometheus.
                Err(e) => {
                    warn!(job = %sc.job_name, error = %e, "file_sd: cannot read target files")
                }
            }
        }
        out.push(job::build(sc, &groups)?);
    }
    Ok(out)
}

/// The shortest file_sd refresh interval of the configuration, if it has any.
fn file_sd_refresh(cfg: &Config) -> Option<Duration> {
    cfg.scrape_configs
        .iter()
        .flat_map(|sc| {
            sc.file_sd_configs
                .iter()
                .map(|f| f.refresh_interval.to_std())
        })
        .min()
}

/// The manager's targets in the API's shape.
struct ManagerView(Arc<Mutex<Manager>>);

impl TargetsView for ManagerView {
    fn targets(&self) -> (Vec<ActiveTarget>, Vec<DroppedTarget>) {
        let m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let map = |l: &crate::model::Labels| -> BTreeMap<String, String> {
            l.iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect()
        };
        let active = m
            .targets()
            .into_iter()
            .map(|t| ActiveTarget {
                discovered_labels: map(&t.target.discovered),
                labels: map(&t.target.labels),
                scrape_pool: t.job,
                scrape_url: t.target.url.clone(),
                global_url: t.target.url,
                last_error: t.health.last_error,
                last_scrape: if t.health.last_scrape_ms == 0 {
                    "0001-01-01T00:00:00Z".into()
                } else {
                    format_rfc3339(t.health.last_scrape_ms)
                },
                last_scrape_duration: t.health.last_scrape_duration,
                health: t.health.health.to_string(),
                scrape_interval: format_duration(t.target.interval.as_millis() as i64),
                scrape_timeout: format_duration(t.target.timeout.as_millis() as i64),
            })
            .collect();
        let dropped = m
            .dropped()
            .iter()
            .map(|d| DroppedTarget {
                discovered_labels: d.discovered.clone(),
                scrape_pool: d.job.clone(),
            })
            .collect();
        (active, dropped)
    }

    fn metadata(&self, metric: Option<&str>, f: &mut dyn FnMut(&str, MetadataRef<'_>)) {
        // Snapshots are shared: the manager's lock is held only while they are collected.
        let targets = self.0.lock().unwrap_or_else(|e| e.into_inner()).targets();
        for t in targets {
            let Some(report) = t.health.last_report else {
                continue;
            };
            let entries: Box<dyn Iterator<Item = _>> = match metric {
                Some(m) => Box::new(report.metadata.get_key_value(m).into_iter()),
                None => Box::new(report.metadata.iter()),
            };
            for (name, m) in entries {
                let r = MetadataRef {
                    kind: m.kind.as_str(),
                    help: &m.help,
                    unit: &m.unit,
                };
                f(name, r);
            }
        }
    }
}

/// The query engine's limits from `query:`.
fn engine_options(cfg: &Config) -> EngineOptions {
    let ms = |d: &config::Duration| Duration::from_millis(d.0.max(0) as u64);
    EngineOptions {
        timeout: ms(&cfg.query.timeout),
        max_samples: cfg.query.max_samples as usize,
        lookback_delta: ms(&cfg.query.lookback_delta),
        max_concurrent: cfg.query.max_concurrency.max(1) as usize,
        ..EngineOptions::default()
    }
}

/// What `/api/v1/status/flags` shows: the settings in force, under the names of the
/// Prometheus flags they correspond to.
fn flags(
    cfg: &Config,
    config_path: Option<&PathBuf>,
    data_dir: &std::path::Path,
    listen: &str,
    opts: &Options,
    lifecycle: bool,
) -> BTreeMap<String, String> {
    let q = &cfg.query;
    [
        (
            "config.file",
            config_path.map_or(String::new(), |p| p.display().to_string()),
        ),
        ("storage.tsdb.path", data_dir.display().to_string()),
        ("web.listen-address", listen.to_string()),
        (
            "storage.tsdb.retention.time",
            format_duration(opts.retention_time),
        ),
        (
            "storage.tsdb.retention.size",
            format!("{}B", opts.retention_size),
        ),
        (
            "storage.tsdb.min-block-duration",
            format_duration(opts.block_duration),
        ),
        ("web.enable-lifecycle", lifecycle.to_string()),
        ("web.enable-admin-api", cfg.web.enable_admin_api.to_string()),
        (
            "web.enable-remote-write-receiver",
            cfg.web.enable_remote_write_receiver.to_string(),
        ),
        ("query.timeout", format_duration(q.timeout.0)),
        ("query.max-samples", q.max_samples.to_string()),
        ("query.lookback-delta", format_duration(q.lookback_delta.0)),
        ("query.max-concurrency", q.max_concurrency.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

pub(super) fn run(a: Args) -> anyhow::Result<()> {
    let (cfg, yaml) = load_config(a.config.as_ref())?;
    let data_dir = a
        .data_dir
        .clone()
        .unwrap_or_else(|| cfg.storage.path.clone());
    let fsync = match &a.wal_fsync {
        Some(s) => parse_fsync(s)?,
        None => match cfg.storage.wal_fsync {
            WalFsync::Always => FsyncPolicy::Always,
            WalFsync::Interval(d) => FsyncPolicy::Interval(d.to_std()),
        },
    };
    let retention_time = match &a.retention_time {
        Some(s) => parse_duration(s)?,
        None => cfg.storage.retention.time.0,
    };
    let opts = Options {
        fsync,
        block_duration: cfg.storage.block_duration.0,
        retention_time,
        retention_size: cfg.storage.retention.size.0,
        ..Options::default()
    };
    let listen = a
        .listen
        .clone()
        .unwrap_or_else(|| cfg.web.listen_address.clone());
    let lifecycle = a.enable_lifecycle || cfg.web.enable_lifecycle;
    let flags = flags(
        &cfg,
        a.config.as_ref(),
        &data_dir,
        &listen,
        &opts,
        lifecycle,
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let db = Arc::new(
        Db::open(&data_dir, opts).with_context(|| format!("opening {}", data_dir.display()))?,
    );
    info!(data_dir = %data_dir.display(), "storage ready");
    let result = rt.block_on(serve(
        db.clone(),
        cfg,
        yaml,
        a.config.clone(),
        listen,
        lifecycle,
        flags,
    ));
    drop(rt);
    let db =
        Arc::try_unwrap(db).map_err(|_| anyhow::anyhow!("storage still in use at shutdown"))?;
    db.close()?;
    info!("storage closed");
    result
}

async fn serve(
    db: Arc<Db>,
    cfg: Config,
    yaml: String,
    config_path: Option<PathBuf>,
    listen: String,
    lifecycle: bool,
    flags: BTreeMap<String, String>,
) -> anyhow::Result<()> {
    let manager = Arc::new(Mutex::new(Manager::new(db.clone())));
    let (reload_tx, mut reload_rx) = mpsc::channel::<oneshot::Sender<Result<(), String>>>(4);
    // The engine's limits are read once: a reload changes scrape jobs, not query limits.
    let engine = Arc::new(Engine::new(engine_options(&cfg)));
    let state = Arc::new(ApiState {
        config_yaml: yaml,
        reload: lifecycle.then(|| reload_tx.clone()),
        flags,
        external_labels: cfg.global.external_labels.clone(),
        ..ApiState::new(db.clone(), engine, Arc::new(ManagerView(manager.clone())))
    });
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let addr = listener.local_addr()?;
    info!(address = %addr, "listening");
    let (stop_http, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(
        axum::serve(listener, api::router(state.clone()))
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .into_future(),
    );

    // Remote write starts before the first scrape, so its holds are taken (and a new remote's
    // start recorded) before anything it must send is written.
    let follower = db.wal_follower();
    follower.set_backlog_limit(cfg.storage.remote_write_backlog_limit.0);
    let mut remote = RemoteWrite::new(follower.clone());
    remote.apply(&cfg).await?;

    let first = jobs(&cfg)?;
    let handles = manager
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .apply(first);
    join_all(handles).await;
    state.ready.store(true, Ordering::Release);
    info!(jobs = cfg.scrape_configs.len(), "tidemark started");

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

    let mut current = cfg;
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut sd_tick =
        tokio::time::interval(file_sd_refresh(&current).unwrap_or(Duration::from_secs(3600)));
    sd_tick.tick().await;
    loop {
        let reply: Option<oneshot::Sender<Result<(), String>>> = tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
            _ = hup.recv() => None,
            r = reload_rx.recv() => r,
            _ = sd_tick.tick() => {
                // Re-read target files; unchanged targets keep their loops.
                match jobs(&current) {
                    Ok(j) => {
                        let h = manager.lock().unwrap_or_else(|e| e.into_inner()).apply(j);
                        join_all(h).await;
                    }
                    Err(e) => warn!(error = %e, "file_sd refresh failed"),
                }
                continue;
            }
        };
        let outcome = reload(config_path.as_ref(), &manager).await;
        match &outcome {
            Ok(cfg) => {
                info!(jobs = cfg.scrape_configs.len(), "configuration reloaded");
                follower.set_backlog_limit(cfg.storage.remote_write_backlog_limit.0);
                if let Err(e) = remote.apply(cfg).await {
                    error!(error = %e, "remote_write: the new configuration could not be applied; the previous queues keep running");
                }
                current = cfg.clone();
                sd_tick = tokio::time::interval(
                    file_sd_refresh(&current).unwrap_or(Duration::from_secs(3600)),
                );
                sd_tick.tick().await;
            }
            Err(e) => {
                error!(error = %e, "reload failed; the previous configuration stays in force")
            }
        }
        if let Some(r) = reply {
            let _ = r.send(outcome.map(|_| ()).map_err(|e| format!("{e:#}")));
        }
    }
    info!("shutting down");
    state.ready.store(false, Ordering::Release);
    let handles = manager.lock().unwrap_or_else(|e| e.into_inner()).shutdown();
    join_all(handles).await;
    // After the scrapes' last commits (their stale markers), so those are sent too.
    remote.stop().await;
    maint.abort();
    let _ = stop_http.send(());
    let _ = server.await;
    db.sync()?;
    Ok(())
}

/// Loads the configuration again and applies its jobs; on any error nothing changes.
async fn reload(path: Option<&PathBuf>, manager: &Arc<Mutex<Manager>>) -> anyhow::Result<Config> {
    let (cfg, _) = load_config(path)?;
    let j = jobs(&cfg)?;
    let handles = manager.lock().unwrap_or_else(|e| e.into_inner()).apply(j);
    join_all(handles).await;
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn secrets_are_redacted_from_the_shown_config() {
        let y = "basic_auth:\n  username: u\n  password: hunter2\n  password_file: /etc/p\nauthorization:\n  credentials: tok\ntls_config:\n  key: |\n    -----BEGIN PRIVATE KEY-----\n    c2VjcmV0\n  server_name: x\n";
        let r = redact(y);
        assert!(
            !r.contains("hunter2") && !r.contains("tok") && !r.contains("c2VjcmV0"),
            "{r}"
        );
        assert!(r.contains("  server_name: x"), "{r}");
        assert!(r.contains("username: u") && r.contains("password_file: /etc/p"));
        assert!(r.contains("password: <secret>"));
    }
}
