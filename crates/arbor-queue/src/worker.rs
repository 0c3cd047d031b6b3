//! A worker: claims items of any running job (or of one), plays each with the job's roles and
//! the local run's per-item engine, and commits its record. A heartbeat renews the leases of
//! the items in play; a worker that dies stops renewing, its leases expire, and another worker
//! plays those items again (after `max_attempts` claims an item becomes a dead letter).
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use crate::queue::{JobId, Openers, Runner, WorkQueue};
use crate::QueueError;

#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Items played at once.
    pub concurrency: usize,
    /// How long a claim holds without renewal; the heartbeat renews at a third of it.
    pub lease_secs: f64,
    /// Only this job's items; the worker ends when the job has none left to play.
    pub job: Option<JobId>,
    /// Wait between claims when nothing is claimable.
    pub poll: Duration,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        Self {
            concurrency: 8,
            lease_secs: 60.0,
            job: None,
            poll: Duration::from_millis(500),
        }
    }
}

/// What a worker did.
#[derive(Default)]
pub struct WorkerCounts {
    /// Records committed.
    pub committed: AtomicU64,
    /// Records refused because the lease had passed to another worker.
    pub lost: AtomicU64,
}

/// This process's name in the queue: host, process id and a random tag.
pub fn worker_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "host".into());
    let tag = arbor_core::fnv1a(format!("{:?}{}", std::time::SystemTime::now(), std::process::id()).bytes());
    format!("{host}-{}-{:04x}", std::process::id(), tag & 0xffff)
}

/// A job's runner and its claim limit, opened on the job's first claim here.
struct Opened {
    runner: Box<dyn Runner>,
    max_attempts: i32,
}

async fn open_job(queue: &dyn WorkQueue, openers: Openers<'_>, job: JobId) -> Result<Opened, QueueError> {
    let info = queue.job(job).await?;
    let runner: Box<dyn Runner> = match info.kind.as_str() {
        "synth" => Box::new(crate::synth::runner(&info, openers.models).await?),
        "search" => Box::new(crate::search::runner(queue, &info, openers.models, openers.critic).await?),
        other => return Err(QueueError::Job(format!("job {job} is of kind `{other}`, which this arbor does not know"))),
    };
    Ok(Opened {
        runner,
        max_attempts: info.max_attempts,
    })
}

/// Whether a job has nothing left to play: every item done, or the job cancelled.
pub async fn finished(queue: &dyn WorkQueue, job: JobId) -> Result<bool, QueueError> {
    let s = queue.status(job).await?;
    Ok((s.queued == 0 && s.leased == 0) || queue.job(job).await?.state != "running")
}

/// Runs until `stop` is set (the items in play finish and are committed) or, with
/// `opts.job`, until that job has nothing left to claim or wait for.
pub async fn work(
    queue: Arc<dyn WorkQueue>,
    openers: Openers<'_>,
    opts: WorkerOptions,
    name: String,
    stop: Arc<AtomicBool>,
    counts: Arc<WorkerCounts>,
) -> Result<(), QueueError> {
    let held: Arc<Mutex<HashSet<i64>>> = Arc::default();
    let mut jobs: HashMap<JobId, Arc<Opened>> = HashMap::new();
    let heartbeat = {
        let (queue, held) = (queue.clone(), held.clone());
        let every = Duration::from_secs_f64(opts.lease_secs / 3.0);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let leases: Vec<i64> = held.lock().iter().copied().collect();
                if let Err(e) = queue.renew(&leases, opts.lease_secs).await {
                    tracing::warn!("renewing leases: {e}");
                }
            }
        })
    };
    let permits = Arc::new(tokio::sync::Semaphore::new(opts.concurrency.max(1)));
    let mut running = tokio::task::JoinSet::new();
    let result = loop {
        if stop.load(Ordering::Relaxed) {
            break Ok(());
        }
        let permit = permits.clone().acquire_owned().await.expect("the semaphore is never closed");
        while running.try_join_next().is_some() {}
        let claim = match queue.claim(&name, opts.job, opts.lease_secs).await {
            Ok(c) => c,
            Err(e) => break Err(e),
        };
        let Some(claim) = claim else {
            drop(permit);
            if let Some(job) = opts.job {
                match finished(&*queue, job).await {
                    Ok(true) => break Ok(()),
                    Ok(false) => {}
                    Err(e) => break Err(e),
                }
            }
            tokio::time::sleep(opts.poll).await;
            continue;
        };
        let players = match jobs.get(&claim.job) {
            Some(p) => p.clone(),
            None => match open_job(&*queue, openers, claim.job).await {
                Ok(p) => jobs.entry(claim.job).or_insert(Arc::new(p)).clone(),
                Err(e) => {
                    let _ = queue.release(&claim).await;
                    break Err(e);
                }
            },
        };
        held.lock().insert(claim.lease);
        let (queue, held, counts, name) = (queue.clone(), held.clone(), counts.clone(), name.clone());
        running.spawn(async move {
            let done = if claim.attempts > players.max_attempts {
                let why = claim.last_error.clone().unwrap_or_else(|| "no cause recorded".into());
                let cause = format!("claimed {} times without a result (max_attempts {}): {why}", claim.attempts - 1, players.max_attempts);
                players.runner.given_up(&claim, cause)
            } else {
                match players.runner.play(&*queue, &claim).await {
                    Ok(done) => done,
                    Err(e) => {
                        tracing::warn!("job {} item {}: {e}", claim.job, claim.index);
                        held.lock().remove(&claim.lease);
                        return;
                    }
                }
            };
            match queue.complete(&claim, &name, &done, &players.runner.usage()).await {
                Ok(true) => counts.committed.fetch_add(1, Ordering::Relaxed),
                Ok(false) => {
                    tracing::warn!("job {} item {}: the lease passed to another worker; this result is dropped", claim.job, claim.index);
                    counts.lost.fetch_add(1, Ordering::Relaxed)
                }
                Err(e) => {
                    tracing::warn!("job {} item {}: committing: {e}", claim.job, claim.index);
                    0
                }
            };
            held.lock().remove(&claim.lease);
            drop(permit);
        });
    };
    while running.join_next().await.is_some() {}
    heartbeat.abort();
    result
}
