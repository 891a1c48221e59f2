//! Remote write 1.0: the wire types, the client that forwards what the WAL holds to remote
//! backends (queue, shards, retries, recorded positions), and the decoding half the receiver
//! uses.
//!
//! The client reads the WAL, not memory: each remote's queue tails it through storage's
//! public reader (`storage::wal::{WalFollower, Tailer, WalHold}`), from the position its hold
//! recorded, so an outage of the backend or a restart of the agent loses nothing the WAL still
//! holds (see `docs/format/remote-write-position.md`).
//!
//! `remote_write` may call `storage::wal`, and storage's `Appender` for the receiver's one
//! write ([`receive`]: one commit per request, under a scrape's append rules; nothing else of
//! storage), `config`, `model`, `http_client` and `relabel` (the relabel rules, pure
//! functions shared with scraping); it must never call `api`, `query`, `cli` or `scrape`.

mod ack;
pub mod client;
pub mod encode;
pub mod proto;
pub mod queue;
pub mod receive;
pub mod stats;

use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};

use crate::config::{Config, url_without_userinfo};
use crate::relabel::RelabelError;
use crate::storage::wal::{HoldOrigin, WalError, WalFollower, WalHold};
use client::{ClientError, Sender};
use queue::{Queue, QueueSettings};

/// How long a stopping queue may keep sending what it read before it gives up (what is left
/// is sent after the next start).
pub const FLUSH_DEADLINE: Duration = Duration::from_secs(5);

/// Why the remote-write configuration could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum RemoteWriteError {
    /// A remote's HTTP client could not be built.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// A write relabel rule was refused.
    #[error("remote_write {name}: write_relabel_configs: {source}")]
    Relabel {
        /// The remote.
        name: String,
        /// The rule's error.
        #[source]
        source: RelabelError,
    },
    /// The WAL hold or its position file failed.
    #[error("remote_write {name}: {source}")]
    Wal {
        /// The remote.
        name: String,
        /// The WAL error.
        #[source]
        source: WalError,
    },
}

/// Every configured remote's queue.
pub struct RemoteWrite {
    follower: WalFollower,
    queues: Vec<Queue>,
}

impl RemoteWrite {
    /// No queues yet; [`RemoteWrite::apply`] starts them.
    pub fn new(follower: WalFollower) -> RemoteWrite {
        RemoteWrite {
            follower,
            queues: Vec::new(),
        }
    }

    /// Makes the running queues match `cfg`: remotes whose settings did not change keep
    /// running, changed ones restart from their recorded position, removed ones stop. Every
    /// new client is built first, so on error nothing changes.
    pub async fn apply(&mut self, cfg: &Config) -> Result<(), RemoteWriteError> {
        let wanted: Vec<QueueSettings> = cfg
            .remote_write
            .iter()
            .map(|rw| QueueSettings {
                rw: rw.clone(),
                external_labels: cfg.global.external_labels.clone(),
            })
            .collect();
        let mut fresh = Vec::new();
        for s in &wanted {
            if !self.queues.iter().any(|q| q.settings() == s) {
                let rules = Queue::rules(s).map_err(|source| RemoteWriteError::Relabel {
                    name: s.name(),
                    source,
                })?;
                fresh.push((s.clone(), rules, Sender::new(&s.rw)?));
            }
        }
        let (keep, stop): (Vec<Queue>, Vec<Queue>) = std::mem::take(&mut self.queues)
            .into_iter()
            .partition(|q| wanted.contains(q.settings()));
        self.queues = keep;
        // A successor takes over its predecessor's hold, so no checkpoint in between can
        // release what the remote has not sent.
        let mut holds: Vec<Arc<WalHold>> = Vec::new();
        for q in stop {
            holds.push(q.stop(FLUSH_DEADLINE).await);
        }
        for (s, rules, sender) in fresh {
            let key = s.key();
            let hold = match holds.iter().position(|h| h.key() == key) {
                Some(i) => holds.swap_remove(i),
                None => {
                    let follower = self.follower.clone();
                    let k = key.clone();
                    let h = tokio::task::spawn_blocking(move || follower.hold(&k))
                        .await
                        .map_err(|e| RemoteWriteError::Wal {
                            name: key.clone(),
                            source: WalError::Failed(e.to_string()),
                        })?
                        .map_err(|source| RemoteWriteError::Wal {
                            name: key.clone(),
                            source,
                        })?;
                    match h.origin() {
                        HoldOrigin::New => {
                            info!(remote = %key, position = %h.position(), "new remote: sending from the WAL's end")
                        }
                        HoldOrigin::Resumed => {
                            info!(remote = %key, position = %h.position(), "remote write resumes from its recorded position")
                        }
                        HoldOrigin::Reset(why) => {
                            warn!(remote = %key, reason = %why, "remote write position unusable: resending everything the WAL holds")
                        }
                    }
                    Arc::new(h)
                }
            };
            let stats = stats::global().queue(&s.name(), &url_without_userinfo(&s.rw.url));
            let q = Queue::start(s, rules, sender, hold, self.follower.clone(), stats);
            self.queues.push(q);
        }
        Ok(())
    }

    /// Stops every queue (each sends what it read for at most [`FLUSH_DEADLINE`]) and
    /// records their positions.
    pub async fn stop(&mut self) {
        for q in self.queues.drain(..) {
            q.stop(FLUSH_DEADLINE).await;
        }
    }

    /// Remotes running.
    pub fn len(&self) -> usize {
        self.queues.len()
    }

    /// True when no remote is configured.
    pub fn is_empty(&self) -> bool {
        self.queues.is_empty()
    }
}
