//! Which settings a reload applies, and which take effect only at the next restart.
//!
//! `tidemark run` builds the listener, the router and its limits, the query engine, the logger
//! and the storage once; a reload applies everything else (jobs, remote write, users, TLS
//! certificates). Every field of every section is classified below: the macro names each one
//! in a pattern without `..`, so a field added to the schema does not compile until it is put
//! in one of the lists. No key can be forgotten and then silently ignored on reload.

use super::schema::{
    Config, GlobalConfig, LogConfig, QueryConfig, RetentionConfig, StorageConfig, WebConfig,
};

/// Pushes onto `$out` the key (`$prefix` and the field name) of every `restart` field that
/// differs between `$old` and `$new`, both of type `$Ty`. `reload` fields are applied by a
/// reload; `nested` ones are sections classified by their own call.
macro_rules! classify {
    (
        $out:ident, $prefix:literal, $Ty:ident, $old:expr, $new:expr,
        restart: [$($r:ident),* $(,)?],
        reload: [$($l:ident),* $(,)?]
        $(, nested: [$($n:ident),* $(,)?])? $(,)?
    ) => {{
        // Exhaustive on purpose: a new field fails to compile here until classified.
        let $Ty { $($r: _,)* $($l: _,)* $($($n: _,)*)? } = $old;
        $(
            if $old.$r != $new.$r {
                $out.push(concat!($prefix, stringify!($r)));
            }
        )*
    }};
}

