//! `arbor synth` end to end: against the fault-injecting mock (1,000 items), across kill -9 and
//! resume (identical pairs), with malformed input, and against a real llama.cpp server.
mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{arbor, math_tasks as tasks, mock, Mock, ARBOR};
use serde_json::{json, Value};


fn jsonl(p: &Path) -> Vec<Value> {
    std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn synth_args<'a>(input: &'a str, out: &'a str, url: &'a str) -> Vec<&'a str> {
    vec![
        "synth",
        "--input",
        input,
        "--out",
        out,
        "--target-url",
        url,
        "--target-model",
        "t",
        "--judge-url",
        url,
        "--judge-model",
        "j",
    ]
}

/// `--dry-run` prints the plan from the config and the input, and starts nothing: no server is
/// asked (the URLs lead nowhere) and no output directory is made.
#[test]
fn a_dry_run_prints_the_calls_and_starts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let input = tasks(dir.path(), 5);
    let out = dir.path().join("out");
    let mut args = synth_args(input.to_str().unwrap(), out.to_str().unwrap(), "http://127.0.0.1:9/v1");
    args.extend(["--candidates", "3", "--rounds", "2", "--no-gate", "--dry-run"]);
    let (ok, stdout, err) = arbor(&args);
    assert!(ok, "{err}");
    assert!(stdout.contains("5 items, up to 2 rounds each"), "{stdout}");
    assert!(stdout.contains("target") && !stdout.contains("reward"), "no gate, no reward calls: {stdout}");
    assert!(!out.exists());
}

#[test]
fn a_thousand_items_against_faults_all_end_accounted_for() {
    let m = mock(&[
        "--fault",
        "429=0.02",
        "--fault",
        "500=0.02",
        "--fault",
        "503=0.02",
        "--fault",
        "hang=0.01",
        "--fault",
        "truncated=0.01",
        "--fault",
        "wrong_schema=0.01",
        "--fault",
        "empty_choices=0.01",
        "--retry-after-s",
        "0",
        "--hang-ms",
        "3000",
    ]);
    let dir = tempfile::tempdir().unwrap();
    let input = tasks(dir.path(), 1000);
    let out = dir.path().join("out");
    let mut args = synth_args(input.to_str().unwrap(), out.to_str().unwrap(), &m.url);
    args.extend(["--max-in-flight", "256", "--timeout-secs", "1"]);
    let (ok, _, err) = arbor(&args);
    assert!(ok, "{err}");
    let pairs = jsonl(&out.join("pairs.jsonl"));
    let prov = jsonl(&out.join("provenance.jsonl"));
    let dead = jsonl(&out.join("dead_letter.jsonl"));
    let gated = jsonl(&out.join("gated_out.jsonl"));
    let journal = jsonl(&out.join("journal.jsonl"));
    // Every item ends exactly once: as pairs, gated out or a dead letter with its cause.
    assert_eq!(journal.len(), 1000);
    let mut seen = BTreeMap::new();
    for r in &journal {
        assert!(
            seen.insert(r["index"].as_u64().unwrap(), r["status"].clone())
                .is_none(),
            "item journaled twice"
        );
    }
    let accepted = journal.iter().filter(|r| r["status"] == "accepted").count();
    assert_eq!(accepted + gated.len() + dead.len(), 1000);
    assert!(
        accepted > 100,
        "most items should make it through 10% faults with retries: {accepted}"
    );
    for d in &dead {
        assert!(d["cause"].as_str().is_some_and(|c| !c.is_empty()), "{d}");
    }
    // Pairs and provenance line up by id; chosen differs from rejected.
    assert_eq!(pairs.len(), prov.len());
    for (p, v) in pairs.iter().zip(&prov) {
        assert_eq!(p["id"], v["pair_id"]);
        assert_ne!(p["chosen"], p["rejected"]);
        let (c, r) = (
            v["chosen_index"].as_u64().unwrap() as usize,
            v["rejected_index"].as_u64().unwrap() as usize,
        );
        assert!(v["scores"][c].as_f64() > v["scores"][r].as_f64());
        assert!(
            v["reward"]["score"].as_f64().unwrap() >= 7.0,
            "accepted pairs passed the gate: {v}"
        );
        assert_eq!(p["chosen"][0]["content"], v["candidates"][c]);
    }
    let card = std::fs::read_to_string(out.join("README.md")).unwrap();
    assert!(
        card.contains(&format!("| pairs | {} |", pairs.len())),
        "{card}"
    );
    // The directory loads with HF datasets and no arguments (the card's configs name the
    // files), each config with its file's rows (a file without rows has no config).
    let want: Vec<_> = [("default", pairs.len()), ("provenance", prov.len()), ("dead_letters", dead.len()), ("gated_out", gated.len())]
        .into_iter()
        .filter(|w| w.1 > 0)
        .collect();
    assert!(want.len() >= 3, "pairs, provenance and gated items should have rows here: {want:?}");
    let script = "import sys, json, datasets\ndatasets.disable_progress_bars()\nd = sys.argv[1]\nprint(json.dumps({c: datasets.load_dataset(d, c, split='train').num_rows for c in sys.argv[2:]} | {'': datasets.load_dataset(d, split='train').num_rows}))";
    // A cache of its own: `datasets` keys a local directory's cache by its name ("out") and
    // file names, so another run's "out" would be read back instead of this one's.
    let hf_cache = tempfile::tempdir().unwrap();
    let loaded = Command::new(common::venv_python())
        .env("HF_DATASETS_CACHE", hf_cache.path())
        .args(["-c", script, out.to_str().unwrap()])
        .args(want.iter().map(|w| w.0))
        .output()
        .unwrap();
    assert!(loaded.status.success(), "{}", String::from_utf8_lossy(&loaded.stderr));
    let rows: Value = serde_json::from_slice(&loaded.stdout).unwrap();
    for (config, n) in want {
        assert_eq!(rows[config], n, "load_dataset(DIR, {config:?}): {rows}");
    }
    assert_eq!(rows[""], pairs.len(), "load_dataset(DIR) is the pairs: {rows}");
    assert!(
        err.contains(&format!("1000 of 1000 items: {accepted} accepted")),
        "{err}"
    );
}

