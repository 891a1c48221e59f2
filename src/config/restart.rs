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
