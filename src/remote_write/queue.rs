//! One remote's queue: a reader thread tails the WAL and hands samples to shards (tokio tasks)
//! by series hash; each shard batches, encodes, sends and retries; acknowledgements move the
//! recorded WAL position forward.
//!
//! The reader is a thread because it does blocking file reads and blocks on full shard
//! channels, which is the backpressure: a slow or absent backend stops WAL reading, never
//! memory growth. Each series' labels are prepared once per ref (external labels, then
//! `write_relabel_configs`, then protobuf-encoded) and the shard gets them once per slot.
//!
//! Shards: the count starts at `min_shards` and is recomputed every [`RESHARD_EVERY`] from the
//! measured send time per sample and the incoming rate, between `min_shards` and `max_shards`.
//! A reshard flushes and drains every shard before the new ones start, so a series' samples
//! always leave in order; it never happens while requests are being retried.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tokio::task::{AbortHandle, JoinHandle};
use tracing::{debug, error, info, warn};

use super::ack::{Acks, Runs, Seq};
use super::client::{SendError, Sender};
use super::encode::{Batch, Encoder, encode_labels};
use super::stats::{DropReason, QueueStats};
use crate::config::{QueueConfig, RemoteWriteConfig};
use crate::model::Labels;
use crate::model::histogram::HistogramValue;
use crate::relabel::{self, Rule};
use crate::storage::head::FastMap;
use crate::storage::wal::{
    HistogramRecord, SampleRecord, SeriesRecord, TailEvent, Tailer, WalFollower, WalHold,
};
use crate::sync::lock;

/// How long the reader sleeps when no commit notification comes (the poll fallback).
const POLL: Duration = Duration::from_secs(1);
/// How often the shard count is reconsidered.
pub const RESHARD_EVERY: Duration = Duration::from_secs(10);
/// How often the recorded position is written to its file when it moved.
const PERSIST_EVERY: Duration = Duration::from_secs(1);

/// What a queue is started from: the remote's config and the external labels.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueSettings {
    /// The `remote_write` entry.
    pub rw: RemoteWriteConfig,
    /// `global.external_labels`.
    pub external_labels: BTreeMap<String, String>,
}

impl QueueSettings {
    /// The key of the remote's WAL hold and position file: its name, or a hash of its URL
    /// when it has none (tuning the queue keeps the position; changing the URL of an
    /// unnamed remote starts a new one).
    pub fn key(&self) -> String {
        if self.rw.name.is_empty() {
            format!(
                "url-{:016x}",
                xxhash_rust::xxh3::xxh3_64(self.rw.url.as_bytes())
            )
        } else {
            self.rw.name.clone()
        }
    }

    /// The `remote_name` label of its metrics.
    pub fn name(&self) -> String {
        self.key()
    }
}

/// State shared by the reader, the shards and the persister.
struct Ctx {
    name: String,
    url: String,
    q: QueueConfig,
    sender: Sender,
    hold: Arc<WalHold>,
    follower: WalFollower,
    acks: Mutex<Acks>,
    stats: Arc<QueueStats>,
    stop: AtomicBool,
    /// Shard tasks, to abort when a stop's deadline passes.
    shard_tasks: Mutex<Vec<AbortHandle>>,
    /// A shard is retrying: no reshard now.
    retrying: AtomicBool,
}

impl Ctx {
    fn ack(&self, runs: &Runs) {
        let p = {
            let mut a = lock(&self.acks);
            for &(seq, n) in &runs.0 {
                a.ack(seq, u64::from(n));
            }
            a.position()
        };
        self.hold.advance(p);
    }
}

/// A running queue.
pub struct Queue {
    settings: QueueSettings,
    ctx: Arc<Ctx>,
    reader_done: Option<oneshot::Receiver<()>>,
    persister: JoinHandle<()>,
}

impl Queue {
    /// The compiled `write_relabel_configs` of `settings`.
    pub fn rules(settings: &QueueSettings) -> Result<Vec<Rule>, relabel::RelabelError> {
        settings
            .rw
            .write_relabel_configs
            .iter()
            .cloned()
            .map(Rule::new)
            .collect()
    }

