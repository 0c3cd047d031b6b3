//! Test-time decoding without a tree (OREO §4.4): greedy, one sample, best-of-K by value and
//! value-guided step beam search, with any [`ValueFunction`] as the critic. Selection never
//! consults the verifier; the environment only says whether a path has ended.
use arbor_envs::{replay, Environment, Task};
use serde::{Deserialize, Serialize};

use crate::evaluate::ValueFunction;
use crate::policy::StepPolicy;
use crate::SearchError;

/// How a solution is picked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// One step at a time at temperature 0.
    Greedy,
    /// One solution sampled at the policy's temperature (pass@1 of the sampler).
    Sample,
    /// K sampled solutions; the one whose final state the critic values most.
    BestOfN,
    /// Keep B partial solutions, sample B next steps for each, keep the B with the highest V.
    ValueBeam,
}

impl Strategy {
    /// Whether the strategy ranks paths with a critic.
    pub fn needs_value(self) -> bool {
        matches!(self, Self::BestOfN | Self::ValueBeam)
    }
}

/// A finished (or cut-off) solution.
#[derive(Debug, Clone)]
pub struct Solution {
    pub steps: Vec<String>,
    pub finished: bool,
    pub value: Option<f64>,
}

#[derive(Debug, Clone)]
pub struct DecodeParams {
    pub strategy: Strategy,
    /// K for best-of-n, B for value-beam.
    pub width: usize,
    pub max_depth: usize,
}

async fn score(
    value: Option<&dyn ValueFunction>,
    question: &str,
    paths: &[(Vec<String>, bool)],
) -> Result<Vec<Option<f64>>, SearchError> {
    match value {
        Some(v) => Ok(v.values(question, paths).await?.into_iter().map(Some).collect()),
        None => Ok(vec![None; paths.len()]),
    }
}

/// Solves `task` with `policy` (its temperature is the sampler's) and, where the strategy needs
/// it, the critic.
pub async fn solve(
    env: &dyn Environment,
    task: &Task,
    policy: &dyn StepPolicy,
    value: Option<&dyn ValueFunction>,
    p: &DecodeParams,
) -> Result<Solution, SearchError> {
    let q = task.prompt.as_str();
    let width = p.width.max(1);
    // Live partial solutions and finished ones.
    let mut live: Vec<Vec<String>> = vec![Vec::new()];
    let mut done: Vec<(Vec<String>, bool)> = Vec::new();
    let (keep, per_state) = match p.strategy {
        Strategy::Greedy | Strategy::Sample => (1, 1),
        Strategy::BestOfN => (width, 1),
        Strategy::ValueBeam => (width, width),
    };
    for depth in 0..p.max_depth {
        let mut cands: Vec<(Vec<String>, bool)> = Vec::new();
        for (i, state) in live.iter().enumerate() {
            // Best-of-n fans out K samples at the root and follows each chain alone after.
            let k = if p.strategy == Strategy::BestOfN && depth == 0 && i == 0 {
                width
            } else {
                per_state
            };
            for prop in policy.propose(q, state, k).await? {
                let mut path = state.clone();
                path.push(prop.text);
                let fin = replay(env, task, &path).await?.terminal;
                cands.push((path, fin));
            }
        }
        if cands.is_empty() {
            break;
        }
        let (fin, open): (Vec<_>, Vec<_>) = cands.into_iter().partition(|c| c.1);
        done.extend(fin);
        let room = keep.saturating_sub(done.len().min(keep - 1));
        live = if p.strategy == Strategy::ValueBeam && open.len() > room {
            let vals = score(value, q, &open).await?;
            let mut order: Vec<usize> = (0..open.len()).collect();
            order.sort_by(|&a, &b| {
                vals[b]
                    .unwrap_or(0.0)
                    .total_cmp(&vals[a].unwrap_or(0.0))
                    .then(a.cmp(&b))
            });
            order
                .into_iter()
                .take(room)
                .map(|i| open[i].0.clone())
                .collect()
        } else {
            open.into_iter().take(room).map(|c| c.0).collect()
        };
        if live.is_empty() || done.len() >= keep {
            break;
        }
    }
    // Paths cut off at the depth limit compete too (they will verify as wrong).
    done.extend(live.into_iter().map(|s| (s, false)));
    if done.is_empty() {
        return Ok(Solution {
            steps: Vec::new(),
            finished: false,
            value: None,
        });
    }
    let vals = if done.len() > 1 {
        score(value, q, &done).await?
    } else {
        vec![None]
    };
    let best = (0..done.len())
        .max_by(|&a, &b| {
            vals[a]
                .unwrap_or(f64::NEG_INFINITY)
                .total_cmp(&vals[b].unwrap_or(f64::NEG_INFINITY))
                .then(b.cmp(&a))
        })
        .unwrap_or(0);
    let (steps, finished) = done.swap_remove(best);
    Ok(Solution {
        steps,
        finished,
        value: vals[best],
    })
}
