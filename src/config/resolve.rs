//! From the config as written to the config the agent runs: inherited values filled in,
//! legacy bearer tokens folded into `authorization`, relative file names joined to the
//! directory of the config file.
//!
//! A pure function: it reads no file and checks nothing. It runs after validation, which sees
//! the config as written (so its messages quote what the user wrote) and computes the few
//! inherited values it compares with the same functions as here ([`global`], [`inherit`],
//! [`auth_type`]).

use std::path::{Path, PathBuf};

use super::schema::{
    Authorization, BasicAuth, Config, FileSdConfig, GlobalConfig, RemoteWriteConfig, ScrapeConfig,
    ScrapeProtocol, TlsConfig, WebConfig, WebTlsConfig,
};
use super::units::Secret;

/// The config as the agent runs it, built from the validated config as written.
///
/// - As in Prometheus, a zero interval, timeout or limit in a job means "inherit from
///   `global`", an empty protocol list the global list, and a zero global timeout "10s, or
///   the interval if shorter".
/// - `bearer_token`/`bearer_token_file` are folded into `authorization`, so consumers only
///   look at `authorization`; an `authorization` type is trimmed, `Bearer` when empty.
/// - `base_dir` is the config file's directory: relative password, credential and TLS file
///   names and file_sd patterns are joined to it, as Prometheus does. `None` (text parsed
///   without a file) leaves them as written. `storage.path` is never joined: like a
///   `--data-dir` flag, it is relative to the working directory.
pub(super) fn resolve(parsed: Config, base_dir: Option<&Path>) -> Config {
    // Every section named: a new one must be placed here, resolved or kept as written.
    let Config {
        global,
        scrape_configs,
        storage,
        web,
        query,
        log,
        remote_write,
    } = parsed;
    // A job without a protocol list takes the global one only when it was written: otherwise
    // its own native histogram setting picks the default (Prometheus 3's rule).
    let global_protocols = global.scrape_protocols.clone();
    let global = self::global(global);
    let scrape_configs = scrape_configs
        .into_iter()
        .map(|sc| scrape(sc, &global, &global_protocols, base_dir))
        .collect();
    let remote_write = remote_write
        .into_iter()
        .map(|rw| remote(rw, base_dir))
        .collect();
    let web = WebConfig {
        tls: web.tls.map(|t| web_tls(t, base_dir)),
        ..web
    };
    Config {
        global,
        scrape_configs,
        storage,
        web,
        query,
        log,
        remote_write,
    }
}

/// `value`, or `inherited` when `value` is unset (zero or empty).
pub(super) fn inherit<T: PartialEq + Default>(value: T, inherited: T) -> T {
    if value == T::default() {
        inherited
    } else {
        value
    }
}

/// The `global` section with Prometheus's defaults for what it leaves unset.
pub(super) fn global(g: GlobalConfig) -> GlobalConfig {
    let defaults = GlobalConfig::default();
    let scrape_interval = inherit(g.scrape_interval, defaults.scrape_interval);
    GlobalConfig {
        scrape_interval,
        scrape_timeout: inherit(
            g.scrape_timeout,
            defaults.scrape_timeout.min(scrape_interval),
        ),
        evaluation_interval: inherit(g.evaluation_interval, defaults.evaluation_interval),
        scrape_protocols: inherit(g.scrape_protocols, defaults.scrape_protocols),
        scrape_native_histograms: g
            .scrape_native_histograms
            .or(defaults.scrape_native_histograms),
        ..g
    }
}

/// A job's protocol list: its own, else the global one as written, else Prometheus 3's
/// default for whether the job scrapes native histograms.
pub(super) fn job_protocols(
    own: &[ScrapeProtocol],
    global_written: &[ScrapeProtocol],
    native_histograms: bool,
) -> Vec<ScrapeProtocol> {
    if !own.is_empty() {
        own.to_vec()
    } else if !global_written.is_empty() {
        global_written.to_vec()
    } else if native_histograms {
        ScrapeProtocol::PROTO_FIRST.to_vec()
    } else {
        ScrapeProtocol::DEFAULT.to_vec()
    }
}

/// An `authorization` type as used: trimmed, `Bearer` when empty.
pub(super) fn auth_type(written: &str) -> String {
    match written.trim() {
        "" => "Bearer".into(),
        t => t.to_string(),
    }
}