    /// Starts the queue of one remote from `hold`'s position; must run inside the runtime.
    pub fn start(
        settings: QueueSettings,
        rules: Vec<Rule>,
        sender: Sender,
        hold: Arc<WalHold>,
        follower: WalFollower,
        stats: Arc<QueueStats>,
    ) -> Queue {
        let from = hold.position();
        let ctx = Arc::new(Ctx {
            name: settings.name(),
            url: crate::config::url_without_userinfo(&settings.rw.url),
            q: settings.rw.queue_config.clone(),
            sender,
            hold,
            follower: follower.clone(),
            acks: Mutex::new(Acks::new(from)),
            stats,
            stop: AtomicBool::new(false),
            shard_tasks: Mutex::new(Vec::new()),
            retrying: AtomicBool::new(false),
        });
        ctx.stats.set_running(true);
        let (done_tx, done_rx) = oneshot::channel();
        let reader = Reader::new(
            ctx.clone(),
            follower.tail(from),
            rules,
            &settings.external_labels,
        );
        let spawned = std::thread::Builder::new()
            .name(format!("rw-{}", ctx.name))
            .spawn(move || {
                let _done = Done(Some(done_tx));
                reader.run();
            });
        if let Err(e) = spawned {
            error!(remote = %ctx.name, error = %e, "cannot start the remote-write reader thread");
        }
        let persister = tokio::spawn(persist_loop(ctx.clone()));
        info!(remote = %ctx.name, url = %ctx.url, from = %from, "remote write queue started");
        Queue {
            settings,
            ctx,
            reader_done: Some(done_rx),
            persister,
        }
    }

    /// What it was started from.
    pub fn settings(&self) -> &QueueSettings {
        &self.settings
    }

    /// Stops reading, sends what was read (reading on to the WAL's end) for at most
    /// `deadline`, then abandons the rest (a restart resends it), records the position and
    /// returns the hold for a successor.
    pub async fn stop(mut self, deadline: Duration) -> Arc<WalHold> {
        let ctx = self.ctx.clone();
        ctx.stop.store(true, Ordering::Release);
        ctx.follower.wake();
        if let Some(mut done) = self.reader_done.take()
            && tokio::time::timeout(deadline, &mut done).await.is_err()
        {
            warn!(remote = %ctx.name, "remote write did not finish sending within the shutdown deadline; the rest is sent after the next start");
            for t in lock(&ctx.shard_tasks).drain(..) {
                t.abort();
            }
            let _ = done.await;
        }
        self.persister.abort();
        let _ = (&mut self.persister).await;
        let hold = ctx.hold.clone();
        let persisted = tokio::task::spawn_blocking(move || hold.persist()).await;
        match persisted {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                error!(remote = %ctx.name, error = %e, "cannot record the remote-write position")
            }
            Err(e) => {
                error!(remote = %ctx.name, error = %e, "recording the remote-write position panicked")
            }
        }
        ctx.stats.set_running(false);
        ctx.stats.shards.store(0, Ordering::Relaxed);
        info!(remote = %ctx.name, position = %ctx.hold.position(), "remote write queue stopped");
        ctx.hold.clone()
    }
}

/// Signals the stopper when the reader thread ends, however it ends.
struct Done(Option<oneshot::Sender<()>>);

impl Drop for Done {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
    }
}

async fn persist_loop(ctx: Arc<Ctx>) {
    let mut tick = tokio::time::interval(PERSIST_EVERY);
    loop {
        tick.tick().await;
        let released = ctx.hold.released_samples();
        ctx.stats.dropped[DropReason::WalReleased as usize].fetch_max(released, Ordering::Relaxed);
        let hold = ctx.hold.clone();
        match tokio::task::spawn_blocking(move || hold.persist()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                warn!(remote = %ctx.name, error = %e, "cannot record the remote-write position; retrying")
            }
            Err(_) => return,
        }
    }
}

/// A series as this remote sends it.
struct Entry {
    /// Encoded labels; `None` when relabeling dropped the series.
    labels: Option<Arc<[u8]>>,
    hash: u64,
    /// Shard and slot, valid while `epoch` is the reader's.
    shard: u32,
    slot: u32,
    epoch: u32,
    /// Segment of its series record, for forgetting it after a checkpoint.
    segment: u64,
}

