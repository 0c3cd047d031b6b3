//! A synthesis job on a queue, as library calls: [`submit`] (or find the job to `--resume`),
//! [`run`] (submit, work on it here too, wait, export), [`export`] (the files of a local run,
//! from the records in the database) and [`status_text`].
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arbor_llm::ModelOpener;
use arbor_synth::output::{write_all, Counts, ModelNames};
use arbor_synth::SynthConfig;
use parking_lot::Mutex;
use serde_json::json;

use crate::queue::{JobId, JobInfo, JobStatus, NewItem, NewJob, WorkQueue};
use crate::worker::{work, WorkerCounts, WorkerOptions};
use crate::QueueError;

/// Submits the job of `input` and `cfg` (checked as a local run checks them; malformed rows
/// and duplicates go in as final records). With `resume`, a running job of the same config
/// and input is taken instead, if there is one. Returns the job and whether it was found.
pub async fn submit(
    queue: &dyn WorkQueue,
    input: &Path,
    cfg: SynthConfig,
    max_attempts: i32,
    resume: bool,
) -> Result<(JobId, bool), QueueError> {
    let (cfg, items) = arbor_synth::job::prepare(input, cfg)?;
    let sha = arbor_core::file_sha256(input)
        .map_err(|e| QueueError::Job(format!("{}: {e}", input.display())))?;
    let fingerprint = cfg.fingerprint();
    if resume {
        if let Some(id) = queue.find(&fingerprint, &sha).await? {
            return Ok((id, true));
        }
    }
    // Without the gate no prompt ever changes, so no item waits for the pool.
    let epoch_of = |i: usize| if cfg.no_gate { 0 } else { i / cfg.pool_epoch };
    let rows = arbor_synth::job::unplayed(items, &cfg)
        .into_iter()
        .map(|row| match row {
            Ok(item) => NewItem {
                index: item.index,
                epoch: epoch_of(item.index),
                item: Some(serde_json::to_string(&item).expect("items serialize")),
                record: None,
            },
            Err(rec) => NewItem {
                index: rec.index,
                epoch: epoch_of(rec.index),
                item: None,
                record: Some(rec),
            },
        })
        .collect();
    let job = NewJob {
        kind: "synth".into(),
        config: serde_json::to_string(&cfg).expect("configs serialize"),
        fingerprint,
        input: input.display().to_string(),
        input_sha256: sha,
        max_attempts,
        rows,
    };
    Ok((queue.submit(job).await?, false))
}

fn config_of(info: &JobInfo) -> Result<SynthConfig, QueueError> {
    serde_json::from_str(&info.config)
        .map_err(|e| QueueError::Job(format!("job {}: its config does not read ({e})", info.id)))
}

/// Writes the job's files into `out` from the records in the database, exactly as a local run
/// of the same input and config writes them (a job still running: the items finished so far).
pub async fn export(queue: &dyn WorkQueue, job: JobId, out: &Path) -> Result<Counts, QueueError> {
    let info = queue.job(job).await?;
    let cfg = config_of(&info)?;
    let records = queue.records(job).await?;
    let io = |e: std::io::Error| QueueError::Job(format!("{}: {e}", out.display()));
    std::fs::create_dir_all(out).map_err(io)?;
    let name = |r: &arbor_synth::config::RoleConfig| r.model.clone().unwrap_or_else(|| "embedded".into());
    let names = ModelNames {
        target: name(&cfg.target),
        judge: name(&cfg.judge),
        reward: name(&cfg.reward),
        optimizer: name(&cfg.optimizer),
    };
    let counts = write_all(out, &records, &cfg, &names, info.total, &[])
        .map_err(|e| QueueError::Job(e.to_string()))?;
    let file = json!({"format": "arbor.synth-job/1", "config": info.fingerprint, "input_rows": info.total,
                      "input_sha256": info.input_sha256, "input": info.input, "queue_job": job});
    arbor_core::write_atomic(&out.join("job.json"), serde_json::to_string_pretty(&file).expect("JSON values serialize"))
        .map_err(io)?;
    Ok(counts)
}