/// One job with what it inherits from the resolved `g`.
fn scrape(
    sc: ScrapeConfig,
    g: &GlobalConfig,
    global_protocols: &[ScrapeProtocol],
    base: Option<&Path>,
) -> ScrapeConfig {
    let scrape_interval = inherit(sc.scrape_interval, g.scrape_interval);
    let native = sc
        .scrape_native_histograms
        .or(g.scrape_native_histograms)
        .unwrap_or(false);
    let (authorization, bearer_token, bearer_token_file) =
        fold_bearer(sc.authorization, sc.bearer_token, sc.bearer_token_file);
    ScrapeConfig {
        scrape_interval,
        scrape_timeout: inherit(sc.scrape_timeout, g.scrape_timeout.min(scrape_interval)),
        scrape_protocols: job_protocols(&sc.scrape_protocols, global_protocols, native),
        scrape_native_histograms: Some(native),
        always_scrape_classic_histograms: Some(
            sc.always_scrape_classic_histograms
                .unwrap_or(g.always_scrape_classic_histograms),
        ),
        convert_classic_histograms_to_nhcb: Some(
            sc.convert_classic_histograms_to_nhcb
                .unwrap_or(g.convert_classic_histograms_to_nhcb),
        ),
        body_size_limit: inherit(sc.body_size_limit, g.body_size_limit),
        sample_limit: inherit(sc.sample_limit, g.sample_limit),
        target_limit: inherit(sc.target_limit, g.target_limit),
        label_limit: inherit(sc.label_limit, g.label_limit),
        label_name_length_limit: inherit(sc.label_name_length_limit, g.label_name_length_limit),
        label_value_length_limit: inherit(sc.label_value_length_limit, g.label_value_length_limit),
        keep_dropped_targets: inherit(sc.keep_dropped_targets, g.keep_dropped_targets),
        file_sd_configs: sc
            .file_sd_configs
            .into_iter()
            .map(|sd| FileSdConfig {
                files: sd
                    .files
                    .into_iter()
                    .map(|f| join_pattern(f, base))
                    .collect(),
                ..sd
            })
            .collect(),
        basic_auth: sc.basic_auth.map(|b| basic_auth(b, base)),
        authorization: authorization.map(|a| authorization_files(a, base)),
        bearer_token,
        bearer_token_file,
        tls_config: tls(sc.tls_config, base),
        ..sc
    }
}

/// One remote-write destination.
fn remote(rw: RemoteWriteConfig, base: Option<&Path>) -> RemoteWriteConfig {
    let (authorization, bearer_token, bearer_token_file) =
        fold_bearer(rw.authorization, rw.bearer_token, rw.bearer_token_file);
    RemoteWriteConfig {
        basic_auth: rw.basic_auth.map(|b| basic_auth(b, base)),
        authorization: authorization.map(|a| authorization_files(a, base)),
        bearer_token,
        bearer_token_file,
        tls_config: tls(rw.tls_config, base),
        ..rw
    }
}

/// The `authorization` in force and what is left of the legacy fields: the one written with
/// its type resolved, or (when none is written) the legacy token folded into a `Bearer` one,
/// as Prometheus does. Validation refuses a config with both, so nothing is lost.
fn fold_bearer(
    authorization: Option<Authorization>,
    bearer_token: Option<Secret>,
    bearer_token_file: Option<PathBuf>,
) -> (Option<Authorization>, Option<Secret>, Option<PathBuf>) {
    match authorization {
        Some(a) => (
            Some(Authorization {
                kind: auth_type(&a.kind),
                ..a
            }),
            bearer_token,
            bearer_token_file,
        ),
        None if bearer_token.is_some() || bearer_token_file.is_some() => (
            Some(Authorization {
                kind: "Bearer".into(),
                credentials: bearer_token,
                credentials_file: bearer_token_file,
            }),
            None,
            None,
        ),
        None => (None, None, None),
    }
}

fn basic_auth(b: BasicAuth, base: Option<&Path>) -> BasicAuth {
    BasicAuth {
        username_file: join_opt(b.username_file, base),
        password_file: join_opt(b.password_file, base),
        ..b
    }
}

fn authorization_files(a: Authorization, base: Option<&Path>) -> Authorization {
    Authorization {
        credentials_file: join_opt(a.credentials_file, base),
        ..a
    }
}

