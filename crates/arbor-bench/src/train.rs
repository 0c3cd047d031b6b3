//! `arbor bench train`: one training step's throughput and peak memory, arbor (burn: flex on the
//! CPU, or a GPU backend) against PyTorch on the same model, the same token batch and the same
//! loss, each in its own measured child process, one after the other in the same run.
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use arbor_model::{DeviceKind, EmbeddedModel, Precision};
use arbor_train::data::Example;
use arbor_train::{Algo, Probe, StartModel, TrainConfig};
use serde_json::{json, Value};

use crate::resources::run_measured;

#[derive(clap::Args)]
pub struct TrainBenchArgs {
    #[arg(long, value_enum, default_value = "dpo")]
    algo: BenchAlgo,
    /// `embedded`, a GGUF or a checkpoint directory.
    #[arg(long, default_value = "embedded")]
    model: String,
    /// Examples per step (a DPO pair, an OREO trajectory).
    #[arg(long, default_value_t = 2)]
    batch: usize,
    /// Timed steps (after one warm-up step).
    #[arg(long, default_value_t = 3)]
    steps: usize,
    /// Python with torch and transformers (default: $ARBOR_HOME/torch-venv/bin/python).
    #[arg(long)]
    python: Option<PathBuf>,
    #[arg(long, default_value = "benches/train_torch.py")]
    torch_script: PathBuf,
    /// arbor's device: cpu, or libtorch / wgpu / cuda in builds with that feature.
    #[arg(long, default_value = "cpu")]
    device: DeviceKind,
    /// PyTorch's device: cpu or cuda.
    #[arg(long, default_value = "cpu")]
    torch_device: String,
    /// The type of the matrix products on both sides (f32, bf16, f16): arbor's mixed precision,
    /// PyTorch's autocast.
    #[arg(long, default_value = "f32")]
    precision: Precision,
    /// arbor's side only (no Python with torch here).
    #[arg(long)]
    skip_torch: bool,
    /// Internal: run arbor's side only, on this checkpoint directory, and print JSON.
    #[arg(long, hide = true)]
    worker: Option<PathBuf>,
    #[arg(long, hide = true)]
    batch_out: Option<PathBuf>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum BenchAlgo {
    Dpo,
    Oreo,
}

impl BenchAlgo {
    fn algo(self) -> Algo {
        match self {
            BenchAlgo::Dpo => Algo::Dpo,
            BenchAlgo::Oreo => Algo::Oreo,
        }
    }

    /// The metric that is the policy's loss.
    fn policy_metric(self) -> &'static str {
        match self {
            BenchAlgo::Dpo => "loss",
            BenchAlgo::Oreo => "policy_loss",
        }
    }
}

fn examples(algo: BenchAlgo, n: usize) -> anyhow::Result<Vec<Example>> {
    let env = arbor_envs::by_name("math", None)?;
    let tasks = env.sample(n, 42)?;
    Ok(tasks
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let gold = crate::kit::solution_steps(t);
            let mut wrong = gold.clone();
            if let Some(last) = wrong.last_mut() {
                *last = format!("{last}1");
            }
            match algo {
                BenchAlgo::Dpo => Example::Pair {
                    question: t.prompt.as_str().into(),
                    prefix: vec![],
                    chosen: gold,
                    rejected: wrong,
                },
                BenchAlgo::Oreo => Example::Trajectory {
                    question: t.prompt.clone(),
                    steps: if i % 2 == 0 { gold } else { wrong },
                    reward: if i % 2 == 0 { 1.0 } else { 0.0 },
                },
            }
        })
        .collect())
}

fn worker(a: &TrainBenchArgs, dir: &Path) -> anyhow::Result<()> {
    let cfg = TrainConfig {
        algo: a.algo.algo(),
        precompute_reference: false,
        precision: a.precision,
        ..TrainConfig::default()
    };
    let start = StartModel::load(&dir.display().to_string(), a.device)?;
    let mut probe = Probe::new(&cfg, &start, examples(a.algo, a.batch)?)?;
    if let Some(p) = &a.batch_out {
        std::fs::write(p, probe.batch_json().to_string())?;
    }
    let tokens = probe.action_tokens();
    let mut times = Vec::new();
    let mut losses = Vec::new();
    for _ in 0..=a.steps {
        let t = Instant::now();
        let m = probe.step(1e-5);
        let get = |k: &str| m.iter().find(|x| x.0 == k).map(|x| x.1);
        losses.push(json!({"policy": get(a.algo.policy_metric()), "value": get("value_loss")}));
        times.push(t.elapsed().as_secs_f64());
    }
    let timed = &times[1..];
    let mean = timed.iter().sum::<f64>() / timed.len().max(1) as f64;
    println!(
        "{}",
        json!({"impl": format!("arbor (burn, {}, {})", device_name(a.device), a.precision), "step_s": mean, "tokens_per_step": tokens, "tokens_per_s": tokens as f64 / mean, "losses": losses, "step_times": times})
    );
    Ok(())
}

