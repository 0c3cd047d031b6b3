//! `loop.toml`: the environment (`env`, its keys in `[environment]`) and its task slices, the search (`[search]`, `[policy]`,
//! `[evaluator]` as in search.toml), the training (`[train]` as in train.toml) and the
//! evaluation. Every `arbor loop` flag is also a key here.
use arbor_model::DeviceKind;
use arbor_train::{Algo, TrainConfig};
use arbor_tree::job::{EvaluatorFile, EvaluatorKind, PolicyFile, SearchFile};
use arbor_tree::SearchConfig;
use serde::{Deserialize, Serialize};

use crate::backend::{Backend, LlamaCppFile};

/// The frozen reference of iteration t's training.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reference {
    /// π_{t−1}, the policy being trained from (as in Iterative RPO).
    #[default]
    Previous,
    /// π_0, the loop's start.
    Start,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoopConfig {
    pub env: String,
    /// The environment's own config keys (its config file's, e.g. environments/math/config.toml).
    pub environment: toml::Table,
    pub iterations: usize,
    /// Fresh training tasks searched per iteration (iteration t samples with seed `seed + t`).
    pub tasks_per_iteration: usize,
    /// Held-out tasks, the same for every iteration (sampled with `eval_seed`).
    pub eval_tasks: usize,
    pub eval_seed: u64,
    /// Steps at most in an evaluated solution.
    pub eval_max_depth: usize,
    /// Beam width B of value-guided evaluation (when the policy has a critic).
    pub eval_beam: usize,
    /// Sampling temperature of that evaluation (value-guided beam, best-of-B by value, the
    /// majority of B samples, one sample); unset, the search policy's.
    pub eval_temperature: Option<f32>,
    /// The critic's comparison runs on the first `critic_tasks` held-out tasks (unset: all):
    /// value-guided beam scores K² states per step, far slower than greedy on a CPU.
    pub critic_tasks: Option<usize>,
    /// Trees (and evaluation tasks) in flight at once.
    pub concurrency: usize,
    pub seed: u64,
    /// The reference model of the DPO / OREO / TPO terms.
    pub reference: Reference,
    /// Where π_t runs for search and evaluation (embedded, or llamacpp with `[llamacpp]`).
    pub backend: Backend,
    pub llamacpp: LlamaCppFile,
    /// Where training (and the critic of value-guided evaluation) runs: `cpu`, or `libtorch` /
    /// `cuda` / `wgpu` in builds with that feature. A resumed loop may change it.
    pub device: DeviceKind,
    pub search: SearchConfig,
    pub policy: PolicyFile,
    pub evaluator: EvaluatorFile,
    pub train: TrainConfig,
}

impl Default for LoopConfig {
    fn default() -> Self {
        Self {
            env: "math".into(),
            // One-step problems with small numbers: SmolLM2-135M solves some (15% greedy), so
            // the README's loop finds correct trajectories to learn from; the environment's own
            // default (2–4 steps, values to 100) it almost never solves.
            environment: toml::toml! {
                max_episode_steps = 3
                [generator]
                min_steps = 1
                max_steps = 1
                max_value = 10
            },
            iterations: 1,
            tasks_per_iteration: 16,
            eval_tasks: 30,
            eval_seed: 1_000_003,
            eval_max_depth: 10,
            eval_beam: 4,
            eval_temperature: None,
            critic_tasks: None,
            concurrency: 8,
            seed: 0,
            reference: Reference::Previous,
            backend: Backend::Embedded,
            llamacpp: LlamaCppFile::default(),
            device: DeviceKind::Cpu,
            // Small enough that the README's loop on the embedded model finishes in minutes
            // on 2 cores; larger budgets are keys of loop.toml.
            search: SearchConfig {
                iterations: 8,
                width: 3,
                ..SearchConfig::default()
            },
            policy: PolicyFile::default(),
            evaluator: EvaluatorFile {
                kind: EvaluatorKind::Terminal,
                ..EvaluatorFile::default()
            },
            train: TrainConfig {
                algo: Algo::Sft,
                ..TrainConfig::default()
            },
        }
    }
}

impl LoopConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.iterations == 0 || self.tasks_per_iteration == 0 || self.eval_tasks == 0 || self.critic_tasks == Some(0) {
            return Err("iterations, tasks_per_iteration, eval_tasks and critic_tasks must be at least 1".into());
        }
        self.llamacpp.validate()?;
        self.search.validate()?;
        self.train.validate()
    }

    /// The search job of an iteration (search.toml's tables).
    pub fn search_file(&self) -> SearchFile {
        SearchFile {
            search: self.search.clone(),
            policy: self.policy.clone(),
            evaluator: self.evaluator.clone(),
        }
    }
}