/// What the reader hands a shard.
#[derive(Default)]
struct Chunk {
    /// Slots (re)defined, before the samples that use them.
    defs: Vec<(u32, Arc<[u8]>)>,
    samples: Vec<(u32, i64, f64)>,
    runs: Runs,
    /// Histogram samples, acknowledged through their own runs.
    histograms: Vec<(u32, i64, HistogramValue)>,
    hruns: Runs,
}

impl Chunk {
    fn len(&self) -> usize {
        self.samples.len() + self.histograms.len()
    }
}

/// One WAL sample as the reader dispatches it.
trait Dispatched {
    fn sref(&self) -> u64;
    fn t(&self) -> i64;
    /// Puts it in `chunk` under `slot` and `seq`.
    fn put(&self, chunk: &mut Chunk, slot: u32, seq: Seq);
    /// Histogram samples, counted apart too.
    const HISTOGRAMS: bool;
}

impl Dispatched for SampleRecord {
    const HISTOGRAMS: bool = false;
    fn sref(&self) -> u64 {
        self.sref
    }
    fn t(&self) -> i64 {
        self.t
    }
    fn put(&self, chunk: &mut Chunk, slot: u32, seq: Seq) {
        chunk.samples.push((slot, self.t, self.v));
        chunk.runs.add(seq);
    }
}

impl Dispatched for HistogramRecord {
    const HISTOGRAMS: bool = true;
    fn sref(&self) -> u64 {
        self.sref
    }
    fn t(&self) -> i64 {
        self.t
    }
    fn put(&self, chunk: &mut Chunk, slot: u32, seq: Seq) {
        chunk.histograms.push((slot, self.t, self.h.clone()));
        chunk.hruns.add(seq);
    }
}

struct ShardLink {
    tx: mpsc::Sender<Chunk>,
    task: JoinHandle<()>,
    buf: Chunk,
    next_slot: u32,
    free: Vec<u32>,
    /// Slots freed since the last flush: reusable once the chunks that used them are sent.
    freed: Vec<u32>,
}

/// Traffic over one resharding window.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Window {
    /// Length of the window in seconds.
    pub secs: f64,
    /// Samples handed to shards.
    pub dispatched: u64,
    /// Samples accepted by the backend.
    pub sent: u64,
    /// Seconds spent in successful requests, all shards together.
    pub send_secs: f64,
    /// The reader never caught up with the WAL during the window.
    pub behind: bool,
    /// A request was retried during the window.
    pub retrying: bool,
}

/// The shard count for the next window: enough shards to send the incoming rate at the
/// measured time per sample with a third of headroom, doubled while the reader is behind and
/// the shards are busy, unchanged within 30% of the current count or when there was nothing
/// to measure or requests are failing.
pub fn desired_shards(cur: usize, min: usize, max: usize, w: &Window) -> usize {
    let (min, max) = (min.max(1), max.max(min.max(1)));
    let cur = cur.clamp(min, max);
    if w.retrying || w.sent == 0 || w.secs <= 0.0 {
        return cur;
    }
    let per_sample = w.send_secs / w.sent as f64;
    let rate = w.dispatched as f64 / w.secs;
    let mut want = (per_sample * rate * 4.0 / 3.0).ceil() as usize;
    let busy = w.send_secs / (w.secs * cur as f64);
    if w.behind && busy > 0.5 {
        want = want.max(cur * 2);
    }
    let want = want.clamp(min, max);
    let (lo, hi) = (cur as f64 * 0.7, cur as f64 * 1.3);
    if (want as f64) < lo || (want as f64) > hi {
        want
    } else {
        cur
    }
}

struct Reader {
    ctx: Arc<Ctx>,
    tailer: Tailer,
    rules: Vec<Rule>,
    external: Vec<(String, String)>,
    /// By series ref (dense small integers), hashed with one multiplication.
    series: FastMap<Entry>,
    shards: Vec<ShardLink>,
    epoch: u32,
    rt: tokio::runtime::Handle,
    window_start: Instant,
    window_base: (u64, u64, u64),
    caught_up: bool,
}