/// Where a run of the job is cut.
#[derive(Debug, Clone, Copy)]
enum Kill {
    /// SIGKILL from outside after this many ms.
    After(u64),
    /// SIGKILL from inside, half-way through the N-th write at a site (`ARBOR_TEST_CRASH`):
    /// "journal" (an append) or "output" (a file of a snapshot).
    Crash(&'static str, u64),
}

/// `n` kill points drawn from `seed`: a third timed, a third inside a journal append, a third
/// inside an output write.
fn kill_points(seed: u64, n: usize) -> Vec<Kill> {
    let mut x = seed;
    let mut next = |m: u64| {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (x >> 33) % m
    };
    (0..n)
        .map(|_| match next(3) {
            0 => Kill::After(150 + next(900)),
            1 => Kill::Crash("journal", 1 + next(4)),
            _ => Kill::Crash("output", 1 + next(12)),
        })
        .collect()
}

/// What the kills of `run_with_kills` did.
#[derive(Debug, Default)]
struct Kills {
    landed: usize,
    /// Journal crashes that left a torn last line, and output crashes that left a torn
    /// temporary file: proof that the cut was inside the write.
    torn_journal: usize,
    torn_output: usize,
}

/// Runs a synth job to completion, cut at each of `kills` and resumed; the last resume must
/// play only what the journal does not hold.
fn run_with_kills(args: &[&str], kills: &[Kill]) -> Kills {
    let out = Path::new(args[args.iter().position(|a| *a == "--out").unwrap() + 1]).to_path_buf();
    let journal = out.join("journal.jsonl");
    let mut seen = Kills::default();
    let mut resume = false;
    for &kill in kills {
        let mut cmd = Command::new(ARBOR);
        cmd.args(args).stdout(Stdio::null()).stderr(Stdio::null());
        if resume {
            cmd.arg("--resume");
        }
        if let Kill::Crash(site, n) = kill {
            cmd.env("ARBOR_TEST_CRASH", format!("{site}:{n}"));
        }
        let mut child = cmd.spawn().unwrap();
        let status = match kill {
            Kill::After(ms) => {
                std::thread::sleep(Duration::from_millis(ms));
                if child.try_wait().unwrap().is_none() {
                    child.kill().unwrap(); // SIGKILL
                }
                child.wait().unwrap()
            }
            Kill::Crash(..) => child.wait().unwrap(),
        };
        if status.success() {
            return seen; // finished before the cut
        }
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(9), "{kill:?}: {status:?}");
        seen.landed += 1;
        match kill {
            Kill::Crash("journal", _) => {
                let text = std::fs::read(&journal).unwrap();
                seen.torn_journal += usize::from(text.last() != Some(&b'\n'));
            }
            Kill::Crash(_, _) => {
                seen.torn_output += std::fs::read_dir(&out)
                    .unwrap()
                    .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".tmp"))
                    .count()
                    .min(1);
            }
            Kill::After(_) => {}
        }
        resume = true;
    }
    let before = std::fs::read_to_string(&journal).map_or(0, |t| t.lines().filter(|l| l.ends_with('}')).count());
    let (ok, _, err) = arbor(&[args, &["--resume"]].concat());
    assert!(ok, "{err}");
    if before > 0 {
        assert!(
            err.contains(&format!("{before} items were finished before and kept from the journal")),
            "the resume should skip the {before} journaled items: {err}"
        );
    }
    seen
}

/// What one chaos run found: the kills, and the killed job's output against an uninterrupted
/// run of the same input and config.
#[derive(Debug)]
struct Chaos {
    kills: Kills,
    items: usize,
    /// Items with no journal record, and records beyond one per item.
    lost: usize,
    doubled: usize,
    same_pairs: bool,
    same_provenance: bool,
    pairs: usize,
    /// Some pairs came from prompts the optimizer rewrote (the pool shapes later items).
    rewritten_prompts: bool,
}

