//! The path of a fact: a webhook handler hands it to the writer thread, which stores every
//! waiting webhook's facts in one transaction (group commit) and only then lets the handlers
//! acknowledge; the tailer thread reads what was stored, in order, into the aggregates.
//!
//! Acknowledge-after-commit is what makes "a restart loses no acknowledged event" true; group
//! commit is what keeps that cheap (one fsync per batch, not per webhook). The tailer reads the
//! store rather than taking facts from the writer so that replicas sharing `PostgreSQL` all see
//! every replica's facts, and a restart rebuilds the aggregates by the same code path.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::facts::Fact;
use crate::metrics::Aggregator;
use crate::store::{self, Store};

/// Webhooks waiting for one transaction at most.
const MAX_BATCH: usize = 1024;
/// Facts the tailer applies per read.
const TAIL_BATCH: usize = 10_000;
/// A checkpoint of the aggregates is saved after this many newly applied facts, or after
/// `DORA_CHECKPOINT_INTERVAL_SECS` (default 60) with any, and only with no sequence gap pending (a late row below the
/// checkpoint would be lost to the next restart).
const CHECKPOINT_EVERY: u64 = 100_000;

/// Counters of the collector's own health (rendered as `dora_collector_*`).
#[derive(Debug, Default)]
pub struct Health {
    pub store_errors: AtomicU64,
    pub processed: AtomicU64,
    /// Highest sequence number this replica stored, and the highest the tailer applied: their
    /// difference is the processing lag (0 once everything stored is in the metrics).
    pub stored_seq: AtomicI64,
    pub processed_seq: AtomicI64,
    pub ready: AtomicBool,
    pub writer_alive: AtomicBool,
    /// The writer's and the tailer's connections work (false from a failed statement until a
    /// reconnect succeeds): `/readyz` says 503 meanwhile, so no traffic is sent to this pod.
    pub writer_store_ok: AtomicBool,
    pub tailer_store_ok: AtomicBool,
    /// When the writer last went round its loop (Unix ms): a writer stuck longer than
    /// [`STUCK_AFTER`] fails `/healthz`, and Kubernetes restarts the pod.
    pub writer_heartbeat_ms: AtomicU64,
    /// Last committed delivery per source of [`crate::server::SOURCES`] (Unix ms; 0 = none),
    /// loaded from the store at start and moved only after a commit.
    pub last_delivery_ms: [AtomicU64; 4],
}

/// A writer that has not gone round its loop for this long is stuck.
pub const STUCK_AFTER: Duration = Duration::from_secs(60);
/// Reconnect backoff bounds.
const RECONNECT_MIN: Duration = Duration::from_millis(250);
const RECONNECT_MAX: Duration = Duration::from_secs(10);

impl Health {
    /// The store works for both threads.
    pub fn store_ok(&self) -> bool {
        self.writer_store_ok.load(Ordering::SeqCst) && self.tailer_store_ok.load(Ordering::SeqCst)
    }

    /// The writer thread runs and is not stuck.
    pub fn writer_live(&self) -> bool {
        #[allow(clippy::cast_possible_truncation)]
        let stuck_ms = STUCK_AFTER.as_millis() as u64;
        self.writer_alive.load(Ordering::SeqCst)
            && now_ms().saturating_sub(self.writer_heartbeat_ms.load(Ordering::SeqCst)) < stuck_ms
    }

    fn delivered(&self, source: &str, at_ms: u64) {
        if let Some(i) = crate::server::SOURCES.iter().position(|s| *s == source) {
            self.last_delivery_ms[i].fetch_max(at_ms, Ordering::SeqCst);
        }
    }
}

fn now_ms() -> u64 {
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let ms = (crate::now() * 1000.0) as u64;
    ms
}

/// Wakes the tailer when the writer committed something.
#[derive(Default)]
pub struct Wake {
    pending: Mutex<bool>,
    cv: Condvar,
}

impl Wake {
    fn notify(&self) {
        if let Ok(mut p) = self.pending.lock() {
            *p = true;
            self.cv.notify_one();
        }
    }

    fn wait(&self, timeout: Duration) {
        if let Ok(guard) = self.pending.lock() {
            if let Ok((mut p, _)) = self.cv.wait_timeout_while(guard, timeout, |p| !*p) {
                *p = false;
            }
        }
    }
}

struct Job {
    facts: Vec<Fact>,
    /// Which source's delivery this is (`heal` is not a delivery).
    source: &'static str,
    reply: oneshot::Sender<Result<Vec<bool>, String>>,
}

#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("the store queue is full; GitLab will retry the delivery")]
    Busy,
    #[error("the store writer stopped")]
    Stopped,
    #[error("the store is unreachable; the collector reconnects, and GitLab will retry")]
    Unreachable,
    #[error("storing facts failed: {0}")]
    Store(String),
}

