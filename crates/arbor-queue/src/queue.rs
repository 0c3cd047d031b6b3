//! What a work queue does for arbor, whatever engine holds it: jobs in, items claimed under
//! leases, records committed once, status and records out. PostgreSQL implements it today
//! ([`crate::PgQueue`]); another engine (NATS JetStream, say) would implement the same trait.
use arbor_synth::journal::ItemRecord;
use arbor_synth::prompts::PromptPair;

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
    /// Its prompt-pool epoch.
    pub epoch: usize,
    pub item: Option<String>,
    pub record: Option<ItemRecord>,
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
    pub accepted: u64,
    pub gated_out: u64,
    pub dead: u64,
    pub duplicates: u64,
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
    /// false (and nothing written) when it is not.
    async fn complete(&self, claim: &Claim, worker: &str, record: &ItemRecord) -> Result<bool, QueueError>;
    /// Gives an unplayed claim back (a worker stopping).
    async fn release(&self, claim: &Claim) -> Result<(), QueueError>;
    /// The prompt pairs that earned pairs, one list per finished item of epochs ..=`last`.
    async fn wins(&self, job: JobId, last: usize) -> Result<Vec<Vec<PromptPair>>, QueueError>;
    /// The finished items' records, in input order.
    async fn records(&self, job: JobId) -> Result<Vec<ItemRecord>, QueueError>;
    async fn status(&self, job: JobId) -> Result<JobStatus, QueueError>;
    /// Stops the job's items from being claimed; false if it was not running.
    async fn cancel(&self, job: JobId) -> Result<bool, QueueError>;
}
