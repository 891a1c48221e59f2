//! Scraping: fetching exposition endpoints and turning them into append batches.
//!
//! `manager` runs one `scrape_loop` per `target`; each scrape is fetched (`fetch`), parsed
//! (`parse`), relabeled (`crate::relabel`) and stored as one batch (`ingest`). `import` also
//! uses the parser. `stats` keeps per-job counters for self-metrics. `scrape` may call
//! `storage` and `model`; it must never call `query`, `api` or `cli`.

pub mod fetch;
pub mod ingest;
pub mod job;
pub mod manager;
pub mod metadata;
pub mod parse;
pub mod scrape_loop;
mod series_cache;
pub mod stats;
pub mod target;
