//! The queue's guarantees against a real PostgreSQL server (a private cluster per test).
use std::collections::HashSet;
use std::sync::Arc;

use arbor_queue::testing::PgCluster;
use arbor_queue::{Done, NewItem, NewJob, PgQueue, WorkQueue};

fn job(n: usize, epoch: usize) -> NewJob {
    NewJob {
        kind: "synth".into(),
        config: "{}".into(),
        fingerprint: "f".into(),
        input: "in.jsonl".into(),
        input_sha256: "s".into(),
        max_attempts: 3,
        rows: (0..n)
            .map(|i| NewItem { index: i, epoch: i / epoch, item: Some(format!("{{\"i\":{i}}}")), done: None })
            .collect(),
    }
}

fn record(i: usize, by: &str) -> Done {
    Done { record: format!("{{\"i\":{i},\"by\":\"{by}\"}}"), status: "accepted".into(), pairs: 1, wins: None }
}

async fn queue(pg: &PgCluster) -> PgQueue {
    PgQueue::connect(&pg.url()).await.unwrap()
}

/// A worker whose lease expired cannot commit: the item's next holder commits, once.
/// (Breaks if the commit does not check the lease, or an expired lease is never reclaimed.)
#[tokio::test]
async fn a_lost_lease_cannot_commit_and_the_item_is_played_again() {
    let pg = PgCluster::start().unwrap();
    let q = queue(&pg).await;
    let id = q.submit(job(1, 100)).await.unwrap();
    let a = q.claim("a", Some(id), 0.3).await.unwrap().unwrap();
    assert!(q.claim("b", Some(id), 0.3).await.unwrap().is_none(), "a held lease is not claimable");
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let b = q.claim("b", Some(id), 30.0).await.unwrap().expect("the expired lease is reclaimed");
    assert_eq!((b.index, b.attempts), (0, 2));
    assert!(b.last_error.as_deref().unwrap().contains("worker a stopped renewing"), "{:?}", b.last_error);
    assert!(!q.complete(&a, "a", &record(0, "a"), &[]).await.unwrap(), "the old holder's commit is refused");
    assert!(q.complete(&b, "b", &record(0, "b"), &[]).await.unwrap());
    assert!(!q.complete(&b, "b", &record(0, "b"), &[]).await.unwrap(), "a lease commits once");
    let recs = q.records(id).await.unwrap();
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].1, "{\"i\":0,\"by\":\"b\"}");
    let s = q.status(id).await.unwrap();
    assert_eq!((s.done, s.reclaimed, s.workers.len()), (1, 1, 1));
}

/// A renewed lease is not reclaimed. (Breaks if the heartbeat's renewal does nothing.)
#[tokio::test]
async fn a_renewed_lease_holds() {
    let pg = PgCluster::start().unwrap();
    let q = queue(&pg).await;
    let id = q.submit(job(1, 100)).await.unwrap();
    let a = q.claim("a", Some(id), 0.4).await.unwrap().unwrap();
    for _ in 0..4 {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        assert_eq!(q.renew(&[a.lease], 0.4).await.unwrap(), 1);
    }
    assert!(q.claim("b", Some(id), 0.4).await.unwrap().is_none());
    assert!(q.complete(&a, "a", &record(0, "a"), &[]).await.unwrap());
}

/// Items of epoch e wait until epochs ..e-2 are done (the prompt pool's lag); concurrent
/// claims never share an item. (Breaks without SKIP LOCKED's row lock, or without the epoch
/// rule.)
#[tokio::test]
async fn claims_are_distinct_and_wait_for_the_lagged_epoch() {
    let pg = PgCluster::start().unwrap();
    let q = Arc::new(queue(&pg).await);
    let id = q.submit(job(12, 4)).await.unwrap();
    // Epochs 0 and 1 (items 0..8) are claimable at once; epoch 2 is not.
    let mut tasks = Vec::new();
    for w in 0..4 {
        let q = q.clone();
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(c) = q.claim(&format!("w{w}"), Some(id), 30.0).await.unwrap() {
                got.push(c);
            }
            got
        }));
    }
    let mut claims = Vec::new();
    for t in tasks {
        claims.extend(t.await.unwrap());
    }
    let idx: HashSet<usize> = claims.iter().map(|c| c.index).collect();
    assert_eq!(claims.len(), 8, "each item claimed once");
    assert_eq!(idx, (0..8).collect());
    // Epoch 1 done does not open epoch 2; epoch 0 done does.
    for c in claims.iter().filter(|c| c.epoch == 1) {
        assert!(q.complete(c, "w", &record(c.index, "w"), &[]).await.unwrap());
    }
    assert!(q.claim("w", Some(id), 30.0).await.unwrap().is_none());
    for c in claims.iter().filter(|c| c.epoch == 0) {
        assert!(q.complete(c, "w", &record(c.index, "w"), &[]).await.unwrap());
    }
    assert_eq!(q.claim("w", Some(id), 30.0).await.unwrap().unwrap().index, 8);
}

