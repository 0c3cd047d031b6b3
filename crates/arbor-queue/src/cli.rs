//! The flags of `arbor synth --queue`, `arbor worker` and `arbor job`, and the commands that
//! take no model (the CLI passes its model opener to the ones that do).
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::queue::{JobId, WorkQueue};
use crate::queue::Openers;
use crate::worker::{work, WorkerCounts, WorkerOptions};
use crate::PgQueue;

/// The queue flags of `arbor synth` and `arbor search`.
#[derive(clap::Args, Debug, Clone)]
pub struct QueueFlags {
    /// Submit the job to this PostgreSQL work queue (postgres://USER[:PASSWORD]@HOST[:PORT]/DB;
    /// else the password from PGPASSWORD or ~/.pgpass), work on it, and write --out when done.
    #[arg(long)]
    pub queue: Option<String>,
    /// With --queue: items this process plays at once; 0 only submits and waits for workers
    /// [default: synth's max_in_flight, search's --concurrency].
    #[arg(long)]
    pub workers: Option<usize>,
    /// With --queue: claims of one item (a worker lost with it each time) before it becomes a
    /// dead letter.
    #[arg(long, default_value_t = 3)]
    pub max_attempts: i32,
    /// With --queue: seconds a claim holds without its worker's heartbeat.
    #[arg(long, default_value_t = 60.0)]
    pub lease_secs: f64,
}

impl QueueFlags {
    /// The run these flags ask for, on `url`, exporting into `out`; `workers` unless given.
    pub fn run(&self, url: String, out: &Path, resume: bool, workers: usize) -> crate::job::QueueRun {
        crate::job::QueueRun {
            url,
            out: out.to_path_buf(),
            resume,
            workers: self.workers.unwrap_or(workers),
            max_attempts: self.max_attempts,
            lease_secs: self.lease_secs,
        }
    }
}

/// `arbor worker`.
#[derive(clap::Args, Debug)]
pub struct WorkerArgs {
    /// The queue (postgres://…).
    #[arg(long)]
    pub queue: String,
    /// Items played at once.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Only this job's items; the worker ends when none are left.
    #[arg(long)]
    pub job: Option<JobId>,
    /// Seconds a claim holds without this worker's heartbeat (renewed every third of it).
    #[arg(long, default_value_t = 60.0)]
    pub lease_secs: f64,
    /// Roles without a URL run on the embedded model; this GGUF replaces the default.
    #[arg(long)]
    pub gguf: Option<PathBuf>,
}

/// `arbor job …`.
#[derive(clap::Subcommand, Debug)]
pub enum JobCommand {
    /// Progress, per-worker counts, dead letters and throughput of one job (or of every job).
    Status { url: String, job: Option<JobId> },
    /// Write the files of a local run (pairs in input order, Parquet, card) from the database.
    Export {
        url: String,
        job: JobId,
        #[arg(long)]
        out: PathBuf,
    },
    /// Stop a job's items from being claimed (items in play finish).
    Cancel { url: String, job: JobId },
    /// Bring the database's schema to this arbor's version.
    Migrate { url: String },
}

pub async fn worker(a: WorkerArgs, openers: Openers<'_>, stop: Arc<AtomicBool>) -> anyhow::Result<()> {
    let queue: Arc<dyn WorkQueue> = Arc::new(PgQueue::connect(&a.queue).await?);
    let name = crate::worker::worker_name();
    eprintln!("worker {name} on {}", crate::redact(&a.queue));
    let opts = WorkerOptions {
        concurrency: a.concurrency,
        lease_secs: a.lease_secs,
        job: a.job,
        ..Default::default()
    };
    let counts = Arc::new(WorkerCounts::default());
    let result = work(queue, openers, opts, name.clone(), stop, counts.clone()).await;
    eprintln!(
        "worker {name}: {} items committed, {} results dropped (their lease had passed to another worker)",
        counts.committed.load(Ordering::Relaxed),
        counts.lost.load(Ordering::Relaxed)
    );
    Ok(result?)
}

pub async fn job(c: JobCommand) -> anyhow::Result<()> {
    if let JobCommand::Migrate { url } = &c {
        let (from, to) = PgQueue::migrate(url).await?;
        println!("{}: schema version {from} -> {to}", crate::redact(url));
        return Ok(());
    }
    let url = match &c {
        JobCommand::Status { url, .. } | JobCommand::Export { url, .. } | JobCommand::Cancel { url, .. } => url,
        JobCommand::Migrate { .. } => unreachable!("handled above"),
    };
    let queue = PgQueue::connect(url).await?;
    match c {
        JobCommand::Status { job, .. } => {
            let jobs = match job {
                Some(id) => vec![queue.job(id).await?],
                None => queue.jobs().await?,
            };
            if jobs.is_empty() {
                println!("no jobs in {}", queue.shown_url());
            }
            for info in jobs {
                let s = queue.status(info.id).await?;
                print!("{}", crate::job::status_text(&info, &s));
            }
        }
        JobCommand::Export { job, out, .. } => println!("{}", crate::job::export(&queue, job, &out).await?),
        JobCommand::Cancel { job, .. } => {
            if queue.cancel(job).await? {
                println!("job {job} cancelled: no more of its items will be claimed");
            } else {
                println!("job {job} was not running");
            }
        }
        JobCommand::Migrate { .. } => {}
    }
    Ok(())
}