/// A job's status for the terminal.
pub fn status_text(info: &JobInfo, s: &JobStatus) -> String {
    let played = s.done.saturating_sub(s.duplicates);
    let rate = if s.seconds > 0.0 { played as f64 / s.seconds } else { 0.0 };
    let state = if info.state == "running" && s.done == s.total { "done" } else { info.state.as_str() };
    let mut t = format!(
        "job {} ({}, {}): {} of {} items done — {} accepted ({} pairs), {} gated out, {} dead letters, {} duplicates; {} leased, {} queued; {} claimed again after a lost lease; {:.2} items/s over {:.0} s\n",
        info.id, info.kind, state, s.done, s.total, s.accepted, s.pairs, s.gated_out, s.dead, s.duplicates,
        s.leased, s.queued, s.reclaimed, rate, s.seconds
    );
    for (w, done, leased) in &s.workers {
        t += &format!("  worker {w}: {done} done, {leased} in play\n");
    }
    t
}

/// Live figures of a waiting job, for a progress bar.
#[derive(Default)]
pub struct Watch {
    pub done: AtomicU64,
    pub total: AtomicU64,
    pub line: Mutex<String>,
}

/// `arbor synth --queue`: what to submit and how to work on it.
pub struct QueueRun {
    pub url: String,
    pub input: PathBuf,
    pub out: PathBuf,
    pub cfg: SynthConfig,
    pub resume: bool,
    /// Items this process plays at once (0: submit and wait for other workers).
    pub workers: usize,
    pub max_attempts: i32,
    pub lease_secs: f64,
}

pub struct QueueSummary {
    pub job: JobId,
    pub url: String,
    /// The job had been submitted before (`--resume`).
    pub found: bool,
    /// Every item is done and the files are written.
    pub finished: bool,
    pub status: JobStatus,
    pub info: JobInfo,
    /// Records this process committed.
    pub committed: u64,
}

impl QueueSummary {
    pub fn report(&self, out: &Path) -> String {
        let mut s = status_text(&self.info, &self.status);
        s += &format!("this process played {} items\n", self.committed);
        if self.finished {
            s += &format!("-> {}\n", out.display());
        } else {
            s += &format!(
                "stopped early: job {} stays in the database; `arbor worker --queue URL` finishes it, then `arbor job export URL {} --out {}` writes its files (or run the same command with --resume)\n",
                self.job, self.job, out.display()
            );
        }
        s
    }
}

/// Submits the job (or finds it, with `resume`), works on it here with `workers` items at
/// once, waits until every item is done and exports the files into `out`. Setting `stop` ends
/// the wait; the items in play here finish and are committed.
pub async fn run(
    r: QueueRun,
    opener: &dyn ModelOpener,
    stop: Arc<AtomicBool>,
    watch: Arc<Watch>,
) -> Result<QueueSummary, QueueError> {
    let queue: Arc<dyn WorkQueue> = Arc::new(crate::PgQueue::connect(&r.url).await?);
    let (job, found) = submit(&*queue, &r.input, r.cfg, r.max_attempts, r.resume).await?;
    let info = queue.job(job).await?;
    watch.total.store(info.total as u64, Ordering::Relaxed);
    tracing::info!("job {job} on {}", crate::redact(&r.url));
    let counts = Arc::new(WorkerCounts::default());
    let worker = async {
        if r.workers == 0 {
            return Ok(());
        }
        let opts = WorkerOptions {
            concurrency: r.workers,
            lease_secs: r.lease_secs,
            job: Some(job),
            ..Default::default()
        };
        let name = crate::worker::worker_name();
        let result = work(queue.clone(), opener, opts, name, stop.clone(), counts.clone()).await;
        if result.is_err() {
            stop.store(true, Ordering::Relaxed);
        }
        result
    };
    let waiter = async {
        loop {
            let s = queue.status(job).await?;
            watch.done.store(s.done, Ordering::Relaxed);
            *watch.line.lock() = format!("{} accepted ({} pairs), {} gated out, {} dead, {} in play", s.accepted, s.pairs, s.gated_out, s.dead, s.leased);
            if s.queued == 0 && s.leased == 0 {
                return Ok::<_, QueueError>(true);
            }
            if stop.load(Ordering::Relaxed) || queue.job(job).await?.state != "running" {
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    };
    let (worked, waited) = tokio::join!(worker, waiter);
    worked?;
    let finished = waited?;
    if finished {
        export(&*queue, job, &r.out).await?;
    }
    Ok(QueueSummary {
        job,
        url: crate::redact(&r.url),
        found,
        finished,
        status: queue.status(job).await?,
        info: queue.job(job).await?,
        committed: counts.committed.load(Ordering::Relaxed),
    })
}
