//! `arbor train` and `arbor eval`.
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use arbor_core::config::{load_toml, Overrides};
use arbor_model::{DeviceKind, EmbeddedBackend, Precision, EMBEDDED};
use arbor_train::forward::Level;
use arbor_train::{Algo, LearnedValue, RunOptions, StartModel, TrainConfig};
use arbor_tree::evaluate::ValueFunction;
use arbor_tree::policy::LlmStepPolicy;
use arbor_tree::search::decode::{DecodeParams, Strategy};

use crate::cmd::parse_enum;

#[derive(clap::Args)]
pub struct TrainArgs {
    /// sft, dpo, oreo or tpo.
    #[arg(long, value_parser = parse_enum::<Algo>)]
    algo: Algo,
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
    /// cpu, or libtorch / wgpu / cuda in builds with that feature.
    #[arg(long, default_value = "cpu")]
    device: DeviceKind,
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
    #[arg(long, value_parser = parse_enum::<Level>)]
    level: Option<Level>,
    #[arg(long)]
    save_every: Option<usize>,
    #[arg(long)]
    eval_every: Option<usize>,
    #[arg(long)]
    seed: Option<u64>,
    /// Matrix products in f32, bf16 or f16 (mixed precision; f32 master weights).
    #[arg(long)]
    precision: Option<Precision>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

pub fn train(a: TrainArgs) -> anyhow::Result<()> {
    let mut o = Overrides::default();
    o.set("algo", Some(a.algo))
        .set("epochs", a.epochs)
        .set("max_steps", a.max_steps)
        .set("batch_size", a.batch_size)
        .set("grad_accum", a.grad_accum)
        .set("lr", a.lr)
        .set("beta", a.beta)
        .set("alpha", a.alpha)
        .set("oreo_level", a.level)
        .set("save_every", a.save_every)
        .set("eval_every", a.eval_every)
        .set("seed", a.seed)
        .set("precision", a.precision);
    let cfg: TrainConfig = load_toml(a.config.as_deref(), &o).map_err(anyhow::Error::msg)?;
    let start = StartModel::load(&a.model, a.device)?;
    // Within the runtime's context (train runs in block_in_place), so the handler can spawn.
    let stop = crate::progress::stop_on_ctrl_c();
    let opts = RunOptions {
        resume: a.resume,
        progress: !a.quiet,
        counter: None,
        stop: Some(stop),
    };
    let s = arbor_train::train(&cfg, &a.data, start, &a.out, opts)?;
    if s.stopped {
        eprintln!(
            "stopped after step {} of {}, checkpoint saved: run the same command with --resume to continue",
            s.steps, s.total_steps
        );
        std::process::exit(130);
    }
    for r in &s.skipped_rows {
        eprintln!("skipped {r}");
    }
    println!(
        "{}",
        serde_json::json!({
            "out": a.out, "steps": s.steps, "resumed_from": s.resumed_from, "examples": s.examples, "skipped_rows": s.skipped_rows.len(),
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
    /// greedy, sample, best-of-n, majority (vote of K samples) or value-beam.
    #[arg(long, default_value = "greedy", value_parser = parse_enum::<Strategy>)]
    search: Strategy,
    /// Tasks to evaluate.
    #[arg(long, default_value_t = 100)]
    n: usize,
    /// Task sampling seed (held-out tasks: a seed the training data did not use).
    #[arg(long, default_value_t = 1_000_003)]
    seed: u64,
    /// K for best-of-n and majority, B for value-beam.
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

pub async fn eval(a: EvalArgs) -> anyhow::Result<()> {
    let env: Arc<dyn arbor_envs::Environment> =
        Arc::from(arbor_envs::by_name(&a.env, a.env_config.as_deref())?);
    let tasks = env.sample(a.n, a.seed)?;
    let given = (a.model != "embedded").then(|| PathBuf::from(&a.model));
    let path = arbor_model::fetch::resolve_model(given.as_deref())?;
    let p2 = path.clone();
    let backend =
        tokio::task::spawn_blocking(move || EmbeddedBackend::load_default(Some(&p2))).await??;
    let mut policy = LlmStepPolicy::new(Arc::new(backend), EMBEDDED);
    let strategy = a.search;
    policy.temperature = if strategy == Strategy::Greedy {
        0.0
    } else {
        a.temperature
    };
    policy.seed = Some(a.seed);
    let value = if strategy.needs_value() {
        let dir = a.value.clone().unwrap_or_else(|| path.join("value"));
        let v = LearnedValue::load(&dir, DeviceKind::Cpu).map_err(|e| anyhow::anyhow!("{e} (best-of-n and value-beam need a critic: `arbor train --algo oreo` writes OUT/value)"))?;
        Some(Arc::new(v) as Arc<dyn ValueFunction>)
    } else {
        None
    };
    let params = DecodeParams {
        strategy,
        width: a.width,
        max_depth: a.max_depth,
    };
    let progress = Arc::new(arbor_core::Progress::default());
    let bar = crate::progress::follow(progress.clone(), String::new());
    let report = arbor_tree::eval::evaluate(env, &tasks, Arc::new(policy), value, &params, a.concurrency, &progress).await;
    bar.finish();
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
