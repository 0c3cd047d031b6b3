//! `arbor search`, `arbor export`, `arbor view`: build trees, turn them into training data, look
//! at them.
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use arbor_tree::evaluate::{Evaluator, Rollout, SelfEval, TerminalOnly};
use arbor_tree::export::{ExportOptions, Format};
use arbor_tree::policy::{LlmStepPolicy, StepPolicy, SyntheticPolicy};
use arbor_tree::{Algo, SearchConfig, Searcher};
use serde::Deserialize;

use crate::models::Models;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum, Default)]
#[serde(rename_all = "kebab-case")]
pub enum EvaluatorKind {
    /// Only terminal states have value (the environment's verifier).
    Terminal,
    /// The model's probability of "Yes" to "is this correct so far?".
    #[default]
    SelfEval,
    /// Monte Carlo rollouts to the end, scored by the verifier.
    Rollout,
    /// A critic trained by `arbor train --algo oreo` (`[evaluator] value = "DIR"` or `--value`).
    Learned,
}

/// `--config` for `arbor search`: every flag is also a key here.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SearchFile {
    pub search: SearchConfig,
    pub policy: PolicyFile,
    pub evaluator: EvaluatorFile,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyFile {
    pub temperature: f32,
    pub max_step_tokens: u32,
    pub seed: Option<u64>,
}

