//! `arbor loop` end to end on a tiny random Llama: the stages of every iteration land in
//! `iter-<t>/`, π_0 is evaluated as iteration 0, a finished loop resumes to the same report
//! without running anything again, and a loop killed with SIGKILL resumes to the report of an
//! uninterrupted one.
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{arbor, ARBOR};
use serde_json::Value;

const LOOP_TOML: &str = r#"
env = "math"
tasks_per_iteration = 4
eval_tasks = 6
eval_max_depth = 2
[search]
algo = "beam"
max_depth = 3
width = 2
beam = 2
[policy]
kind = "synthetic"
[evaluator]
kind = "terminal"
[train]
algo = "sft"
max_steps = 2
batch_size = 2
save_every = 1
"#;

/// A tiny random model and a loop.toml (`toml`) in `dir`.
fn setup(dir: &Path, toml: &str) -> (PathBuf, PathBuf) {
    let model = dir.join("tiny");
    let (ok, _, err) = arbor(&["model", "init", "--out", model.to_str().unwrap(), "--seed", "4"]);
    assert!(ok, "{err}");
    let cfg = dir.join("loop.toml");
    std::fs::write(&cfg, toml).unwrap();
    (model, cfg)
}

/// `arbor loop` of `model` with `cfg` into `out` for `iterations`.
fn loop_args(model: &Path, cfg: &Path, out: &Path, iterations: usize) -> Vec<String> {
    let p = |x: &Path| x.to_str().unwrap().to_string();
    vec![
        "loop".into(),
        "--model".into(),
        p(model),
        "--iterations".into(),
        iterations.to_string(),
        "--config".into(),
        p(cfg),
        "--out".into(),
        p(out),
    ]
}

fn run(args: &[String]) -> (bool, String, String) {
    arbor(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

fn report(out: &Path) -> Value {
    common::read_json(&out.join("report.json"))
}

/// The report without what depends on the clock or the directory.
fn essence(r: &Value) -> Vec<Value> {
    r["iterations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let mut i = i.clone();
            i.as_object_mut().unwrap().remove("seconds");
            i.as_object_mut().unwrap().remove("model");
            i
        })
        .collect()
}

/// How many stages of a loop in `out` have finished (their markers, `iter-<t>/<stage>.json`).
fn stages_done(out: &Path) -> usize {
    let Ok(iters) = std::fs::read_dir(out) else { return 0 };
    iters
        .flatten()
        .filter(|d| d.file_name().to_string_lossy().starts_with("iter-"))
        .map(|d| {
            ["eval", "search", "export", "train"]
                .iter()
                .filter(|s| d.path().join(format!("{s}.json")).is_file())
                .count()
        })
        .sum()
}

/// `report.html` reaches nothing outside itself and renders its table (one row per
/// iteration) in headless Chromium.
fn report_page_loads_in_chromium(out: &Path, iterations: usize) {
    let page = out.join("report.html");
    let text = std::fs::read_to_string(&page).unwrap();
    // (SVG's xmlns is a name, not a request.)
    let outside = text.replace("http://www.w3.org/2000/svg", "");
    for banned in ["http://", "https://", "src=", "href="] {
        assert!(!outside.contains(banned), "the page must not reach the network: {banned}");
    }
    assert!(text.matches("<svg").count() > iterations - 1, "accuracy and training plots");
    let chromium = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|c| Command::new(c).arg("--version").output().is_ok_and(|o| o.status.success()))
        .expect("headless Chromium is missing: install Debian's `chromium` package, as .ci/run does");
    let dom = Command::new(chromium)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--dump-dom"])
        .arg(format!("file://{}", page.display()))
        .stderr(Stdio::null())
        .output()
        .unwrap();
    let dom = String::from_utf8_lossy(&dom.stdout);
    let table = dom.split("id=\"iterations\"").nth(1).expect("the iterations table");
    let table = table.split("</table>").next().unwrap();
    assert_eq!(table.matches("<tr>").count(), iterations + 1, "{table}");
}

