//! Test-time search with a learned value (OREO §4.4): value-guided step beam search and
//! best-of-K by value, plus greedy decoding as the baseline. Selection never consults the
//! verifier; the environment only says whether a path has ended.
use std::sync::Mutex;

use arbor_envs::{Environment, Task};
use arbor_model::llama::LlamaConfig;
use arbor_model::tokenizer::TextTokenizer;
use arbor_tree::evaluate::ValueFunction;
use arbor_tree::policy::StepPolicy;
use arbor_tree::prompt::step_prompt;
use arbor_tree::search::replay;
use arbor_tree::SearchError;
use async_trait::async_trait;
use burn::tensor::Device;

use crate::value::ValueModel;

/// A trained critic as arbor-tree's [`ValueFunction`] (the `learned` evaluator).
pub struct LearnedValue {
    model: Mutex<ValueModel>,
    cfg: LlamaConfig,
    tokenizer: TextTokenizer,
    device: Device,
}

impl LearnedValue {
    /// Loads a critic directory written by `arbor train --algo oreo` (`OUT/value`).
    pub fn load(dir: &std::path::Path, device: Device) -> Result<Self, String> {
        let (model, cfg) = ValueModel::load(dir, &device).map_err(|e| e.to_string())?;
        let tokenizer = TextTokenizer::from_hf_dir(dir).map_err(|e| e.to_string())?;
        Ok(Self {
            model: Mutex::new(model),
            cfg,
            tokenizer,
            device,
        })
    }

    /// V of each path's state. A finished path is read one token before its end, at the state
    /// before its last action: the critic was trained on states that precede actions.
    pub fn values(
        &self,
        question: &str,
        paths: &[(Vec<String>, bool)],
    ) -> Result<Vec<f64>, String> {
        if paths.is_empty() {
            return Ok(Vec::new());
        }
        let mut ids = Vec::with_capacity(paths.len());
        for (steps, finished) in paths {
            let mut t = self
                .tokenizer
                .encode(&step_prompt(question, steps), true)
                .map_err(|e| e.to_string())?;
            if *finished && t.len() > 1 {
                t.pop();
            }
            ids.push(t);
        }
        let len = ids.iter().map(Vec::len).max().unwrap_or(1);
        let pads: Vec<usize> = ids.iter().map(|t| len - t.len()).collect();
        let tokens: Vec<Vec<u32>> = ids
            .iter()
            .map(|t| {
                std::iter::repeat_n(0, len - t.len())
                    .chain(t.iter().copied())
                    .collect()
            })
            .collect();
        let model = self
            .model
            .lock()
            .map_err(|_| "the value model's lock is poisoned".to_string())?;
        let v = model
            .values(&self.cfg, &tokens, &pads, &self.device)
            .narrow(1, len - 1, 1);
        Ok(v.into_data()
            .convert::<f64>()
            .try_to_vec::<f64>()
            .map_err(|e| format!("{e:?}"))?)
    }
}

#[async_trait]
impl ValueFunction for LearnedValue {
    async fn value(&self, question: &str, steps: &[String]) -> Result<f64, SearchError> {
        let v = tokio::task::block_in_place(|| self.values(question, &[(steps.to_vec(), false)]))
            .map_err(SearchError::Other)?;
        Ok(v[0])
    }
}

/// How `arbor eval` picks a solution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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

/// A finished (or cut-off) solution.
#[derive(Debug, Clone)]
pub struct Solution {
    pub steps: Vec<String>,
    pub finished: bool,
    pub value: Option<f64>,
}

pub struct SearchParams {
    pub strategy: Strategy,
    /// K for best-of-n, B for value-beam.
    pub width: usize,
    pub max_depth: usize,
}

async fn ended(env: &dyn Environment, task: &Task, steps: &[String]) -> Result<bool, SearchError> {
    Ok(replay(env, task, steps).await?.terminal)
}

fn score(
    value: Option<&LearnedValue>,
    question: &str,
    paths: &[(Vec<String>, bool)],
) -> Result<Vec<Option<f64>>, SearchError> {
    match value {
        Some(v) => Ok(tokio::task::block_in_place(|| v.values(question, paths))
            .map_err(SearchError::Other)?
            .into_iter()
            .map(Some)
            .collect()),
        None => Ok(vec![None; paths.len()]),
    }
}

/// Solves `task` with `policy` (its temperature is the sampler's) and, where the strategy needs
/// it, the critic.
pub async fn solve(
    env: &dyn Environment,
    task: &Task,
    policy: &dyn StepPolicy,
    value: Option<&LearnedValue>,
    p: &SearchParams,
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
                let fin = ended(env, task, &path).await?;
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
            let vals = score(value, q, &open)?;
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
        score(value, q, &done)?
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