/// 160 items against a mock with `faults`, once uninterrupted and once cut at `n` kill points
/// drawn from `seed` and resumed after each.
fn chaos(faults: &[&str], seed: u64, n: usize) -> Chaos {
    let mut args = vec!["--latency-ms", "15", "--hang-ms", "1500", "--retry-after-s", "0"];
    args.extend(faults);
    let m = mock(&args);
    let dir = tempfile::tempdir().unwrap();
    let items = 160;
    let input = tasks(dir.path(), items);
    // Small pool epochs so the prompt pool (and the optimizer's rewrites) shape later items;
    // frequent snapshots so output writes are there to be cut.
    let cfg = dir.path().join("synth.toml");
    std::fs::write(&cfg, "pool_epoch = 16\nrounds = 3\nthreshold = 7.5\nsnapshot_secs = 0.1\n").unwrap();
    let once = dir.path().join("once");
    let killed = dir.path().join("killed");
    let mk = |out: &Path| {
        let mut a: Vec<String> = synth_args(input.to_str().unwrap(), out.to_str().unwrap(), &m.url)
            .into_iter()
            .map(String::from)
            .collect();
        a.extend([
            "--config".into(),
            cfg.to_str().unwrap().into(),
            "--max-in-flight".into(),
            "12".into(),
            "--timeout-secs".into(),
            "0.5".into(),
        ]);
        a
    };
    let a1 = mk(&once);
    let (ok, _, err) = arbor(&a1.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(ok, "{err}");
    let a2 = mk(&killed);
    let kills = run_with_kills(&a2.iter().map(String::as_str).collect::<Vec<_>>(), &kill_points(seed, n));
    let read = |p: &Path| std::fs::read_to_string(p).unwrap();
    let ids = |p: &Path| jsonl(p).iter().map(|v| v["pair_id"].clone()).collect::<Vec<_>>();
    let journal = jsonl(&killed.join("journal.jsonl"));
    let unique: std::collections::HashSet<String> = journal.iter().map(|r| r["id"].to_string()).collect();
    assert_eq!(jsonl(&once.join("journal.jsonl")).len(), items);
    Chaos {
        kills,
        items,
        lost: items - unique.len(),
        doubled: journal.len() - unique.len(),
        same_pairs: read(&once.join("pairs.jsonl")) == read(&killed.join("pairs.jsonl")),
        same_provenance: ids(&once.join("provenance.jsonl")) == ids(&killed.join("provenance.jsonl")),
        pairs: jsonl(&once.join("pairs.jsonl")).len(),
        rewritten_prompts: jsonl(&once.join("provenance.jsonl")).iter().any(|v| v["round"].as_u64() > Some(0)),
    }
}

/// Twelve seeded kill points (timed SIGKILLs, and cuts inside journal appends and output
/// writes), against a mock that fails 3% of requests and hangs 2% past the timeout: the pairs
/// are byte-identical to an uninterrupted run, no item is journaled twice, and each resume
/// skips what was journaled. Caught by a resume that redoes finished items (the skipped count),
/// a journal reader that keeps a torn line or stops at it for good, an output written in place.
#[test]
fn kill_9_and_resume_gives_exactly_the_uninterrupted_pairs() {
    let c = chaos(&["--fault", "500=0.03", "--fault", "hang=0.02"], 2026, 12);
    eprintln!("{c:?}");
    let k = &c.kills;
    assert!(
        k.landed >= 10 && k.torn_journal >= 1 && k.torn_output >= 1,
        "the kills should cut the job at least 10 times, inside a journal append and inside an output write: {c:?}"
    );
    assert!(c.pairs > 0 && c.rewritten_prompts, "some pairs should come from optimized prompts: {c:?}");
    assert!(c.same_pairs && c.same_provenance, "pairs after {} kills differ from the uninterrupted run", k.landed);
    assert_eq!((c.lost, c.doubled), (0, 0), "no item lost or journaled twice");
}

/// The chaos benchmark (docs/benchmarks.md): kill points × fault mixes, items lost and doubled,
/// pairs against the uninterrupted run. `cargo test --test cli_synth chaos_benchmark -- --ignored --nocapture`
#[test]
#[ignore = "benchmark: about 6 minutes"]
fn chaos_benchmark() {
    let mixes: [(&str, &[&str]); 4] = [
        ("none", &[]),
        ("5% 500", &["--fault", "500=0.05"]),
        ("3% 429 + 3% hang", &["--fault", "429=0.03", "--fault", "hang=0.03"]),
        ("3% truncated + 3% wrong schema + 2% 503", &["--fault", "truncated=0.03", "--fault", "wrong_schema=0.03", "--fault", "503=0.02"]),
    ];
    println!("| fault mix | seed | kills landed | in a journal append | in an output write | items | lost | doubled | pairs identical |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    let mut bad = Vec::new();
    for (name, faults) in mixes {
        for seed in 1..=4u64 {
            let c = chaos(faults, seed, 12);
            let k = &c.kills;
            println!("| {name} | {seed} | {} | {} | {} | {} | {} | {} | {} |", k.landed, k.torn_journal, k.torn_output, c.items, c.lost, c.doubled, c.same_pairs && c.same_provenance);
            if c.lost + c.doubled > 0 || !c.same_pairs || !c.same_provenance {
                bad.push((name, seed));
            }
        }
    }
    assert!(bad.is_empty(), "runs that lost, doubled or changed pairs: {bad:?}");
}

/// A second Ctrl-C (SIGTERM) aborts at once, without waiting for the requests in flight (the
/// mock answers after 30 s): exit 130, a line naming --resume, no panic on the way out. Caught
/// if the second signal is ignored or also waits for the work in flight.
#[test]
fn a_second_signal_aborts_without_waiting_for_the_work_in_flight() {
    use std::io::BufRead;
    let m = mock(&["--latency-ms", "30000"]);
    let dir = tempfile::tempdir().unwrap();
    let input = tasks(dir.path(), 4);
    let out = dir.path().join("out");
    let args = synth_args(input.to_str().unwrap(), out.to_str().unwrap(), &m.url);
    let mut child = Command::new(ARBOR).args(&args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    std::thread::sleep(Duration::from_millis(1500));
    let pid = child.id() as i32;
    // SAFETY: kill sends a signal to the child's pid.
    let term = || assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    term();
    let mut err: Vec<String> = Vec::new();
    while !err.iter().any(|l| l.starts_with("interrupted:")) {
        err.push(rx.recv_timeout(Duration::from_secs(10)).expect("no 'interrupted' line in 10 s"));
    }
    let t = std::time::Instant::now();
    term();
    let status = child.wait().unwrap();
    assert!(t.elapsed() < Duration::from_secs(10), "the abort waited {:?}", t.elapsed());
    err.extend(rx.iter());
    let err = err.join("\n");
    assert_eq!(status.code(), Some(130), "{err}");
    assert!(err.contains("aborted: what had finished is kept; run the same command with --resume"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// A job killed with SIGKILL leaves the pairs of the items it finished (`snapshot_secs`), whole
/// lines only, each one a pair the finished job also has. Caught if outputs are written only at
/// the end, or written in place (a torn line).
#[test]
fn a_killed_job_leaves_the_pairs_of_its_finished_items() {
    let m = mock(&["--latency-ms", "20"]);
    let dir = tempfile::tempdir().unwrap();
    let input = tasks(dir.path(), 200);
    let cfg = dir.path().join("synth.toml");
    std::fs::write(&cfg, "snapshot_secs = 0.2\nrounds = 1\n").unwrap();
    let out = dir.path().join("out");
    let mut args = synth_args(input.to_str().unwrap(), out.to_str().unwrap(), &m.url);
    args.extend(["--config", cfg.to_str().unwrap(), "--max-in-flight", "4"]);
    let mut child = Command::new(ARBOR)
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    assert!(child.try_wait().unwrap().is_none(), "the job should still be running");
    child.kill().unwrap();
    child.wait().unwrap();
    let partial = std::fs::read_to_string(out.join("pairs.jsonl")).expect("pairs.jsonl after a kill");
    assert!(partial.ends_with('\n') && !partial.is_empty(), "{partial:?}");
    let partial: Vec<Value> = partial.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let (ok, _, err) = arbor(&[args.as_slice(), &["--resume"]].concat());
    assert!(ok, "{err}");
    let all = jsonl(&out.join("pairs.jsonl"));
    assert!(partial.len() < all.len(), "{} of {}", partial.len(), all.len());
    for p in &partial {
        assert!(all.contains(p), "a snapshot pair is not in the finished job: {p}");
    }
}

#[test]
fn malformed_rows_are_dead_lettered_with_their_line_or_stop_the_job_with_strict() {
    let m = mock(&[]);
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, "{\"id\":\"a\",\"prompt\":\"What is 2+3?\",\"reference\":\"5\"}\n{\"prompt\": \n{\"id\":\"c\",\"text\":\"no prompt\"}\n{\"id\":\"d\",\"messages\":[{\"role\":\"user\",\"content\":\"Name a prime.\"}]}\n").unwrap();
    let out = dir.path().join("out");
    let (ok, _, err) = arbor(
        &[
            synth_args(input.to_str().unwrap(), out.to_str().unwrap(), &m.url),
            vec!["--no-gate"],
        ]
        .concat(),
    );
    assert!(ok, "{err}");
    let dead = jsonl(&out.join("dead_letter.jsonl"));
    assert_eq!(dead.len(), 2);
    assert_eq!(dead[0]["line"], 2);
    assert!(
        dead[0]["cause"]
            .as_str()
            .unwrap()
            .contains("in.jsonl:2: invalid JSON"),
        "{}",
        dead[0]
    );
    assert_eq!(dead[1]["line"], 3);
    assert!(dead[1]["cause"]
        .as_str()
        .unwrap()
        .contains("missing field `prompt`"));
    let journal = jsonl(&out.join("journal.jsonl"));
    assert_eq!(journal.len(), 4);
    let (ok, _, err) = arbor(
        &[
            synth_args(
                input.to_str().unwrap(),
                dir.path().join("strict").to_str().unwrap(),
                &m.url,
            ),
            vec!["--strict"],
        ]
        .concat(),
    );
    assert!(
        !ok && err.contains("in.jsonl:2: invalid JSON") && err.contains("--strict"),
        "{err}"
    );
    // Parquet input (written by pandas) goes through the same reader.
    let pq = dir.path().join("in.parquet");
    let py = arbor_model::fetch::arbor_home().join("venv/bin/python");
    let script = "import pandas, sys; pandas.DataFrame([{'id': 'p1', 'prompt': 'What is 6*7?', 'reference': '42'}, {'id': 'p2', 'prompt': 'What is 9-4?', 'reference': '5'}]).to_parquet(sys.argv[1])";
    let st = Command::new(&py)
        .args(["-c", script, pq.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(
        st.success(),
        "pandas is missing from {}: run `bash .ci/run`",
        py.display()
    );
    let out_pq = dir.path().join("out-pq");
    let (ok, _, err) = arbor(
        &[
            synth_args(pq.to_str().unwrap(), out_pq.to_str().unwrap(), &m.url),
            vec!["--no-gate"],
        ]
        .concat(),
    );
    assert!(ok, "{err}");
    // The journal is in completion order; each row keeps its input index.
    let mut journal: Vec<(u64, String)> = jsonl(&out_pq.join("journal.jsonl"))
        .iter()
        .map(|r| {
            (
                r["index"].as_u64().unwrap(),
                r["id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    journal.sort();
    assert_eq!(journal, vec![(0, "p1".to_string()), (1, "p2".to_string())]);
}

/// A JSON answer cut at the token limit is shown back to the model with the error
/// (`json_repairs`) instead of dead-lettering the item. Caught if repairs are never sent (as many
/// dead letters with them as without), or if the cause does not say the answer was cut.
#[test]
fn json_answers_cut_at_the_token_limit_are_repaired_before_the_item_dies() {
    let m = mock(&["--fault", "cut_answer=0.25"]);
    let dir = tempfile::tempdir().unwrap();
    let input = tasks(dir.path(), 40);
    let dead_with = |repairs: u32| {
        let cfg = dir.path().join(format!("synth-{repairs}.toml"));
        std::fs::write(&cfg, format!("json_repairs = {repairs}\n")).unwrap();
        let out = dir.path().join(format!("out-{repairs}"));
        let mut args = synth_args(input.to_str().unwrap(), out.to_str().unwrap(), &m.url);
        args.extend(["--config", cfg.to_str().unwrap()]);
        let (ok, _, err) = arbor(&args);
        assert!(ok, "{err}");
        assert_eq!(jsonl(&out.join("journal.jsonl")).len(), 40);
        jsonl(&out.join("dead_letter.jsonl"))
    };
    let without = dead_with(0);
    // Three JSON answers per item (judge in both orders, reward): ~58% of items hit a cut one.
    assert!(without.len() >= 10, "{} dead letters without repairs", without.len());
    for d in &without {
        let cause = d["cause"].as_str().unwrap();
        assert!(cause.contains("cut at the token limit"), "{cause}");
    }
    let with = dead_with(3);
    eprintln!("dead letters: {} without repairs, {} with 3", without.len(), with.len());
    assert!(
        with.len() * 4 <= without.len(),
        "{} dead letters with repairs against {} without",
        with.len(),
        without.len()
    );
    for d in &with {
        assert!(d["cause"].as_str().unwrap().contains("after 3 repairs"), "{d}");
    }
}

/// A panic while playing one item (injected in debug builds by ARBOR_TEST_PANIC_ITEM) costs
/// that item alone: it is journaled as a dead letter with the panic's message, every other item
/// is finished, and the exit status (70) says the job is not clean. Caught if the panic drops
/// the item, kills the job, or exits 0.
#[test]
fn a_panic_in_one_item_is_a_dead_letter_and_fails_the_exit_status() {
    let m = mock(&[]);
    let dir = tempfile::tempdir().unwrap();
    let input = tasks(dir.path(), 6);
    let victim = jsonl(&input)[2]["id"].as_str().unwrap().to_string();
    let out = dir.path().join("out");
    let o = Command::new(ARBOR)
        .args(synth_args(input.to_str().unwrap(), out.to_str().unwrap(), &m.url))
        .env("ARBOR_TEST_PANIC_ITEM", &victim)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(70), "{err}");
    assert!(err.contains("1 items hit an internal error"), "{err}");
    assert_eq!(jsonl(&out.join("journal.jsonl")).len(), 6);
    let dead = jsonl(&out.join("dead_letter.jsonl"));
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["item_id"], victim.as_str());
    assert!(dead[0]["cause"].as_str().unwrap().contains("injected by ARBOR_TEST_PANIC_ITEM"));
    assert_eq!(jsonl(&out.join("provenance.jsonl")).len() + dead.len() + jsonl(&out.join("gated_out.jsonl")).len(), 6);
}

#[test]
fn a_handful_of_items_against_a_real_llama_cpp_server() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let home = arbor_model::fetch::arbor_home();
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/tools/serve_xllamacpp.py");
    let server = rt
        .block_on(arbor_serve::llamacpp::LlamaCppServer::start(
            &home.join("venv/bin/python"),
            &script,
            &home.join("models/SmolLM2-135M-Instruct.Q4_1.gguf"),
            2,
        ))
        .unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("items.jsonl");
    std::fs::write(&input, "{\"id\":\"q1\",\"prompt\":\"What is 12 * 7?\",\"reference\":\"84\"}\n{\"id\":\"q2\",\"prompt\":\"Name the capital of France.\"}\n{\"id\":\"q3\",\"prompt\":\"What is 15 + 27?\",\"reference\":\"42\"}\n").unwrap();
    let cfg = dir.path().join("synth.toml");
    // One round (no optimizer: its free-text prompts are long for a 135M model's context); answers
    // get room to close their JSON within the schema's maxLength.
    std::fs::write(&cfg, "candidates = 2\nrounds = 1\nthreshold = 1.0\ntool_use = \"none\"\nmax_in_flight = 16\n[target]\nmax_tokens = 64\ntemperature = 1.0\n[judge]\nmax_tokens = 1024\n[reward]\nmax_tokens = 1024\n").unwrap();
    let out = dir.path().join("out");
    let url = server.base_url.clone();
    let (ok, _, err) = arbor(&[
        "synth",
        "--input",
        input.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--config",
        cfg.to_str().unwrap(),
        "--target-url",
        &url,
        "--target-model",
        "smollm2",
        "--judge-url",
        &url,
        "--judge-model",
        "smollm2",
        "--timeout-secs",
        "300",
    ]);
    assert!(ok, "{err}");
    // (The timeout is generous: on a machine loaded by other tests a 1,024-token judge answer
    // took over 90 s, and that is not what this test is about.)
    // Two slots and up to 40 requests wanted at once: arbor keeps exactly 2 in flight (the
    // server's `/props`), so none waits in the server's queue against the timeout, and the
    // server's timings (which count other requests' batched prompt processing as waiting) do
    // not talk the limit below its slots.
    let line = err.lines().find(|l| l.contains(&url)).unwrap_or_else(|| panic!("no endpoint line: {err}"));
    let limit: u32 = line
        .split("in flight <= ")
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no in-flight limit in {line}"));
    assert!(limit == 2 && !line.contains("errors"), "{line}");
    let journal = jsonl(&out.join("journal.jsonl"));
    assert_eq!(journal.len(), 3);
    // llama.cpp follows the JSON schema, so the judge's answers parse and every item is judged.
    let pairs = jsonl(&out.join("pairs.jsonl"));
    let prov = jsonl(&out.join("provenance.jsonl"));
    assert_eq!(pairs.len(), prov.len());
    for v in &prov {
        assert_eq!(v["candidates"].as_array().unwrap().len(), 2);
        // Judge scores are 1-10, less 10 per failed judge check (two checks at most).
        assert!(v["scores"].as_array().unwrap().iter().all(|s| (-19.0..=10.0).contains(&s.as_f64().unwrap())), "{v}");
        assert_eq!(v["models"]["target"], "smollm2");
    }
    for r in &journal {
        assert_ne!(
            r["status"], "dead",
            "no item should fail against a healthy server: {r}"
        );
    }
}

#[test]
fn a_job_directory_is_continued_only_with_resume_and_only_on_the_same_input() {
    let m = mock(&[]);
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, answer: u32| {
        let p = dir.path().join(name);
        let rows: String = (0..4)
            .map(|i| format!("{{\"id\":\"q{i}\",\"prompt\":\"What is {i}+{answer}?\",\"reference\":\"{}\"}}\n", i + answer))
            .collect();
        std::fs::write(&p, rows).unwrap();
        p
    };
    let (a, b) = (write("a.jsonl", 1), write("b.jsonl", 2));
    let out = dir.path().join("out");
    let run = |input: &Path, extra: &[&str]| {
        arbor(
            &[
                synth_args(input.to_str().unwrap(), out.to_str().unwrap(), &m.url),
                vec!["--no-gate"],
                extra.to_vec(),
            ]
            .concat(),
        )
    };
    let (ok, _, err) = run(&a, &[]);
    assert!(ok, "{err}");
    let pairs = std::fs::read_to_string(out.join("pairs.jsonl")).unwrap();
    // The same command again without --resume: refused, naming the flag; nothing rewritten.
    let (ok, _, err) = run(&a, &[]);
    assert!(!ok && err.contains("--resume"), "{err}");
    // Another input of the same row count is not mixed into the job.
    let (ok, _, err) = run(&b, &["--resume"]);
    assert!(!ok && err.contains("input_sha256"), "{err}");
    assert_eq!(std::fs::read_to_string(out.join("pairs.jsonl")).unwrap(), pairs);
    // The same input resumes (nothing left to do).
    let (ok, _, err) = run(&a, &["--resume"]);
    assert!(ok, "{err}");
    assert_eq!(std::fs::read_to_string(out.join("pairs.jsonl")).unwrap(), pairs);
}

/// The mock's request count (`GET /stats`).
fn mock_requests(m: &Mock) -> u64 {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(arbor_serve::mock::fetch_stats(&m.url)).unwrap().requests
}

/// Repeated prompts are set aside before the job — an exact repeat (case, punctuation and
/// spacing aside) and a near one (a word added) — to duplicates.jsonl with the item they repeat,
/// and the first of each is played; `dedup = "off"` plays them all. Candidates that repeat each
/// other are not judged (no judge call) and make no pair. Caught by a dedup that misses either
/// kind, drops the first of a group, or judges identical candidates.
#[test]
fn duplicate_prompts_and_candidates_are_set_aside() {
    let dir = tempfile::tempdir().unwrap();
    let q = "Janet's ducks lay 16 eggs per day. She eats three for breakfast every morning and bakes muffins for her friends every day with four. She sells the remainder at the farmers' market daily for $2 per fresh duck egg. How much in dollars does she make every day at the farmers' market?";
    let r = "A robe takes 2 bolts of blue fiber and half that much white fiber. How many bolts in total does it take to make three robes for the winter market in the town square?";
    let rows = [
        json!({"id": "a", "prompt": q}),
        json!({"id": "b", "prompt": r}),
        json!({"id": "a-shouted", "prompt": q.to_uppercase().replace(['.', '?'], "")}),
        json!({"id": "b-reworded", "prompt": r.replace("takes", "takes exactly")}),
        json!({"id": "c", "prompt": "What is 12 * 7?"}),
    ];
    let input = dir.path().join("items.jsonl");
    std::fs::write(&input, rows.iter().map(|r| r.to_string() + "\n").collect::<String>()).unwrap();
    let m = mock(&[]);
    let run = |name: &str, cfg: &str| {
        let out = dir.path().join(name);
        let config = dir.path().join(format!("{name}.toml"));
        std::fs::write(&config, cfg).unwrap();
        let mut args = synth_args(input.to_str().unwrap(), out.to_str().unwrap(), &m.url);
        args.extend(["--config", config.to_str().unwrap()]);
        let (ok, _, err) = arbor(&args);
        assert!(ok, "{err}");
        (out, err)
    };
    let (out, err) = run("dedup", "rounds = 1\n");
    assert!(err.contains("5 of 5 items:") && err.contains("2 duplicates"), "{err}");
    let dups = jsonl(&out.join("duplicates.jsonl"));
    let seen: Vec<(String, String, String)> = dups
        .iter()
        .map(|d| (d["item_id"].as_str().unwrap().into(), d["duplicate_of"]["item_id"].as_str().unwrap().into(), d["kind"].as_str().unwrap().into()))
        .collect();
    assert_eq!(seen, [("a-shouted".into(), "a".into(), "exact".into()), ("b-reworded".into(), "b".into(), "near".into())]);
    let played: Vec<String> = jsonl(&out.join("journal.jsonl")).iter().filter(|r| r["status"] != "duplicate").map(|r| r["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(played.len(), 3, "{played:?}");
    let (_, err) = run("all", "rounds = 1\ndedup = \"off\"\n");
    assert!(err.contains("0 duplicates"), "{err}");

    // A model that repeats itself: every candidate the same text.
    let same = mock(&["--fault", "same_choices=1"]);
    let out = dir.path().join("same");
    let mut args = synth_args(input.to_str().unwrap(), out.to_str().unwrap(), &same.url);
    args.extend(["--rounds", "1"]);
    let (ok, _, err) = arbor(&args);
    assert!(ok, "{err}");
    assert!(jsonl(&out.join("pairs.jsonl")).is_empty(), "identical candidates make no pair");
    let gated = jsonl(&out.join("gated_out.jsonl"));
    assert_eq!(gated.len(), 3, "{err}");
    assert!(gated.iter().all(|g| g["history"][0]["rejected"] == "the candidates repeat each other"), "{gated:?}");
    assert_eq!(mock_requests(&same), 3, "one target call per played item, no judge call");
}

/// Each role's calls are counted at the role (the four roles' requests add up to what the
/// server received) and priced from `[prices]` per million tokens; the accounts are in the
/// summary, job.json and the card. Caught by counts taken from the shared endpoint (each role
/// would show the server's total) or a price applied to the wrong side.
#[test]
fn roles_are_counted_and_priced() {
    let m = mock(&["--latency-ms", "5"]);
    let dir = tempfile::tempdir().unwrap();
    let input = tasks(dir.path(), 12);
    let cfg = dir.path().join("synth.toml");
    std::fs::write(&cfg, "rounds = 2\n[prices.t]\ninput = 1.0\noutput = 2.0\n").unwrap();
    let out = dir.path().join("out");
    let mut args = synth_args(input.to_str().unwrap(), out.to_str().unwrap(), &m.url);
    args.extend(["--config", cfg.to_str().unwrap()]);
    let (ok, _, err) = arbor(&args);
    assert!(ok, "{err}");
    let job = common::read_json(&out.join("job.json"));
    let usage = job["usage"].as_array().unwrap();
    let roles: Vec<&str> = usage.iter().map(|u| u["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["target", "judge", "reward", "optimizer"]);
    let requests: u64 = usage.iter().map(|u| u["usage"]["requests"].as_u64().unwrap()).sum();
    assert_eq!(requests, mock_requests(&m), "the roles' requests add up to the server's");
    let target = &usage[0];
    assert_eq!(target["usage"]["requests"], 12 + usage[3]["usage"]["requests"].as_u64().unwrap(), "one sample per round: 12 first rounds, and a second round per optimizer call");
    let (p, c) = (target["usage"]["prompt_tokens"].as_f64().unwrap(), target["usage"]["completion_tokens"].as_f64().unwrap());
    assert!((target["cost"].as_f64().unwrap() - (p + 2.0 * c) / 1e6).abs() < 1e-12, "{target}");
    assert!(usage[1]["cost"].is_null(), "the judge's model has no price");
    assert!(err.contains(&format!("target (t): {} requests", target["usage"]["requests"])), "{err}");
    let card = std::fs::read_to_string(out.join("README.md")).unwrap();
    assert!(card.contains("## Calls, tokens and cost by role") && card.contains("| target | t |"), "{card}");
}

/// A jury of three judges: each member scores every candidate set (three times the judge
/// calls), the pair's scores are the members' mean, each vote and the jury's agreement are in
/// provenance; with `jury_min_agreement = 1` only pairs every member ranks the same way stand,
/// and the rest are rejected for it. Caught by a jury that asks one member, aggregates
/// otherwise than it says, or ignores the agreement bar.
#[test]
fn a_jury_scores_by_its_mean_and_keeps_only_agreed_pairs() {
    let m = mock(&[]);
    let dir = tempfile::tempdir().unwrap();
    let input = tasks(dir.path(), 30);
    let run = |name: &str, extra: &str| {
        let cfg = dir.path().join(format!("{name}.toml"));
        std::fs::write(&cfg, format!("rounds = 1\nno_gate = true\ntool_use = \"none\"\n{extra}[[judges]]\nurl = \"{0}\"\nmodel = \"j2\"\n[[judges]]\nurl = \"{0}\"\nmodel = \"j3\"\n", m.url)).unwrap();
        let out = dir.path().join(name);
        let mut args = synth_args(input.to_str().unwrap(), out.to_str().unwrap(), &m.url);
        args.extend(["--config", cfg.to_str().unwrap()]);
        let (ok, _, err) = arbor(&args);
        assert!(ok, "{err}");
        out
    };
    let any = run("any", "");
    let prov = jsonl(&any.join("provenance.jsonl"));
    assert!(!prov.is_empty());
    let mut split = 0;
    for v in &prov {
        let votes = v["jury"].as_array().unwrap();
        assert_eq!(votes.iter().map(|x| x["model"].as_str().unwrap()).collect::<Vec<_>>(), ["j", "j2", "j3"]);
        for (i, s) in v["scores"].as_array().unwrap().iter().enumerate() {
            let mean = votes.iter().map(|x| x["scores"][i].as_f64().unwrap()).sum::<f64>() / 3.0;
            assert!((s.as_f64().unwrap() - mean).abs() < 1e-9, "{v}");
        }
        let (c, r) = (v["chosen_index"].as_u64().unwrap() as usize, v["rejected_index"].as_u64().unwrap() as usize);
        let agree = votes.iter().filter(|x| x["scores"][c].as_f64() > x["scores"][r].as_f64()).count() as f64 / 3.0;
        assert!((v["jury_agreement"].as_f64().unwrap() - agree).abs() < 1e-9, "{v}");
        split += usize::from(agree < 1.0);
    }
    assert!(split > 0, "the mock's judges should disagree on some pairs");
    let all = run("all", "jury_min_agreement = 1.0\n");
    let kept = jsonl(&all.join("provenance.jsonl"));
    assert!(kept.iter().all(|v| v["jury_agreement"] == 1.0));
    assert_eq!(kept.len(), prov.len() - split, "exactly the unanimous pairs stand");
    let gated = jsonl(&all.join("gated_out.jsonl"));
    assert!(gated.iter().any(|g| g["history"][0]["rejected"] == "too few of the jury ranked the pair the same way"));
    assert!(std::fs::read_to_string(any.join("README.md")).unwrap().contains("## Jury"));
}

/// `arbor bench judge` runs every judge setup over the labelled GSM8K pairs through synth's
/// own judge (here the mock, a judge at chance): one row per setup whose accuracy, wrong and
/// tie shares add up to the pairs. Caught by a setup that drops pairs or counts one twice.
#[test]
fn the_judge_benchmark_scores_every_pair_in_every_setup() {
    let m = mock(&[]);
    let gsm8k = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data/gsm8k/test.jsonl");
    let (ok, out, err) = arbor(&["bench", "judge", "--url", &m.url, "--model", "j", "--pairs", "12", "--gsm8k", gsm8k, "--sets", "slips"]);
    assert!(ok, "{err}");
    let rows: Vec<Vec<f64>> = out
        .lines()
        .filter(|l| l.starts_with("| ") && l.contains('%'))
        .map(|l| l.split('|').filter_map(|c| c.trim().strip_suffix('%')?.parse().ok()).collect())
        .collect();
    assert_eq!(rows.len(), 7, "{out}");
    for r in &rows {
        assert!((r[0] + r[1] + r[2] - 100.0).abs() < 0.2, "right + wrong + ties = all pairs: {out}");
    }
    // The mock judge scores at random; with the reference, synth's default judge's checks
    // decide every slip pair (broken checks or penalty leave it at chance).
    assert_eq!(rows[5][0], 100.0, "{out}");
}

/// Against a server with 2 slots and every item admitted at once, the oldest items' calls are
/// served first, so items finish one after another while the job runs (read from the journal
/// mid-job) rather than all together at its end, as they do when every item's target call is
/// served before any judge call. And `item_deadline_secs` ends items that outlive it as dead
/// letters saying so, and the job with them.
#[test]
fn the_oldest_items_are_served_first_and_deadlines_end_items() {
    let m = mock(&["--slots", "2", "--latency-ms", "100"]);
    let dir = tempfile::tempdir().unwrap();
    let input = tasks(dir.path(), 16);
    let cfg = dir.path().join("synth.toml");
    std::fs::write(
        &cfg,
        "candidates = 2\nrounds = 1\nno_gate = true\nboth_orders = false\ntool_use = \"none\"\nmax_in_flight = 16\n",
    )
    .unwrap();
    let out = dir.path().join("out");
    let mut args = synth_args(input.to_str().unwrap(), out.to_str().unwrap(), &m.url);
    args.extend(["--config", cfg.to_str().unwrap()]);
    let started = std::time::Instant::now();
    let mut child = Command::new(ARBOR)
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // 16 target calls of 2 choices (each takes both slots) and 16 judge calls at 100 ms: served
    // in arrival order, no item is done before 1.6 s; by priority one is done about every 0.15 s.
    std::thread::sleep(Duration::from_millis(1300));
    let journal = std::fs::read_to_string(out.join("journal.jsonl")).unwrap_or_default();
    let done_midway = journal.lines().filter(|l| l.contains("\"index\"")).count();
    assert!(child.wait().unwrap().success());
    let total = started.elapsed();
    assert!(
        done_midway >= 3,
        "{done_midway} of 16 items done 1.3 s into a {:.1} s job",
        total.as_secs_f64()
    );
    let records = jsonl(&out.join("journal.jsonl"));
    assert_eq!(records.iter().filter(|r| r.get("index").is_some()).count(), 16);

    // Deadlines: calls that hang for 30 s, items allowed 1 s.
    let m = mock(&["--fault", "hang=1.0", "--hang-ms", "30000"]);
    std::fs::write(&cfg, "rounds = 1\nno_gate = true\nitem_deadline_secs = 1.0\n").unwrap();
    let out = dir.path().join("out-deadline");
    let mut args = synth_args(input.to_str().unwrap(), out.to_str().unwrap(), &m.url);
    args.extend(["--config", cfg.to_str().unwrap()]);
    let started = std::time::Instant::now();
    let (ok, stdout, err) = arbor(&args);
    assert!(ok, "{err}");
    assert!(started.elapsed() < Duration::from_secs(20), "the deadline did not end the items");
    let dead = jsonl(&out.join("dead_letter.jsonl"));
    assert_eq!(dead.len(), 16, "{stdout}");
    assert!(dead.iter().all(|d| d.to_string().contains("item deadline passed")), "{}", dead[0]);
}
