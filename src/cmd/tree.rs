//! `arbor search`, `arbor export`, `arbor view`: build trees, turn them into training data, look
//! at them.
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use anyhow::Context;
use arbor_core::config::{load_toml, Overrides};
use arbor_model::Models;
use arbor_tree::export::{ExportOptions, Format};
use arbor_tree::job::{run_to_dir, EvaluatorKind, PolicyKind, SearchFile};
use arbor_tree::{Algo, Searcher};

use crate::cmd::parse_enum;

#[derive(clap::Args)]
pub struct SearchArgs {
    /// llm (a language model) or synthetic (instant scripted steps, no model).
    #[arg(long, value_parser = parse_enum::<PolicyKind>)]
    policy: Option<PolicyKind>,
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
    target: crate::cmd::model::ModelArgs,
    /// terminal, self-eval, rollout or learned.
    #[arg(long, value_parser = parse_enum::<EvaluatorKind>)]
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
    /// Keep the trees an interrupted search wrote to --out and search only the other tasks.
    #[arg(long)]
    resume: bool,
    #[command(flatten)]
    queue: arbor_queue::cli::QueueFlags,
}

fn parse_algo(s: &str) -> Result<Algo, String> {
    parse_enum(s).map_err(|_| format!("unknown algorithm `{s}` (mcts, tot-bfs, tot-dfs, beam)"))
}

pub async fn search(a: SearchArgs) -> anyhow::Result<()> {
    let mut o = Overrides::default();
    o.set("search.algo", a.algo)
        .set("search.iterations", a.iterations)
        .set("search.width", a.width)
        .set("search.max_depth", a.max_depth)
        .set("policy.kind", a.policy)
        .set("policy.temperature", a.temperature)
        .set("evaluator.kind", a.evaluator)
        .set("evaluator.value", a.value.as_ref());
    let file: SearchFile = load_toml(a.config.as_deref(), &o).map_err(anyhow::Error::msg)?;
    file.search.validate().map_err(anyhow::Error::msg)?;

    let env: Arc<dyn arbor_envs::Environment> =
        Arc::from(arbor_envs::by_name(&a.env, a.env_config.as_deref())?);
    let tasks = match &a.tasks {
        Some(p) => arbor_envs::read_tasks(p)?,
        None => env.sample(a.trees, a.seed)?,
    };
    if let Some(url) = a.queue.queue.clone() {
        let env_config = a.env_config.as_ref().map(std::fs::read_to_string).transpose()?;
        let (model_url, model) = (a.target.base_url.as_ref().map(|u| u.to_string()), a.target.model.clone());
        let spec = arbor_queue::search::SearchJob { file, env: a.env.clone(), env_config, model_url, model, seed: a.seed };
        let input = a.tasks.as_ref().map_or(format!("{} --trees {} --seed {}", a.env, a.trees, a.seed), |p| p.display().to_string());
        let what = arbor_queue::job::Submission::Search { spec, tasks, input };
        let models = Models::new(a.target.gguf.clone());
        let openers = arbor_queue::Openers { models: &models, critic: Some(&crate::cmd::queue::load_critic) };
        return crate::cmd::queue::run(a.queue.run(url, &a.out, a.resume, a.concurrency), what, openers).await;
    }
    let model = match file.policy.kind {
        PolicyKind::Synthetic => None,
        PolicyKind::Llm => Some(
            Models::new(a.target.gguf.clone())
                .open_url(a.target.base_url.as_ref(), a.target.model.as_deref())
                .await?,
        ),
    };
    let learned = match file.learned_value_dir()? {
        Some(dir) => Some(crate::cmd::queue::load_critic(dir).map_err(anyhow::Error::msg)?),
        None => None,
    };
    let (policy, evaluator) = file.build(&tasks, model, learned, a.seed)?;
    let stop = crate::progress::stop_on_ctrl_c();
    let searcher = Searcher::new(env, policy, evaluator, file.search).with_stop(stop);

    let counters = searcher.counters.clone();
    let ticker = crate::progress::ticker(tasks.len() as u64, move |bar, _| {
        let c = &counters;
        bar.set_position(c.trees_done.load(Ordering::Relaxed));
        format!(
            "trees, {} nodes, {} model calls, best value {:.2}",
            c.nodes.load(Ordering::Relaxed),
            c.policy_calls.load(Ordering::Relaxed) + c.evaluations.load(Ordering::Relaxed),
            c.best_value()
        )
    });
    let result = run_to_dir(&searcher, &tasks, a.concurrency, &a.out, a.resume, &Default::default()).await;
    ticker.finish();
    let s = result?;
    let c = &searcher.counters;
    let kept = if s.kept > 0 {
        format!(", {} kept from before", s.kept)
    } else {
        String::new()
    };
    eprintln!(
        "{} trees ({} failed{kept}) in {:.1}s: {} nodes, {} policy calls, {} evaluations -> {}",
        s.ok,
        s.failed,
        s.seconds,
        c.nodes.load(Ordering::Relaxed),
        c.policy_calls.load(Ordering::Relaxed),
        c.evaluations.load(Ordering::Relaxed),
        s.trees_path.display()
    );
    if s.not_started > 0 {
        eprintln!(
            "stopped with {} tasks not searched: run the same command with --resume to search them",
            s.not_started
        );
        std::process::exit(130);
    }
    if s.ok + s.kept == 0 && s.failed > 0 {
        anyhow::bail!("every search failed; see {}", s.errors_path.display());
    }
    Ok(())
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