impl Reader {
    fn new(
        ctx: Arc<Ctx>,
        tailer: Tailer,
        rules: Vec<Rule>,
        external: &BTreeMap<String, String>,
    ) -> Reader {
        Reader {
            ctx,
            tailer,
            rules,
            external: external
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            series: FastMap::default(),
            shards: Vec::new(),
            epoch: 0,
            rt: tokio::runtime::Handle::current(),
            window_start: Instant::now(),
            window_base: (0, 0, 0),
            caught_up: false,
        }
    }

    fn stopping(&self) -> bool {
        self.ctx.stop.load(Ordering::Acquire)
    }

    fn run(mut self) {
        let min = self.ctx.q.min_shards.max(1) as usize;
        self.start_shards(min);
        let mut frames = 0u64;
        loop {
            let seen = self.ctx.follower.generation();
            let stopping = self.stopping();
            // Read to the end of what is written; on a stop too, so a clean shutdown sends
            // everything the scrapes committed before it.
            loop {
                match self.tailer.read() {
                    Ok(Some(ev)) => {
                        if self.handle(ev).is_err() {
                            return self.finish();
                        }
                        frames += 1;
                        if frames.is_multiple_of(1024) && !stopping {
                            if self.stopping() {
                                break;
                            }
                            self.maybe_reshard(false);
                        }
                    }
                    Ok(None) => {
                        self.caught_up = true;
                        break;
                    }
                    Err(e) => {
                        error!(remote = %self.ctx.name, error = %e, "reading the WAL failed; retrying");
                        break;
                    }
                }
            }
            if self.flush_all().is_err() || stopping {
                return self.finish();
            }
            self.maybe_reshard(true);
            self.ctx.follower.wait(seen, POLL);
        }
    }

    /// Flushes, closes the shards' channels and waits for them to send what they hold.
    fn finish(mut self) {
        let _ = self.flush_all();
        self.drain_shards();
    }

    fn handle(&mut self, ev: TailEvent) -> Result<(), Closed> {
        match ev {
            TailEvent::Series(list) => {
                let segment = self.tailer.position().segment;
                for s in list {
                    self.define(s, segment);
                }
                Ok(())
            }
            TailEvent::Samples { samples, end } => self.dispatch(&samples, end),
            TailEvent::Checkpoint { upto, refs } => {
                let keep: HashSet<u64> = refs.into_iter().collect();
                let gone: Vec<u64> = self
                    .series
                    .iter()
                    .filter(|(r, e)| e.segment <= upto && !keep.contains(r))
                    .map(|(r, _)| *r)
                    .collect();
                for r in &gone {
                    if let Some(e) = self.series.remove(r) {
                        self.free_slot(&e);
                    }
                }
                debug!(remote = %self.ctx.name, checkpoint = upto, forgotten = gone.len(), "series no longer in the WAL forgotten");
                Ok(())
            }
            TailEvent::Histograms { histograms, end } => self.dispatch(&histograms, end),
            TailEvent::Skipped { from, to, reason } => {
                warn!(remote = %self.ctx.name, %from, %to, reason = %reason, "remote write skipped part of the WAL; samples there were not sent");
                Ok(())
            }
        }
    }

    /// Prepares a series as this remote sends it: external labels the series lacks, then
    /// the write relabel rules.
    fn define(&mut self, s: SeriesRecord, segment: u64) {
        let labels = if self.external.is_empty() {
            Some(s.labels)
        } else {
            let mut b = s.labels.to_builder();
            for (k, v) in &self.external {
                if b.get(k).is_none() {
                    b.set(k, v.clone());
                }
            }
            b.build().ok()
        };
        let labels: Option<Labels> = match labels {
            Some(l) if !self.rules.is_empty() => relabel::process(&l, &self.rules),
            other => other,
        };
        let labels = labels.filter(|l| !l.is_empty());
        let hash = labels.as_ref().map_or(0, Labels::stable_hash);
        let entry = Entry {
            labels: labels.map(|l| Arc::from(encode_labels(&l))),
            hash,
            shard: 0,
            slot: 0,
            epoch: u32::MAX,
            segment,
        };
        if let Some(old) = self.series.insert(s.sref, entry) {
            self.free_slot(&old);
        }
    }

    fn free_slot(&mut self, e: &Entry) {
        if e.epoch == self.epoch
            && let Some(link) = self.shards.get_mut(e.shard as usize)
        {
            link.freed.push(e.slot);
        }
    }

