//! Search jobs on the queue: one item per task, a worker builds the task's tree with the job's
//! search config, policy and evaluator, and the tree is the item's record; the export writes
//! `trees.jsonl` (in task order) and `errors.jsonl` as `arbor search` does.
use std::path::Path;
use std::sync::Arc;

use arbor_envs::Task;
use arbor_llm::{ModelOpener, ModelSpec};
use arbor_tree::job::{PolicyKind, SearchFile};
use arbor_tree::Searcher;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::queue::{Claim, CriticLoader, Done, JobInfo, NewItem, NewJob, Runner, WorkQueue};
use crate::QueueError;

/// What a worker needs to rebuild `arbor search`'s searcher on another machine.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SearchJob {
    pub file: SearchFile,
    pub env: String,
    /// The environment's config file (TOML text), carried so workers need no copy of it.
    pub env_config: Option<String>,
    /// The policy's server (none: the embedded model on the worker) and model name.
    pub model_url: Option<String>,
    pub model: Option<String>,
    pub seed: u64,
}

/// The job of searching `tasks`, one item each.
pub fn job(spec: &SearchJob, tasks: &[Task], input: &str, max_attempts: i32) -> NewJob {
    let rows = tasks
        .iter()
        .enumerate()
        .map(|(index, t)| NewItem {
            index,
            epoch: 0,
            item: Some(serde_json::to_string(t).expect("tasks serialize")),
            done: None,
        })
        .collect();
    NewJob {
        kind: "search".into(),
        config: serde_json::to_string(spec).expect("search jobs serialize"),
        fingerprint: arbor_core::content_hash(&("arbor.search-job/1", spec)),
        input: input.into(),
        input_sha256: arbor_core::content_hash(&tasks),
        max_attempts,
        rows,
    }
}

fn spec_of(info: &JobInfo) -> Result<SearchJob, QueueError> {
    serde_json::from_str(&info.config)
        .map_err(|e| QueueError::Job(format!("job {}: its search config does not read ({e})", info.id)))
}

pub struct SearchRunner {
    searcher: Searcher,
}

/// The job's searcher: its environment, its policy's model through `opener`, its critic
/// through `critic` (the `learned` evaluator).
pub async fn runner(
    queue: &dyn WorkQueue,
    info: &JobInfo,
    opener: &dyn ModelOpener,
    critic: Option<&CriticLoader>,
) -> Result<SearchRunner, QueueError> {
    let spec = spec_of(info)?;
    let fail = |e: String| QueueError::Job(format!("job {}: {e}", info.id));
    let tasks = queue
        .items(info.id)
        .await?
        .iter()
        .flatten()
        .map(|t| serde_json::from_str::<Task>(t))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(format!("a stored task does not read ({e})")))?;
    let table = match &spec.env_config {
        Some(text) => toml::from_str(text).map_err(|e| fail(format!("the environment config: {e}")))?,
        None => toml::Table::new(),
    };
    let env: Arc<dyn arbor_envs::Environment> =
        Arc::from(arbor_envs::with_table(&spec.env, table, "the job's environment config").map_err(|e| fail(e.to_string()))?);
    let model = match spec.file.policy.kind {
        PolicyKind::Synthetic => None,
        PolicyKind::Llm => Some(
            opener
                .open(&ModelSpec { url: spec.model_url.clone(), model: spec.model.clone(), ..Default::default() })
                .await
                .map_err(|e| fail(e.to_string()))?,
        ),
    };
    let learned = match spec.file.learned_value_dir().map_err(|e| fail(e.to_string()))? {
        Some(dir) => {
            let load = critic.ok_or_else(|| fail("the learned evaluator needs a critic loader".into()))?;
            Some(load(dir).map_err(|e| fail(format!("{}: {e}", dir.display())))?)
        }
        None => None,
    };
    let (policy, evaluator) = spec.file.build(&tasks, model, learned, spec.seed).map_err(|e| fail(e.to_string()))?;
    Ok(SearchRunner {
        searcher: Searcher::new(env, policy, evaluator, spec.file.search.clone()),
    })
}

fn failed(task_id: &str, error: String) -> Done {
    Done {
        record: json!({"task_id": task_id, "error": error}).to_string(),
        status: "failed".into(),
        pairs: 0,
        wins: None,
    }
}

#[async_trait::async_trait]
impl Runner for SearchRunner {
    async fn play(&self, _queue: &dyn WorkQueue, c: &Claim) -> Result<Done, QueueError> {
        let task: Task = match serde_json::from_str(&c.item) {
            Ok(t) => t,
            Err(e) => return Ok(failed("", format!("the stored task does not read ({e})"))),
        };
        Ok(match self.searcher.search(&task).await {
            Ok(tree) => Done { record: tree.to_json_line(), status: "tree".into(), pairs: 0, wins: None },
            Err(e) => failed(&task.id, e.to_string()),
        })
    }

    fn given_up(&self, c: &Claim, cause: String) -> Done {
        let id = serde_json::from_str::<Task>(&c.item).map(|t| t.id).unwrap_or_default();
        failed(&id, cause)
    }
}

/// Writes `trees.jsonl` (the trees, in task order) and `errors.jsonl` into `out`; returns
/// (trees, failures).
pub async fn export(queue: &dyn WorkQueue, info: &JobInfo, out: &Path) -> Result<(usize, usize), QueueError> {
    let (mut trees, mut errors, mut n) = (String::new(), String::new(), (0, 0));
    for (status, record) in queue.records(info.id).await? {
        let (text, count) = if status == "tree" { (&mut trees, &mut n.0) } else { (&mut errors, &mut n.1) };
        text.push_str(&record);
        text.push('\n');
        *count += 1;
    }
    let io = |e: std::io::Error| QueueError::Job(format!("{}: {e}", out.display()));
    std::fs::create_dir_all(out).map_err(io)?;
    arbor_core::write_atomic(&out.join("trees.jsonl"), trees).map_err(io)?;
    arbor_core::write_atomic(&out.join("errors.jsonl"), errors).map_err(io)?;
    Ok(n)
}
