//! `arbor synth --queue`, `arbor worker` and `arbor job` against a real PostgreSQL server (a
//! private cluster per test) and the mock model server: the queue's pairs are the local run's,
//! a killed worker's items are played again (or end as dead letters after `--max-attempts`),
//! passwords never reach the output.
mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use arbor_queue::testing::PgCluster;
use common::{arbor, math_tasks as tasks, mock, ARBOR};
use serde_json::Value;

/// A child process killed on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `arbor mock-server` on a free port; its /v1 URL.
fn synth(input: &Path, out: &Path, url: &str, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = ["synth", "--input", input.to_str().unwrap(), "--out", out.to_str().unwrap(),
        "--target-url", url, "--target-model", "t", "--judge-url", url, "--judge-model", "j"]
        .map(String::from)
        .to_vec();
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

fn run_ok(args: &[String]) -> String {
    let (ok, out, err) = arbor(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(ok, "arbor {args:?}: {err}");
    out + &err
}

fn spawn(args: &[&str]) -> Proc {
    Proc(Command::new(ARBOR).args(args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap())
}

fn jsonl(p: &Path) -> Vec<Value> {
    std::fs::read_to_string(p).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// Polls `arbor job status` until `until` holds of its text, for at most `secs`.
fn wait_status(url: &str, secs: u64, until: impl Fn(&str) -> bool) -> String {
    let start = Instant::now();
    loop {
        let (_, out, err) = arbor(&["job", "status", url]);
        if until(&out) {
            return out;
        }
        assert!(start.elapsed() < Duration::from_secs(secs), "waited {secs} s for the status; last: {out}{err}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The number in `text` just before `what` (`"12 of 40 items done"`, "items done" → 12).
fn count_before(text: &str, what: &str) -> u64 {
    let head = &text[..text.find(what).unwrap_or_else(|| panic!("`{what}` in {text}"))];
    head.split_whitespace().last().unwrap().parse().unwrap()
}

/// Two workers (the submitting process and an `arbor worker`) play one job while the database
/// restarts under them; the export equals the local run's files byte for byte, with pairs made
/// from prompts the pool earned. Breaks if a worker ignores the pool's lagged-epoch rule (other
/// prompts, other pairs), if records come back out of order or altered, if a database restart
/// ends a worker, or if one process does all the work.
#[test]
fn a_queue_job_across_workers_gives_the_local_run_s_pairs() {
    let pg = PgCluster::start().unwrap();
    let m = mock(&["--latency-ms", "15"]);
    let url = m.url.clone();
    let dir = tempfile::tempdir().unwrap();
    let input = tasks(dir.path(), 64);
    let cfg = dir.path().join("synth.toml");
    // Seed, threshold and epochs where later items start from prompts the pool earned (with
    // other seeds the first items are accepted with the initial prompts, which then lead).
    std::fs::write(&cfg, "pool_epoch = 4\nrounds = 3\nthreshold = 9\nseed = 1\n").unwrap();
    let cfg = cfg.to_str().unwrap();
    let (local, queued) = (dir.path().join("local"), dir.path().join("queued"));
    run_ok(&synth(&input, &local, &url, &["--config", cfg, "--max-in-flight", "8"]));
    let _other = spawn(&["worker", "--queue", &pg.url(), "--concurrency", "4"]);
    let args = synth(&input, &queued, &url, &["--config", cfg, "--queue", &pg.url(), "--workers", "4"]);
    let submitter = Command::new(ARBOR).args(&args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    // The database restarts under both workers and the waiting submitter mid-job.
    let before = wait_status(&pg.url(), 60, |s| s.contains("items done") && count_before(s, "of 64 items done") >= 4);
    pg.restart().unwrap();
    let finished = submitter.wait_with_output().unwrap();
    let out = String::from_utf8_lossy(&finished.stderr);
    assert!(finished.status.success(), "{out}");
    assert!(out.contains("64 of 64 items done"), "{out}");
    assert!(count_before(&before, "of 64 items done") < 64, "the restart came after the job: {before}");
    for f in ["pairs.jsonl", "dead_letter.jsonl", "gated_out.jsonl"] {
        let (a, b) = (std::fs::read(local.join(f)).unwrap(), std::fs::read(queued.join(f)).unwrap());
        assert!(a == b, "{f} differs between the local run and the queue");
    }
    let ids = |p: &Path| jsonl(&p.join("provenance.jsonl")).iter().map(|v| v["pair_id"].clone()).collect::<Vec<_>>();
    assert_eq!(ids(&local), ids(&queued));
    let prov = jsonl(&queued.join("provenance.jsonl"));
    assert!(!prov.is_empty());
    let first = &prov[0]["prompts"]["target"]["id"];
    let from_pool = prov.iter().filter(|p| p["round"] == 0 && &p["prompts"]["target"]["id"] != first).count();
    assert!(from_pool > 0, "no round-0 pair started from a prompt the pool earned: the test would not see the pool");
    let status = run_ok(&["job".into(), "status".into(), pg.url(), "1".into()]);
    let workers: Vec<u64> = status.lines().filter(|l| l.trim_start().starts_with("worker ")).map(|l| count_before(l, "done,")).collect();
    assert!(workers.len() == 2 && workers.iter().all(|&n| n > 0), "both workers should have played items: {status}");
}

/// A worker killed with SIGKILL mid-item stops renewing its leases; another worker plays those
/// items again and the export equals the local run's. With `--max-attempts 1` the same loss
/// makes the items dead letters that name the cause. Breaks if leases never expire (the job
/// never ends), if a reclaimed item is committed twice, or if max_attempts never fires.
#[test]
fn a_killed_worker_s_items_are_played_again_or_end_as_dead_letters() {
    let pg = PgCluster::start().unwrap();
    let m = mock(&["--latency-ms", "400"]);
    let url = m.url.clone();
    let dir = tempfile::tempdir().unwrap();
    let input = tasks(dir.path(), 10);
    let local = dir.path().join("local");
    let flags = ["--no-gate", "--rounds", "1"];
    run_ok(&synth(&input, &local, &url, &[&flags[..], &["--max-in-flight", "10"]].concat()));
    for (job, max_attempts) in [(1, "3"), (2, "1")] {
        let out = dir.path().join(format!("queued-{job}"));
        let waiter_args = synth(&input, &out, &url, &[&flags[..], &["--queue", &pg.url(), "--workers", "0", "--max-attempts", max_attempts]].concat());
        let waiter = Command::new(ARBOR).args(&waiter_args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
        wait_status(&pg.url(), 60, |s| s.contains(&format!("job {job} ")));
        let mut doomed = spawn(&["worker", "--queue", &pg.url(), "--job", &job.to_string(), "--concurrency", "3", "--lease-secs", "1"]);
        // Kill it once it holds items.
        wait_status(&pg.url(), 60, |s| s.contains(&format!("job {job} ")) && s.lines().any(|l| l.contains("in play") && !l.contains(" 0 in play")));
        doomed.0.kill().unwrap();
        doomed.0.wait().unwrap();
        let mut rescuer = spawn(&["worker", "--queue", &pg.url(), "--job", &job.to_string(), "--concurrency", "10", "--lease-secs", "1"]);
        let status = rescuer.0.wait().unwrap();
        assert!(status.success(), "the rescuing worker ends when the job is done");
        let finished = waiter.wait_with_output().unwrap();
        assert!(finished.status.success(), "{}", String::from_utf8_lossy(&finished.stderr));
        let report = run_ok(&["job".into(), "status".into(), pg.url(), job.to_string()]);
        let again = count_before(&report, "claimed again");
        assert!(again >= 1, "{report}");
        assert_eq!(count_before(&report, "of 10 items done"), 10, "{report}");
        let dead = jsonl(&out.join("dead_letter.jsonl"));
        if max_attempts == "3" {
            assert!(dead.is_empty(), "{dead:?}");
            assert_eq!(std::fs::read(local.join("pairs.jsonl")).unwrap(), std::fs::read(out.join("pairs.jsonl")).unwrap());
        } else {
            assert_eq!(dead.len() as u64, again, "each item claimed again was out of attempts: {report}");
            let cause = dead[0]["cause"].as_str().unwrap();
            assert!(cause.contains("claimed 1 times without a result (max_attempts 1)") && cause.contains("stopped renewing its lease"), "{cause}");
        }
    }
}

/// The password in a URL, in PGPASSWORD or in a password file never appears in arbor's output
/// (debug logs included), a wrong one is refused by name, and a cancelled job ends its waiting
/// submitter (exit 130, saying so).
#[test]
fn passwords_stay_out_of_the_output_and_jobs_can_be_cancelled() {
    let pg = PgCluster::start().unwrap();
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let out = Command::new(ARBOR).args(args).envs(env.iter().copied()).env("RUST_LOG", "debug").output().unwrap();
        (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    };
    let (ok, text) = run(&["job", "status", &pg.url()], &[]);
    assert!(ok && text.contains("no jobs in postgres://arbor:***@127.0.0.1"), "{text}");
    assert!(!text.contains(&pg.password), "{text}");
    let bare = pg.url_without_password();
    let (ok, text) = run(&["job", "status", &bare], &[("PGPASSWORD", &pg.password)]);
    assert!(ok && !text.contains(&pg.password), "{text}");
    let passfile = pg.dir().join("pgpass");
    std::fs::write(&passfile, format!("127.0.0.1:{}:*:arbor:{}\n", pg.port, pg.password)).unwrap();
    let (ok, text) = run(&["job", "status", &bare], &[("PGPASSFILE", passfile.to_str().unwrap())]);
    assert!(ok && !text.contains(&pg.password), "{text}");
    let wrong = pg.url().replace(&pg.password, "not-the-password-7");
    let (ok, text) = run(&["job", "status", &wrong], &[]);
    assert!(!ok && text.contains("password authentication failed") && !text.contains("not-the-password-7"), "{text}");
    let (_, _, err) = arbor(&["job", "status", &wrong]);
    assert_eq!(err.trim().lines().count(), 1, "one error line: {err}");

    let m = mock(&[]);
    let url = m.url.clone();
    let dir = tempfile::tempdir().unwrap();
    let input = tasks(dir.path(), 3);
    let args = synth(&input, &dir.path().join("out"), &url, &["--queue".into(), pg.url(), "--workers".into(), "0".into()].iter().map(String::as_str).collect::<Vec<_>>());
    let waiter = Command::new(ARBOR).args(&args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    wait_status(&pg.url(), 30, |s| s.contains("job 1 "));
    let (ok, text) = run(&["job", "cancel", &pg.url(), "1"], &[]);
    assert!(ok && text.contains("job 1 cancelled"), "{text}");
    let out = waiter.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(err.contains("job 1 was cancelled") && !err.contains(&pg.password), "{err}");
    // A cancelled job's items are not claimed: a worker for it ends at once, having played none.
    let (ok, text) = run(&["worker", "--queue", &pg.url(), "--job", "1"], &[]);
    assert!(ok && text.contains("0 items committed"), "{text}");
}

/// `arbor search --queue` with a second worker that is SIGKILLed mid-tree: the trees are the
/// local search's (one per task, the same JSON), written in task order. Breaks if a worker
/// builds the search from anything but the job's stored config (another algorithm, policy or
/// seed: other trees), or if a killed worker's tree is lost or written twice.
#[test]
fn a_search_job_on_the_queue_gives_the_local_trees() {
    let pg = PgCluster::start().unwrap();
    // Slow enough answers that the second worker, started with the job, gets trees to build.
    let m = mock(&["--latency-ms", "60"]);
    let url = m.url.clone();
    let dir = tempfile::tempdir().unwrap();
    let (local, queued) = (dir.path().join("local"), dir.path().join("queued"));
    let args = |out: &Path| -> Vec<String> {
        ["search", "--env", "math", "--trees", "12", "--seed", "3", "--algo", "mcts", "--iterations", "6",
         "--base-url", &url, "--model", "m", "--evaluator", "self-eval", "--out", out.to_str().unwrap()]
            .map(String::from)
            .to_vec()
    };
    run_ok(&args(&local));
    let mut doomed = spawn(&["worker", "--queue", &pg.url(), "--concurrency", "3", "--lease-secs", "1"]);
    let mut q = args(&queued);
    q.extend(["--queue".into(), pg.url(), "--workers".into(), "2".into()]);
    let submitter = Command::new(ARBOR).args(&q).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    // SIGKILL the separate worker while it builds trees; a new one takes its place.
    let tag = format!("-{}-", doomed.0.id());
    wait_status(&pg.url(), 60, |s| s.lines().any(|l| l.contains(&tag) && !l.contains(" 0 in play")));
    doomed.0.kill().unwrap();
    doomed.0.wait().unwrap();
    let _other = spawn(&["worker", "--queue", &pg.url(), "--concurrency", "3"]);
    let finished = submitter.wait_with_output().unwrap();
    let out = String::from_utf8_lossy(&finished.stderr);
    assert!(finished.status.success(), "{out}");
    assert!(out.contains("12 of 12 items done — 12 trees, 0 failed"), "{out}");
    assert!(count_before(&out, "claimed again") >= 1, "{out}");
    let lines = |p: &Path| {
        let mut l: Vec<String> = std::fs::read_to_string(p.join("trees.jsonl")).unwrap().lines().map(String::from).collect();
        l.sort();
        l
    };
    assert_eq!(lines(&local).len(), 12);
    assert!(lines(&local) == lines(&queued), "the queue's trees differ from the local search's");
    let order: Vec<String> = jsonl(&queued.join("trees.jsonl")).iter().map(|t| t["id"].to_string()).collect();
    let tasks: Vec<String> = {
        let (ok, text, err) = arbor(&["env", "sample", "--env", "math", "--n", "12", "--seed", "3"]);
        assert!(ok, "{err}");
        text.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()["id"].to_string()).collect()
    };
    assert_eq!(order, tasks, "trees in task order");
}

/// 2,000 items, four worker processes, 10% injected model faults (429, 500, cut responses,
/// hangs past the timeout), and a seeded schedule that SIGKILLs a worker about every second
/// and starts a new one: every item ends exactly once and the export equals a local run's
/// files byte for byte. Breaks if a killed worker's items are lost (the job never ends) or
/// committed twice, or if a replayed item sends other requests than the first play.
#[test]
fn two_thousand_items_through_faults_and_killed_workers_equal_the_local_run() {
    let pg = PgCluster::start().unwrap();
    let m = mock(&["--latency-ms", "10", "--fault", "429=0.025", "--fault", "500=0.025", "--fault", "truncated=0.025",
                           "--fault", "hang=0.025", "--hang-ms", "1500", "--retry-after-s", "0"]);
    let url = m.url.clone();
    let dir = tempfile::tempdir().unwrap();
    let n = 2000;
    let input = tasks(dir.path(), n);
    let (local, queued) = (dir.path().join("local"), dir.path().join("queued"));
    let flags = ["--timeout-secs", "0.5", "--max-in-flight", "64"];
    run_ok(&synth(&input, &local, &url, &flags));
    // Killed every second, a worker loses every item in play; an item slowed by retries can
    // be caught by several kills, so the claim limit is set high enough not to end any.
    let queue = ["--queue", &pg.url(), "--workers", "0", "--max-attempts", "100"];
    let args = synth(&input, &queued, &url, &[&flags[..], &queue].concat());
    let submitter = Command::new(ARBOR).args(&args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    wait_status(&pg.url(), 60, |s| s.contains("job 1 "));
    let worker = || spawn(&["worker", "--queue", &pg.url(), "--job", "1", "--concurrency", "16", "--lease-secs", "1"]);
    let mut workers: Vec<Proc> = (0..4).map(|_| worker()).collect();
    let (mut rng, mut kills) = (0x2026_u64, 0);
    let start = Instant::now();
    loop {
        rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        std::thread::sleep(Duration::from_millis(600 + (rng >> 33) % 800));
        let (_, status, _) = arbor(&["job", "status", &pg.url(), "1"]);
        if status.contains("(synth, done)") {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(600), "the job did not finish: {status}");
        let victim = ((rng >> 40) % 4) as usize;
        let _ = workers[victim].0.kill();
        let _ = workers[victim].0.wait();
        workers[victim] = worker();
        kills += 1;
    }
    let finished = submitter.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&finished.stderr);
    assert!(finished.status.success(), "{err}");
    let report = run_ok(&["job".into(), "status".into(), pg.url(), "1".into()]);
    eprintln!("{kills} workers killed; {report}");
    assert!(kills >= 5, "the schedule should kill workers several times: {kills}");
    assert_eq!(count_before(&report, &format!("of {n} items done")), n as u64, "{report}");
    assert!(count_before(&report, "claimed again") >= 1, "no kill landed on an item in play: {report}");
    for f in ["pairs.jsonl", "dead_letter.jsonl", "gated_out.jsonl"] {
        let (a, b) = (std::fs::read(local.join(f)).unwrap(), std::fs::read(queued.join(f)).unwrap());
        assert!(a == b, "{f} differs between the local run and the queue");
    }
    assert!(jsonl(&local.join("pairs.jsonl")).len() > n / 4);
}

/// Two jobs at once on one worker pool do not mix: each export equals its own local run, its
/// card's calls and tokens too (summed over the workers, each job's counted apart); an
/// unreachable database is one clear error line.
#[test]
fn two_jobs_at_once_stay_apart() {
    let pg = PgCluster::start().unwrap();
    let m = mock(&["--latency-ms", "20"]);
    let url = m.url.clone();
    let dir = tempfile::tempdir().unwrap();
    let mut runs = Vec::new();
    for (k, seed) in [(0, "5"), (1, "6")] {
        let (ok, text, err) = arbor(&["env", "sample", "--env", "math", "--n", "24", "--seed", seed]);
        assert!(ok, "{err}");
        let input = dir.path().join(format!("items-{k}.jsonl"));
        std::fs::write(&input, text).unwrap();
        let local = dir.path().join(format!("local-{k}"));
        run_ok(&synth(&input, &local, &url, &["--max-in-flight", "8"]));
        let queued = dir.path().join(format!("queued-{k}"));
        let args = synth(&input, &queued, &url, &["--queue", &pg.url(), "--workers", "0"]);
        let child = Command::new(ARBOR).args(&args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
        wait_status(&pg.url(), 60, |s| s.contains(&format!("job {} ", k + 1)));
        runs.push((local, queued, child));
    }
    let _pool = [spawn(&["worker", "--queue", &pg.url(), "--concurrency", "6"]), spawn(&["worker", "--queue", &pg.url(), "--concurrency", "6"])];
    // The card's accounting: (role, model, requests … completion tokens), call time aside.
    let accounts = |dir: &Path| -> Vec<Vec<String>> {
        let card = std::fs::read_to_string(dir.join("README.md")).unwrap();
        let table = card.split("## Calls, tokens and cost by role").nth(1).expect("the card's accounting");
        table.lines()
            .filter(|l| ["| target |", "| judge |"].iter().any(|r| l.starts_with(r)))
            .map(|l| l.split('|').map(|c| c.trim().to_string()).skip(1).take(8).collect())
            .collect()
    };
    for (local, queued, child) in runs {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(std::fs::read(local.join("pairs.jsonl")).unwrap(), std::fs::read(queued.join("pairs.jsonl")).unwrap());
        // Both workers' calls for this job, summed: the local run's calls and tokens.
        assert_eq!(accounts(&local).len(), 2);
        assert_eq!(accounts(&local), accounts(&queued), "the card's accounting differs from the local run's");
    }
    // --resume takes the job of the same config and input instead of submitting a third.
    let again = dir.path().join("again");
    let input = dir.path().join("items-0.jsonl");
    let out = run_ok(&synth(&input, &again, &url, &["--queue", &pg.url(), "--workers", "0", "--resume"]));
    assert!(out.contains("job 1 (synth, done)"), "{out}");
    assert_eq!(std::fs::read(dir.path().join("local-0/pairs.jsonl")).unwrap(), std::fs::read(again.join("pairs.jsonl")).unwrap());
    let listed = run_ok(&["job".into(), "status".into(), pg.url()]);
    assert!(listed.contains("job 2 ") && !listed.contains("job 3 "), "{listed}");
    let out = Command::new(ARBOR).args(["job", "status", "postgres://arbor@127.0.0.1:1/postgres"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.trim().lines().count() == 1 && err.contains("127.0.0.1:1") && err.contains("refused"), "{err}");
}