    /// Hands one frame's samples (floats or histograms) to the shards; the frame's position
    /// is acknowledged once every sample handed on is.
    fn dispatch<S: Dispatched>(
        &mut self,
        samples: &[S],
        end: crate::storage::wal::WalPosition,
    ) -> Result<(), Closed> {
        let seq: Seq = lock(&self.ctx.acks).begin();
        let (mut unknown, mut relabeled, mut old, mut n) = (0u64, 0u64, 0u64, 0u64);
        let min_t = match self.ctx.q.sample_age_limit.0 {
            0 => i64::MIN,
            limit => now_ms().saturating_sub(limit),
        };
        let max_per_chunk = self.ctx.q.max_samples_per_send.max(1) as usize;
        let nshards = self.shards.len().max(1) as u64;
        let mut max_t = i64::MIN;
        for s in samples {
            max_t = max_t.max(s.t());
            let Some(e) = self.series.get_mut(&s.sref()) else {
                unknown += 1;
                continue;
            };
            let Some(labels) = &e.labels else {
                relabeled += 1;
                continue;
            };
            if s.t() < min_t {
                old += 1;
                continue;
            }
            if e.epoch != self.epoch {
                let shard = (e.hash % nshards) as usize;
                let Some(link) = self.shards.get_mut(shard) else {
                    return Err(Closed);
                };
                let slot = link.free.pop().unwrap_or_else(|| {
                    link.next_slot += 1;
                    link.next_slot - 1
                });
                link.buf.defs.push((slot, labels.clone()));
                e.shard = shard as u32;
                e.slot = slot;
                e.epoch = self.epoch;
            }
            let Some(link) = self.shards.get_mut(e.shard as usize) else {
                return Err(Closed);
            };
            s.put(&mut link.buf, e.slot, seq);
            n += 1;
            if link.buf.len() >= max_per_chunk {
                let chunk = std::mem::take(&mut link.buf);
                link.tx.blocking_send(chunk).map_err(|_| Closed)?;
            }
        }
        let st = &self.ctx.stats;
        st.dispatched.fetch_add(n, Ordering::Relaxed);
        if S::HISTOGRAMS {
            st.histograms_dispatched.fetch_add(n, Ordering::Relaxed);
        }
        st.add_dropped(DropReason::UnknownSeries, unknown);
        st.add_dropped(DropReason::Relabel, relabeled);
        st.add_dropped(DropReason::TooOld, old);
        st.highest_read_ms.fetch_max(max_t, Ordering::Relaxed);
        let p = {
            let mut a = lock(&self.ctx.acks);
            a.end(seq, end, n);
            a.position()
        };
        self.ctx.hold.advance(p);
        Ok(())
    }

    /// Sends every shard's buffered samples; freed slots become reusable after it.
    fn flush_all(&mut self) -> Result<(), Closed> {
        for link in &mut self.shards {
            if link.buf.len() > 0 || !link.buf.defs.is_empty() {
                let chunk = std::mem::take(&mut link.buf);
                link.tx.blocking_send(chunk).map_err(|_| Closed)?;
            }
            link.free.append(&mut link.freed);
        }
        Ok(())
    }

    fn start_shards(&mut self, n: usize) {
        let cap = (self.ctx.q.capacity / self.ctx.q.max_samples_per_send.max(1)).max(1) as usize;
        let mut aborts = Vec::with_capacity(n);
        for i in 0..n {
            let (tx, rx) = mpsc::channel(cap);
            let task = self.rt.spawn(shard(self.ctx.clone(), i, rx));
            aborts.push(task.abort_handle());
            self.shards.push(ShardLink {
                tx,
                task,
                buf: Chunk::default(),
                next_slot: 0,
                free: Vec::new(),
                freed: Vec::new(),
            });
        }
        *lock(&self.ctx.shard_tasks) = aborts;
        self.ctx.stats.shards.store(n as u64, Ordering::Relaxed);
    }

    /// Closes every shard's channel and waits until each has sent what it holds.
    fn drain_shards(&mut self) {
        for link in self.shards.drain(..) {
            drop(link.tx);
            let _ = self.rt.block_on(link.task);
        }
    }

