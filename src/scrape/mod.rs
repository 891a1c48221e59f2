//! Scraping: fetching exposition endpoints and turning them into append batches.
//!
//! So far this holds the exposition parser, which `import` also uses. `scrape` may call
//! `storage` and `model`; it must never call `query`, `api` or `cli`.

pub mod fetch;
pub mod parse;
pub mod relabel;