#[test]
fn iterations_land_in_their_directories_and_resume_after_kill_9_to_the_same_report() {
    let dir = tempfile::tempdir().unwrap();
    let (model, cfg) = setup(dir.path(), LOOP_TOML);
    let args = |out: &Path| loop_args(&model, &cfg, out, 2);

    let once = dir.path().join("once");
    let (ok, table, err) = run(&args(&once));
    assert!(ok, "{err}");
    let r = report(&once);
    let its = r["iterations"].as_array().unwrap();
    assert_eq!(its.len(), 3, "{r}");
    for (t, it) in its.iter().enumerate() {
        assert_eq!(it["iteration"], t);
        assert_eq!(it["eval_n"], 6, "{it}");
        assert!(once.join(format!("iter-{t}/eval.json")).is_file());
    }
    for t in 1..=2 {
        let it = &its[t];
        // The synthetic policy answers right on its first option: every tree has a correct
        // leaf, so rejection sampling has data and trains the configured steps.
        assert_eq!(it["trees"], 4, "{it}");
        // Each tree holds its root and at least one expansion (the search's size, reported).
        assert!(it["nodes"].as_u64().unwrap() >= 8, "{it}");
        assert!(it["correct_leaves"].as_u64().unwrap() >= 4, "{it}");
        assert!(it["rows"].as_u64().unwrap() > 0, "{it}");
        assert_eq!(it["train_steps"], 2, "{it}");
        let d = once.join(format!("iter-{t}"));
        assert!(d.join("trees/trees.jsonl").is_file() && d.join("data.jsonl").is_file());
        assert!(d.join("model/config.json").is_file());
    }
    // Iteration 2 searched and trained from iteration 1's policy, not from π_0.
    let search2: Value = serde_json::from_str(
        &std::fs::read_to_string(once.join("iter-2/search.json")).unwrap(),
    )
    .unwrap();
    assert!(
        search2["model"].as_str().unwrap().ends_with("iter-1/model"),
        "{search2}"
    );
    assert!(table.contains("accuracy"), "{table}");
    report_page_loads_in_chromium(&once, 3);

    // Resumed when finished: every stage reused, the same report.
    let mut again = args(&once);
    again.push("--resume".into());
    let (ok, _, err) = run(&again);
    assert!(ok, "{err}");
    assert!(!err.contains("(running)") && err.contains("(done earlier)"), "{err}");
    assert_eq!(report(&once), r);
    // Without --resume the directory is not taken over.
    let (ok, _, err) = run(&args(&once));
    assert!(!ok && err.contains("--resume"), "{err}");

    // Killed again and again, each time a moment after one more stage has finished, so every
    // attempt gets further and each kill lands inside a later stage than the one before. (Kills
    // follow the stage markers, not a fraction of a timed run: a run timed while other tests
    // load the machine said nothing about the next one.)
    let killed = dir.path().join("killed");
    let mut killed_in = Vec::new();
    for attempt in 0..12u64 {
        let mut a = args(&killed);
        if killed.join("loop.json").exists() {
            a.push("--resume".into());
        }
        let before = stages_done(&killed);
        let mut child = Command::new(ARBOR)
            .args(&a)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        while stages_done(&killed) == before && child.try_wait().unwrap().is_none() {
            std::thread::sleep(Duration::from_millis(2));
        }
        // At the next stage's start, or a little into it.
        std::thread::sleep(Duration::from_millis([0, 3, 0, 10][attempt as usize % 4]));
        if child.try_wait().unwrap().is_some() {
            break; // finished by itself
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        killed_in.push(stages_done(&killed));
    }
    eprintln!("killed after {killed_in:?} finished stages");
    assert!(
        killed_in.len() >= 3 && killed_in.windows(2).all(|w| w[0] < w[1]),
        "kills landed after {killed_in:?} finished stages"
    );
    let mut a = args(&killed);
    a.push("--resume".into());
    let (ok, _, err) = run(&a);
    assert!(ok, "{err}");
    assert_eq!(essence(&report(&killed)), essence(&r));
    // The same policy: the trained weights agree byte for byte.
    for t in 1..=2 {
        let w = |out: &Path| std::fs::read(out.join(format!("iter-{t}/model/model.safetensors"))).unwrap();
        assert!(w(&killed) == w(&once), "iteration {t}'s weights differ after resume");
    }
}

#[test]
fn sigterm_stops_between_stages_and_says_how_to_resume() {
    let dir = tempfile::tempdir().unwrap();
    let (model, cfg) = setup(dir.path(), LOOP_TOML);
    let out = dir.path().join("out");
    let args = loop_args(&model, &cfg, &out, 30);
    let child = Command::new(ARBOR)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(400));
    // One loop per directory: a second one is refused while the first runs.
    let mut second = loop_args(&model, &cfg, &out, 3);
    second.push("--resume".into());
    let (ok, _, err) = run(&second);
    assert!(!ok && err.contains("another arbor loop is running"), "{err}");
    common::terminate(child.id());
    let done = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&done.stderr);
    assert_eq!(done.status.code(), Some(130), "{err}");
    assert!(err.contains("--resume"), "{err}");
    // What finished stays finished: the resumed loop runs only the rest.
    let finished = report(&out)["iterations"].as_array().unwrap().len();
    assert!(finished < 31, "the loop was not stopped");
    let mut resumed = loop_args(&model, &cfg, &out, 3);
    resumed.push("--resume".into());
    let stop_at = finished.min(3);
    let (ok, _, err) = run(&resumed);
    assert!(ok, "{err}");
    assert_eq!(report(&out)["iterations"].as_array().unwrap().len(), 4);
    assert!(
        err.matches("(done earlier)").count() >= stop_at,
        "{err}"
    );
}