    fn maybe_reshard(&mut self, idle: bool) {
        let elapsed = self.window_start.elapsed();
        if elapsed < RESHARD_EVERY {
            return;
        }
        let st = &self.ctx.stats;
        let now = (
            st.dispatched.load(Ordering::Relaxed),
            st.sent.load(Ordering::Relaxed),
            st.send_nanos.load(Ordering::Relaxed),
        );
        let w = Window {
            secs: elapsed.as_secs_f64(),
            dispatched: now.0 - self.window_base.0,
            sent: now.1 - self.window_base.1,
            send_secs: (now.2 - self.window_base.2) as f64 / 1e9,
            behind: !self.caught_up && !idle,
            retrying: self.ctx.retrying.swap(false, Ordering::Relaxed),
        };
        self.window_start = Instant::now();
        self.window_base = now;
        self.caught_up = false;
        let q = &self.ctx.q;
        let cur = self.shards.len();
        let want = desired_shards(cur, q.min_shards as usize, q.max_shards as usize, &w);
        if want == cur {
            return;
        }
        info!(remote = %self.ctx.name, from = cur, to = want, "remote write resharding");
        if self.flush_all().is_err() {
            return;
        }
        self.drain_shards();
        if self.stopping() {
            return;
        }
        self.epoch = self.epoch.wrapping_add(1);
        self.start_shards(want);
    }
}

/// A shard's channel is closed: the queue is being stopped.
#[derive(Debug)]
struct Closed;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// One shard: fills a batch from its channel and sends it when full or due.
async fn shard(ctx: Arc<Ctx>, index: usize, mut rx: mpsc::Receiver<Chunk>) {
    let max = ctx.q.max_samples_per_send.max(1) as usize;
    let deadline = ctx.q.batch_send_deadline.to_std();
    let mut s = ShardState {
        ctx: ctx.clone(),
        index,
        labels: Vec::new(),
        batch: Batch::default(),
        runs: Runs::default(),
        encoder: Encoder::default(),
    };
    let mut due: Option<tokio::time::Instant> = None;
    loop {
        let msg = match due {
            Some(at) => tokio::select! {
                m = rx.recv() => m,
                _ = tokio::time::sleep_until(at) => {
                    s.send().await;
                    due = None;
                    continue;
                }
            },
            None => rx.recv().await,
        };
        let Some(chunk) = msg else {
            s.send().await;
            return;
        };
        for (slot, labels) in chunk.defs {
            if s.batch.holds(slot) {
                // The slot's old series has samples waiting under the old labels.
                s.send().await;
                due = None;
            }
            let i = slot as usize;
            if i >= s.labels.len() {
                s.labels.resize(i + 1, Arc::from(Vec::new()));
            }
            s.labels[i] = labels;
        }
        let mut samples = chunk.samples.iter();
        for &(seq, n) in &chunk.runs.0 {
            for _ in 0..n {
                let Some(&(slot, t, v)) = samples.next() else {
                    break;
                };
                s.batch.push(slot, t, v);
                s.runs.add(seq);
                if s.batch.len() >= max {
                    s.send().await;
                    due = None;
                }
            }
        }
        let mut histograms = chunk.histograms.iter();
        for &(seq, n) in &chunk.hruns.0 {
            for _ in 0..n {
                let Some((slot, t, h)) = histograms.next() else {
                    break;
                };
                s.batch.push_histogram(*slot, *t, h);
                s.runs.add(seq);
                if s.batch.len() >= max {
                    s.send().await;
                    due = None;
                }
            }
        }
        if !s.batch.is_empty() && due.is_none() {
            due = Some(tokio::time::Instant::now() + deadline);
        }
    }
}

struct ShardState {
    ctx: Arc<Ctx>,
    index: usize,
    labels: Vec<Arc<[u8]>>,
    batch: Batch,
    runs: Runs,
    encoder: Encoder,
}

