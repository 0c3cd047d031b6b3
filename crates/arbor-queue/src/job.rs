//! A job on the queue from the submitting side: [`run`] (submit — or find the job to
//! `--resume` —, work on it here too, wait, export), [`export`] (a local run's files from the
//! records in the database) and [`status_text`].
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arbor_envs::Task;
use arbor_synth::SynthConfig;
use parking_lot::Mutex;

use crate::queue::{JobId, JobInfo, JobStatus, NewJob, WorkQueue};
use crate::search::SearchJob;
use crate::queue::Openers;
use crate::worker::{work, WorkerCounts, WorkerOptions};
use crate::QueueError;

/// What to submit.
pub enum Submission {
    Synth { input: PathBuf, cfg: SynthConfig },
    Search { spec: SearchJob, tasks: Vec<Task>, input: String },
}

impl Submission {
    fn job(self, max_attempts: i32) -> Result<NewJob, QueueError> {
        match self {
            Submission::Synth { input, cfg } => crate::synth::job(&input, cfg, max_attempts),
            Submission::Search { spec, tasks, input } => Ok(crate::search::job(&spec, &tasks, &input, max_attempts)),
        }
    }
}

/// Submits `job`, or with `resume` takes the running job of the same config and input if there
/// is one. Returns the job and whether it was found.
pub async fn submit(queue: &dyn WorkQueue, job: NewJob, resume: bool) -> Result<(JobId, bool), QueueError> {
    if resume {
        if let Some(id) = queue.find(&job.fingerprint, &job.input_sha256).await? {
            return Ok((id, true));
        }
    }
    Ok((queue.submit(job).await?, false))
}

/// Writes the job's files into `out` (a running job: the items done so far); returns a line
/// of counts.
pub async fn export(queue: &dyn WorkQueue, job: JobId, out: &Path) -> Result<String, QueueError> {
    let info = queue.job(job).await?;
    Ok(match info.kind.as_str() {
        "search" => {
            let (trees, failed) = crate::search::export(queue, &info, out).await?;
            format!("{trees} trees, {failed} failed, of {} tasks -> {}", info.total, out.display())
        }
        _ => {
            let c = crate::synth::export(queue, &info, out).await?;
            format!("{} of {} items: {} accepted ({} pairs), {} gated out, {} dead letters, {} duplicates -> {}",
                c.items, info.total, c.accepted, c.pairs, c.gated_out, c.dead, c.duplicates, out.display())
        }
    })
}

/// A job's status for the terminal.
pub fn status_text(info: &JobInfo, s: &JobStatus) -> String {
    let by = |k: &str| s.by_status.get(k).copied().unwrap_or(0);
    let counts = match info.kind.as_str() {
        "search" => format!("{} trees, {} failed", by("tree"), by("failed")),
        _ => crate::synth::counts_text(&by, s.pairs),
    };
    let played = s.done.saturating_sub(by("duplicate"));
    let rate = if s.seconds > 0.0 { played as f64 / s.seconds } else { 0.0 };
    let state = if info.state == "running" && s.done == s.total { "done" } else { info.state.as_str() };
    let mut t = format!(
        "job {} ({}, {state}): {} of {} items done — {counts}; {} leased, {} queued; {} claimed again after a lost lease; {rate:.2} items/s over {:.0} s\n",
        info.id, info.kind, s.done, s.total, s.leased, s.queued, s.reclaimed, s.seconds
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

/// `arbor synth --queue` / `arbor search --queue`: where, and how to work on the job here.
pub struct QueueRun {
    pub url: String,
    pub out: PathBuf,
    pub resume: bool,
    /// Items this process plays at once (0: submit and wait for other workers).
    pub workers: usize,
    pub max_attempts: i32,
    pub lease_secs: f64,
}

pub struct QueueSummary {
    pub job: JobId,
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
        } else if self.info.state == "cancelled" {
            s += &format!(
                "job {} was cancelled: `arbor job export URL {} --out {}` writes the items it finished\n",
                self.job, self.job, out.display()
            );
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
    what: Submission,
    openers: Openers<'_>,
    stop: Arc<AtomicBool>,
    watch: Arc<Watch>,
) -> Result<QueueSummary, QueueError> {
    let queue: Arc<dyn WorkQueue> = Arc::new(crate::PgQueue::connect(&r.url).await?);
    let (job, found) = submit(&*queue, what.job(r.max_attempts)?, r.resume).await?;
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
        let result = work(queue.clone(), openers, opts, name, stop.clone(), counts.clone()).await;
        if result.is_err() {
            stop.store(true, Ordering::Relaxed);
        }
        result
    };
    let waiter = async {
        loop {
            let s = queue.status(job).await?;
            watch.done.store(s.done, Ordering::Relaxed);
            let line = status_text(&info, &s);
            *watch.line.lock() = line.split(" — ").nth(1).and_then(|l| l.split(';').next()).unwrap_or_default().to_string();
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
        found,
        finished,
        status: queue.status(job).await?,
        info: queue.job(job).await?,
        committed: counts.committed.load(Ordering::Relaxed),
    })
}
