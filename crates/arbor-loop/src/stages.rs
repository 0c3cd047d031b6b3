//! The loop's stages. Each stage of iteration t works in `DIR/iter-<t>/` and ends by writing its
//! marker, `<stage>.json` (its summary and wall time), through a temporary file and a rename:
//! a stage with a marker is finished and is never run again; one without is run again from the
//! start (training from its own last checkpoint). The report is rebuilt from the markers, so a
//! resumed loop reports what an uninterrupted one would.
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use arbor_core::Progress;
use arbor_envs::{Environment, Task};
use arbor_train::{Algo, LearnedValue, RunOptions, StartModel, TrainError};
use arbor_tree::eval::{paired, Report};
use arbor_tree::export::{export, ExportOptions, Format};
use arbor_tree::evaluate::ValueFunction;
use arbor_tree::job::{run_to_dir, EvaluatorKind, PolicyKind};
use arbor_tree::policy::LlmStepPolicy;
use arbor_tree::search::decode::{DecodeParams, Strategy};
use arbor_tree::Searcher;
use serde_json::{json, Value};

use crate::backend;
use crate::config::{LoopConfig, Reference};
use crate::report::{IterationReport, LoopReport};

#[derive(Debug, thiserror::Error)]
pub enum LoopError {
    #[error("{0}")]
    Config(String),
    #[error("iteration {iteration}, {stage}: {msg}")]
    Stage {
        iteration: usize,
        stage: &'static str,
        msg: String,
    },
    #[error("stopped at iteration {iteration}, {stage} (what finished is kept)")]
    Interrupted { iteration: usize, stage: &'static str },
}

/// Told when a stage starts and when it is reused from an earlier run.
pub trait Observer: Send + Sync {
    fn stage(&self, iteration: usize, stage: &str, reused: bool);
    /// Given once, before the first stage: the running stage's units done of its total (trees
    /// searched, tasks evaluated, training steps), for a live display.
    fn watch(&self, _progress: Arc<Progress>) {}
}

struct Ctx<'a> {
    cfg: &'a LoopConfig,
    out: &'a Path,
    env: Arc<dyn Environment>,
    eval_tasks: Vec<Task>,
    stop: &'a Arc<AtomicBool>,
    obs: &'a dyn Observer,
    progress: Arc<Progress>,
    /// The policy last opened, kept from the evaluation of π_t for the search of iteration
    /// t+1 (the same model): one GGUF export and one server per policy, not one per stage.
    open: tokio::sync::Mutex<Option<(PathBuf, Arc<backend::Policy>)>>,
}

fn iter_dir(out: &Path, t: usize) -> PathBuf {
    out.join(format!("iter-{t}"))
}

fn read_json(path: &Path) -> Option<Value> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

fn write_json(path: &Path, v: &Value) -> std::io::Result<()> {
    arbor_core::write_atomic(path, serde_json::to_string_pretty(v).expect("JSON values serialize"))
}

