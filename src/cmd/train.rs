//! `arbor train` and `arbor eval`.
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use arbor_model::fetch::resolve_model;
use arbor_model::EmbeddedModel;
use arbor_train::forward::Level;
use arbor_train::search::{LearnedValue, SearchParams, Strategy};
use arbor_train::{Algo, RunOptions, StartModel, TrainConfig};
use arbor_tree::policy::LlmStepPolicy;

use crate::cmd::model::{device, DeviceArg};

#[derive(clap::Args)]
pub struct TrainArgs {
    #[arg(long, value_enum)]
    algo: AlgoArg,
    /// An `arbor export` file (JSONL or Parquet) in the algorithm's format.
    #[arg(long)]
    data: PathBuf,
    /// `embedded` (the fetched SmolLM2 GGUF), a GGUF file, or a Hugging Face checkpoint directory.
    #[arg(long, default_value = "embedded")]
    model: String,
    /// Output directory: the trained policy as a Hugging Face checkpoint, `value/` (OREO),
    /// `curves.csv`, `curves.svg`, `train.json`, `checkpoint/`.
    #[arg(long)]
    out: PathBuf,
    #[arg(long, value_enum, default_value = "cpu")]
    device: DeviceArg,
    /// `train.toml` (docs/formats.md); the flags below override its keys.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Continue from `OUT/checkpoint` when it exists.
    #[arg(long)]
    resume: bool,
    #[arg(long)]
    epochs: Option<usize>,
    #[arg(long)]
    max_steps: Option<usize>,
    #[arg(long)]
    batch_size: Option<usize>,
    #[arg(long)]
    grad_accum: Option<usize>,
    #[arg(long)]
    lr: Option<f64>,
    #[arg(long)]
    beta: Option<f64>,
    #[arg(long)]
    alpha: Option<f64>,
    /// OREO: token, step or response.
    #[arg(long)]
    level: Option<String>,
    #[arg(long)]
    save_every: Option<usize>,
    #[arg(long)]
    eval_every: Option<usize>,
    #[arg(long)]
    seed: Option<u64>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum AlgoArg {
    Sft,
    Dpo,
    Oreo,
    Tpo,
}

fn model_path(model: &str) -> anyhow::Result<PathBuf> {
    let given = (model != "embedded").then(|| PathBuf::from(model));
    Ok(resolve_model(given.as_deref())?)
}

pub fn train(a: TrainArgs) -> anyhow::Result<()> {
    let mut cfg: TrainConfig = match &a.config {
        Some(p) => {
            toml::from_str(&std::fs::read_to_string(p).with_context(|| p.display().to_string())?)
                .map_err(|e| anyhow::anyhow!("{}: {}", p.display(), e.message()))?
        }
        None => TrainConfig::default(),
    };
    cfg.algo = match a.algo {
        AlgoArg::Sft => Algo::Sft,
        AlgoArg::Dpo => Algo::Dpo,
        AlgoArg::Oreo => Algo::Oreo,
        AlgoArg::Tpo => Algo::Tpo,
    };
    macro_rules! set {
        ($($f:ident),*) => { $( if let Some(v) = a.$f { cfg.$f = v; } )* };
    }
    set!(epochs, batch_size, grad_accum, lr, save_every, eval_every, seed);
    if a.max_steps.is_some() {
        cfg.max_steps = a.max_steps;
    }
    if a.beta.is_some() {
        cfg.beta = a.beta;
    }
    if a.alpha.is_some() {
        cfg.alpha = a.alpha;
    }
    if let Some(l) = &a.level {
        cfg.oreo_level = match l.as_str() {
            "token" => Level::Token,
            "step" => Level::Step,
            "response" => Level::Response,
            other => anyhow::bail!("--level {other}: expected token, step or response"),
        };
    }
    let path = model_path(&a.model)?;
    let dev = device(a.device);
    let m = EmbeddedModel::load(&path, dev.clone())
        .with_context(|| format!("loading {}", path.display()))?;
    let start = StartModel {
        cfg: m.cfg.clone(),
        tokenizer: m.tokenizer.clone(),
        model: m.llama().clone(),
        source: std::fs::canonicalize(&path)
            .unwrap_or(path)
            .display()
            .to_string(),
    };
    let s = arbor_train::train(
        &cfg,
        &a.data,
        start,
        &a.out,
        &dev,
        RunOptions {
            resume: a.resume,
            progress: !a.quiet,
        },
    )?;
    for r in &s.skipped_rows {
        eprintln!("skipped {r}");
    }
    println!(
        "{}",
        serde_json::json!({
            "out": a.out, "steps": s.steps, "examples": s.examples, "skipped_rows": s.skipped_rows.len(),
            "train_tokens": s.train_tokens, "seconds": s.seconds,
            "tokens_per_s": s.train_tokens as f64 / s.seconds.max(1e-9),
            "last": s.last.iter().map(|(k, v)| (k.clone(), serde_json::json!(v))).collect::<serde_json::Map<_, _>>(),
        })
    );
    Ok(())
}

#[derive(clap::Args)]
pub struct EvalArgs {
    #[arg(long, default_value = "math")]
    env: String,
    #[arg(long)]
    env_config: Option<PathBuf>,
    /// `embedded`, a GGUF file, or a checkpoint directory from `arbor train`.
    #[arg(long, default_value = "embedded")]
    model: String,
    /// The critic for best-of-n and value-beam (default: MODEL/value).
    #[arg(long)]
    value: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "greedy")]
    search: SearchArg,
    /// Tasks to evaluate.
    #[arg(long, default_value_t = 100)]
    n: usize,
    /// Task sampling seed (held-out tasks: a seed the training data did not use).
    #[arg(long, default_value_t = 1_000_003)]
    seed: u64,
    /// K for best-of-n, B for value-beam.
    #[arg(long, default_value_t = 4)]
    width: usize,
    #[arg(long, default_value_t = 0.8)]
    temperature: f32,
    #[arg(long, default_value_t = 10)]
    max_depth: usize,
    /// Tasks in flight at once (their model calls batch).
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Also write per-task results here (JSON).
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum SearchArg {
    Greedy,
    Sample,
    BestOfN,
    ValueBeam,
}