/// The keys (`web.listen_address`, `storage.retention.time`) whose value differs between the
/// running configuration `old` and the reloaded `new` but which a reload does not apply, in
/// schema order.
pub fn restart_only_changes(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut out = Vec::new();
    classify!(out, "", Config, old, new,
        restart: [],
        reload: [global, scrape_configs, remote_write],
        nested: [storage, web, query, log],
    );
    // Jobs are rebuilt from the resolved config, so everything they inherit is applied; remote
    // write takes the new external labels (`/federate` keeps those it started with).
    classify!(out, "global.", GlobalConfig, &old.global, &new.global,
        restart: [],
        reload: [
            scrape_interval,
            scrape_timeout,
            evaluation_interval,
            external_labels,
            scrape_protocols,
            body_size_limit,
            sample_limit,
            target_limit,
            label_limit,
            label_name_length_limit,
            label_value_length_limit,
            keep_dropped_targets,
            scrape_native_histograms,
            always_scrape_classic_histograms,
            convert_classic_histograms_to_nhcb,
        ],
    );
    // The storage is opened once; the remote-write backlog limit is set again on reload.
    classify!(out, "storage.", StorageConfig, &old.storage, &new.storage,
        restart: [path, wal_fsync, block_duration],
        reload: [remote_write_backlog_limit],
        nested: [retention],
    );
    classify!(out, "storage.retention.", RetentionConfig, &old.storage.retention,
        &new.storage.retention,
        restart: [time, size],
        reload: [],
    );
    // The listener, the router and the connection limits are built once; users and the TLS
    // certificate (files read again) are swapped on reload.
    classify!(out, "web.", WebConfig, &old.web, &new.web,
        restart: [
            listen_address,
            enable_lifecycle,
            enable_admin_api,
            enable_remote_write_receiver,
            cors_origin,
            max_request_body_size,
            max_connections,
            read_header_timeout,
        ],
        reload: [tls, basic_auth_users],
    );
    // The query engine's limits are read once.
    classify!(out, "query.", QueryConfig, &old.query, &new.query,
        restart: [timeout, max_samples, lookback_delta, max_concurrency],
        reload: [],
    );
    // The logger is installed once.
    classify!(out, "log.", LogConfig, &old.log, &new.log,
        restart: [level, format],
        reload: [],
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Config {
        Config::parse(text, "t.yml").unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    /// A change to each restart-only key, written as an operator writes it, is reported under
    /// that key and under no other.
    #[test]
    fn a_change_to_each_restart_only_key_is_reported_by_its_key() {
        let running = parse("");
        for (changed, key) in [
            ("storage: {path: /srv/tidemark}", "storage.path"),
            ("storage: {wal_fsync: always}", "storage.wal_fsync"),
            ("storage: {block_duration: 4h}", "storage.block_duration"),
            (
                "storage: {retention: {time: 30d}}",
                "storage.retention.time",
            ),
            (
                "storage: {retention: {size: 10GB}}",
                "storage.retention.size",
            ),
            (
                "web: {listen_address: '0.0.0.0:9595'}",
                "web.listen_address",
            ),
            ("web: {enable_lifecycle: true}", "web.enable_lifecycle"),
            ("web: {enable_admin_api: true}", "web.enable_admin_api"),
            (
                "web: {enable_remote_write_receiver: true}",
                "web.enable_remote_write_receiver",
            ),
            (
                "web: {cors_origin: 'https://g\\.example'}",
                "web.cors_origin",
            ),
            (
                "web: {max_request_body_size: 1MB}",
                "web.max_request_body_size",
            ),
            ("web: {max_connections: 8}", "web.max_connections"),
            ("web: {read_header_timeout: 5s}", "web.read_header_timeout"),
            ("query: {timeout: 10s}", "query.timeout"),
            ("query: {max_samples: 1000}", "query.max_samples"),
            ("query: {lookback_delta: 1m}", "query.lookback_delta"),
            ("query: {max_concurrency: 2}", "query.max_concurrency"),
            ("log: {level: debug}", "log.level"),
            ("log: {format: json}", "log.format"),
        ] {
            let new = parse(changed);
            assert_eq!(restart_only_changes(&running, &new), [key], "{changed}");
            // And back again: a change is a change in either direction.
            assert_eq!(restart_only_changes(&new, &running), [key], "{changed}");
        }
        let all = parse(
            "storage: {path: /x, retention: {time: 1d}}\nweb: {max_connections: 1}\n\
             query: {timeout: 1s}\nlog: {level: warn}\n",
        );
        assert_eq!(
            restart_only_changes(&running, &all),
            [
                "storage.path",
                "storage.retention.time",
                "web.max_connections",
                "query.timeout",
                "log.level"
            ]
        );
    }

    /// What a reload applies is not reported, including the remote-write backlog limit (set
    /// again on every reload) and the web server's users and certificate.
    #[test]
    fn a_change_a_reload_applies_is_not_reported() {
        let jobs = "scrape_configs: [{job_name: a, static_configs: [{targets: ['a:1']}]}]\n";
        let remotes = "remote_write: [{url: 'http://rw:1/w'}]\n";
        let running = parse(&format!("{jobs}{remotes}"));
        for changed in [
            format!("{jobs}{remotes}global: {{scrape_interval: 30s}}\n"),
            format!("{jobs}{remotes}global: {{scrape_timeout: 5s}}\n"),
            format!("{jobs}{remotes}global: {{external_labels: {{dc: eu}}}}\n"),
            format!("{jobs}{remotes}global: {{sample_limit: 100}}\n"),
            format!(
                "{remotes}scrape_configs: [{{job_name: a, scrape_interval: 5s, \
                 static_configs: [{{targets: ['a:1']}}]}}]\n"
            ),
            format!("{remotes}scrape_configs: []\n"),
            format!("{jobs}remote_write: [{{url: 'http://other:1/w'}}]\n"),
            format!("{jobs}{remotes}storage: {{remote_write_backlog_limit: 2GiB}}\n"),
            format!("{jobs}{remotes}web: {{tls: {{cert_file: c.pem, key_file: k.pem}}}}\n"),
            format!(
                "{jobs}{remotes}web: {{basic_auth_users: \
                 {{admin: $2y$10$PtYgjmUhBel31iEl2hpChYgCfrL1spNxnyVmihA/2O76UMFxFkM/R}}}}\n"
            ),
        ] {
            let new = parse(&changed);
            assert_ne!(new, running, "{changed}: nothing changed");
            assert_eq!(
                restart_only_changes(&running, &new),
                Vec::<&str>::new(),
                "{changed}"
            );
        }
        assert!(restart_only_changes(&running, &running.clone()).is_empty());
    }
}
