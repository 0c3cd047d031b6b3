//! [`WorkQueue`] on PostgreSQL. Every operation is one short statement (submitting is one
//! transaction); no transaction or row lock is held while a model call runs — a claim is a
//! lease (`locked_until`) that the worker's heartbeat renews, and the commit checks the lease.
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arbor_llm::RoleUsage;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Row};

use crate::queue::{Claim, Done, JobId, JobInfo, JobStatus, NewJob, WorkQueue};
use crate::QueueError;

pub struct PgQueue {
    client: parking_lot::Mutex<Arc<Client>>,
    url: String,
}

/// How long an operation keeps reconnecting to a database that went away (a restart, a
/// failover) before it fails.
const RECONNECT: Duration = Duration::from_secs(60);

/// Rows per INSERT when a job is submitted.
const CHUNK: usize = 2000;

/// Claims the first claimable item. `pick` locks one row with SKIP LOCKED, so concurrent
/// workers take different items without waiting on each other; an item of epoch e needs every
/// item of epochs ..e-2 done (the lowest epoch with open items, `frontier`, is at least e-1).
/// The order (job, epoch, index) is input order (an epoch is a run of indices) and the open
/// items' index order, so the scan stops at the first free row instead of sorting them all.
const CLAIM: &str = "
WITH jobs AS (
    SELECT j.id,
           COALESCE((SELECT min(o.epoch) FROM arbor_items o
                     WHERE o.job_id = j.id AND o.state <> 'done'), 0) AS frontier
    FROM arbor_jobs j
    WHERE j.state = 'running' AND ($1::bigint IS NULL OR j.id = $1)
), pick AS (
    SELECT i.job_id, i.idx
    FROM arbor_items i JOIN jobs ON jobs.id = i.job_id
    WHERE i.state <> 'done'
      AND (i.state = 'queued' OR i.locked_until < now())
      AND i.epoch <= jobs.frontier + 1
    ORDER BY i.job_id, i.epoch, i.idx
    LIMIT 1
    FOR UPDATE OF i SKIP LOCKED
)
UPDATE arbor_items i
SET state = 'leased', attempts = i.attempts + 1, lease = nextval('arbor_lease'), worker = $2,
    locked_until = now() + make_interval(secs => $3),
    last_error = CASE WHEN i.state = 'leased'
        THEN format('worker %s stopped renewing its lease (attempt %s; the lease expired at %s)',
                    i.worker, i.attempts, i.locked_until)
        ELSE i.last_error END
FROM pick
WHERE i.job_id = pick.job_id AND i.idx = pick.idx
RETURNING i.job_id, i.idx, i.epoch, i.item, i.attempts, i.lease, i.last_error";

const COMPLETE: &str = "
WITH usage AS (
    INSERT INTO arbor_usage (job_id, worker, role, model, usage)
    SELECT $1, $8, t.role, t.model, t.usage FROM unnest($9::text[], $10::text[], $11::text[]) AS t (role, model, usage)
    ON CONFLICT (job_id, worker, role, model) DO UPDATE SET usage = EXCLUDED.usage
)
UPDATE arbor_items
SET state = 'done', record = $4, status = $5, pairs = $6, wins = $7, worker = $8,
    finished_at = now(), lease = NULL, locked_until = NULL
WHERE job_id = $1 AND idx = $2 AND lease = $3 AND state = 'leased'";

fn job_info(r: &Row) -> JobInfo {
    JobInfo {
        id: r.get("id"),
        kind: r.get("kind"),
        config: r.get("config"),
        fingerprint: r.get("fingerprint"),
        input: r.get("input"),
        input_sha256: r.get("input_sha256"),
        total: r.get::<_, i32>("total") as usize,
        max_attempts: r.get("max_attempts"),
        state: r.get("state"),
    }
}

impl PgQueue {
    /// Connects and checks the schema (an empty database is set up).
    pub async fn connect(url: &str) -> Result<Self, QueueError> {
        let mut client = crate::connect::connect(url).await?;
        crate::schema::ensure(&mut client).await?;
        Ok(Self {
            client: parking_lot::Mutex::new(Arc::new(client)),
            url: url.to_string(),
        })
    }

    /// The connection, made again if it closed.
    async fn conn(&self) -> Result<Arc<Client>, QueueError> {
        let current = self.client.lock().clone();
        if !current.is_closed() {
            return Ok(current);
        }
        let fresh = Arc::new(crate::connect::connect(&self.url).await?);
        *self.client.lock() = fresh.clone();
        Ok(fresh)
    }