impl Default for PolicyFile {
    fn default() -> Self {
        Self {
            temperature: 0.8,
            max_step_tokens: 96,
            seed: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvaluatorFile {
    pub kind: EvaluatorKind,
    pub rollouts: usize,
    /// The critic directory of the `learned` evaluator (`OUT/value` of an OREO run).
    pub value: Option<PathBuf>,
}

impl Default for EvaluatorFile {
    fn default() -> Self {
        Self {
            kind: EvaluatorKind::SelfEval,
            rollouts: 2,
            value: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PolicyKind {
    /// A language model (a server, or the embedded model).
    Llm,
    /// Instant scripted steps that answer at depth 3 (first option right, others wrong): for
    /// bookkeeping benchmarks and pipeline tests, no model involved.
    Synthetic,
}

#[derive(clap::Args)]
pub struct SearchArgs {
    #[arg(long, value_enum, default_value = "llm")]
    policy: PolicyKind,
    #[arg(long, default_value = "math")]
    env: String,
    /// The environment's config (TOML).
    #[arg(long)]
    env_config: Option<PathBuf>,
    /// Tasks as JSONL (from `arbor env sample`) instead of sampling `--trees` of them.
    #[arg(long)]
    tasks: Option<PathBuf>,
    #[arg(long, default_value_t = 8)]
    trees: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Search config (TOML: [search], [policy], [evaluator]); flags override its keys.
    #[arg(long)]
    config: Option<PathBuf>,
    #[arg(long, value_parser = parse_algo)]
    algo: Option<Algo>,
    /// The step policy's model.
    #[command(flatten)]
    target: crate::models::ModelArgs,
    #[arg(long, value_enum)]
    evaluator: Option<EvaluatorKind>,
    /// The critic of `--evaluator learned`.
    #[arg(long)]
    value: Option<PathBuf>,
    #[arg(long)]
    iterations: Option<usize>,
    #[arg(long)]
    width: Option<usize>,
    #[arg(long)]
    max_depth: Option<u32>,
    #[arg(long)]
    temperature: Option<f32>,
    /// Trees searched at once (their model calls go out together).
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    #[arg(long)]
    out: PathBuf,
}

fn parse_algo(s: &str) -> Result<Algo, String> {
    serde_json::from_value(serde_json::Value::String(s.into()))
        .map_err(|_| format!("unknown algorithm `{s}` (mcts, tot-bfs, tot-dfs, beam)"))
}

fn load_config(path: Option<&Path>) -> anyhow::Result<SearchFile> {
    match path {
        None => Ok(SearchFile::default()),
        Some(p) => {
            let text = std::fs::read_to_string(p).with_context(|| format!("{}", p.display()))?;
            toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))
        }
    }
}

pub async fn search(a: SearchArgs) -> anyhow::Result<()> {
    let mut file = load_config(a.config.as_deref())?;
    let cfg = &mut file.search;
    if let Some(x) = a.algo {
        cfg.algo = x;
    }
    if let Some(x) = a.iterations {
        cfg.iterations = x;
    }
    if let Some(x) = a.width {
        cfg.width = x;
    }
    if let Some(x) = a.max_depth {
        cfg.max_depth = x;
    }
    if a.value.is_some() {
        file.evaluator.value = a.value.clone();
    }
    if let Some(x) = a.evaluator {
        file.evaluator.kind = x;
    }
    if let Some(x) = a.temperature {
        file.policy.temperature = x;
    }
    cfg.validate().map_err(anyhow::Error::msg)?;

    let env: Arc<dyn arbor_envs::Environment> =
        Arc::from(arbor_envs::by_name(&a.env, a.env_config.as_deref())?);
    let tasks = match &a.tasks {
        Some(p) => read_tasks(p)?,
        None => env.sample(a.trees, a.seed)?,
    };
    let (policy, model): (Arc<dyn StepPolicy>, _) = match a.policy {
        PolicyKind::Synthetic => (Arc::new(SyntheticPolicy::for_tasks(&tasks, 3)), None),
        PolicyKind::Llm => {
            let models = Models::new(a.target.gguf.clone());
            let (model, name) = models
                .open(a.target.base_url.as_ref(), a.target.model.as_deref())
                .await?;
            let mut policy = LlmStepPolicy::new(model.clone(), name.clone());
            policy.temperature = file.policy.temperature;
            policy.max_step_tokens = file.policy.max_step_tokens;
            policy.seed = file.policy.seed.or(Some(a.seed));
            (Arc::new(policy), Some((model, name)))
        }
    };
    let evaluator: Arc<dyn Evaluator> = match (file.evaluator.kind, model) {
        (EvaluatorKind::Terminal, _) => Arc::new(TerminalOnly),
        (EvaluatorKind::SelfEval, Some((model, model_name))) => Arc::new(SelfEval { model, model_name }),
        (EvaluatorKind::SelfEval, None) => anyhow::bail!("self-evaluation needs a model; use --evaluator terminal or rollout with --policy synthetic"),
        (EvaluatorKind::Rollout, _) => Arc::new(Rollout { policy: policy.clone(), n: file.evaluator.rollouts.max(1), delimiter: "\n".into() }),
        (EvaluatorKind::Learned, _) => {
            let dir = file.evaluator.value.clone().ok_or_else(|| anyhow::anyhow!("--evaluator learned needs --value DIR (the `value/` of an OREO run)"))?;
            let v = arbor_train::search::LearnedValue::load(&dir, burn::tensor::Device::flex()).map_err(anyhow::Error::msg)?;
            Arc::new(arbor_tree::evaluate::Learned(Arc::new(v)))
        }
    };
    let searcher = Searcher::new(env, policy, evaluator, file.search);

    std::fs::create_dir_all(&a.out).with_context(|| format!("{}", a.out.display()))?;
    let trees_path = a.out.join("trees.jsonl");
    let errors_path = a.out.join("errors.jsonl");
    let mut trees_out = std::io::BufWriter::new(
        std::fs::File::create(&trees_path).with_context(|| format!("{}", trees_path.display()))?,
    );
    let mut errors_out = std::fs::File::create(&errors_path)
        .with_context(|| format!("{}", errors_path.display()))?;

    let bar = crate::progress::bar(tasks.len() as u64);
    let counters = searcher.counters.clone();
    let ticker = {
        let bar = bar.clone();
        tokio::spawn(async move {
            loop {
                let c = &counters;
                bar.set_message(format!(
                    "trees, {} nodes, {} model calls, best value {:.2}",
                    c.nodes.load(Ordering::Relaxed),
                    c.policy_calls.load(Ordering::Relaxed) + c.evaluations.load(Ordering::Relaxed),
                    c.best_value()
                ));
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    let started = std::time::Instant::now();
    let (mut ok, mut failed, mut io_error) = (0usize, 0usize, None);
    searcher
        .search_many(&tasks, a.concurrency, |task, result| {
            bar.inc(1);
            let written = match result {
                Ok(tree) => {
                    ok += 1;
                    writeln!(trees_out, "{}", tree.to_json_line()).and_then(|_| trees_out.flush())
                }
                Err(e) => {
                    failed += 1;
                    tracing::warn!(task = %task.id, "search failed: {e}");
                    writeln!(
                        errors_out,
                        "{}",
                        serde_json::json!({"task_id": task.id, "error": e.to_string()})
                    )
                }
            };
            if let Err(e) = written {
                io_error.get_or_insert(e);
            }
        })
        .await;
    ticker.abort();
    bar.finish_and_clear();
    if let Some(e) = io_error {
        return Err(e).context(format!("writing {}", a.out.display()));
    }
    let c = &searcher.counters;
    eprintln!(
        "{ok} trees ({failed} failed) in {:.1}s: {} nodes, {} policy calls, {} evaluations -> {}",
        started.elapsed().as_secs_f64(),
        c.nodes.load(Ordering::Relaxed),
        c.policy_calls.load(Ordering::Relaxed),
        c.evaluations.load(Ordering::Relaxed),
        trees_path.display()
    );
    if ok == 0 && failed > 0 {
        anyhow::bail!("every search failed; see {}", errors_path.display());
    }
    Ok(())
}

fn read_tasks(path: &Path) -> anyhow::Result<Vec<arbor_envs::Task>> {
    let mut tasks = Vec::new();
    for row in arbor_core::table::read_rows(path)? {
        let v = row
            .value
            .map_err(|e| anyhow::anyhow!("{}:{}: {e}", path.display(), row.line))?;
        tasks.push(
            serde_json::from_value(v)
                .map_err(|e| anyhow::anyhow!("{}:{}: {e}", path.display(), row.line))?,
        );
    }
    Ok(tasks)
}

fn load_trees(path: &Path) -> anyhow::Result<Vec<arbor_tree::Tree>> {
    let report = arbor_tree::load_path(path)?;
    for e in report.errors.iter().take(10) {
        eprintln!("warning: skipped {e}");
    }
    if report.errors.len() > 10 {
        eprintln!(
            "warning: {} more unreadable trees skipped",
            report.errors.len() - 10
        );
    }
    if report.trees.is_empty() {
        anyhow::bail!("no trees could be read from {}", path.display());
    }
    Ok(report.trees)
}

#[derive(clap::Args)]
pub struct ExportArgs {
    /// Trees: a JSONL file or a directory of them (`arbor search --out`).
    #[arg(long)]
    trees: PathBuf,
    /// dpo, step-dpo, tpo, oreo, prm, sft, kto or treelog.
    #[arg(long)]
    format: Format,
    /// FILE.jsonl or FILE.parquet.
    #[arg(long)]
    out: PathBuf,
    /// step-dpo: least Q margin between chosen and rejected.
    #[arg(long)]
    margin: Option<f64>,
    /// dpo: most pairs per tree.
    #[arg(long)]
    max_pairs_per_tree: Option<usize>,
    /// prm: a step is good when its Q exceeds this.
    #[arg(long)]
    prm_threshold: Option<f64>,
}

pub fn export(a: ExportArgs) -> anyhow::Result<()> {
    let trees = load_trees(&a.trees)?;
    let mut opts = ExportOptions::default();
    if let Some(m) = a.margin {
        opts.margin = m;
    }
    if let Some(m) = a.max_pairs_per_tree {
        opts.max_pairs_per_tree = m;
    }
    if let Some(t) = a.prm_threshold {
        opts.prm_threshold = t;
    }
    let rows = arbor_tree::export::export(&trees, a.format, &opts);
    arbor_core::table::write_rows(&a.out, &rows)?;
    eprintln!(
        "{} {} rows from {} trees -> {}",
        rows.len(),
        a.format.name(),
        trees.len(),
        a.out.display()
    );
    Ok(())
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ViewFormat {
    Html,
    Dot,
}

#[derive(clap::Args)]
pub struct ViewArgs {
    #[arg(long)]
    trees: PathBuf,
    #[arg(long)]
    out: PathBuf,
    #[arg(long, value_enum, default_value = "html")]
    format: ViewFormat,
}

pub fn view(a: ViewArgs) -> anyhow::Result<()> {
    let trees = load_trees(&a.trees)?;
    let text = match a.format {
        ViewFormat::Html => arbor_tree::view::html(&trees),
        ViewFormat::Dot => arbor_tree::view::dot(&trees),
    };
    std::fs::write(&a.out, text).with_context(|| format!("{}", a.out.display()))?;
    eprintln!("{} trees -> {}", trees.len(), a.out.display());
    Ok(())
}