fn device_name(d: DeviceKind) -> &'static str {
    match d {
        DeviceKind::Cpu => "flex CPU",
        #[allow(unreachable_patterns)]
        other => other.name(),
    }
}

/// Runs a measured child; on a GPU machine also the peak device memory it added.
fn measured(
    cmd: &mut std::process::Command,
) -> std::io::Result<(crate::resources::ChildUsage, Option<f64>)> {
    let gpu = crate::resources::GpuMemory::start();
    let u = run_measured(cmd)?;
    Ok((u, gpu.and_then(|g| g.finish())))
}

fn read(p: &Path) -> anyhow::Result<Value> {
    Ok(serde_json::from_str(
        std::fs::read_to_string(p)?.lines().last().unwrap_or(""),
    )?)
}

fn row(r: &Value, peak_rss: u64, gpu: Option<f64>) -> Value {
    json!({"impl": r["impl"], "step_s": r["step_s"], "tokens_per_s": r["tokens_per_s"], "peak_rss_mib": peak_rss as f64 / 1048576.0, "peak_gpu_mib": gpu, "peak_allocated_mib": r.get("peak_allocated_mib"), "losses": r["losses"]})
}

/// PyTorch's step on the same checkpoint and batch, in its own measured process.
fn torch_side(a: &TrainBenchArgs, dir: &Path, batch: &Path, tmp: &Path) -> anyhow::Result<Value> {
    let python = a
        .python
        .clone()
        .unwrap_or_else(|| arbor_model::fetch::arbor_home().join("torch-venv/bin/python"));
    let out_t = tmp.join("torch.json");
    let mut cmd = std::process::Command::new(&python);
    cmd.arg(&a.torch_script)
        .arg("--model")
        .arg(dir)
        .arg("--batch")
        .arg(batch)
        .arg("--steps")
        .arg(a.steps.to_string())
        .arg("--device")
        .arg(&a.torch_device)
        .arg("--precision")
        .arg(a.precision.to_string());
    cmd.stdout(std::fs::File::create(&out_t)?);
    let (ut, gt) = measured(&mut cmd)
        .with_context(|| format!("{} (pip install torch transformers)", python.display()))?;
    anyhow::ensure!(ut.status.success(), "the PyTorch side failed");
    Ok(row(&read(&out_t)?, ut.peak_rss_bytes, gt))
}

pub fn run(a: TrainBenchArgs) -> anyhow::Result<()> {
    if let Some(dir) = &a.worker {
        return worker(&a, dir);
    }
    // Both sides read the same Hugging Face checkpoint.
    let tmp = tempfile::tempdir()?;
    let path =
        arbor_model::fetch::resolve_model((a.model != "embedded").then(|| Path::new(&a.model)))?;
    let dir = if path.is_dir() {
        path
    } else {
        let d = tmp.path().join("hf");
        EmbeddedModel::load(&path, DeviceKind::Cpu.device())?.save_hf(&d)?;
        d
    };
    let batch = tmp.path().join("batch.json");
    let exe = std::env::current_exe()?;
    let algo = a.algo.algo().name();
    let mut cmd = std::process::Command::new(&exe);
    cmd.args([
        "bench",
        "train",
        "--algo",
        algo,
        "--batch",
        &a.batch.to_string(),
        "--steps",
        &a.steps.to_string(),
        "--device",
        a.device.name(),
        "--precision",
        &a.precision.to_string(),
    ])
    .arg("--worker")
    .arg(&dir)
    .arg("--batch-out")
    .arg(&batch);
    let out_a = tmp.path().join("arbor.json");
    cmd.stdout(std::fs::File::create(&out_a)?);
    let (ua, ga) = measured(&mut cmd)?;
    anyhow::ensure!(ua.status.success(), "arbor's worker failed");
    let ra = read(&out_a)?;
    let torch = if a.skip_torch {
        Value::Null
    } else {
        torch_side(&a, &dir, &batch, tmp.path())?
    };
    println!(
        "{}",
        json!({"algo": algo, "batch": a.batch, "tokens_per_step": ra["tokens_per_step"], "arbor": row(&ra, ua.peak_rss_bytes, ga), "torch": torch})
    );
    Ok(())
}
