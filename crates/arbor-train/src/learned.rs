//! A trained OREO critic as arbor-tree's [`ValueFunction`]: the `learned` evaluator of tree
//! search and the critic of best-of-n and value-guided beam decoding.
use std::path::Path;
use std::collections::VecDeque;
use std::sync::Mutex;

use arbor_envs::prompt::step_prompt;
use arbor_model::host::{left_pad, to_f64};
use arbor_model::llama::{KvCache, LlamaConfig};
use arbor_model::tokenizer::TextTokenizer;
use arbor_model::DeviceKind;
use arbor_tree::evaluate::ValueFunction;
use arbor_tree::SearchError;
use async_trait::async_trait;
use burn::tensor::Device;

use crate::value::ValueModel;

pub struct LearnedValue {
    critic: Mutex<Critic>,
    cfg: LlamaConfig,
    tokenizer: TextTokenizer,
    device: Device,
    /// Questions whose prompt prefill is kept; 0 computes every state in full.
    keep: usize,
}

/// How many questions' prompt prefills are kept (one row each; about 3.7 MB for a
/// SmolLM2-135M prompt of 80 tokens). Value-guided search asks about the states of one task
/// step after step, with other tasks' calls in between.
pub const PREFIXES_KEPT: usize = 32;

struct Critic {
    model: ValueModel,
    /// Least recently used first: a question, its prompt's leading token ids and their keys
    /// and values.
    prefixes: VecDeque<(String, Vec<u32>, KvCache)>,
}

impl LearnedValue {
    /// Loads a critic directory written by `arbor train --algo oreo` (`OUT/value`).
    pub fn load(dir: &Path, device: DeviceKind) -> Result<Self, String> {
        let device = device.device();
        let (model, cfg) = ValueModel::load(dir, &device).map_err(|e| e.to_string())?;
        let tokenizer = TextTokenizer::from_hf_dir(dir).map_err(|e| e.to_string())?;
        Ok(Self {
            critic: Mutex::new(Critic {
                model,
                prefixes: VecDeque::new(),
            }),
            cfg,
            tokenizer,
            device,
            keep: PREFIXES_KEPT,
        })
    }

    /// Keeps the prompt prefills of the `questions` most recent questions (0: none, every state
    /// in full, as `arbor bench critic` compares).
    pub fn keeping_prompts(mut self, questions: usize) -> Self {
        self.keep = questions;
        self
    }

    /// The token ids V reads for each path: a finished path is read one token before its end,
    /// at the state before its last action (the critic was trained on states that precede
    /// actions).
    fn state_ids(&self, question: &str, paths: &[(Vec<String>, bool)]) -> Result<Vec<Vec<u32>>, String> {
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
        Ok(ids)
    }

    /// V of each path's state. The question's prompt is computed once and its keys and values
    /// kept: each call runs only the paths' own steps on top of it.
    fn values_blocking(
        &self,
        question: &str,
        paths: &[(Vec<String>, bool)],
    ) -> Result<Vec<f64>, String> {
        if paths.is_empty() {
            return Ok(Vec::new());
        }
        let ids = self.state_ids(question, paths)?;
        let mut critic = self
            .critic
            .lock()
            .map_err(|_| "the value model's lock is poisoned".to_string())?;
        if self.keep == 0 {
            return Ok(values_uncached(&critic.model, &self.cfg, &ids, &self.device));
        }
        // Every path must keep at least one token of its own past the shared prefix.
        let room = ids.iter().map(Vec::len).min().unwrap_or(0).saturating_sub(1);
        let fits = |p: &[u32]| p.len() <= room && ids.iter().all(|t| t.starts_with(p));
        let hit = critic
            .prefixes
            .iter()
            .position(|(q, p, _)| q == question && fits(p));
        let entry = match hit {
            Some(i) => critic.prefixes.remove(i).expect("a found index"),
            None => {
                let prompt = self
                    .tokenizer
                    .encode(&step_prompt(question, &[]), true)
                    .map_err(|e| e.to_string())?;
                let n = ids.iter().fold(prompt.len().min(room), |n, t| common(&t[..n], &prompt));
                if n == 0 {
                    return Ok(values_uncached(&critic.model, &self.cfg, &ids, &self.device));
                }
                let prefix = prompt[..n].to_vec();
                let mut cache = KvCache::new(&self.cfg, 1, n, &self.device);
                critic
                    .model
                    .trunk
                    .hidden_cached(&self.cfg, &[prefix.clone()], &[0], &mut cache, &self.device);
                (question.to_string(), prefix, cache)
            }
        };
        let n = entry.1.len();
        let longest = ids.iter().map(Vec::len).max().unwrap_or(0) - n;
        let suffixes: Vec<Vec<u32>> = ids
            .iter()
            .map(|t| {
                let mut s = t[n..].to_vec();
                s.resize(longest, 0); // right pads: no real position sees them
                s
            })
            .collect();
        let mut cache = entry.2.repeat(ids.len(), n + longest, &self.device);
        let v = critic
            .model
            .values_cached(&self.cfg, &suffixes, &mut cache, &self.device);
        critic.prefixes.push_back(entry);
        if critic.prefixes.len() > self.keep {
            critic.prefixes.pop_front();
        }
        let v = to_f64(v);
        Ok(ids
            .iter()
            .enumerate()
            .map(|(r, t)| v[r * longest + t.len() - n - 1])
            .collect())
    }
}

