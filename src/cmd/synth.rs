//! `arbor synth`: flags onto `synth.toml` keys, then `arbor_synth::Job`.
use std::path::PathBuf;
use std::sync::Arc;

use arbor_core::config::{load_toml, Overrides};
use arbor_model::Models;
use arbor_synth::config::{OutputFormat, Pairing, ToolUse};
use arbor_synth::engine::Progress;
use arbor_synth::{Job, SynthConfig};

use crate::cmd::parse_enum;

#[derive(clap::Args)]
pub struct SynthArgs {
    /// Items: JSONL or Parquet rows `{"id"?, "prompt" | "messages", "reference"?, …}`.
    #[arg(long)]
    input: PathBuf,
    #[arg(long)]
    out: PathBuf,
    /// synth.toml; the flags below override its keys.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Continue the job in --out where it stopped (after a kill or Ctrl-C).
    #[arg(long)]
    resume: bool,
    #[arg(long)]
    target_url: Option<url::Url>,
    #[arg(long)]
    target_model: Option<String>,
    #[arg(long)]
    judge_url: Option<url::Url>,
    #[arg(long)]
    judge_model: Option<String>,
    #[arg(long)]
    reward_url: Option<url::Url>,
    #[arg(long)]
    reward_model: Option<String>,
    /// Without a URL a role runs on the embedded model; this GGUF replaces the default.
    #[arg(long)]
    gguf: Option<PathBuf>,
    #[arg(long)]
    candidates: Option<u32>,
    #[arg(long)]
    rounds: Option<u32>,
    #[arg(long)]
    threshold: Option<f64>,
    #[arg(long)]
    max_in_flight: Option<usize>,
    /// Accept every pair with distinct scores: no reward, no feedback.
    #[arg(long)]
    no_gate: bool,
    #[arg(long, value_parser = parse_enum::<OutputFormat>)]
    format: Option<OutputFormat>,
    #[arg(long, value_parser = parse_enum::<Pairing>)]
    pairing: Option<Pairing>,
    #[arg(long)]
    margin: Option<f64>,
    #[arg(long, value_parser = parse_enum::<ToolUse>)]
    tool_use: Option<ToolUse>,
    /// Stop at the first malformed input row.
    #[arg(long)]
    strict: bool,
    #[arg(long)]
    seed: Option<u64>,
    /// Per-request timeout for every HTTP role, seconds.
    #[arg(long)]
    timeout_secs: Option<f64>,
    /// Print the calls and tokens the job would take per role, and stop.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    queue: arbor_queue::cli::QueueFlags,
}

impl SynthArgs {
    fn config(&self) -> anyhow::Result<SynthConfig> {
        let mut o = Overrides::default();
        o.set("target.url", self.target_url.as_ref())
            .set("target.model", self.target_model.as_ref())
            .set("judge.url", self.judge_url.as_ref())
            .set("judge.model", self.judge_model.as_ref())
            .set("reward.url", self.reward_url.as_ref())
            .set("reward.model", self.reward_model.as_ref())
            .set("candidates", self.candidates)
            .set("rounds", self.rounds)
            .set("threshold", self.threshold)
            .set("max_in_flight", self.max_in_flight)
            .set("format", self.format)
            .set("pairing", self.pairing)
            .set("margin", self.margin)
            .set("tool_use", self.tool_use)
            .set("seed", self.seed)
            .switch("no_gate", self.no_gate)
            .switch("strict", self.strict);
        for role in ["target", "judge", "reward", "optimizer"] {
            o.set(&format!("{role}.timeout_secs"), self.timeout_secs);
        }
        load_toml(self.config.as_deref(), &o).map_err(anyhow::Error::msg)
    }
}

pub async fn run(a: SynthArgs) -> anyhow::Result<()> {
    if a.dry_run {
        let cfg = a.config()?.with_role_defaults();
        let items = arbor_synth::input::read_items(&a.input)?;
        let items: Vec<_> = items.into_iter().filter_map(Result::ok).collect();
        println!("{}", arbor_synth::plan::plan(&cfg, &items));
        return Ok(());
    }
    if let Some(url) = a.queue.queue.clone() {
        return on_queue(a, url).await;
    }
    let job = Job::open(&a.input, &a.out, a.config()?, a.resume)?;
    let bad: Vec<_> = job.malformed().collect();
    for b in bad.iter().take(5) {
        tracing::warn!("{}", b.cause);
    }
    if !bad.is_empty() {
        eprintln!(
            "warning: {} malformed input rows go to dead_letter.jsonl",
            bad.len()
        );
    }
    let stop = crate::progress::stop_on_ctrl_c();
    let progress = Arc::new(Progress::default());
    let ticker = {
        let p = progress.clone();
        crate::progress::ticker(job.total_rows() as u64, move |bar, secs| {
            let (done, line) = p.line(secs);
            bar.set_position(done);
            line
        })
    };
    let result = job
        .run(&Models::new(a.gguf.clone()), stop, progress)
        .await;
    ticker.finish();
    let s = result?;
    eprint!("{}", s.report(&a.out));
    if let Some(code) = s.exit_code() {
        std::process::exit(code);
    }
    Ok(())
}

/// `arbor synth --queue`: submit, work on it here too, wait with a progress bar, export.
async fn on_queue(a: SynthArgs, url: String) -> anyhow::Result<()> {
    let cfg = a.config()?;
    let workers = cfg.max_in_flight;
    let what = arbor_queue::job::Submission::Synth { input: a.input.clone(), cfg };
    let models = Models::new(a.gguf.clone());
    let openers = arbor_queue::Openers { models: &models, critic: None };
    crate::cmd::queue::run(a.queue.run(url, &a.out, a.resume, workers), what, openers).await
}
