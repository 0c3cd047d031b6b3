//! Synthesis and search jobs across machines, on PostgreSQL as work queue and result store.
//!
//! A job is submitted once (its config and every input row); workers on any machine claim its
//! items one at a time under a lease they renew while the item's model calls run, play each
//! with the same per-item engine as a local run ([`arbor_synth::engine::ItemPlayer`]), and
//! write the item's record in the statement that marks it done — only while the lease is
//! still theirs, so every item has exactly one record. The prompt pool follows the local run's
//! lagged-epoch rule (an item of epoch e is claimed once epochs ..e-2 are done, and reads the
//! pool from their records), so a queue run gives the pairs of a local run.
//!
//! - [`queue`]: the [`WorkQueue`] trait (what another engine would implement) and its types;
//!   [`postgres`]: the PostgreSQL implementation; `connect` (URLs, passwords, TLS) and
//!   `schema` (the versioned migrations) serve it.
//! - [`worker`]: the claim → play → commit loop with its heartbeat, over a [`Runner`]
//!   per job kind: [`synth`] (the local run's per-item engine and prompt pool) and [`search`]
//!   (one tree per task).
//! - [`job`]: submitting a job, waiting for it, exporting its files, its status.
//! - [`cli`]: the flags of `arbor synth --queue`, `arbor worker` and `arbor job`.
//! - [`testing`]: a private PostgreSQL cluster for tests.

pub mod cli;
mod connect;
pub mod job;
pub mod postgres;
pub mod queue;
mod schema;
pub mod search;
pub mod synth;
pub mod testing;
pub mod worker;

pub use connect::redact;
pub use postgres::PgQueue;
pub use queue::{Claim, Done, JobId, JobInfo, JobStatus, NewItem, NewJob, Openers, Runner, WorkQueue};

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("{0}")]
    Connect(String),
    #[error("{0}")]
    Schema(String),
    #[error("database: {0}")]
    Db(String),
    #[error("{0}")]
    Job(String),
    #[error("{0}")]
    Synth(#[from] arbor_synth::JobError),
}

/// A driver error with the server's own message (tokio-postgres shows only "db error").
pub(crate) fn db_text(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{}: {} ({})", db.severity(), db.message(), db.code().code());
    }
    // The causes too ("error performing TLS handshake" alone does not say which check failed).
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        text += &format!(": {c}");
        cause = c.source();
    }
    text
}

impl From<tokio_postgres::Error> for QueueError {
    fn from(e: tokio_postgres::Error) -> Self {
        QueueError::Db(db_text(&e))
    }
}