/// The greedy evaluation that an iteration's `eval` stage wrote in `dir`.
pub(crate) fn greedy_results(dir: &Path) -> Result<Report, String> {
    let path = dir.join("eval-results.json");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// The critic of the `learned` evaluator for a search with `model`: `[evaluator] value` when
/// set, else the policy's own (`MODEL/value`, which OREO writes), if it has one.
fn learned_critic(
    cfg: &LoopConfig,
    model: &Path,
) -> Result<Option<(PathBuf, Arc<dyn ValueFunction>)>, String> {
    if cfg.evaluator.kind != EvaluatorKind::Learned {
        return Ok(None);
    }
    let dir = cfg.evaluator.value.clone().unwrap_or_else(|| model.join("value"));
    if !dir.join("config.json").is_file() {
        if cfg.evaluator.value.is_some() {
            return Err(format!("[evaluator] value: no critic in {}", dir.display()));
        }
        return Ok(None);
    }
    let v = LearnedValue::load(&dir, cfg.device)?;
    Ok(Some((dir, Arc::new(v) as Arc<dyn ValueFunction>)))
}

/// The export format that trains `algo` (SFT is rejection sampling: the correct trajectories).
fn format_for(algo: Algo) -> Format {
    match algo {
        Algo::Sft | Algo::Oreo => Format::Oreo,
        Algo::Dpo => Format::Dpo,
        Algo::Tpo => Format::Tpo,
    }
}

impl Ctx<'_> {
    /// `model` opened on the configured backend in `dir`, or the one already open; the flag
    /// says which.
    async fn policy(&self, model: &Path, dir: &Path) -> Result<(Arc<backend::Policy>, bool), String> {
        let mut open = self.open.lock().await;
        if let Some((path, pi)) = open.as_ref() {
            if path == model {
                return Ok((pi.clone(), true));
            }
        }
        // Stop the old server before starting the next.
        *open = None;
        let pi = Arc::new(backend::open(self.cfg.backend, &self.cfg.llamacpp, model, dir).await?);
        *open = Some((model.to_path_buf(), pi.clone()));
        Ok((pi, false))
    }

    /// Runs `stage` of iteration `t` unless its marker exists; returns the marker.
    async fn stage<F, Fut>(&self, t: usize, stage: &'static str, run: F) -> Result<Value, LoopError>
    where
        F: FnOnce(PathBuf) -> Fut,
        Fut: std::future::Future<Output = Result<Value, String>>,
    {
        let dir = iter_dir(self.out, t);
        let marker = dir.join(format!("{stage}.json"));
        if let Some(v) = read_json(&marker) {
            self.obs.stage(t, stage, true);
            return Ok(v);
        }
        if self.stop.load(Ordering::Relaxed) {
            return Err(LoopError::Interrupted {
                iteration: t,
                stage,
            });
        }
        self.progress.start(0, 0, "");
        self.obs.stage(t, stage, false);
        let err = |msg: String| LoopError::Stage {
            iteration: t,
            stage,
            msg,
        };
        std::fs::create_dir_all(&dir).map_err(|e| err(format!("{}: {e}", dir.display())))?;
        let started = Instant::now();
        // A stage that gave up because of a stop request (training checkpoints its step) is
        // an interruption, not a failure.
        let mut v = run(dir).await.map_err(|msg| {
            if self.stop.load(Ordering::Relaxed) {
                LoopError::Interrupted {
                    iteration: t,
                    stage,
                }
            } else {
                err(msg)
            }
        })?;
        v["seconds"] = json!(started.elapsed().as_secs_f64());
        write_json(&marker, &v).map_err(|e| err(format!("{}: {e}", marker.display())))?;
        Ok(v)
    }

    /// Greedy accuracy of `model` on the held-out tasks.
    async fn eval(&self, t: usize, model: &Path) -> Result<Value, LoopError> {
        let (cfg, env, tasks, out) = (self.cfg, self.env.clone(), &self.eval_tasks, self.out);
        self.stage(t, "eval", |dir| async move {
            let (pi, reused) = self.policy(model, &dir).await?;
            let mut policy = LlmStepPolicy::new(pi.model.clone(), &pi.name);
            policy.temperature = 0.0;
            policy.seed = Some(cfg.eval_seed);
            let params = DecodeParams {
                strategy: Strategy::Greedy,
                width: 1,
                max_depth: cfg.eval_max_depth,
            };
            let r = arbor_tree::eval::evaluate(env.clone(), tasks, Arc::new(policy), None, &params, cfg.concurrency, &self.progress)
                .await;
            let results = dir.join("eval-results.json");
            std::fs::write(&results, serde_json::to_string_pretty(&r).map_err(|e| e.to_string())?)
                .map_err(|e| format!("{}: {e}", results.display()))?;
            let mut v = json!({"model": model, "policy_reused": reused, "n": r.n, "correct": r.correct, "accuracy": r.accuracy, "ci95": [r.ci95.0, r.ci95.1]});
            // The gain over π_{t−1}, paired on the same tasks.
            if t > 0 {
                let prev = greedy_results(&iter_dir(out, t - 1))?;
                v["vs_previous"] = json!(paired(&prev, &r));
            }
            Ok(v)
        })
        .await
    }

    /// With a critic (OREO writes `MODEL/value`): its AUC, and value-guided search against
    /// sampling (OREO §4.4) on the first `critic_tasks` held-out tasks, sampling at
    /// `eval_temperature` (default: the search's); `None` for a policy without a critic.
    async fn critic(&self, t: usize, model: &Path) -> Result<Option<Value>, LoopError> {
        let critic = model.join("value");
        if !critic.join("config.json").is_file() {
            return Ok(None);
        }
        let (cfg, env) = (self.cfg, self.env.clone());
        let n = cfg.critic_tasks.unwrap_or(usize::MAX).min(self.eval_tasks.len());
        let tasks = &self.eval_tasks[..n];
        let v = self.stage(t, "critic", |dir| async move {
            let greedy = Report::of(greedy_results(&dir)?.results.into_iter().take(n).collect());
            let (pi, reused) = self.policy(model, &dir).await?;
            let value = LearnedValue::load(&critic, cfg.device)?;
            let mut sampler = LlmStepPolicy::new(pi.model.clone(), &pi.name);
            sampler.temperature = cfg.eval_temperature.unwrap_or(cfg.policy.temperature);
            sampler.seed = Some(cfg.eval_seed);
            let mut v = crate::critic::measure(env, tasks, &greedy, Arc::new(sampler), Arc::new(value), cfg.eval_beam, cfg.eval_max_depth, cfg.concurrency, &self.progress, &dir.join("critic-results.json"))
                .await?;
            v["policy_reused"] = json!(reused);
            Ok(v)
        })
        .await?;
        Ok(Some(v))
    }

    /// Trees over a fresh slice of training tasks, searched with `model`.
    async fn search(&self, t: usize, model: &Path) -> Result<Value, LoopError> {
        let cfg = self.cfg;
        let env = self.env.clone();
        self.stage(t, "search", |dir| async move {
            let tasks = env
                .sample(cfg.tasks_per_iteration, cfg.seed.wrapping_add(t as u64))
                .map_err(|e| e.to_string())?;
            let mut file = cfg.search_file();
            let (pi, reused) = match file.policy.kind {
                PolicyKind::Synthetic => (None, false),
                PolicyKind::Llm => {
                    let (pi, reused) = self.policy(model, &dir).await?;
                    (Some(pi), reused)
                }
            };
            let opened = pi.as_ref().map(|p| (p.model.clone(), p.name.clone()));
            let seed = cfg.seed.wrapping_add(t as u64);
            let critic = learned_critic(cfg, model)?;
            let evaluator_used = match (&critic, file.evaluator.kind) {
                (Some((dir, _)), _) => {
                    file.evaluator.value = Some(dir.clone());
                    format!("learned ({})", dir.display())
                }
                (None, EvaluatorKind::Learned) => {
                    // π_0 of an OREO loop has no critic yet: its trees are searched with the
                    // terminal verdicts alone, and the next policy's critic takes over.
                    file.evaluator.kind = EvaluatorKind::Terminal;
                    "terminal (the policy has no critic yet)".to_string()
                }
                (None, kind) => json!(kind).as_str().unwrap_or_default().to_string(),
            };
            let (policy, evaluator) = file
                .build(&tasks, opened, critic.map(|(_, v)| v), seed)
                .map_err(|e| e.to_string())?;
            let searcher =
                Searcher::new(env, policy, evaluator, file.search.clone()).with_stop(self.stop.clone());
            // A rerun after a kill keeps the trees already written.
            let s = run_to_dir(&searcher, &tasks, cfg.concurrency, &dir.join("trees"), true, &self.progress)
                .await
                .map_err(|e| e.to_string())?;
            if s.not_started > 0 {
                return Err(format!("stopped with {} tasks not searched", s.not_started));
            }
            let trees = arbor_tree::load_path(&s.trees_path).map_err(|e| e.to_string())?.trees;
            let correct_leaves: usize = trees
                .iter()
                .map(|tr| {
                    tr.graph
                        .node_weights()
                        .filter(|n| n.terminal && n.eval.verified == Some(true))
                        .count()
                })
                .sum();
            Ok(json!({"model": model, "policy_reused": reused, "evaluator": evaluator_used, "trees": s.ok + s.kept, "failed": s.failed, "correct_leaves": correct_leaves,
                      "nodes": trees.iter().map(|tr| tr.graph.node_count()).sum::<usize>()}))
        })
        .await
    }

    /// The iteration's trees as training rows in the algorithm's format.
    async fn export(&self, t: usize) -> Result<Value, LoopError> {
        let format = format_for(self.cfg.train.algo);
        self.stage(t, "export", |dir| async move {
            let trees = arbor_tree::load_path(&dir.join("trees/trees.jsonl"))
                .map_err(|e| e.to_string())?
                .trees;
            let rows = export(&trees, format, &ExportOptions::default());
            arbor_core::table::write_rows(&dir.join("data.jsonl"), &rows)
                .map_err(|e| e.to_string())?;
            Ok(json!({"format": format.name(), "rows": rows.len()}))
        })
        .await
    }

    /// π_t trained from π_{t−1} (`prev`) on the iteration's rows, against the configured
    /// reference (`start` is π_0); without usable rows π_{t−1} is carried over and the reason
    /// recorded.
    async fn train(&self, t: usize, prev: &Path, start: &Path) -> Result<Value, LoopError> {
        let cfg = self.cfg.train.clone();
        let device = self.cfg.device;
        let reference = (self.cfg.reference == Reference::Start && prev != start)
            .then(|| start.display().to_string());
        self.stage(t, "train", |dir| async move {
            // π_{t−1}'s server is done with; its memory goes to training.
            *self.open.lock().await = None;
            let prev_s = prev.display().to_string();
            let (data, out) = (dir.join("data.jsonl"), dir.join("model"));
            let (counter, stop) = (self.progress.clone(), self.stop.clone());
            let result = tokio::task::spawn_blocking(move || {
                let mut start = StartModel::load(&prev_s, device)?;
                if let Some(r) = reference {
                    start = start.with_reference(StartModel::load(&r, device)?)?;
                }
                let opts = RunOptions {
                    resume: true,
                    progress: false,
                    counter: Some(counter),
                    stop: Some(stop),
                };
                arbor_train::train(&cfg, &data, start, &out, opts)
            })
            .await
            .map_err(|e| e.to_string())?;
            match result {
                Ok(s) if s.stopped => Err(format!("stopped at step {} of {}", s.steps, s.total_steps)),
                Ok(s) => Ok(json!({"model": dir.join("model"), "steps": s.steps, "examples": s.examples,
                                   "last": s.last.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>()})),
                Err(TrainError::Data(msg)) => {
                    Ok(json!({"model": prev, "skipped": format!("trained nothing: {msg}")}))
                }
                Err(e) => Err(e.to_string()),
            }
        })
        .await
    }
}

/// Whether the pinned job `old` (loop.json) and `new` are the same loop. More iterations, or
/// another device, or another number of tasks for the critic's comparison (each finished
/// comparison records its own), may be asked of a resumed loop; nothing else may change. The pin is read
/// back through `LoopConfig`, so a key added since it was written takes its default rather
/// than refusing the resume.
fn same_job(old: &Value, new: &Value) -> bool {
    let (mut a, mut b) = (old.clone(), new.clone());
    if let Some(c) = serde_json::from_value::<LoopConfig>(old["config"].clone())
        .ok()
        .and_then(|c| serde_json::to_value(c).ok())
    {
        a["config"] = c;
    }
    for key in ["iterations", "device", "critic_tasks"] {
        a["config"][key] = json!(0);
        b["config"][key] = json!(0);
    }
    a == b
}

/// Runs (or resumes) the loop from the model at `start` into `out`. `stop` ends it between
/// stages with [`LoopError::Interrupted`]; what finished stays finished.
pub async fn run(
    cfg: &LoopConfig,
    start: &Path,
    out: &Path,
    resume: bool,
    stop: &Arc<AtomicBool>,
    obs: &dyn Observer,
) -> Result<LoopReport, LoopError> {
    cfg.validate().map_err(LoopError::Config)?;
    let io = |e: std::io::Error| LoopError::Config(format!("{}: {e}", out.display()));
    let pin = out.join("loop.json");
    let job = json!({"format": "arbor.loop/1", "start": start, "config": serde_json::to_value(cfg).map_err(|e| LoopError::Config(e.to_string()))?});
    match read_json(&pin) {
        Some(old) if resume => {
            if !same_job(&old, &job) {
                return Err(LoopError::Config(format!(
                    "{}: the loop there was started with another model or config; resume with the same settings, or choose a new --out",
                    pin.display()
                )));
            }
        }
        Some(_) => {
            return Err(LoopError::Config(format!(
                "{} holds a loop; run the same command with --resume to continue it, or choose a new --out",
                out.display()
            )))
        }
        None => {
            std::fs::create_dir_all(out).map_err(io)?;
            write_json(&pin, &job).map_err(io)?;
        }
    }
    // One loop per directory: a second process (say, one still finishing its stage after a
    // Ctrl-C) would write its markers into this loop's stages.
    let lock = std::fs::File::create(out.join(".lock")).map_err(io)?;
    if lock.try_lock().is_err() {
        return Err(LoopError::Config(format!(
            "another arbor loop is running in {}; wait for it to stop",
            out.display()
        )));
    }
    let env: Arc<dyn Environment> = Arc::from(
        arbor_envs::with_table(&cfg.env, cfg.environment.clone(), "loop config [environment]")
            .map_err(|e| LoopError::Config(e.to_string()))?,
    );
    let eval_tasks = env
        .sample(cfg.eval_tasks, cfg.eval_seed)
        .map_err(|e| LoopError::Config(e.to_string()))?;
    let cx = Ctx {
        cfg,
        out,
        env,
        eval_tasks,
        stop,
        obs,
        open: tokio::sync::Mutex::new(None),
        progress: Arc::new(Progress::default()),
    };
    obs.watch(cx.progress.clone());
    let mut report = LoopReport {
        format: "arbor.loop-report/1".into(),
        algo: cfg.train.algo.name().into(),
        env: cfg.env.clone(),
        iterations: Vec::new(),
    };
    let config = toml_of(cfg);
    let write = |report: &LoopReport| -> Result<(), LoopError> {
        let json = serde_json::to_string_pretty(report).expect("reports serialize");
        arbor_core::write_atomic(&out.join("report.json"), json).map_err(io)?;
        arbor_core::write_atomic(&out.join("report.html"), report.html(out, &config)).map_err(io)
    };
    let e0 = cx.eval(0, start).await?;
    report.iterations.push(iteration(0, &[("eval", &e0)]));
    write(&report)?;
    let mut model = start.to_path_buf();
    for t in 1..=cfg.iterations {
        let s = cx.search(t, &model).await?;
        let x = cx.export(t).await?;
        let tr = cx.train(t, &model, start).await?;
        model = tr["model"]
            .as_str()
            .map(PathBuf::from)
            .unwrap_or_else(|| model.clone());
        let e = cx.eval(t, &model).await?;
        let c = cx.critic(t, &model).await?;
        let mut stages = vec![("search", &s), ("export", &x), ("train", &tr), ("eval", &e)];
        stages.extend(c.as_ref().map(|c| ("critic", c)));
        report.iterations.push(iteration(t, &stages));
        write(&report)?;
    }
    Ok(report)
}

fn toml_of(cfg: &LoopConfig) -> String {
    toml::to_string(cfg).unwrap_or_else(|e| format!("(config not shown: {e})"))
}

/// An iteration's report row from its stage markers.
fn iteration(t: usize, stages: &[(&str, &Value)]) -> IterationReport {
    let get = |stage: &str| stages.iter().find(|s| s.0 == stage).map(|s| s.1);
    let n = |stage: &str, k: &str| get(stage).and_then(|v| v[k].as_u64()).map(|x| x as usize);
    let e = get("eval");
    // Loops from before the critic had its own stage kept its figures in the evaluation's.
    let c = get("critic").or_else(|| e.map(|v| &v["critic"]));
    IterationReport {
        iteration: t,
        model: e.and_then(|v| v["model"].as_str()).unwrap_or("").to_string(),
        trees: n("search", "trees"),
        nodes: n("search", "nodes"),
        failed_searches: n("search", "failed"),
        correct_leaves: n("search", "correct_leaves"),
        rows: n("export", "rows"),
        train_steps: n("train", "steps"),
        train_examples: n("train", "examples"),
        train_skipped: get("train").and_then(|v| v["skipped"].as_str()).map(str::to_string),
        eval_n: n("eval", "n").unwrap_or(0),
        eval_correct: n("eval", "correct").unwrap_or(0),
        accuracy: e.and_then(|v| v["accuracy"].as_f64()).unwrap_or(0.0),
        value_beam_accuracy: c.and_then(|v| v["value_beam"]["accuracy"].as_f64()),
        best_of_k_accuracy: c.and_then(|v| v["best_of_k"]["accuracy"].as_f64()),
        majority_of_k_accuracy: c.and_then(|v| v["majority_of_k"]["accuracy"].as_f64()),
        sample_accuracy: c.and_then(|v| v["sample"]["accuracy"].as_f64()),
        critic_auc: c.and_then(|v| v["critic_auc"].as_f64()),
        critic_n: c.and_then(|v| v["n"].as_u64()).map(|x| x as usize),
        vs_previous: e.and_then(|v| serde_json::from_value(v["vs_previous"].clone()).ok()),
        ci95: (
            e.and_then(|v| v["ci95"][0].as_f64()).unwrap_or(0.0),
            e.and_then(|v| v["ci95"][1].as_f64()).unwrap_or(1.0),
        ),
        seconds: stages
            .iter()
            .filter_map(|(k, v)| v["seconds"].as_f64().map(|s| (k.to_string(), s)))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::same_job;
    use crate::config::LoopConfig;
    use serde_json::json;

    fn pin(cfg: &LoopConfig) -> serde_json::Value {
        json!({"format": "arbor.loop/1", "start": "/m", "config": serde_json::to_value(cfg).unwrap()})
    }

    /// A pin from before a key existed resumes; a changed key, or another start, does not;
    /// more iterations may be asked. Caught by a comparison of the raw pins (the first
    /// case refuses) and by one that ignores the config (the second passes).
    #[test]
    fn a_resume_matches_the_pin_up_to_new_keys_iterations_and_device() {
        let cfg = LoopConfig::default();
        let mut old = pin(&cfg);
        old["config"].as_object_mut().unwrap().remove("eval_temperature");
        assert!(same_job(&old, &pin(&cfg)));
        let mut lr = LoopConfig::default();
        lr.train.lr *= 2.0;
        assert!(!same_job(&old, &pin(&lr)));
        let more = LoopConfig { iterations: 3, ..LoopConfig::default() };
        assert!(same_job(&old, &pin(&more)));
        let mut elsewhere = pin(&cfg);
        elsewhere["start"] = json!("/other");
        assert!(!same_job(&old, &elsewhere));
    }
}