/// The handlers' side of the writer thread.
#[derive(Clone)]
pub struct Ingest {
    tx: SyncSender<Job>,
}

impl Ingest {
    /// Stores the facts (new ones once) and returns, for each, whether it was new — after commit.
    pub async fn submit(
        &self,
        source: &'static str,
        facts: Vec<Fact>,
    ) -> Result<Vec<bool>, SubmitError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .try_send(Job {
                facts,
                source,
                reply,
            })
            .map_err(|e| match e {
                TrySendError::Full(_) => SubmitError::Busy,
                TrySendError::Disconnected(_) => SubmitError::Stopped,
            })?;
        answer
            .await
            .map_err(|_| SubmitError::Stopped)?
            .map_err(SubmitError::Store)
    }
}

/// Opens two connections to the store (writer, tailer), each inside its own thread (the
/// `PostgreSQL` client runs its own small runtime, which must not nest in the server's), starts
/// both threads and returns the handlers' side. Fails at once when the store cannot be opened.
pub fn start(
    url: &str,
    queue: usize,
    poll: Duration,
    checkpoint_interval: Duration,
    aggregator: Arc<Mutex<Aggregator>>,
    health: Arc<Health>,
) -> anyhow::Result<Ingest> {
    let wake = Arc::new(Wake::default());
    let (tx, rx) = sync_channel(queue);
    let (opened_tx, opened) = std::sync::mpsc::channel::<Result<(), store::StoreError>>();
    health.writer_alive.store(true, Ordering::SeqCst);
    health.writer_store_ok.store(true, Ordering::SeqCst);
    health.tailer_store_ok.store(true, Ordering::SeqCst);
    health.writer_heartbeat_ms.store(now_ms(), Ordering::SeqCst);
    {
        let (wake, health, url, opened_tx) = (
            wake.clone(),
            health.clone(),
            url.to_owned(),
            opened_tx.clone(),
        );
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || match store::open(&url) {
                Ok(mut s) => {
                    load_deliveries(s.as_mut(), &health);
                    let _ = opened_tx.send(Ok(()));
                    writer(&url, s, &rx, &wake, &health);
                }
                Err(e) => {
                    health.writer_alive.store(false, Ordering::SeqCst);
                    let _ = opened_tx.send(Err(e));
                }
            })?;
    }
    {
        let url = url.to_owned();
        std::thread::Builder::new()
            .name("store-tailer".into())
            .spawn(move || match store::open(&url) {
                Ok(s) => {
                    let _ = opened_tx.send(Ok(()));
                    tailer(
                        &url,
                        s,
                        &aggregator,
                        &wake,
                        &health,
                        (poll, checkpoint_interval),
                    );
                }
                Err(e) => {
                    let _ = opened_tx.send(Err(e));
                }
            })?;
    }
    for _ in 0..2 {
        opened
            .recv()
            .map_err(|_| anyhow::anyhow!("a store thread ended while opening the store"))??;
    }
    Ok(Ingest { tx })
}

/// Staleness starts where the store says: the last committed GitLab delivery, or the store's
/// creation before the first one — so the gauge exists from the first scrape after any start.
fn load_deliveries(store: &mut dyn Store, health: &Health) {
    match store.deliveries() {
        Ok(rows) => {
            let created = rows
                .iter()
                .find(|(s, _)| s == "store-created")
                .map(|(_, t)| *t);
            for (i, source) in crate::server::SOURCES.iter().enumerate() {
                let at = rows
                    .iter()
                    .find(|(s, _)| s == source)
                    .map(|(_, t)| *t)
                    .or(created.filter(|_| *source == "gitlab"));
                if let Some(at) = at {
                    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                    health.last_delivery_ms[i].fetch_max((at * 1000.0) as u64, Ordering::SeqCst);
                }
            }
        }
        Err(e) => {
            health.store_errors.fetch_add(1, Ordering::Relaxed);
            tracing::error!(error = %e, "reading the last deliveries failed");
        }
    }
}

/// Reopens the store after a failure, at most once per backoff step.
struct Reconnect {
    retry_at: Instant,
    backoff: Duration,
}

impl Reconnect {
    fn new() -> Self {
        Self {
            retry_at: Instant::now(),
            backoff: RECONNECT_MIN,
        }
    }

    fn attempt(&mut self, url: &str, who: &str) -> Option<Box<dyn Store>> {
        if Instant::now() < self.retry_at {
            return None;
        }
        match store::open(url) {
            Ok(s) => {
                tracing::info!(thread = who, "reconnected to the store");
                self.backoff = RECONNECT_MIN;
                Some(s)
            }
            Err(e) => {
                tracing::warn!(thread = who, error = %e, retry_in_ms = self.backoff.as_millis(), "the store is still unreachable");
                self.retry_at = Instant::now() + self.backoff;
                self.backoff = (self.backoff * 2).min(RECONNECT_MAX);
                None
            }
        }
    }
}

