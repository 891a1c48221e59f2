//! tidemark: a Prometheus-style metrics collector agent with its own time-series storage.
//!
//! Data flows one way: scrape → storage (WAL, head) → blocks → catalog → query → api.
//! See ARCHITECTURE.md for the code map and the invariants every module keeps.
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]
// No unsafe code, except the one call into glibc's `malloc_trim` (storage::db), which allows
// it on that statement alone, and the read-only memory map of the head's chunk file
// (storage::head::chunk_file's `map` module: mmap, munmap and slices of the mapping, with its
// safety argument there). `deny` rather than `forbid`, since `forbid` admits no exception.
#![deny(unsafe_code)]

pub mod api;
pub mod cli;
pub mod config;
pub(crate) mod encoding;
pub mod http_client;
pub mod model;
pub mod query;
pub mod relabel;
pub mod remote_write;
pub mod scrape;
pub mod storage;
mod sync;
pub mod telemetry;

/// The shared test data, found as the integration tests and benches find it.
#[cfg(test)]
#[path = "../tests/common/fixtures.rs"]
mod fixtures;