pub async fn eval(a: EvalArgs) -> anyhow::Result<()> {
    let env: Arc<dyn arbor_envs::Environment> =
        Arc::from(arbor_envs::by_name(&a.env, a.env_config.as_deref())?);
    let tasks = env.sample(a.n, a.seed)?;
    let path = model_path(&a.model)?;
    let p2 = path.clone();
    let backend =
        tokio::task::spawn_blocking(move || arbor_model::EmbeddedBackend::load_default(Some(&p2)))
            .await??;
    let mut policy = LlmStepPolicy::new(Arc::new(backend), crate::models::EMBEDDED);
    let strategy = match a.search {
        SearchArg::Greedy => Strategy::Greedy,
        SearchArg::Sample => Strategy::Sample,
        SearchArg::BestOfN => Strategy::BestOfN,
        SearchArg::ValueBeam => Strategy::ValueBeam,
    };
    policy.temperature = if strategy == Strategy::Greedy {
        0.0
    } else {
        a.temperature
    };
    policy.seed = Some(a.seed);
    let value = match strategy {
        Strategy::Greedy | Strategy::Sample => None,
        _ => {
            let dir = a.value.clone().unwrap_or_else(|| path.join("value"));
            let v = LearnedValue::load(&dir, burn::tensor::Device::flex()).map_err(|e| anyhow::anyhow!("{e} (best-of-n and value-beam need a critic: `arbor train --algo oreo` writes OUT/value)"))?;
            Some(Arc::new(v))
        }
    };
    let params = SearchParams {
        strategy,
        width: a.width,
        max_depth: a.max_depth,
    };
    let report =
        arbor_train::eval::evaluate(env, &tasks, Arc::new(policy), value, &params, a.concurrency)
            .await;
    if let Some(out) = &a.out {
        std::fs::write(out, serde_json::to_string_pretty(&report)?)
            .with_context(|| out.display().to_string())?;
    }
    println!(
        "{}",
        serde_json::json!({"env": a.env, "model": a.model, "search": format!("{:?}", strategy), "n": report.n, "correct": report.correct,
            "accuracy": report.accuracy, "ci95": [report.ci95.0, report.ci95.1],
            "errors": report.results.iter().filter(|r| r.error.is_some()).count()})
    );
    Ok(())
}