/// How many leading ids `a` and `b` share.
fn common(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// V at the last position of each of `ids`, every path computed in full (left-padded).
fn values_uncached(model: &ValueModel, cfg: &LlamaConfig, ids: &[Vec<u32>], device: &Device) -> Vec<f64> {
    let (tokens, pads) = left_pad(ids);
    let len = tokens.first().map_or(1, Vec::len);
    to_f64(model.values(cfg, &tokens, &pads, device).narrow(1, len - 1, 1))
}

#[async_trait]
impl ValueFunction for LearnedValue {
    async fn values(
        &self,
        question: &str,
        paths: &[(Vec<String>, bool)],
    ) -> Result<Vec<f64>, SearchError> {
        // A forward pass blocks: hand the worker's other tasks to another thread where the
        // runtime has one (block_in_place panics on a current-thread runtime).
        let run = || self.values_blocking(question, paths);
        let multi = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        let v = if multi {
            tokio::task::block_in_place(run)
        } else {
            run()
        };
        v.map_err(SearchError::Other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arbor_model::init::{init_tiny, TinySpec};
    use burn::tensor::{Distribution, Tensor};

    /// A zero-headed critic over a tiny random model, as `arbor train --algo oreo` writes it.
    fn critic(dir: &Path) -> LearnedValue {
        let spec = TinySpec::minimal(1);
        init_tiny(&spec, &dir.join("policy")).unwrap();
        let start =
            crate::StartModel::load(&dir.join("policy").display().to_string(), DeviceKind::Cpu)
                .unwrap();
        ValueModel::new(start.model, &start.cfg, &start.device)
            .save(&dir.join("value"), &start.cfg, &start.tokenizer)
            .unwrap();
        LearnedValue::load(&dir.join("value"), DeviceKind::Cpu).unwrap()
    }

    /// The prompt's keys and values, kept and reused, give what full forward passes give: the
    /// same V at the same positions, on the first call and on later ones.
    #[test]
    fn the_kept_prompt_gives_the_values_of_full_forwards() {
        let dir = tempfile::tempdir().unwrap();
        let mut v = critic(dir.path());
        {
            let model = &mut v.critic.get_mut().unwrap().model;
            let d = v.cfg.d_model;
            let head = Tensor::<2>::random([d, 1], Distribution::Normal(0.0, 1.0), &v.device);
            model.head = crate::value::head_param(head);
        }
        let q = "What is 12+7?";
        let s = |x: &[&str]| x.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let calls = [
            vec![
                (s(&[]), false),
                (s(&["12+7 = 19"]), false),
                (s(&["12+7 = 19", "The answer is 19"]), true),
            ],
            // Another call on the same question: the kept prompt serves it.
            vec![(s(&["12+7 = 18"]), false), (s(&["12 + 7 = 19"]), true)],
            // Shorter than the kept prefix: a prefix of its own.
            vec![(s(&[]), true)],
        ];
        for (i, paths) in calls.iter().enumerate() {
            let ids = v.state_ids(q, paths).unwrap();
            let want = {
                let c = v.critic.lock().unwrap();
                values_uncached(&c.model, &v.cfg, &ids, &v.device)
            };
            let got = v.values_blocking(q, paths).unwrap();
            assert_eq!(got.len(), want.len());
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() < 1e-4 * (1.0 + w.abs()), "call {i}: {got:?} vs {want:?}");
            }
            let kept = v.critic.lock().unwrap().prefixes.len();
            assert_eq!(kept, [1, 1, 2][i], "call {i}");
        }
        // A head that reads nothing would pass the comparison trivially.
        let spread = v.values_blocking(q, &calls[0]).unwrap();
        assert!(spread.windows(2).all(|w| (w[0] - w[1]).abs() > 1e-3), "{spread:?}");
    }

    #[test]
    fn values_come_back_on_either_runtime_flavor() {
        let dir = tempfile::tempdir().unwrap();
        let v = critic(dir.path());
        let paths = vec![(vec!["1+1 = 2".to_string()], false), (vec![], true)];
        for rt in [
            tokio::runtime::Builder::new_current_thread().build().unwrap(),
            tokio::runtime::Builder::new_multi_thread().build().unwrap(),
        ] {
            let got = rt
                .block_on(ValueFunction::values(&v, "What is 1+1?", &paths))
                .unwrap();
            // The head starts at zero, so V is 0 everywhere.
            assert_eq!(got, vec![0.0, 0.0]);
        }
    }
}
