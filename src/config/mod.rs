//! The configuration file: a compatible subset of prometheus.yml (`global`, `scrape_configs`,
//! `remote_write`) plus tidemark's own `storage`, `web`, `query` and `log` sections.
//!
//! One job per file, each step a function of the last:
//!
//! - `units`: the value types written in the file (durations, sizes, secrets);
//! - `schema`: one struct per section, with Prometheus's defaults;
//! - `yaml`: the document tree, which remembers where every value came from;
//! - `validate`: read-only; every problem of the config as written, with `file:line:column`
//!   and the key path (`scrape_configs[1].scrape_interval`), through `error`;
//! - `resolve`: pure; the config as written to the config the agent runs (inherited values,
//!   folded bearer tokens, relative file names);
//! - `load`: reading the file and running the steps; the checks of `tidemark check config`;
//! - `render`: the config in force written back for `/api/v1/status/config`;
//! - `restart`: which settings a reload applies;
//! - `file_sd`: reading file_sd target files (watching them is the scrape manager's job).
//!
//! It must never act on a config (open storage, start scrapes, bind sockets), and never ignore
//! a key silently: a key it does not know is an error, and so is a Prometheus key it cannot
//! honour.
//!
//! Decisions:
//! - Defaults are Prometheus's (`scrape_interval` 1m, `scrape_timeout` 10s, ...). The agent's
//!   built-in config, [`Config::default_embedded`], scrapes itself every 15s.
//! - As in Prometheus, a zero interval, timeout or limit in a job means "inherit from
//!   `global`", and a zero global timeout means "10s, or the interval if shorter".
//! - Relative file names (password files, TLS files, file_sd patterns) are resolved against
//!   the directory of the config file by [`Config::load`], as Prometheus does. `storage.path`
//!   is not: like a `--data-dir` flag it is relative to the working directory.
//! - `bearer_token`/`bearer_token_file` are folded into `authorization` once the config is
//!   valid, as Prometheus does, so consumers only look at `authorization`.

mod error;
mod load;
mod render;
mod resolve;
mod restart;
mod schema;
mod units;
mod validate;
mod yaml;

pub mod file_sd;

#[cfg(test)]
mod tests;

pub use error::{ConfigError, Problem};
pub use restart::restart_only_changes;
pub use schema::*;
pub use units::{
    ByteSize, Duration, SECRET_SHOWN, Secret, SizeError, SizeProblem, parse_size,
    url_password_hidden, url_without_userinfo,
};
pub use validate::{LogLevelError, check_log_level};
