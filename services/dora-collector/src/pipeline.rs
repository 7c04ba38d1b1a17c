//! The path of a fact: a webhook handler hands it to the writer thread, which stores every
//! waiting webhook's facts in one transaction (group commit) and only then lets the handlers
//! acknowledge; the tailer thread reads what was stored, in order, into the aggregates.
//!
//! Acknowledge-after-commit is what makes "a restart loses no acknowledged event" true; group
//! commit is what keeps that cheap (one fsync per batch, not per webhook). The tailer reads the
//! store rather than taking facts from the writer so that replicas sharing `PostgreSQL` all see
//! every replica's facts, and a restart rebuilds the aggregates by the same code path.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
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
    reply: oneshot::Sender<Result<Vec<bool>, String>>,
}

#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("the store queue is full; GitLab will retry the delivery")]
    Busy,
    #[error("the store writer stopped")]
    Stopped,
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
    pub async fn submit(&self, facts: Vec<Fact>) -> Result<Vec<bool>, SubmitError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .try_send(Job { facts, reply })
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
    aggregator: Arc<Mutex<Aggregator>>,
    health: Arc<Health>,
) -> anyhow::Result<Ingest> {
    let wake = Arc::new(Wake::default());
    let (tx, rx) = sync_channel(queue);
    let (opened_tx, opened) = std::sync::mpsc::channel::<Result<(), store::StoreError>>();
    health.writer_alive.store(true, Ordering::SeqCst);
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
                Ok(s) => {
                    let _ = opened_tx.send(Ok(()));
                    writer(s, &rx, &wake, &health);
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
                    tailer(s, &aggregator, &wake, &health, poll);
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

fn writer(mut store: Box<dyn Store>, rx: &Receiver<Job>, wake: &Wake, health: &Health) {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        while jobs.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        let facts: Vec<Fact> = jobs.iter().flat_map(|j| j.facts.iter().cloned()).collect();
        match store.append(&facts, crate::now()) {
            Ok(appended) => {
                if let Some(seq) = appended.last_seq {
                    health.stored_seq.fetch_max(seq, Ordering::SeqCst);
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
                tracing::error!(error = %e, facts = facts.len(), "storing webhook facts failed; answering 503 so GitLab retries");
                for job in jobs {
                    let _ = job.reply.send(Err(e.to_string()));
                }
            }
        }
    }
    health.writer_alive.store(false, Ordering::SeqCst);
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
    mut store: Box<dyn Store>,
    aggregator: &Mutex<Aggregator>,
    wake: &Wake,
    health: &Health,
    poll: Duration,
) {
    let mut last = 0_i64;
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
            }
            Err(e) => {
                health.store_errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, "reading the store failed; retrying in 1 s");
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
}
