use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::Task;

/// The result of one action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub observation: String,
    pub reward: f64,
    pub done: bool,
}

/// The final verdict on an episode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verification {
    pub correct: bool,
    /// In [0, 1]: 1 for a solved task; partial credit where the environment gives it.
    pub score: f64,
    pub detail: String,
}

#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    #[error("{0}")]
    BadTask(String),
    #[error("{path}:{line}: {msg}")]
    BadFile {
        path: String,
        line: usize,
        msg: String,
    },
    #[error("{0}")]
    Io(String),
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Tool(String),
}

/// One play-through of a task.
#[async_trait]
pub trait Episode: Send {
    /// What the agent sees now (the initial observation before any step).
    fn observation(&self) -> String;
    async fn step(&mut self, action: &str) -> Step;
    fn done(&self) -> bool;
    /// Checks the outcome against the task's reference or goal.
    async fn verify(&self) -> Verification;
}

/// A task set and the rules of its episodes.
pub trait Environment: Send + Sync {
    fn name(&self) -> &'static str;
    fn description(&self) -> &'static str;
    /// `n` tasks, a pure function of `seed`.
    fn sample(&self, n: usize, seed: u64) -> Result<Vec<Task>, EnvError>;
    fn start(&self, task: &Task) -> Result<Box<dyn Episode>, EnvError>;
    /// Names of the arbor-tools tools a judge may use on this environment's tasks.
    fn judge_tools(&self) -> Vec<&'static str>;
    /// The answer a finished path states, in a form equal answers share (majority voting
    /// compares these); `None` when it states none. Default: its last step, trimmed.
    fn answer_of(&self, steps: &[String]) -> Option<String> {
        let last = steps.last()?.trim();
        (!last.is_empty()).then(|| last.to_string())
    }
}