fn writer(url: &str, store: Box<dyn Store>, rx: &Receiver<Job>, wake: &Wake, health: &Health) {
    let mut store = Some(store);
    let mut reconnect = Reconnect::new();
    loop {
        health.writer_heartbeat_ms.store(now_ms(), Ordering::SeqCst);
        let first = match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(job) => job,
            Err(RecvTimeoutError::Timeout) => {
                if store.is_none() {
                    store = reconnect.attempt(url, "writer");
                    health
                        .writer_store_ok
                        .store(store.is_some(), Ordering::SeqCst);
                }
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        };
        let mut jobs = vec![first];
        while jobs.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        if store.is_none() {
            store = reconnect.attempt(url, "writer");
            health
                .writer_store_ok
                .store(store.is_some(), Ordering::SeqCst);
        }
        let Some(current) = store.as_mut() else {
            // Answer at once: GitLab retries a 503, and a handler must not wait for a backoff.
            health.store_errors.fetch_add(1, Ordering::Relaxed);
            for job in jobs {
                let _ = job.reply.send(Err(SubmitError::Unreachable.to_string()));
            }
            continue;
        };
        let facts: Vec<Fact> = jobs.iter().flat_map(|j| j.facts.iter().cloned()).collect();
        let mut sources: Vec<&str> = jobs
            .iter()
            .map(|j| j.source)
            .filter(|s| *s != "heal")
            .collect();
        sources.sort_unstable();
        sources.dedup();
        let received_at = crate::now();
        match current.append(&facts, received_at, &sources) {
            Ok(appended) => {
                if let Some(seq) = appended.last_seq {
                    health.stored_seq.fetch_max(seq, Ordering::SeqCst);
                }
                // Staleness moves only now, after the commit: a delivery the store refused
                // does not count as one.
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let at_ms = (received_at * 1000.0) as u64;
                for source in &sources {
                    health.delivered(source, at_ms);
                }
                let flags = appended.new;
                let new = flags.iter().filter(|n| **n).count();
                let mut flags = flags.into_iter();
                for job in jobs {
                    let mine: Vec<bool> = flags.by_ref().take(job.facts.len()).collect();
                    let _ = job.reply.send(Ok(mine));
                }
                if new > 0 {
                    wake.notify();
                }
            }
            Err(e) => {
                health.store_errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, facts = facts.len(), "storing webhook facts failed; answering 503 so GitLab retries, and reconnecting");
                for job in jobs {
                    let _ = job.reply.send(Err(e.to_string()));
                }
                // A failed statement may mean a dropped connection (PostgreSQL restarted):
                // reopen before the next batch rather than fail every delivery forever.
                store = None;
                health.writer_store_ok.store(false, Ordering::SeqCst);
            }
        }
    }
    health.writer_alive.store(false, Ordering::SeqCst);
}

/// Saves a checkpoint when enough happened since the last one (see [`CHECKPOINT_EVERY`]).
fn checkpoint(
    store: &mut dyn Store,
    aggregator: &Mutex<Aggregator>,
    health: &Health,
    (last, interval): (i64, Duration),
    gaps: &std::collections::BTreeMap<i64, Instant>,
    checkpointed: &mut (i64, u64, Instant),
) {
    let Ok(agg) = aggregator.lock() else { return };
    let since = agg.applied().saturating_sub(checkpointed.1);
    let due = since >= CHECKPOINT_EVERY || (since > 0 && checkpointed.2.elapsed() >= interval);
    if !due || !gaps.is_empty() || last <= checkpointed.0 {
        return;
    }
    let (body, applied) = (agg.checkpoint(), agg.applied());
    drop(agg);
    match store.save_checkpoint(last, &body) {
        Ok(()) => {
            tracing::debug!(
                seq = last,
                bytes = body.len(),
                "saved a checkpoint of the aggregates"
            );
            *checkpointed = (last, applied, Instant::now());
        }
        Err(e) => {
            health.store_errors.fetch_add(1, Ordering::Relaxed);
            tracing::error!(error = %e, "saving the checkpoint failed");
        }
    }
}

/// Sequence numbers the tail passed without a row, re-read until they appear or
/// [`GAP_WINDOW`] passes. `PostgreSQL` makes a row visible when its transaction commits, and a
/// number taken by one transaction can become visible after a higher one was read (a writer killed
/// mid-commit, then a restart, showed it); conflicts and aborted transactions leave gaps that stay.
const GAP_WINDOW: Duration = Duration::from_secs(30);
const GAP_RECHECK: Duration = Duration::from_millis(200);
/// Gaps followed at most (the oldest are dropped first).
const MAX_GAPS: usize = 10_000;
/// Gaps re-read per query.
const GAP_QUERY: usize = 1_000;