    /// Runs `op` on the connection; while the database is away (the connection closed, or a
    /// new one refused) it reconnects and runs `op` again, backing off from 0.25 s to 4 s
    /// between tries, for up to [`RECONNECT`]. Every
    /// operation is one statement, so running it again is safe: a claim or a commit either
    /// happened or did not, and a commit's lease check refuses a second one.
    async fn db<T, F, Fut>(&self, op: F) -> Result<T, QueueError>
    where
        F: Fn(Arc<Client>) -> Fut,
        Fut: Future<Output = Result<T, tokio_postgres::Error>>,
    {
        let deadline = Instant::now() + RECONNECT;
        let mut pause = Duration::from_millis(250);
        loop {
            let err = match self.conn().await {
                Ok(c) => match op(c).await {
                    Ok(v) => return Ok(v),
                    Err(e) if e.is_closed() || e.as_db_error().is_some_and(|d| d.code().code().starts_with("57P")) => e.into(),
                    Err(e) => return Err(e.into()),
                },
                Err(e @ QueueError::Connect(_)) => e,
                Err(e) => return Err(e),
            };
            if Instant::now() >= deadline {
                return Err(err);
            }
            tracing::warn!("the database went away ({err}); reconnecting in {pause:?}");
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(4));
        }
    }

    async fn query(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, QueueError> {
        self.db(|c| async move { c.query(sql, params).await }).await
    }

    async fn query_opt(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Option<Row>, QueueError> {
        self.db(|c| async move { c.query_opt(sql, params).await }).await
    }

    async fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, QueueError> {
        self.db(|c| async move { c.execute(sql, params).await }).await
    }

    /// Brings the database's schema to this binary's version (`arbor job migrate`).
    pub async fn migrate(url: &str) -> Result<(i32, i32), QueueError> {
        let mut client = crate::connect::connect(url).await?;
        crate::schema::migrate(&mut client).await
    }

    /// The URL without its password.
    pub fn shown_url(&self) -> String {
        crate::connect::redact(&self.url)
    }

    /// The connection, for raw SQL (tests: aging a schema, reading what a status hides).
    pub fn client(&self) -> Arc<Client> {
        self.client.lock().clone()
    }
}

#[async_trait::async_trait]
impl WorkQueue for PgQueue {
    async fn submit(&self, job: NewJob) -> Result<JobId, QueueError> {
        // A connection of its own: the transaction needs the client to itself.
        let mut client = crate::connect::connect(&self.url).await?;
        let tx = client.transaction().await?;
        let id: JobId = tx
            .query_one(
                "INSERT INTO arbor_jobs (kind, config, fingerprint, input, input_sha256, total, max_attempts)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
                &[&job.kind, &job.config, &job.fingerprint, &job.input, &job.input_sha256,
                  &(job.rows.len() as i32), &job.max_attempts],
            )
            .await?
            .get(0);
        for chunk in job.rows.chunks(CHUNK) {
            let mut idx = Vec::new();
            let (mut epoch, mut item, mut state, mut record) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            let (mut status, mut pairs) = (Vec::new(), Vec::new());
            for r in chunk {
                idx.push(r.index as i32);
                epoch.push(r.epoch as i32);
                item.push(r.item.clone());
                state.push(if r.done.is_some() { "done" } else { "queued" });
                record.push(r.done.as_ref().map(|d| d.record.clone()));
                status.push(r.done.as_ref().map(|d| d.status.clone()));
                pairs.push(r.done.as_ref().map(|d| d.pairs));
            }
            tx.execute(
                "INSERT INTO arbor_items (job_id, idx, epoch, item, state, record, status, pairs, finished_at)
                 SELECT $1, t.idx, t.epoch, t.item, t.state, t.record, t.status, t.pairs,
                        CASE WHEN t.state = 'done' THEN now() END
                 FROM unnest($2::int[], $3::int[], $4::text[], $5::text[], $6::text[], $7::text[], $8::int[])
                      AS t (idx, epoch, item, state, record, status, pairs)",
                &[&id, &idx, &epoch, &item, &state, &record, &status, &pairs],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(id)
    }

    async fn find(&self, fingerprint: &str, input_sha256: &str) -> Result<Option<JobId>, QueueError> {
        let row = self.query_opt(
                "SELECT id FROM arbor_jobs WHERE state = 'running' AND fingerprint = $1 AND input_sha256 = $2
                 ORDER BY id DESC LIMIT 1",
                &[&fingerprint, &input_sha256],
            )
            .await?;
        Ok(row.map(|r| r.get(0)))
    }

    async fn job(&self, id: JobId) -> Result<JobInfo, QueueError> {
        let row = self.query_opt("SELECT * FROM arbor_jobs WHERE id = $1", &[&id])
            .await?
            .ok_or_else(|| QueueError::Job(format!("no job {id} in {}", self.shown_url())))?;
        Ok(job_info(&row))
    }

    async fn jobs(&self) -> Result<Vec<JobInfo>, QueueError> {
        let rows = self.query("SELECT * FROM arbor_jobs ORDER BY id", &[]).await?;
        Ok(rows.iter().map(job_info).collect())
    }

    async fn claim(&self, worker: &str, job: Option<JobId>, lease_secs: f64) -> Result<Option<Claim>, QueueError> {
        let row = self.query_opt(CLAIM, &[&job, &worker, &lease_secs]).await?;
        Ok(row.map(|r| Claim {
            job: r.get(0),
            index: r.get::<_, i32>(1) as usize,
            epoch: r.get::<_, i32>(2) as usize,
            item: r.get::<_, Option<String>>(3).unwrap_or_default(),
            attempts: r.get(4),
            lease: r.get(5),
            last_error: r.get(6),
        }))
    }

    async fn renew(&self, leases: &[i64], lease_secs: f64) -> Result<u64, QueueError> {
        if leases.is_empty() {
            return Ok(0);
        }
        Ok(self.execute(
                "UPDATE arbor_items SET locked_until = now() + make_interval(secs => $2)
                 WHERE lease = ANY($1) AND state = 'leased'",
                &[&leases, &lease_secs],
            )
            .await?)
    }

    async fn complete(&self, claim: &Claim, worker: &str, done: &Done, usage: &[(String, String, RoleUsage)]) -> Result<bool, QueueError> {
        let roles: Vec<&str> = usage.iter().map(|u| u.0.as_str()).collect();
        let models: Vec<&str> = usage.iter().map(|u| u.1.as_str()).collect();
        let counts: Vec<String> = usage.iter().map(|u| serde_json::to_string(&u.2).expect("usage serializes")).collect();
        let n = self.execute(
                COMPLETE,
                &[&claim.job, &(claim.index as i32), &claim.lease, &done.record, &done.status,
                  &done.pairs, &done.wins, &worker, &roles, &models, &counts],
            )
            .await?;
        Ok(n == 1)
    }

    async fn release(&self, claim: &Claim) -> Result<(), QueueError> {
        self.execute(
                "UPDATE arbor_items SET state = 'queued', attempts = attempts - 1, lease = NULL,
                        worker = NULL, locked_until = NULL
                 WHERE lease = $1 AND state = 'leased'",
                &[&claim.lease],
            )
            .await?;
        Ok(())
    }

    async fn wins(&self, job: JobId, last: usize) -> Result<Vec<String>, QueueError> {
        let rows = self.query(
                "SELECT wins FROM arbor_items
                 WHERE job_id = $1 AND epoch <= $2 AND state = 'done' AND wins IS NOT NULL AND wins <> '[]'",
                &[&job, &(last as i32)],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn records(&self, job: JobId) -> Result<Vec<(String, String)>, QueueError> {
        let rows = self.query(
                "SELECT status, record FROM arbor_items WHERE job_id = $1 AND state = 'done' ORDER BY idx",
                &[&job],
            )
            .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    async fn items(&self, job: JobId) -> Result<Vec<Option<String>>, QueueError> {
        let rows = self.query("SELECT item FROM arbor_items WHERE job_id = $1 ORDER BY idx", &[&job])
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn status(&self, job: JobId) -> Result<JobStatus, QueueError> {
        let r = self.query_opt(
                "SELECT count(*),
                        count(*) FILTER (WHERE i.state = 'queued'),
                        count(*) FILTER (WHERE i.state = 'leased'),
                        count(*) FILTER (WHERE i.state = 'done'),
                        COALESCE(sum(i.pairs), 0),
                        count(*) FILTER (WHERE i.attempts > 1),
                        COALESCE(EXTRACT(EPOCH FROM max(i.finished_at) - j.created_at)::float8, 0)
                 FROM arbor_items i JOIN arbor_jobs j ON j.id = i.job_id
                 WHERE i.job_id = $1 GROUP BY j.created_at",
                &[&job],
            )
            .await?;
        let Some(r) = r else {
            return Ok(JobStatus::default());
        };
        let n = |k: usize| r.get::<_, i64>(k) as u64;
        let workers = self.query(
                "SELECT worker, count(*) FILTER (WHERE state = 'done'), count(*) FILTER (WHERE state = 'leased')
                 FROM arbor_items WHERE job_id = $1 AND worker IS NOT NULL GROUP BY worker ORDER BY worker",
                &[&job],
            )
            .await?;
        let by_status = self.query(
                "SELECT status, count(*) FROM arbor_items WHERE job_id = $1 AND state = 'done' GROUP BY status",
                &[&job],
            )
            .await?;
        Ok(JobStatus {
            total: n(0),
            queued: n(1),
            leased: n(2),
            done: n(3),
            by_status: by_status.iter().map(|r| (r.get(0), r.get::<_, i64>(1) as u64)).collect(),
            pairs: n(4),
            reclaimed: n(5),
            seconds: r.get(6),
            workers: workers
                .iter()
                .map(|w| (w.get(0), w.get::<_, i64>(1) as u64, w.get::<_, i64>(2) as u64))
                .collect(),
        })
    }

    async fn cancel(&self, job: JobId) -> Result<bool, QueueError> {
        let n = self.execute("UPDATE arbor_jobs SET state = 'cancelled' WHERE id = $1 AND state = 'running'", &[&job])
            .await?;
        Ok(n == 1)
    }

    async fn usage(&self, job: JobId) -> Result<Vec<(String, String, RoleUsage)>, QueueError> {
        let rows = self
            .query("SELECT role, model, usage FROM arbor_usage WHERE job_id = $1 ORDER BY worker", &[&job])
            .await?;
        rows.iter()
            .map(|r| {
                let usage = serde_json::from_str(r.get::<_, &str>(2))
                    .map_err(|e| QueueError::Job(format!("job {job}: a stored usage row does not read ({e})")))?;
                Ok((r.get(0), r.get(1), usage))
            })
            .collect()
    }
}
