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

use crate::api::server::{self as http_server, TlsHolder};
use crate::api::web::WebSecurity;
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
    /// Serve `/-/reload` and `/-/quit` (or set `web.enable_lifecycle`).
    #[arg(long)]
    enable_lifecycle: bool,
    /// Serve the admin API, `/api/v1/admin/tsdb/...` (or set `web.enable_admin_api`).
    #[arg(long)]
    enable_admin_api: bool,
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

fn load_config(path: Option<&PathBuf>) -> anyhow::Result<Config> {
    match path {
        None => Ok(Config::default_embedded()),
        Some(p) => Ok(Config::load(p)?),
    }
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
        let m = crate::sync::lock(&self.0);
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
                health: t.health.health,
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
        let targets = crate::sync::lock(&self.0).targets();
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

/// The web and logging settings in force: the flags over the config file.
struct Effective {
    listen: String,
    lifecycle: bool,
    admin_api: bool,
    log_level: String,
    log_format: config::LogFormat,
}

impl Effective {
    fn new(a: &Args, log: &super::LogFlags, cfg: &Config) -> Effective {
        Effective {
            listen: a
                .listen
                .clone()
                .unwrap_or_else(|| cfg.web.listen_address.clone()),
            lifecycle: a.enable_lifecycle || cfg.web.enable_lifecycle,
            admin_api: a.enable_admin_api || cfg.web.enable_admin_api,
            log_level: log.level.clone().unwrap_or_else(|| cfg.log.level.clone()),
            log_format: match log.format {
                Some(super::LogFormat::Text) => config::LogFormat::Text,
                Some(super::LogFormat::Json) => config::LogFormat::Json,
                None => cfg.log.format,
            },
        }
    }
}

/// What `/api/v1/status/flags` shows: the settings in force, under the names of the
/// Prometheus flags they correspond to.
fn flags(
    cfg: &Config,
    config_path: Option<&PathBuf>,
    data_dir: &std::path::Path,
    eff: &Effective,
    opts: &Options,
) -> BTreeMap<String, String> {
    let q = &cfg.query;
    let log_format = match eff.log_format {
        config::LogFormat::Text => "text",
        config::LogFormat::Json => "json",
    };
    [
        (
            "config.file",
            config_path.map_or(String::new(), |p| p.display().to_string()),
        ),
        ("storage.tsdb.path", data_dir.display().to_string()),
        ("web.listen-address", eff.listen.clone()),
        ("log.level", eff.log_level.clone()),
        ("log.format", log_format.to_string()),
        ("web.cors.origin", cfg.web.cors_origin.clone()),
        (
            "web.max-request-body-size",
            cfg.web.max_request_body_size.to_string(),
        ),
        ("web.max-connections", cfg.web.max_connections.to_string()),
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
        ("web.enable-lifecycle", eff.lifecycle.to_string()),
        ("web.enable-admin-api", eff.admin_api.to_string()),
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

pub(super) fn run(a: Args, log: super::LogFlags) -> anyhow::Result<()> {
    let cfg = load_config(a.config.as_ref())?;
    let eff = Effective::new(&a, &log, &cfg);
    let format = match eff.log_format {
        config::LogFormat::Text => super::LogFormat::Text,
        config::LogFormat::Json => super::LogFormat::Json,
    };
    super::init_logging(&eff.log_level, Some(format))?;
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
    let flags = flags(&cfg, a.config.as_ref(), &data_dir, &eff, &opts);
    // Checked before storage opens: a bad certificate or pattern is a start-up error that
    // names its file or key.
    let web = WebState {
        security: Arc::new(WebSecurity::new(&cfg.web)?),
        tls: Arc::new(TlsHolder::new(
            cfg.web
                .tls
                .as_ref()
                .map(http_server::load_tls)
                .transpose()?,
        )),
    };

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let db = Arc::new(
        Db::open(&data_dir, opts).with_context(|| format!("opening {}", data_dir.display()))?,
    );
    info!(data_dir = %data_dir.display(), "storage ready");
    let result = rt.block_on(serve(db.clone(), cfg, a.config.clone(), eff, flags, web));
    drop(rt);
    let db =
        Arc::try_unwrap(db).map_err(|_| anyhow::anyhow!("storage still in use at shutdown"))?;
    db.close()?;
    info!("storage closed");
    result
}

/// The parts of the web server a reload may change: users and TLS settings.
struct WebState {
    security: Arc<WebSecurity>,
    tls: Arc<TlsHolder>,
}

async fn serve(
    db: Arc<Db>,
    cfg: Config,
    config_path: Option<PathBuf>,
    eff: Effective,
    flags: BTreeMap<String, String>,
    web: WebState,
) -> anyhow::Result<()> {
    let manager = Arc::new(Mutex::new(Manager::new(db.clone())));
    let (reload_tx, mut reload_rx) =
        mpsc::channel::<oneshot::Sender<Result<(), api::ReloadError>>>(4);
    let (quit_tx, mut quit_rx) = mpsc::channel::<()>(1);
    let lifecycle = eff.lifecycle;
    let listen = eff.listen.clone();
    // The engine's limits are read once: a reload changes scrape jobs, not query limits.
    let engine = Arc::new(Engine::new(engine_options(&cfg)));
    let state = Arc::new(ApiState {
        config_yaml: cfg.render().into(),
        reload: lifecycle.then(|| reload_tx.clone()),
        quit: lifecycle.then(|| quit_tx.clone()),
        admin_api: eff.admin_api,
        web: web.security.clone(),
        flags,
        external_labels: cfg.global.external_labels.clone(),
        remote_write_receiver: cfg.web.enable_remote_write_receiver,
        ..ApiState::new(db.clone(), engine, Arc::new(ManagerView(manager.clone())))
    });
    let listener = http_server::bind(&listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let addr = listener.local_addr()?;
    info!(address = %addr, "listening");
    http_server::log_mode(&web.tls);
    if web.security.auth_enabled() {
        info!("basic auth is enabled");
    }
    let (stop_http, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(http_server::serve(
        listener,
        api::router(state.clone()),
        web.tls.clone(),
        http_server::Limits::new(&cfg.web),
        async move {
            let _ = stopped.await;
        },
    ));

    // Remote write starts before the first scrape, so its holds are taken (and a new remote's
    // start recorded) before anything it must send is written.
    let follower = db.wal_follower();
    follower.set_backlog_limit(cfg.storage.remote_write_backlog_limit.0);
    let mut remote = RemoteWrite::new(follower.clone());
    remote.apply(&cfg).await?;

    let first = jobs(&cfg)?;
    let handles = crate::sync::lock(&manager).apply(first);
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
        let reply: Option<oneshot::Sender<Result<(), api::ReloadError>>> = tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
            _ = quit_rx.recv() => {
                info!("shutdown requested through /-/quit");
                break;
            }
            _ = hup.recv() => None,
            r = reload_rx.recv() => r,
            _ = sd_tick.tick() => {
                // Re-read target files; unchanged targets keep their loops.
                match jobs(&current) {
                    Ok(j) => {
                        let h = crate::sync::lock(&manager).apply(j);
                        join_all(h).await;
                    }
                    Err(e) => warn!(error = %e, "file_sd refresh failed"),
                }
                continue;
            }
        };
        let outcome = match reload(config_path.as_ref(), &manager, &web, &state.config_yaml).await {
            Ok(cfg) => {
                warn_restart_only(&current, &cfg);
                info!(jobs = cfg.scrape_configs.len(), "configuration reloaded");
                follower.set_backlog_limit(cfg.storage.remote_write_backlog_limit.0);
                // A remote whose client cannot be built fails the reload's answer too (the
                // scrape jobs are applied by then; the previous queues keep running).
                let applied = remote.apply(&cfg).await.map_err(|e| {
                    error!(error = %e, "remote_write: the new configuration could not be applied; the previous queues keep running");
                    api::ReloadError::RemoteWrite(e)
                });
                current = cfg;
                sd_tick = tokio::time::interval(
                    file_sd_refresh(&current).unwrap_or(Duration::from_secs(3600)),
                );
                sd_tick.tick().await;
                applied
            }
            Err(e) => {
                error!(error = %e, "reload failed; the previous configuration stays in force");
                Err(refused(e))
            }
        };
        if let Some(r) = reply {
            let _ = r.send(outcome);
        }
    }
    info!("shutting down");
    state.ready.store(false, Ordering::Release);
    let handles = crate::sync::lock(&manager).shutdown();
    join_all(handles).await;
    // After the scrapes' last commits (a shutdown writes no staleness markers), so those are
    // sent too.
    remote.stop().await;
    maint.abort();
    let _ = stop_http.send(());
    let _ = server.await;
    db.sync()?;
    Ok(())
}

/// A reload that applied nothing (a bad file, certificate or job): `/-/reload` answers with
/// every cause on one line, outermost first, and the previous configuration stays.
fn refused(e: anyhow::Error) -> api::ReloadError {
    api::ReloadError::Config(format!("{e:#}"))
}

/// Loads the configuration again and applies its jobs, users and TLS settings (certificate
/// files read again, so a rotated certificate is picked up); on any error nothing changes.
async fn reload(
    path: Option<&PathBuf>,
    manager: &Arc<Mutex<Manager>>,
    web: &WebState,
    shown: &std::sync::RwLock<String>,
) -> anyhow::Result<Config> {
    let cfg = load_config(path)?;
    let tls = cfg
        .web
        .tls
        .as_ref()
        .map(http_server::load_tls)
        .transpose()?;
    let j = jobs(&cfg)?;
    let handles = crate::sync::lock(manager).apply(j);
    join_all(handles).await;
    web.tls.set(tls);
    web.security.set_users(&cfg.web.basic_auth_users);
    *crate::sync::write(shown) = cfg.render();
    Ok(cfg)
}

/// Warns about changed settings a reload does not apply (the listener, the router, the
/// engine, the logger and the storage are built once); the schema classifies every key.
fn warn_restart_only(old: &Config, new: &Config) {
    for key in config::restart_only_changes(old, new) {
        warn!(key, "changed setting takes effect at the next restart");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relabel::RelabelError;
    use crate::remote_write::RemoteWriteError;

    /// `/-/reload` answers with every cause of a refusal on one line, and names remote write
    /// when only a remote failed.
    #[test]
    fn a_failed_reload_answers_with_its_whole_cause() {
        let refused =
            refused(anyhow::anyhow!("p.yml:3:5: web.listen_address: bad").context("loading p.yml"));
        assert_eq!(
            refused.to_string(),
            "loading p.yml: p.yml:3:5: web.listen_address: bad"
        );
        let remote = api::ReloadError::RemoteWrite(RemoteWriteError::Relabel {
            name: "mimir".into(),
            source: RelabelError::ZeroModulus,
        });
        assert_eq!(
            remote.to_string(),
            "remote_write: remote_write mimir: write_relabel_configs: relabel configuration for \
             hashmod requires non-zero modulus"
        );
    }
}