/// SIGTERM during a long training stage: the step in progress ends with a checkpoint, the
/// stage stays unfinished (no marker), and the resumed loop continues the training from that
/// checkpoint to the model an uninterrupted loop trains. Caught if the stop waits for the whole
/// stage, or the resumed stage starts over (different weights after its cosine schedule), or
/// the interrupted stage is marked finished.
#[test]
fn sigterm_during_training_keeps_its_step_and_the_resume_continues_it() {
    let dir = tempfile::tempdir().unwrap();
    let toml = LOOP_TOML
        .replace("max_steps = 2", "max_steps = 400\nepochs = 400\nlr = 1e-3")
        .replace("save_every = 1", "save_every = 100");
    let (model, cfg) = setup(dir.path(), &toml);
    let whole = dir.path().join("whole");
    let (ok, _, err) = run(&loop_args(&model, &cfg, &whole, 1));
    assert!(ok, "{err}");

    let out = dir.path().join("out");
    let child = Command::new(ARBOR)
        .args(loop_args(&model, &cfg, &out, 1))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let state = out.join("iter-1/model/checkpoint/state.json");
    let t0 = Instant::now();
    while !state.is_file() {
        assert!(t0.elapsed().as_secs() < 300, "no training checkpoint after 300 s");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    common::terminate(child.id());
    let done = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&done.stderr);
    assert_eq!(done.status.code(), Some(130), "{err}");
    assert!(err.contains("iteration 1, train") && err.contains("--resume"), "{err}");
    assert!(!out.join("iter-1/train.json").exists(), "an interrupted stage is not finished");
    let state: Value = common::read_json(&state);
    let step = state["step"].as_u64().unwrap();
    assert!(step > 100 && step < 400 && step % 100 != 0, "checkpoint of the stopped step: {step}");

    let mut resumed = loop_args(&model, &cfg, &out, 1);
    resumed.push("--resume".into());
    let (ok, _, err) = run(&resumed);
    assert!(ok, "{err}");
    assert_eq!(
        std::fs::read(whole.join("iter-1/model/model.safetensors")).unwrap(),
        std::fs::read(out.join("iter-1/model/model.safetensors")).unwrap(),
        "the resumed training differs from the uninterrupted one"
    );
}

/// The training device is a flag and a loop.toml key; one this build cannot open is refused
/// before any stage runs, naming what is missing, and nothing is written.
#[test]
fn a_training_device_this_build_lacks_is_refused_up_front() {
    let dir = tempfile::tempdir().unwrap();
    let (model, cfg) = setup(dir.path(), LOOP_TOML);
    let out = dir.path().join("out");
    let mut a = loop_args(&model, &cfg, &out, 1);
    a.extend(["--device".into(), "tpu".into()]);
    let (ok, _, err) = run(&a);
    assert!(!ok && err.contains("unknown device `tpu`"), "{err}");
    #[cfg(not(feature = "libtorch"))]
    {
        let keyed = dir.path().join("keyed.toml");
        std::fs::write(&keyed, format!("device = \"libtorch\"\n{LOOP_TOML}")).unwrap();
        let (ok, _, err) = run(&loop_args(&model, &keyed, &out, 1));
        assert!(!ok && err.contains("--features libtorch") && err.contains("device"), "{err}");
    }
    assert!(!out.exists(), "a refused loop wrote {}", out.display());
    // The default device spelled out runs.
    let mut a = loop_args(&model, &cfg, &out, 1);
    a.extend(["--device".into(), "cpu".into()]);
    let (ok, _, err) = run(&a);
    assert!(ok, "{err}");
    assert_eq!(common::read_json(&out.join("loop.json"))["config"]["device"], "cpu");
}