/// A database of a newer schema is refused with what to do, before any table is touched.
#[tokio::test]
async fn a_newer_schema_is_refused_by_name() {
    let pg = PgCluster::start().unwrap();
    let q = queue(&pg).await;
    q.client().execute("UPDATE arbor_meta SET value = '99' WHERE key = 'schema_version'", &[]).await.unwrap();
    let e = PgQueue::connect(&pg.url()).await.err().unwrap().to_string();
    assert!(e.contains("version 99, newer than this arbor's 2") && e.contains("upgrade arbor"), "{e}");
}

/// A database of an older schema is refused until `arbor job migrate` brings it up, which
/// then applies only the missing migration. (Breaks if an older database is used as it is,
/// or if migrating reapplies what is there.)
#[tokio::test]
async fn an_older_schema_is_refused_until_migrated() {
    let pg = PgCluster::start().unwrap();
    let q = queue(&pg).await;
    let id = q.submit(job(2, 100)).await.unwrap();
    q.client().batch_execute("DROP TABLE arbor_usage; UPDATE arbor_meta SET value = '1' WHERE key = 'schema_version'").await.unwrap();
    let e = PgQueue::connect(&pg.url()).await.err().unwrap().to_string();
    assert!(e.contains("version 1, older than this arbor's 2") && e.contains("arbor job migrate"), "{e}");
    assert_eq!(PgQueue::migrate(&pg.url()).await.unwrap(), (1, 2));
    let q = queue(&pg).await;
    assert_eq!(q.job(id).await.unwrap().total, 2, "the jobs of version 1 are still there");
    assert_eq!(PgQueue::migrate(&pg.url()).await.unwrap(), (2, 2));
}

/// `sslmode=require` speaks TLS (the server says so of the session), verifies the server's
/// certificate (refused until PGSSLROOTCERT names it), and keeps the password out of errors.
#[tokio::test]
async fn tls_sessions_are_encrypted_and_the_certificate_checked() {
    let pg = PgCluster::start_with(true, false).unwrap();
    let url = pg.url().replace("sslmode=disable", "sslmode=require");
    let e = PgQueue::connect(&url).await.err().expect("an unknown certificate is refused").to_string();
    assert!(e.contains("certificate") && !e.contains(&pg.password), "{e}");
    // The only test in this binary that sets it; the others connect without TLS.
    std::env::set_var("PGSSLROOTCERT", pg.certificate());
    let q = PgQueue::connect(&url).await.unwrap();
    let ssl: bool = q.client().query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[]).await.unwrap().get(0);
    assert!(ssl, "the session is encrypted");
    let plain = PgQueue::connect(&pg.url()).await.unwrap();
    let ssl: bool = plain.client().query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[]).await.unwrap().get(0);
    assert!(!ssl, "sslmode=disable stays plain (so the check above can fail)");
}

/// The queue's own ceiling (docs/benchmarks.md, docs/scale.md): claims + commits per second with
/// an instant model — K connections each claiming an item and committing a 1 KB record in a
/// loop. `cargo test -p arbor-queue --test postgres queue_ceiling -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread")]
#[ignore = "benchmark: about a minute"]
async fn queue_ceiling() {
    let pg = PgCluster::start_with(false, true).unwrap();
    let record = "x".repeat(1000);
    println!("| connections | items | seconds | claims + commits per second |");
    println!("| --- | --- | --- | --- |");
    for k in [1usize, 4, 16, 64] {
        let q = queue(&pg).await;
        let n = 2000 * k.min(8);
        let id = q.submit(job(n, n)).await.unwrap();
        let start = std::time::Instant::now();
        let mut tasks = Vec::new();
        for w in 0..k {
            let (url, record) = (pg.url(), record.clone());
            tasks.push(tokio::spawn(async move {
                let q = PgQueue::connect(&url).await.unwrap();
                let name = format!("w{w}");
                while let Some(c) = q.claim(&name, Some(id), 60.0).await.unwrap() {
                    let done = Done { record: record.clone(), status: "accepted".into(), pairs: 1, wins: None };
                    assert!(q.complete(&c, &name, &done, &[]).await.unwrap());
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let secs = start.elapsed().as_secs_f64();
        println!("| {k} | {n} | {secs:.1} | {:.0} |", n as f64 / secs);
    }
}
