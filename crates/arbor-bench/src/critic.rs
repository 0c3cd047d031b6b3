//! `arbor bench critic`: an OREO critic scoring states the way value-guided beam search asks
//! for them (K candidate next steps per state, step after step of each held-out task, plus
//! every prefix of a whole solution, as the critic's AUC reads them), with each question's
//! prompt prefill kept against every state computed in full, alternating in the same run.
use std::path::PathBuf;
use std::time::Instant;

use arbor_model::DeviceKind;
use arbor_train::learned::{LearnedValue, PREFIXES_KEPT};
use arbor_tree::evaluate::ValueFunction;
use serde_json::json;

#[derive(clap::Args)]
pub struct CriticBenchArgs {
    /// A critic directory (`arbor train --algo oreo` writes OUT/value).
    #[arg(long)]
    value: PathBuf,
    /// Held-out one-step math tasks (seed 999).
    #[arg(long, default_value_t = 20)]
    tasks: usize,
    /// Candidate states per call (the beam's width K).
    #[arg(long, default_value_t = 4)]
    width: usize,
    /// Passes of each variant, alternating.
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// cpu, or libtorch / wgpu / cuda in builds with that feature.
    #[arg(long, default_value = "cpu")]
    device: DeviceKind,
}

/// One task's calls: (question, states).
type Calls = Vec<(String, Vec<(Vec<String>, bool)>)>;

fn calls(n: usize, width: usize) -> anyhow::Result<Calls> {
    let env = arbor_envs::by_name("math", None)?;
    let mut out = Vec::new();
    for t in env.sample(n, 999)? {
        let lines = crate::kit::solution_steps(&t);
        for d in 0..lines.len() {
            let states = (0..width)
                .map(|j| {
                    let mut s = lines[..d].to_vec();
                    s.push(if j == 0 { lines[d].clone() } else { format!("{} ({j})", lines[d]) });
                    (s, d + 1 == lines.len())
                })
                .collect();
            out.push((t.prompt.clone(), states));
        }
        let prefixes = (0..lines.len()).map(|d| (lines[..d].to_vec(), false)).collect();
        out.push((t.prompt.clone(), prefixes));
    }
    Ok(out)
}

/// Seconds for every call on a freshly loaded critic, and the values.
async fn pass(a: &CriticBenchArgs, keep: usize, calls: &Calls) -> anyhow::Result<(f64, Vec<f64>)> {
    let v = LearnedValue::load(&a.value, a.device)
        .map_err(anyhow::Error::msg)?
        .keeping_prompts(keep);
    let started = Instant::now();
    let mut values = Vec::new();
    for (q, states) in calls {
        values.extend(v.values(q, states).await?);
    }
    Ok((started.elapsed().as_secs_f64(), values))
}

pub async fn run(a: CriticBenchArgs) -> anyhow::Result<()> {
    let calls = calls(a.tasks, a.width)?;
    let states: usize = calls.iter().map(|c| c.1.len()).sum();
    let (mut kept, mut full) = (Vec::new(), Vec::new());
    let mut max_diff = 0f64;
    for _ in 0..a.rounds {
        let (tk, vk) = pass(&a, PREFIXES_KEPT, &calls).await?;
        let (tf, vf) = pass(&a, 0, &calls).await?;
        max_diff = vk.iter().zip(&vf).fold(max_diff, |m, (x, y)| m.max((x - y).abs()));
        kept.push(tk);
        full.push(tf);
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (k, f) = (mean(&kept), mean(&full));
    println!(
        "{} calls, {states} states: prompt kept {k:.2} s ({:.1} states/s), every state in full {f:.2} s ({:.1} states/s): {:.2}x; max |dV| {max_diff:.1e}",
        calls.len(),
        states as f64 / k,
        states as f64 / f,
        f / k
    );
    println!(
        "{}",
        json!({"calls": calls.len(), "states": states, "kept_s": kept, "full_s": full, "speedup": f / k, "max_abs_diff": max_diff, "device": a.device.name()})
    );
    Ok(())
}
