//! `arbor synth`: Anyprefer preference pairs from a prompt file.
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use arbor_llm::{CachedModel, LanguageModel, ResponseCache};
use arbor_synth::config::{OutputFormat, Pairing, RoleConfig, ToolUse};
use arbor_synth::engine::Progress;
use arbor_synth::game::{http::JsonClient, Players, RoleModel};
use arbor_synth::output::ModelNames;
use arbor_synth::SynthConfig;
use serde_json::json;

use crate::models::Models;

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
}

fn parse_enum<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, String> {
    serde_json::from_value(serde_json::Value::String(s.to_string()))
        .map_err(|e| format!("`{s}`: {e}"))
}

impl SynthArgs {
    fn config(&self) -> anyhow::Result<SynthConfig> {
        let mut c = match &self.config {
            Some(p) => SynthConfig::from_file(p).map_err(anyhow::Error::msg)?,
            None => SynthConfig::default(),
        };
        let set = |role: &mut RoleConfig, url: &Option<url::Url>, model: &Option<String>| {
            if let Some(u) = url {
                role.url = Some(u.clone());
            }
            if let Some(m) = model {
                role.model = Some(m.clone());
            }
        };
        set(&mut c.target, &self.target_url, &self.target_model);
        set(&mut c.judge, &self.judge_url, &self.judge_model);
        set(&mut c.reward, &self.reward_url, &self.reward_model);
        macro_rules! over {
            ($($f:ident),*) => { $( if let Some(v) = self.$f.clone() { c.$f = v; } )* };
        }
        over!(
            candidates,
            rounds,
            threshold,
            max_in_flight,
            format,
            pairing,
            margin,
            tool_use,
            seed
        );
        c.no_gate |= self.no_gate;
        c.strict |= self.strict;
        if let Some(t) = self.timeout_secs {
            for r in [&mut c.target, &mut c.judge, &mut c.reward, &mut c.optimizer] {
                r.timeout_secs = Some(t);
            }
        }
        // Unset reward and optimizer follow the judge.
        for r in [&mut c.reward, &mut c.optimizer] {
            if r.url.is_none() && r.model.is_none() {
                r.url = c.judge.url.clone();
                r.model = c.judge.model.clone();
            }
        }
        c.validate().map_err(anyhow::Error::msg)?;
        Ok(c)
    }
}

async fn role(
    models: &Models,
    cache: &Arc<ResponseCache>,
    r: &RoleConfig,
    in_flight: usize,
) -> anyhow::Result<RoleModel> {
    let (model, name) = models
        .open_with(
            r.url.as_ref(),
            r.model.as_deref(),
            Some(in_flight),
            r.timeout_secs,
        )
        .await?;
    let model: Arc<dyn LanguageModel> = Arc::new(CachedModel::new(model, cache.clone()));
    Ok(RoleModel {
        model,
        name,
        config: r.clone(),
    })
}

pub async fn run(a: SynthArgs) -> anyhow::Result<()> {
    let cfg = a.config()?;
    std::fs::create_dir_all(&a.out).with_context(|| format!("{}", a.out.display()))?;
    let items = arbor_synth::input::read_items(&a.input)?;
    let bad = items.iter().filter(|i| i.is_err()).count();
    if bad > 0 {
        for b in items.iter().filter_map(|i| i.as_ref().err()).take(5) {
            tracing::warn!("{}", b.cause);
        }
        if cfg.strict {
            let first = items
                .iter()
                .find_map(|i| i.as_ref().err())
                .map(|b| b.cause.clone())
                .unwrap_or_default();
            anyhow::bail!("{first} (--strict)");
        }
        eprintln!("warning: {bad} malformed input rows go to dead_letter.jsonl");
    }

    // The job file pins what the output depends on; --resume refuses a different job.
    let job_path = a.out.join("job.json");
    let job = json!({"format": "arbor.synth-job/1", "config": cfg.fingerprint(), "input_rows": items.len(), "input": a.input.display().to_string()});
    if a.resume && job_path.exists() {
        let old: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&job_path)?)
            .with_context(|| format!("{}", job_path.display()))?;
        for k in ["config", "input_rows"] {
            if old[k] != job[k] {
                anyhow::bail!("{}: field `{k}` differs from this run ({} vs {}): resume with the same input and settings, or start a new --out", job_path.display(), old[k], job[k]);
            }
        }
    } else {
        std::fs::write(&job_path, serde_json::to_string_pretty(&job)?)?;
    }

    let cache = Arc::new(ResponseCache::open_log(a.out.join("calls.log"))?);
    let models = Models::new(a.gguf.clone());
    let in_flight = cfg.max_in_flight * 2 + 8;
    let players = Players {
        target: role(&models, &cache, &cfg.target, in_flight).await?,
        judge: role(&models, &cache, &cfg.judge, in_flight).await?,
        reward: role(&models, &cache, &cfg.reward, in_flight).await?,
        optimizer: role(&models, &cache, &cfg.optimizer, in_flight).await?,
        tools: arbor_tools::builtin::pure_tools(Duration::from_secs(10)),
        http: JsonClient::default(),
    };
    let names = ModelNames {
        target: players.target.name.clone(),
        judge: players.judge.name.clone(),
        reward: players.reward.name.clone(),
        optimizer: players.optimizer.name.clone(),
    };

    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("interrupted: finishing the items in flight (Ctrl-C again to abort)");
                stop.store(true, Ordering::Relaxed);
                if tokio::signal::ctrl_c().await.is_ok() {
                    std::process::exit(130);
                }
            }
        });
    }
    let progress = Arc::new(Progress::default());
    let bar = crate::progress::bar(items.len() as u64);
    let ticker = {
        let (bar, p) = (bar.clone(), progress.clone());
        let started = Instant::now();
        tokio::spawn(async move {
            loop {
                let l = |x: &std::sync::atomic::AtomicU64| x.load(Ordering::Relaxed);
                let done = l(&p.done);
                let secs = started.elapsed().as_secs_f64().max(1e-3);
                bar.set_position(done);
                bar.set_message(format!(
                    "items, {:.1} pairs/s, accepted {:.0}%, {} retries, {} errors",
                    l(&p.pairs) as f64 / secs,
                    if done == 0 {
                        0.0
                    } else {
                        100.0 * l(&p.accepted) as f64 / done as f64
                    },
                    l(&p.retries),
                    l(&p.dead)
                ));
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    let started = Instant::now();
    let total_rows = items.len();
    let result = arbor_synth::engine::run(
        cfg.clone(),
        players,
        items,
        &a.out.join("journal.jsonl"),
        a.resume,
        stop,
        progress.clone(),
    )
    .await;
    ticker.abort();
    bar.finish_and_clear();
    let (records, interrupted) = result.map_err(anyhow::Error::msg)?;
    let wall = started.elapsed().as_secs_f64();
    let c = arbor_synth::output::write_all(&a.out, &records, &cfg, &names, total_rows)?;
    let fresh_pairs = progress.pairs.load(Ordering::Relaxed);
    eprintln!(
        "{} of {total_rows} items: {} accepted ({} pairs), {} gated out, {} dead letters; {:.1}s, {:.1} pairs/s -> {}",
        c.items,
        c.accepted,
        c.pairs,
        c.gated_out,
        c.dead,
        wall,
        fresh_pairs as f64 / wall,
        a.out.display()
    );
    if interrupted {
        eprintln!("stopped early: run the same command with --resume to finish");
        std::process::exit(130);
    }
    Ok(())
}
