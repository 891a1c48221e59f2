//! Storage: the write-ahead log, the in-memory head, immutable SSTable blocks, the catalog that
//! routes queries to them, compaction and retention.
//!
//! `storage` owns every byte under the data directory. It may use `model` only; it must never
//! call `scrape`, `query`, `api` or `cli`, and never acknowledge a sample before its WAL record
//! is written.

pub mod chunk;
pub mod head;
mod index;
pub mod sstable;
pub mod wal;
