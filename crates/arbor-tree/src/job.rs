//! A search job as a library call: `search.toml` ([`SearchFile`]: `[search]`, `[policy]`,
//! `[evaluator]`), the policy and evaluator it names ([`SearchFile::build`]), and
//! [`run_to_dir`], which searches a task set and writes `trees.jsonl` and `errors.jsonl`.
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use arbor_core::Progress;
use arbor_envs::Task;
use arbor_llm::OpenedModel;
use serde::{Deserialize, Serialize};

use crate::evaluate::{Evaluator, Learned, Rollout, SelfEval, TerminalOnly, ValueFunction};
use crate::policy::{LlmStepPolicy, StepPolicy, SyntheticPolicy};
use crate::{SearchConfig, SearchError, Searcher};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum EvaluatorKind {
    /// Only terminal states have value (the environment's verifier).
    Terminal,
    /// The model's probability of "Yes" to "is this correct so far?".
    #[default]
    SelfEval,
    /// Monte Carlo rollouts to the end, scored by the verifier.
    Rollout,
    /// A critic trained by `arbor train --algo oreo` (`[evaluator] value = "DIR"`).
    Learned,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum PolicyKind {
    /// A language model (a server, or the embedded model).
    #[default]
    Llm,
    /// Instant scripted steps that answer at depth 3 (first option right, others wrong): for
    /// bookkeeping benchmarks and pipeline tests, no model involved.
    Synthetic,
}

/// `search.toml`: every `arbor search` flag is also a key here.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SearchFile {
    pub search: SearchConfig,
    pub policy: PolicyFile,
    pub evaluator: EvaluatorFile,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyFile {
    pub kind: PolicyKind,
    pub temperature: f32,
    pub max_step_tokens: u32,
    pub seed: Option<u64>,
}

impl Default for PolicyFile {
    fn default() -> Self {
        Self {
            kind: PolicyKind::Llm,
            temperature: 0.8,
            max_step_tokens: 96,
            seed: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvaluatorFile {
    pub kind: EvaluatorKind,
    pub rollouts: usize,
    /// The critic directory of the `learned` evaluator (`OUT/value` of an OREO run).
    pub value: Option<PathBuf>,
}

impl Default for EvaluatorFile {
    fn default() -> Self {
        Self {
            kind: EvaluatorKind::SelfEval,
            rollouts: 2,
            value: None,
        }
    }
}

impl SearchFile {
    /// The critic directory the `learned` evaluator needs, if that is the evaluator.
    pub fn learned_value_dir(&self) -> Result<Option<&Path>, SearchError> {
        if self.evaluator.kind != EvaluatorKind::Learned {
            return Ok(None);
        }
        self.evaluator.value.as_deref().map(Some).ok_or_else(|| {
            SearchError::Other(
                "--evaluator learned needs --value DIR (the `value/` of an OREO run)".into(),
            )
        })
    }

    /// The step policy and the evaluator this file names. `model` is the policy's model (none
    /// for the synthetic policy); `learned` the critic of the `learned` evaluator; `seed` seeds
    /// the policy when the file does not.
    pub fn build(
        &self,
        tasks: &[Task],
        model: Option<OpenedModel>,
        learned: Option<Arc<dyn ValueFunction>>,
        seed: u64,
    ) -> Result<(Arc<dyn StepPolicy>, Arc<dyn Evaluator>), SearchError> {
        let p = &self.policy;
        let model = match p.kind {
            PolicyKind::Synthetic => None,
            PolicyKind::Llm => Some(model.ok_or_else(|| {
                SearchError::Other("the llm policy needs a model".into())
            })?),
        };
        let policy: Arc<dyn StepPolicy> = match &model {
            None => Arc::new(SyntheticPolicy::for_tasks(tasks, 3)),
            Some((m, name)) => {
                let mut policy = LlmStepPolicy::new(m.clone(), name.clone());
                policy.temperature = p.temperature;
                policy.max_step_tokens = p.max_step_tokens;
                policy.seed = p.seed.or(Some(seed));
                Arc::new(policy)
            }
        };
        let e = &self.evaluator;
        let evaluator: Arc<dyn Evaluator> = match (e.kind, model) {
            (EvaluatorKind::Terminal, _) => Arc::new(TerminalOnly),
            (EvaluatorKind::SelfEval, Some((model, model_name))) => {
                Arc::new(SelfEval { model, model_name })
            }
            (EvaluatorKind::SelfEval, None) => return Err(SearchError::Other(
                "self-evaluation needs a model; use --evaluator terminal or rollout with --policy synthetic".into(),
            )),
            (EvaluatorKind::Rollout, _) => Arc::new(Rollout {
                policy: policy.clone(),
                n: e.rollouts.max(1),
                delimiter: "\n".into(),
            }),
            (EvaluatorKind::Learned, _) => {
                self.learned_value_dir()?;
                Arc::new(Learned(learned.ok_or_else(|| {
                    SearchError::Other("the learned evaluator needs its critic loaded".into())
                })?))
            }
        };
        Ok((policy, evaluator))
    }
}

/// What [`run_to_dir`] did.
#[derive(Debug, Clone)]
pub struct SearchSummary {
    /// Trees searched by this call.
    pub ok: usize,
    /// Trees kept from an interrupted earlier call (`resume`).
    pub kept: usize,
    pub failed: usize,
    /// Tasks not started because the searcher was stopped; `resume` searches them.
    pub not_started: usize,
    pub seconds: f64,
    pub trees_path: PathBuf,
    pub errors_path: PathBuf,
}

/// Searches every task (`concurrency` trees at once) and writes each tree to `out/trees.jsonl`
/// as it finishes, each failure to `out/errors.jsonl`, counting finished trees in `progress`. With `resume`, the trees an interrupted
/// call wrote are kept (a line torn by a kill is dropped) and only the other tasks are searched;
/// failed ones are searched again. Fails only when writing fails.
pub async fn run_to_dir(
    searcher: &Searcher,
    tasks: &[Task],
    concurrency: usize,
    out: &Path,
    resume: bool,
    progress: &Progress,
) -> Result<SearchSummary, SearchError> {
    let io = |p: &Path| {
        let p = p.display().to_string();
        move |e: std::io::Error| SearchError::Other(format!("{p}: {e}"))
    };
    std::fs::create_dir_all(out).map_err(io(out))?;
    let trees_path = out.join("trees.jsonl");
    let errors_path = out.join("errors.jsonl");
    let kept = if resume && trees_path.is_file() {
        keep_finished(&trees_path, tasks)?
    } else {
        Default::default()
    };
    let todo: Vec<Task> = tasks
        .iter()
        .filter(|t| !kept.contains(&t.id))
        .cloned()
        .collect();
    progress.start(kept.len() as u64, tasks.len() as u64, "trees");
    let tasks = &todo[..];
    // Appended to after the kept trees; truncated for a fresh search.
    let file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(!kept.is_empty())
        .truncate(kept.is_empty())
        .open(&trees_path)
        .map_err(io(&trees_path))?;
    let mut trees_out = std::io::BufWriter::new(file);
    let mut errors_out = std::fs::File::create(&errors_path).map_err(io(&errors_path))?;
    let started = Instant::now();
    let (mut ok, mut failed, mut io_error) = (0usize, 0usize, None);
    searcher
        .search_many(tasks, concurrency, |task, result| {
            let written = match result {
                Ok(tree) => {
                    ok += 1;
                    writeln!(trees_out, "{}", tree.to_json_line()).and_then(|_| trees_out.flush())
                }
                Err(e) => {
                    failed += 1;
                    tracing::warn!(task = %task.id, "search failed: {e}");
                    writeln!(
                        errors_out,
                        "{}",
                        serde_json::json!({"task_id": task.id, "error": e.to_string()})
                    )
                }
            };
            if let Err(e) = written {
                io_error.get_or_insert(e);
            }
            progress.inc();
        })
        .await;
    if let Some(e) = io_error {
        return Err(SearchError::Other(format!("writing {}: {e}", out.display())));
    }
    Ok(SearchSummary {
        ok,
        kept: kept.len(),
        failed,
        not_started: tasks.len() - ok - failed,
        seconds: started.elapsed().as_secs_f64(),
        trees_path,
        errors_path,
    })
}

/// Rewrites `trees.jsonl` with the readable trees of `tasks` it holds (a torn last line, or a
/// tree of another task, is dropped) and returns their task ids.
fn keep_finished(
    path: &Path,
    tasks: &[Task],
) -> Result<std::collections::BTreeSet<String>, SearchError> {
    let wanted: std::collections::BTreeSet<&str> = tasks.iter().map(|t| t.id.as_str()).collect();
    let loaded = crate::store::load_jsonl(path)?;
    let mut ids = std::collections::BTreeSet::new();
    let mut text = String::new();
    for tree in loaded.trees {
        if wanted.contains(tree.id.as_str()) && ids.insert(tree.id.clone()) {
            text.push_str(&tree.to_json_line());
            text.push('\n');
        }
    }
    arbor_core::write_atomic(path, text)
        .map_err(|e| SearchError::Other(format!("{}: {e}", path.display())))?;
    Ok(ids)
}
