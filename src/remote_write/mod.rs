//! Remote write 1.0: the wire types, the client that forwards what the WAL holds to a remote
//! backend (queue, shards, retries, recorded positions), and the decoding half the receiver uses.
//!
//! `remote_write` reads the WAL through storage's public reader; its only write to storage is
//! the receiver's ([`receive`]): one `Appender` commit per request, under a scrape's append
//! rules. It must never call `api`, `scrape` or `cli`.

pub mod proto;
pub mod receive;
