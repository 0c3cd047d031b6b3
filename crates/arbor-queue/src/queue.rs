//! What a work queue does for arbor, whatever engine holds it: jobs in, items claimed under
//! leases, records committed once, status and records out. PostgreSQL implements it today
//! ([`crate::PgQueue`]); another engine (NATS JetStream, say) would implement the same trait.
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use arbor_llm::{ModelOpener, RoleUsage};
use arbor_tree::evaluate::ValueFunction;

use crate::QueueError;

pub type JobId = i64;

/// A job as submitted: its config and every input row.
pub struct NewJob {
    pub kind: String,
    /// The job's config as JSON (role defaults applied).
    pub config: String,
    /// What a local `--resume` would match (`SynthConfig::fingerprint`).
    pub fingerprint: String,
    pub input: String,
    pub input_sha256: String,
    /// Claims of one item before it becomes a dead letter.
    pub max_attempts: i32,
    pub rows: Vec<NewItem>,
}

/// One input row: an item to play, or a record already final (a malformed row, a duplicate).
pub struct NewItem {
    pub index: usize,
    /// Its prompt-pool epoch (0 for every item of a job without a pool).
    pub epoch: usize,
    pub item: Option<String>,
    pub done: Option<Done>,
}

/// An item's result, as the job's kind writes it.
#[derive(Debug, Clone)]
pub struct Done {
    /// The record (JSON text, kept byte for byte).
    pub record: String,
    /// How it ended, for counts: synth `accepted | gated_out | dead | duplicate`; search
    /// `tree | failed`.
    pub status: String,
    pub pairs: i32,
    /// Synth: the prompt pairs that earned its pairs (JSON), the pool's input.
    pub wins: Option<String>,
}

/// A job as stored.
#[derive(Debug, Clone)]
pub struct JobInfo {
    pub id: JobId,
    pub kind: String,
    pub config: String,
    pub fingerprint: String,
    pub input: String,
    pub input_sha256: String,
    pub total: usize,
    pub max_attempts: i32,
    /// `running` or `cancelled`.
    pub state: String,
}

/// One claim of one item: the lease names it, and only its holder may commit the item.
#[derive(Debug, Clone)]
pub struct Claim {
    pub job: JobId,
    pub index: usize,
    pub epoch: usize,
    /// The item as JSON.
    pub item: String,
    /// Claims of this item so far, this one included.
    pub attempts: i32,
    pub lease: i64,
    /// Why the earlier claim ended without a record (its lease expired).
    pub last_error: Option<String>,
}

/// Where a job stands.
#[derive(Debug, Clone, Default)]
pub struct JobStatus {
    pub total: u64,
    pub queued: u64,
    pub leased: u64,
    pub done: u64,
    /// Finished items by status.
    pub by_status: BTreeMap<String, u64>,
    pub pairs: u64,
    /// Items claimed more than once (a worker's lease expired).
    pub reclaimed: u64,
    /// Seconds from submission to the last finished item.
    pub seconds: f64,
    /// Items finished by each worker, and leased by it now.
    pub workers: Vec<(String, u64, u64)>,
}

#[async_trait::async_trait]
pub trait WorkQueue: Send + Sync {
    async fn submit(&self, job: NewJob) -> Result<JobId, QueueError>;
    /// The newest running job with this fingerprint and input, if any (`--resume`).
    async fn find(&self, fingerprint: &str, input_sha256: &str) -> Result<Option<JobId>, QueueError>;
    async fn job(&self, id: JobId) -> Result<JobInfo, QueueError>;
    async fn jobs(&self) -> Result<Vec<JobInfo>, QueueError>;
    /// Leases the first claimable item (of `job`, or of any running job, oldest job first):
    /// queued, or leased under an expired lease, and of an epoch whose pool is complete.
    async fn claim(&self, worker: &str, job: Option<JobId>, lease_secs: f64) -> Result<Option<Claim>, QueueError>;
    /// Extends these leases; returns how many were still held.
    async fn renew(&self, leases: &[i64], lease_secs: f64) -> Result<u64, QueueError>;
    /// Writes the item's record and marks it done, if `claim`'s lease is still the item's;
    /// false (and nothing written) when it is not. In the same statement, `usage` (the
    /// worker's running totals for the job: role, model, usage) replaces its earlier totals,
    /// so the accounts are as current as the records.
    async fn complete(&self, claim: &Claim, worker: &str, done: &Done, usage: &[(String, String, RoleUsage)]) -> Result<bool, QueueError>;
    /// Gives an unplayed claim back (a worker stopping).
    async fn release(&self, claim: &Claim) -> Result<(), QueueError>;
    /// The `wins` of the finished items of epochs ..=`last` that have any.
    async fn wins(&self, job: JobId, last: usize) -> Result<Vec<String>, QueueError>;
    /// The finished items' (status, record), in input order.
    async fn records(&self, job: JobId) -> Result<Vec<(String, String)>, QueueError>;
    /// Every item as submitted (None: a row submitted as final), in input order.
    async fn items(&self, job: JobId) -> Result<Vec<Option<String>>, QueueError>;
    async fn status(&self, job: JobId) -> Result<JobStatus, QueueError>;
    /// Stops the job's items from being claimed; false if it was not running.
    async fn cancel(&self, job: JobId) -> Result<bool, QueueError>;
    /// Every worker's usage rows of `job`.
    async fn usage(&self, job: JobId) -> Result<Vec<(String, String, RoleUsage)>, QueueError>;
}

/// How a job's kind plays its items.
#[async_trait::async_trait]
pub trait Runner: Send + Sync {
    /// The claimed item's result; an error leaves it unplayed (its lease expires and another
    /// claim plays it).
    async fn play(&self, queue: &dyn WorkQueue, claim: &Claim) -> Result<Done, QueueError>;
    /// The record of an item claimed more often than the job allows.
    fn given_up(&self, claim: &Claim, cause: String) -> Done;
    /// What its roles asked of their models so far here: (role, model, usage).
    fn usage(&self) -> Vec<(String, String, RoleUsage)> {
        Vec::new()
    }
}

/// What opens a job's runner on this machine: the models of its roles or policy, and the
/// critic of a search with the learned evaluator.
/// Loads an OREO critic from its directory (the CLI's, which may use burn; this crate does not).
pub type CriticLoader = dyn Fn(&Path) -> Result<Arc<dyn ValueFunction>, String> + Send + Sync;

#[derive(Clone, Copy)]
pub struct Openers<'a> {
    pub models: &'a dyn ModelOpener,
    pub critic: Option<&'a CriticLoader>,
}