/// π_1 of an OREO loop is also scored with its critic, in a stage of its own on the first
/// `critic_tasks` held-out tasks. Its measurements are kept one by one: a rerun of the stage
/// (its marker gone, as after a kill) reuses the finished ones; caught if the resume redoes
/// them (the planted result would be overwritten) or the subset is ignored (n would be 6).
#[test]
fn an_oreo_loop_evaluates_with_its_critic_too() {
    let dir = tempfile::tempdir().unwrap();
    let toml = LOOP_TOML.replace("algo = \"sft\"", "algo = \"oreo\"").replace("eval_tasks = 6", "eval_tasks = 6\ncritic_tasks = 4");
    let (model, cfg) = setup(dir.path(), &toml);
    let out = dir.path().join("out");
    let (ok, _, err) = run(&loop_args(&model, &cfg, &out, 1));
    assert!(ok, "{err}");
    let r = report(&out);
    assert_eq!(r["algo"], "oreo");
    let it = &r["iterations"][1];
    assert_eq!(it["train_steps"], 2, "{it}");
    assert!(out.join("iter-1/model/value/config.json").is_file());
    // π_0 has no critic; π_1 is also scored by value-guided beam search, best-of-K by value and
    // one sample (K = eval_beam), and its critic's AUC is reported when the greedy paths hold
    // both right and wrong answers.
    assert!(r["iterations"][0]["value_beam_accuracy"].is_null(), "{r}");
    assert!(!out.join("iter-0/critic.json").exists());
    for k in ["value_beam_accuracy", "best_of_k_accuracy", "majority_of_k_accuracy", "sample_accuracy"] {
        assert!(it[k].is_f64(), "{k}: {it}");
    }
    assert_eq!(it["critic_n"], 4, "{it}");
    assert!(it["vs_previous"]["n"] == 6, "the gain over π_0 is paired on the 6 tasks: {it}");
    let critic = common::read_json(&out.join("iter-1/critic.json"));
    assert_eq!((critic["width"].as_u64(), critic["n"].as_u64()), (Some(4), Some(4)), "{critic}");
    assert!(critic.get("critic_auc").is_some(), "{critic}");
    assert_eq!(critic["value_beam"]["vs_greedy"]["n"], 4, "{critic}");
    assert_eq!(critic["value_beam"]["vs_majority"]["n"], 4, "{critic}");

    // Plant a value-beam result no run gives (all 4 solved), drop the marker, resume.
    let results = out.join("iter-1/critic-results.json");
    let mut kept = common::read_json(&results);
    for r in kept["reports"]["value_beam"]["results"].as_array_mut().unwrap() {
        r["correct"] = true.into();
    }
    kept["reports"]["value_beam"]["correct"] = 4.into();
    kept["reports"]["value_beam"]["accuracy"] = 1.0.into();
    std::fs::write(&results, kept.to_string()).unwrap();
    std::fs::remove_file(out.join("iter-1/critic.json")).unwrap();
    let mut a = loop_args(&model, &cfg, &out, 1);
    a.push("--resume".into());
    let (ok, _, err) = run(&a);
    assert!(ok, "{err}");
    let critic = common::read_json(&out.join("iter-1/critic.json"));
    assert_eq!(critic["value_beam"]["accuracy"], 1.0, "the finished measurement was redone: {critic}");
    assert_eq!(report(&out)["iterations"][1]["value_beam_accuracy"], 1.0);
}