fn tls(t: TlsConfig, base: Option<&Path>) -> TlsConfig {
    TlsConfig {
        ca_file: join_opt(t.ca_file, base),
        cert_file: join_opt(t.cert_file, base),
        key_file: join_opt(t.key_file, base),
        ..t
    }
}

fn web_tls(t: WebTlsConfig, base: Option<&Path>) -> WebTlsConfig {
    WebTlsConfig {
        cert_file: join(t.cert_file, base),
        key_file: join(t.key_file, base),
        client_ca_file: join_opt(t.client_ca_file, base),
        ..t
    }
}

/// `p` joined to `base` when it is a relative, non-empty file name.
fn join(p: PathBuf, base: Option<&Path>) -> PathBuf {
    match base {
        Some(dir) if !p.as_os_str().is_empty() && p.is_relative() => dir.join(p),
        _ => p,
    }
}

fn join_opt(p: Option<PathBuf>, base: Option<&Path>) -> Option<PathBuf> {
    p.map(|p| join(p, base))
}

/// A file_sd pattern joined to `base` when relative.
fn join_pattern(pattern: String, base: Option<&Path>) -> String {
    match base {
        Some(dir) if Path::new(&pattern).is_relative() => dir.join(&pattern).display().to_string(),
        _ => pattern,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ByteSize, Duration, ScrapeProtocol};

    fn job(name: &str) -> ScrapeConfig {
        ScrapeConfig {
            job_name: name.into(),
            ..ScrapeConfig::default()
        }
    }

    #[test]
    fn unset_values_inherit_and_set_ones_stay() {
        let written = Config {
            global: GlobalConfig {
                scrape_interval: Duration::secs(5),
                sample_limit: 100,
                body_size_limit: ByteSize(1 << 20),
                ..GlobalConfig::unset()
            },
            scrape_configs: vec![
                job("inherits"),
                ScrapeConfig {
                    scrape_interval: Duration::secs(2),
                    sample_limit: 7,
                    ..job("own")
                },
            ],
            ..Config::default()
        };
        let c = resolve(written, None);
        // A zero global timeout is 10s, or the interval when shorter.
        assert_eq!(c.global.scrape_interval, Duration::secs(5));
        assert_eq!(c.global.scrape_timeout, Duration::secs(5));
        assert_eq!(c.global.evaluation_interval, Duration::secs(60));
        assert_eq!(c.global.scrape_protocols, ScrapeProtocol::DEFAULT);
        let (a, b) = (&c.scrape_configs[0], &c.scrape_configs[1]);
        assert_eq!(a.scrape_interval, Duration::secs(5));
        assert_eq!(a.scrape_timeout, Duration::secs(5));
        assert_eq!(a.sample_limit, 100);
        assert_eq!(a.body_size_limit, ByteSize(1 << 20));
        assert_eq!(a.scrape_protocols, ScrapeProtocol::DEFAULT);
        // The inherited timeout is capped by the job's own, shorter interval.
        assert_eq!(b.scrape_interval, Duration::secs(2));
        assert_eq!(b.scrape_timeout, Duration::secs(2));
        assert_eq!(b.sample_limit, 7);
        // Zero in both is zero: no limit.
        assert_eq!(b.label_limit, 0);

        let empty = resolve(
            Config {
                global: GlobalConfig::unset(),
                ..Config::default()
            },
            None,
        );
        assert_eq!(empty.global, GlobalConfig::default());
    }

    #[test]
    fn legacy_bearer_tokens_fold_into_authorization() {
        let written = Config {
            scrape_configs: vec![
                ScrapeConfig {
                    bearer_token: Some(Secret::new("tok")),
                    ..job("token")
                },
                ScrapeConfig {
                    bearer_token_file: Some("tok.txt".into()),
                    ..job("file")
                },
                ScrapeConfig {
                    authorization: Some(Authorization {
                        kind: "  Custom ".into(),
                        credentials: Some(Secret::new("c")),
                        credentials_file: None,
                    }),
                    ..job("typed")
                },
                ScrapeConfig {
                    authorization: Some(Authorization {
                        kind: " ".into(),
                        ..Authorization::default()
                    }),
                    ..job("untyped")
                },
                job("none"),
            ],
            remote_write: vec![RemoteWriteConfig {
                bearer_token: Some(Secret::new("rw")),
                ..RemoteWriteConfig::default()
            }],
            ..Config::default()
        };
        let c = resolve(written, Some(Path::new("/etc/tidemark")));
        let auth = |i: usize| c.scrape_configs[i].authorization.clone();
        assert_eq!(
            auth(0),
            Some(Authorization {
                kind: "Bearer".into(),
                credentials: Some(Secret::new("tok")),
                credentials_file: None,
            })
        );
        // A folded token file is a credentials file, joined like any other.
        assert_eq!(
            auth(1).and_then(|a| a.credentials_file),
            Some(PathBuf::from("/etc/tidemark/tok.txt"))
        );
        assert_eq!(auth(2).map(|a| a.kind), Some("Custom".into()));
        assert_eq!(auth(3).map(|a| a.kind), Some("Bearer".into()));
        assert_eq!(auth(4), None);
        for sc in &c.scrape_configs {
            assert!(sc.bearer_token.is_none() && sc.bearer_token_file.is_none());
        }
        let rw = &c.remote_write[0];
        assert_eq!(
            rw.authorization
                .as_ref()
                .and_then(|a| a.credentials.clone()),
            Some(Secret::new("rw"))
        );
        assert!(rw.bearer_token.is_none());
    }

    #[test]
    fn relative_file_names_join_the_config_directory_and_nothing_else_does() {
        let tls = TlsConfig {
            ca_file: Some("ca.pem".into()),
            cert_file: Some("/abs/cert.pem".into()),
            key_file: Some("keys/k.pem".into()),
            ..TlsConfig::default()
        };
        let written = Config {
            scrape_configs: vec![ScrapeConfig {
                basic_auth: Some(BasicAuth {
                    username: "u".into(),
                    password_file: Some("pw".into()),
                    ..BasicAuth::default()
                }),
                tls_config: tls.clone(),
                file_sd_configs: vec![FileSdConfig {
                    files: vec!["sd/*.json".into(), "/abs/sd.yml".into()],
                    ..FileSdConfig::default()
                }],
                ..job("j")
            }],
            web: WebConfig {
                tls: Some(WebTlsConfig {
                    cert_file: "web.pem".into(),
                    key_file: PathBuf::new(),
                    client_ca_file: Some("clients.pem".into()),
                    ..WebTlsConfig::default()
                }),
                ..WebConfig::default()
            },
            remote_write: vec![RemoteWriteConfig {
                tls_config: tls,
                ..RemoteWriteConfig::default()
            }],
            ..Config::default()
        };
        let as_written = resolve(written.clone(), None);
        let c = resolve(written, Some(Path::new("/etc/tm")));
        let sc = &c.scrape_configs[0];
        let p = |s: &str| Some(PathBuf::from(s));
        assert_eq!(
            sc.basic_auth.as_ref().and_then(|b| b.password_file.clone()),
            p("/etc/tm/pw")
        );
        for t in [&sc.tls_config, &c.remote_write[0].tls_config] {
            assert_eq!(t.ca_file, p("/etc/tm/ca.pem"));
            assert_eq!(t.cert_file, p("/abs/cert.pem"));
            assert_eq!(t.key_file, p("/etc/tm/keys/k.pem"));
        }
        assert_eq!(
            sc.file_sd_configs[0].files,
            ["/etc/tm/sd/*.json", "/abs/sd.yml"]
        );
        let web = c.web.tls.clone();
        assert_eq!(
            web.as_ref().map(|t| t.cert_file.clone()),
            p("/etc/tm/web.pem")
        );
        // An empty name stays empty (validation has reported it), not the directory.
        assert_eq!(
            web.as_ref().map(|t| t.key_file.clone()),
            Some(PathBuf::new())
        );
        assert_eq!(web.and_then(|t| t.client_ca_file), p("/etc/tm/clients.pem"));
        // Like --data-dir, storage.path is relative to the working directory.
        assert_eq!(c.storage.path, PathBuf::from("./data"));
        // Without a file there is nothing to join to.
        let sc = &as_written.scrape_configs[0];
        assert_eq!(sc.tls_config.ca_file, p("ca.pem"));
        assert_eq!(sc.file_sd_configs[0].files[0], "sd/*.json");
    }
}
