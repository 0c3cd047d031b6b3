//! The database's schema, versioned with the binary: the migrations are compiled in, an empty
//! database gets them all, and a database older or newer than this binary is refused with what
//! to do, before anything reads or writes its tables.
use tokio_postgres::Client;

use crate::QueueError;

/// (version, SQL), in order; the last is the version this binary reads and writes.
const MIGRATIONS: &[(i32, &str)] = &[
    (1, include_str!("../migrations/0001_init.sql")),
    (2, include_str!("../migrations/0002_usage.sql")),
];

/// The schema version this binary speaks.
pub fn current() -> i32 {
    MIGRATIONS.last().map_or(0, |m| m.0)
}

/// The database's schema version (0: no arbor tables yet).
async fn version(client: &Client) -> Result<i32, QueueError> {
    let exists: bool = client
        .query_one("SELECT to_regclass('arbor_meta') IS NOT NULL", &[])
        .await?
        .get(0);
    if !exists {
        return Ok(0);
    }
    let row = client
        .query_opt("SELECT value FROM arbor_meta WHERE key = 'schema_version'", &[])
        .await?;
    let text: String = row.map(|r| r.get(0)).unwrap_or_default();
    text.parse()
        .map_err(|_| QueueError::Schema(format!("arbor_meta.schema_version is `{text}`, not a version number")))
}

/// Applies the migrations after the database's version, in one transaction under an advisory
/// lock (two processes starting on an empty database apply them once). Returns the versions
/// before and after.
pub async fn migrate(client: &mut Client) -> Result<(i32, i32), QueueError> {
    // A session lock taken before the transaction: the transaction then starts after the
    // other process's commit and sees its tables (catalog caches refresh at a transaction's
    // start, not after waiting on an advisory lock).
    client.execute("SELECT pg_advisory_lock(7262701)", &[]).await?;
    let result = migrate_locked(client).await;
    client.execute("SELECT pg_advisory_unlock(7262701)", &[]).await?;
    result
}

async fn migrate_locked(client: &mut Client) -> Result<(i32, i32), QueueError> {
    let tx = client.transaction().await?;
    let from = version(tx.client()).await?;
    if from > current() {
        return Err(newer(from));
    }
    for (v, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > from) {
        tx.batch_execute(sql)
            .await
            .map_err(|e| QueueError::Schema(format!("migration {v}: {}", crate::db_text(&e))))?;
        tx.execute(
            "INSERT INTO arbor_meta (key, value) VALUES ('schema_version', $1)
             ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
            &[&v.to_string()],
        )
        .await?;
    }
    tx.commit().await?;
    Ok((from, current()))
}

fn newer(v: i32) -> QueueError {
    QueueError::Schema(format!(
        "the database holds arbor's queue schema version {v}, newer than this arbor's {}: upgrade arbor on this machine",
        current()
    ))
}

/// Checks the database before use: an empty one is set up; one at another version is an
/// error that says what to do.
pub async fn ensure(client: &mut Client) -> Result<(), QueueError> {
    match version(client).await? {
        0 => migrate(client).await.map(drop),
        v if v == current() => Ok(()),
        v if v > current() => Err(newer(v)),
        v => Err(QueueError::Schema(format!(
            "the database holds arbor's queue schema version {v}, older than this arbor's {}: run `arbor job migrate URL` once (workers of the older arbor must be stopped first)",
            current()
        ))),
    }
}