/// `[evaluator] kind = "learned"` in an OREO loop: π_0 has no critic, so iteration 1 searches
/// with terminal verdicts; iteration 2's beam search ranks its states by π_1's critic. Caught if
/// the critic is never loaded (no intermediate state valued) or the loop refuses the evaluator.
#[test]
fn an_oreo_loop_searches_with_the_critic_of_its_last_policy() {
    let dir = tempfile::tempdir().unwrap();
    let toml = LOOP_TOML
        .replace("algo = \"sft\"", "algo = \"oreo\"")
        .replace("kind = \"terminal\"", "kind = \"learned\"");
    let (model, cfg) = setup(dir.path(), &toml);
    let out = dir.path().join("out");
    let (ok, _, err) = run(&loop_args(&model, &cfg, &out, 2));
    assert!(ok, "{err}");
    let marker = |t: usize| -> Value {
        common::read_json(&out.join(format!("iter-{t}/search.json")))
    };
    assert!(marker(1)["evaluator"].as_str().unwrap().starts_with("terminal"), "{}", marker(1));
    let critic = out.join("iter-1/model/value");
    assert_eq!(marker(2)["evaluator"], format!("learned ({})", critic.display()));
    // Values of the states that are not the end of a path: all 0 under terminal verdicts, the
    // critic's V(s) under the learned evaluator.
    let inner_values = |t: usize| -> Vec<f64> {
        std::fs::read_to_string(out.join(format!("iter-{t}/trees/trees.jsonl")))
            .unwrap()
            .lines()
            .flat_map(|l| {
                let tree: Value = serde_json::from_str(l).unwrap();
                tree["nodes"].as_array().unwrap().clone()
            })
            .filter(|n| n["terminal"] == false && n["depth"].as_u64() > Some(0))
            .filter_map(|n| n["eval"]["value_estimate"].as_f64())
            .collect()
    };
    assert!(inner_values(1).iter().all(|v| *v == 0.0));
    let learned = inner_values(2);
    assert!(!learned.is_empty() && learned.iter().any(|v| *v != 0.0), "{learned:?}");
}

/// [`setup`] for a loop on the `llamacpp` backend (an LLM policy served by xllamacpp, 2 slots).
fn setup_llamacpp(dir: &Path) -> (PathBuf, PathBuf) {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/tools/serve_xllamacpp.py");
    let toml = LOOP_TOML
        .replace("kind = \"synthetic\"", "kind = \"llm\"\nmax_step_tokens = 16")
        .replace("env = \"math\"", "env = \"math\"\nbackend = \"llamacpp\"")
        .replace("[search]", &format!("[llamacpp]\nparallel = 2\nscript = {:?}\n[search]", script.to_str().unwrap()));
    setup(dir, &toml)
}

/// `backend = "llamacpp"`: π_t is exported as GGUF and served by llama.cpp (xllamacpp) for the
/// search and the evaluation; the trees name the server's model.
#[test]
fn the_llama_cpp_backend_searches_and_evaluates_on_a_server_of_the_policy() {
    let dir = tempfile::tempdir().unwrap();
    let (model, cfg) = setup_llamacpp(dir.path());
    let out = dir.path().join("out");
    let (ok, _, err) = run(&loop_args(&model, &cfg, &out, 1));
    assert!(ok, "{err}");
    let it = &report(&out)["iterations"][1];
    assert_eq!(it["trees"], 4, "{it}");
    assert_eq!(it["eval_n"], 6, "{it}");
    for f in ["iter-0/policy.gguf", "iter-1/policy.gguf"] {
        assert!(out.join(f).is_file(), "{f}");
    }
    // π_0 is exported and served once, for its evaluation and iteration 1's search; π_1 anew.
    let reused = |m: &str| {
        let v: Value = common::read_json(&out.join(m));
        v["policy_reused"].clone()
    };
    assert_eq!(reused("iter-0/eval.json"), false);
    assert_eq!(reused("iter-1/search.json"), true);
    assert_eq!(reused("iter-1/eval.json"), false);
    let trees = std::fs::read_to_string(out.join("iter-1/trees/trees.jsonl")).unwrap();
    assert!(trees.contains("\"policy\""), "the trees were searched on the server's model");
}

/// Processes whose command line names `needle` (the loop's servers name its directory).
fn processes_naming(needle: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmd).contains(needle) {
            out.push(pid);
        }
    }
    out
}