/// Applies stored facts to the aggregates in sequence order, and late rows when they appear.
fn tailer(
    url: &str,
    store: Box<dyn Store>,
    aggregator: &Mutex<Aggregator>,
    wake: &Wake,
    health: &Health,
    (poll, checkpoint_interval): (Duration, Duration),
) {
    let mut store = store;
    let mut reconnect = Reconnect::new();
    let mut last = 0_i64;
    // A restart reads the checkpoint and the facts stored after it, not every fact.
    match store.load_checkpoint() {
        Ok(Some((seq, body))) => {
            let started = Instant::now();
            if let Ok(mut agg) = aggregator.lock() {
                if agg.load_checkpoint(&body) {
                    last = seq;
                    health.processed_seq.store(seq, Ordering::SeqCst);
                    tracing::info!(
                        seq,
                        ms = started.elapsed().as_millis(),
                        "loaded the checkpoint of the aggregates"
                    );
                } else {
                    tracing::info!(
                        "the checkpoint is of another format or settings; replaying the store"
                    );
                }
            }
        }
        Ok(None) => {}
        Err(e) => {
            health.store_errors.fetch_add(1, Ordering::Relaxed);
            tracing::error!(error = %e, "reading the checkpoint failed; replaying the store");
        }
    }
    let mut checkpointed = (
        last,
        aggregator.lock().map_or(0, |a| a.applied()),
        Instant::now(),
    );
    let mut gaps: std::collections::BTreeMap<i64, Instant> = std::collections::BTreeMap::new();
    let mut rechecked = Instant::now();
    loop {
        if !gaps.is_empty() && rechecked.elapsed() >= GAP_RECHECK {
            rechecked = Instant::now();
            gaps.retain(|_, seen| seen.elapsed() < GAP_WINDOW);
            let wanted: Vec<i64> = gaps.keys().copied().collect();
            for chunk in wanted.chunks(GAP_QUERY) {
                match store.read_seqs(chunk) {
                    Ok(late) if !late.is_empty() => {
                        let Ok(mut agg) = aggregator.lock() else {
                            return;
                        };
                        for (seq, fact) in &late {
                            agg.apply(fact);
                            gaps.remove(seq);
                        }
                        drop(agg);
                        tracing::debug!(facts = late.len(), "applied facts committed late");
                        health
                            .processed
                            .fetch_add(late.len() as u64, Ordering::Relaxed);
                    }
                    Ok(_) => {}
                    Err(e) => {
                        health.store_errors.fetch_add(1, Ordering::Relaxed);
                        tracing::error!(error = %e, "re-reading skipped sequence numbers failed");
                    }
                }
            }
        }
        match store.read_after(last, TAIL_BATCH) {
            Ok(batch) if batch.is_empty() => {
                if !health.ready.swap(true, Ordering::SeqCst) {
                    tracing::info!(facts = last, "replayed the store; ready");
                }
                checkpoint(
                    store.as_mut(),
                    aggregator,
                    health,
                    (last, checkpoint_interval),
                    &gaps,
                    &mut checkpointed,
                );
                wake.wait(if gaps.is_empty() {
                    poll
                } else {
                    poll.min(GAP_RECHECK)
                });
            }
            Ok(batch) => {
                let Ok(mut agg) = aggregator.lock() else {
                    return;
                };
                // Gaps matter near the tail only: a bulk replay's old gaps are permanent.
                let near_tail = batch.len() < TAIL_BATCH;
                let now = Instant::now();
                let mut previous = last;
                for (seq, fact) in &batch {
                    agg.apply(fact);
                    if near_tail && previous > 0 {
                        for missing in (previous + 1)..*seq {
                            gaps.insert(missing, now);
                        }
                    }
                    previous = *seq;
                }
                last = previous;
                drop(agg);
                while gaps.len() > MAX_GAPS {
                    gaps.pop_first();
                }
                health.processed_seq.store(last, Ordering::SeqCst);
                health
                    .processed
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                checkpoint(
                    store.as_mut(),
                    aggregator,
                    health,
                    (last, checkpoint_interval),
                    &gaps,
                    &mut checkpointed,
                );
            }
            Err(e) => {
                health.store_errors.fetch_add(1, Ordering::Relaxed);
                health.tailer_store_ok.store(false, Ordering::SeqCst);
                tracing::error!(error = %e, "reading the store failed; reconnecting");
                loop {
                    std::thread::sleep(RECONNECT_MIN);
                    if let Some(s) = reconnect.attempt(url, "tailer") {
                        store = s;
                        health.tailer_store_ok.store(true, Ordering::SeqCst);
                        break;
                    }
                }
            }
        }
    }
}