impl ShardState {
    /// Sends the batch until it is accepted or refused for good, then acknowledges it.
    async fn send(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let ctx = &self.ctx;
        let labels = &self.labels;
        let body = self
            .encoder
            .encode(&self.batch, |slot| {
                labels.get(slot as usize).map_or(&[][..], |l| &l[..])
            })
            .to_vec();
        let n = self.batch.len() as u64;
        let nh = self.batch.histograms() as u64;
        let st = &ctx.stats;
        let mut backoff = ctx.q.min_backoff.to_std();
        let max_backoff = ctx.q.max_backoff.to_std();
        let mut attempt = 0u32;
        loop {
            let began = Instant::now();
            match ctx.sender.send(body.clone(), attempt).await {
                Ok(()) => {
                    let took = began.elapsed();
                    st.sent.fetch_add(n, Ordering::Relaxed);
                    st.histograms_sent.fetch_add(nh, Ordering::Relaxed);
                    st.bytes_sent
                        .fetch_add(body.len() as u64, Ordering::Relaxed);
                    st.highest_sent_ms
                        .fetch_max(self.batch.max_t(), Ordering::Relaxed);
                    st.send_durations.observe(took);
                    st.send_nanos
                        .fetch_add(took.as_nanos() as u64, Ordering::Relaxed);
                    if attempt > 0 {
                        info!(remote = %ctx.name, shard = self.index, retries = attempt, "remote write recovered");
                    }
                    break;
                }
                Err(SendError::Retry { after, reason }) => {
                    ctx.retrying.store(true, Ordering::Relaxed);
                    st.retried.fetch_add(n, Ordering::Relaxed);
                    st.histograms_retried.fetch_add(nh, Ordering::Relaxed);
                    let wait = after.unwrap_or(backoff);
                    if attempt == 0 {
                        warn!(remote = %ctx.name, shard = self.index, samples = n, error = %reason, "remote write failed; retrying with backoff");
                    } else {
                        debug!(remote = %ctx.name, shard = self.index, attempt, error = %reason, wait = ?wait, "remote write retry failed");
                    }
                    tokio::time::sleep(wait).await;
                    backoff = (wait * 2).min(max_backoff).max(ctx.q.min_backoff.to_std());
                    attempt = attempt.saturating_add(1);
                }
                Err(SendError::Drop { reason }) => {
                    st.failed.fetch_add(n, Ordering::Relaxed);
                    st.histograms_failed.fetch_add(nh, Ordering::Relaxed);
                    st.batches_failed.fetch_add(1, Ordering::Relaxed);
                    error!(remote = %ctx.name, shard = self.index, samples = n, error = %reason, "remote write refused a batch; it is dropped");
                    break;
                }
            }
        }
        ctx.ack(&self.runs);
        self.runs.0.clear();
        self.batch.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(dispatched: u64, sent: u64, send_secs: f64, behind: bool) -> Window {
        Window {
            secs: 10.0,
            dispatched,
            sent,
            send_secs,
            behind,
            retrying: false,
        }
    }

    #[test]
    fn shards_follow_the_rate_within_bounds() {
        // 100k samples/s at 20 µs/sample need 2 s of sending per second: 3 shards with headroom.
        assert_eq!(
            desired_shards(1, 1, 50, &w(1_000_000, 1_000_000, 20.0, false)),
            3
        );
        // Within 30% of the current count: unchanged.
        assert_eq!(
            desired_shards(3, 1, 50, &w(1_000_000, 1_000_000, 20.0, false)),
            3
        );
        // Quiet: back down to the minimum.
        assert_eq!(desired_shards(8, 2, 50, &w(1_000, 1_000, 0.02, false)), 2);
        // Bounded by max_shards.
        assert_eq!(
            desired_shards(4, 1, 6, &w(1_000_000, 1_000_000, 200.0, false)),
            6
        );
        // Behind with busy shards: at least double.
        assert_eq!(
            desired_shards(2, 1, 50, &w(100_000, 100_000, 15.0, true)),
            4
        );
        // Nothing measured, or failing requests: keep.
        assert_eq!(desired_shards(5, 1, 50, &w(0, 0, 0.0, false)), 5);
        let mut failing = w(1_000_000, 10, 20.0, true);
        failing.retrying = true;
        assert_eq!(desired_shards(5, 1, 50, &failing), 5);
        // A current count outside the bounds is brought inside.
        assert_eq!(desired_shards(0, 1, 50, &w(0, 0, 0.0, false)), 1);
    }
}