/// kill -9 of a loop takes its llama.cpp server with it (no Drop runs, so the kernel must end
/// it). Caught if the server outlives arbor, as it did before servers asked for a parent-death
/// signal.
#[test]
fn a_killed_loop_leaves_no_llama_cpp_server_behind() {
    let dir = tempfile::tempdir().unwrap();
    let (model, cfg) = setup_llamacpp(dir.path());
    let out = dir.path().join("out");
    let needle = out.join("iter-0/policy.gguf").display().to_string();
    let mut child = Command::new(ARBOR).args(loop_args(&model, &cfg, &out, 1)).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let t0 = Instant::now();
    while processes_naming(&needle).is_empty() {
        assert!(t0.elapsed() < Duration::from_secs(300), "no server after 300 s");
        assert!(child.try_wait().unwrap().is_none(), "the loop ended before its server started");
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let t1 = Instant::now();
    while let Some(&pid) = processes_naming(&needle).first() {
        if t1.elapsed() > Duration::from_secs(10) {
            let _ = Command::new("kill").arg(pid.to_string()).status();
            panic!("the server outlived the killed loop");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn dpo_trains_against_the_previous_policy_or_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let (model, _) = setup(dir.path(), LOOP_TOML);
    // The first step's DPO reward of iteration 2: β·log π/π_ref of the chosen answers at
    // π = π_1, so 0 against π_1 (up to float rounding between the two forward paths) and not
    // against π_0, which π_1 moved away from.
    let first_reward = |reference: &str| -> f64 {
        let cfg = dir.path().join(format!("{reference}.toml"));
        let toml = LOOP_TOML
            .replace("algo = \"sft\"", "algo = \"dpo\"\nlr = 0.001")
            .replace("env = \"math\"", &format!("env = \"math\"\nreference = \"{reference}\""));
        std::fs::write(&cfg, toml).unwrap();
        let out = dir.path().join(reference);
        let (ok, _, err) = run(&loop_args(&model, &cfg, &out, 2));
        assert!(ok, "{err}");
        let it1 = &report(&out)["iterations"][1];
        assert_eq!(it1["train_steps"], 2, "π_1 must differ from π_0: {it1}");
        let csv = std::fs::read_to_string(out.join("iter-2/model/curves.csv")).unwrap();
        let mut lines = csv.lines();
        let head: Vec<&str> = lines.next().unwrap().split(',').collect();
        let col = head.iter().position(|c| *c == "reward_chosen").unwrap();
        lines.next().unwrap().split(',').nth(col).unwrap().parse().unwrap()
    };
    let (previous, start) = (first_reward("previous"), first_reward("start"));
    assert!(previous.abs() < 1e-5, "against π_1: {previous}");
    assert!(
        start.abs() > 100.0 * previous.abs().max(1e-6),
        "against π_0: {start} (against π_1: {previous})"
    );
    compare_pairs_the_two_loops(&dir.path().join("previous"), &dir.path().join("start"));
}

/// `arbor compare` on two finished loops: each cell is that loop's report, every pair is on all
/// 6 shared held-out tasks, and π_0 (the same model in both) differs from itself on none.
/// Caught by a reader that misses the eval stage's files (3 rows, each cell as in report.json),
/// by pairing on no tasks (n), and by a CLI that takes a non-loop directory. The tiny model's
/// accuracies may tie across loops and iterations, so pairing by id and the sign of the
/// difference are left to compare.rs's unit tests.
fn compare_pairs_the_two_loops(a: &Path, b: &Path) {
    let (ok, out, err) = run(&["compare".into(), a.display().to_string(), b.display().to_string(), "--json".into()]);
    assert!(ok, "{err}");
    let c: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(c["names"], serde_json::json!(["previous", "start"]));
    let rows = c["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 3, "{c}");
    for (t, row) in rows.iter().enumerate() {
        for (i, dir) in [a, b].iter().enumerate() {
            assert_eq!(row["loops"][i]["accuracy"], report(dir)["iterations"][t]["accuracy"], "{row}");
        }
        assert_eq!(row["pairs"][0]["paired"]["n"], 6, "{row}");
    }
    assert_eq!(rows[0]["pairs"][0]["paired"]["wins"], 0);
    assert_eq!(rows[0]["pairs"][0]["paired"]["losses"], 0);
    let (ok, table, _) = run(&["compare".into(), a.display().to_string(), b.display().to_string()]);
    assert!(ok && table.contains("start − previous"), "{table}");
    let (ok, _, err) = run(&["compare".into(), a.display().to_string(), a.parent().unwrap().display().to_string()]);
    assert!(!ok && err.contains("not a loop directory"), "{err}");
}
