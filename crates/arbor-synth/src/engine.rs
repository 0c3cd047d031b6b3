//! The runtime: admission in input order under the in-flight limit, one async state machine per
//! item ([`crate::play`]: sample → judge → gate → optimize, round after round), and the journal
//! sink, the one actor that owns state: it appends each finished item's record (one fsync per
//! batch of whatever is queued) and feeds the prompt pool and the counters.
//!
//! An item holds its in-flight permit from admission until its record is sent, so at most
//! `max_in_flight` items run; a slow item occupies only its own permit. A stop request ends
//! admission; the items in flight finish and are journaled.
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use tokio::sync::{mpsc, Semaphore};

use crate::config::SynthConfig;
use crate::game::Players;
use crate::input::Item;
use crate::journal::{ItemRecord, Journal};
use crate::play::{play, Shared};
pub use crate::progress::Progress;
use crate::prompts::{PromptPair, PromptPool};

/// Output files written from the records so far while the job runs, so a job killed with
/// SIGKILL still leaves the pairs of its finished items.
pub struct Snapshot {
    pub every: Duration,
    /// Writes the records (in input order) as the job's output files.
    pub write: Box<dyn Fn(&[ItemRecord]) -> Result<(), String> + Send + Sync>,
}

/// The journal actor: owns the journal and the records; returns them all when every sender
/// is gone. Between batches it writes a snapshot of the outputs when one is due.
async fn sink(
    mut journal: Journal,
    mut records: Vec<ItemRecord>,
    mut rx: mpsc::Receiver<ItemRecord>,
    pool: Arc<PromptPool>,
    progress: Arc<Progress>,
    snapshot: Option<Snapshot>,
) -> Result<Vec<ItemRecord>, String> {
    let snapshot = snapshot.map(Arc::new);
    let mut last_snapshot = Instant::now();
    let mut batch = Vec::new();
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        // The fsync runs off the async workers.
        let (j, b, written) = tokio::task::spawn_blocking(move || {
            let r = journal.append(&batch);
            (journal, batch, r)
        })
        .await
        .map_err(|e| format!("journal: {e}"))?;
        journal = j;
        batch = b;
        written.map_err(|e| format!("journal: {e}"))?;
        for r in batch.drain(..) {
            pool.finish(r.index, &r.wins);
            progress.count(&r);
            records.push(r);
        }
        if let Some(snap) = snapshot
            .as_ref()
            .filter(|s| last_snapshot.elapsed() >= s.every)
        {
            // Awaited, so no snapshot can land after (and over) the final output.
            let (snap, mut recs) = (snap.clone(), records.clone());
            let written = tokio::task::spawn_blocking(move || {
                recs.sort_by_key(|r| r.index);
                (snap.write)(&recs)
            })
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r);
            if let Err(e) = written {
                tracing::warn!("snapshot of the outputs: {e}");
            }
            last_snapshot = Instant::now();
        }
    }
    Ok(records)
}

/// Runs the job over `items` (every input row, in order), journaling into `journal_path`.
/// Items already in the journal (with `resume`) are skipped; malformed rows become dead
/// letters. Returns every record, journaled ones included, in input order, and whether the run
/// was interrupted.
pub async fn run(
    cfg: SynthConfig,
    players: Players,
    items: Vec<Result<Item, ItemRecord>>,
    journal_path: &Path,
    resume: bool,
    stop: Arc<AtomicBool>,
    progress: Arc<Progress>,
    snapshot: Option<Snapshot>,
) -> Result<(Vec<ItemRecord>, bool), String> {
    let (journal, old) = Journal::open(journal_path, resume)
        .map_err(|e| format!("{}: {e}", journal_path.display()))?;
    let pool = Arc::new(PromptPool::new(items.len(), cfg.pool_epoch));
    let mut done = vec![false; items.len()];
    for r in &old {
        if r.index < items.len() && !std::mem::replace(&mut done[r.index], true) {
            pool.finish(r.index, &r.wins);
            progress.count(r);
            progress.resumed.fetch_add(1, Ordering::Relaxed);
        }
    }
    progress.total.store(items.len() as u64, Ordering::Relaxed);

    let cap = cfg.max_in_flight;
    let (tx, rx) = mpsc::channel::<ItemRecord>(cap);
    let sink = tokio::spawn(sink(
        journal,
        old,
        rx,
        pool.clone(),
        progress.clone(),
        snapshot,
    ));
    let no_gate = cfg.no_gate;
    let player = ItemPlayer::new(cfg, players, progress);

    // Admission, in input order.
    let permits = Arc::new(Semaphore::new(cap));
    let mut running = tokio::task::JoinSet::new();
    let mut interrupted = false;
    for (row, is_done) in items.into_iter().zip(done) {
        if is_done {
            continue;
        }
        if stop.load(Ordering::Relaxed) {
            interrupted = true;
            break;
        }
        let item = match row {
            Ok(item) => item,
            // A row that needs no playing (malformed, or a duplicate): its record as it is.
            Err(rec) => {
                if tx.send(rec).await.is_err() {
                    break;
                }
                continue;
            }
        };
        // Without the gate there is no feedback, so no prompt ever changes.
        let prompts = if no_gate {
            PromptPair::initial()
        } else {
            pool.start(item.index).await
        };
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        while running.try_join_next().is_some() {}
        let (player, tx) = (player.clone(), tx.clone());
        running.spawn(async move {
            let rec = player.play(item, prompts).await;
            let _ = tx.send(rec).await;
            drop(permit);
        });
    }
    while running.join_next().await.is_some() {}
    drop(tx);
    let mut records = sink.await.map_err(|e| format!("journal: {e}"))??;
    records.sort_by_key(|r| r.index);
    records.dedup_by_key(|r| r.index);
    Ok((records, interrupted))
}

/// The per-item engine, the same for a local run and a queue's worker: plays one item from the
/// prompts it starts with to its record.
#[derive(Clone)]
pub struct ItemPlayer(Arc<Shared>);

impl ItemPlayer {
    pub fn new(cfg: SynthConfig, players: Players, progress: Arc<Progress>) -> Self {
        Self(Arc::new(Shared {
            cfg,
            players,
            progress,
        }))
    }

    /// Plays `item` to its record. Its calls wait for endpoints at its index: the oldest items
    /// get the server's capacity first, so they finish (and stream out) in input order.
    pub async fn play(&self, item: Item, prompts: PromptPair) -> ItemRecord {
        let priority = item.index as u64;
        arbor_llm::priority::with_priority(priority, played(&self.0, Arc::new(item), prompts)).await
    }
}

/// How the cause of an item lost to a bug in arbor (a panic) begins.
pub const INTERNAL_ERROR: &str = "internal error: ";

/// How the cause of an item past `item_deadline_secs` begins.
pub const DEADLINE: &str = "item deadline passed: ";

/// Plays one item; a panic inside becomes the item's dead letter instead of a lost item, and
/// so does an item still playing at its deadline.
async fn played(sh: &Shared, item: Arc<Item>, prompts: PromptPair) -> ItemRecord {
    let kept = item.clone();
    let deadline = sh.cfg.item_deadline_secs;
    let playing = std::panic::AssertUnwindSafe(play(sh, item, prompts)).catch_unwind();
    let outcome = if deadline > 0.0 {
        match tokio::time::timeout(Duration::from_secs_f64(deadline), playing).await {
            Ok(outcome) => outcome,
            Err(_) => {
                let cause =
                    format!("{DEADLINE}still playing after {deadline} s (item_deadline_secs)");
                let mut rec = ItemRecord::dead(kept.index, kept.id.clone(), 0, cause);
                rec.input = serde_json::to_value(&*kept).ok();
                return rec;
            }
        }
    } else {
        playing.await
    };
    match outcome {
        Ok(rec) => rec,
        Err(panic) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            let cause = format!("{INTERNAL_ERROR}{msg}");
            let mut rec = ItemRecord::dead(kept.index, kept.id.clone(), 0, cause);
            rec.input = serde_json::to_value(&*kept).ok();
            rec
        }
    }
}
