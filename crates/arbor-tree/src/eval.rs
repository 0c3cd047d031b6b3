//! Accuracy of a policy on an environment's task set (any decoding strategy of
//! [`crate::search::decode`]), with a Wilson 95% interval.
use std::sync::Arc;

use arbor_envs::{replay, Environment, Task};
use futures::stream::{self, StreamExt};
use serde::{Deserialize, Serialize};

use crate::evaluate::ValueFunction;
use crate::policy::StepPolicy;
use crate::search::decode::{solve, DecodeParams};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskResult {
    pub task_id: String,
    pub correct: bool,
    pub steps: Vec<String>,
    pub value: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub n: usize,
    pub correct: usize,
    pub accuracy: f64,
    /// Wilson score interval at 95%.
    pub ci95: (f64, f64),
    pub results: Vec<TaskResult>,
}

/// Wilson score interval for `k` successes out of `n` at z = 1.96.
pub fn wilson(k: usize, n: usize) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let (z, nf) = (1.96f64, n as f64);
    let p = k as f64 / nf;
    let den = 1.0 + z * z / nf;
    let mid = (p + z * z / (2.0 * nf)) / den;
    let half = z * ((p * (1.0 - p) + z * z / (4.0 * nf)) / nf).sqrt() / den;
    ((mid - half).max(0.0), (mid + half).min(1.0))
}

/// Solves every task (`concurrency` at once, so model calls batch) and verifies the answers.
/// A task whose search fails counts as wrong and keeps its error.
pub async fn evaluate(
    env: Arc<dyn Environment>,
    tasks: &[Task],
    policy: Arc<dyn StepPolicy>,
    value: Option<Arc<dyn ValueFunction>>,
    params: &DecodeParams,
    concurrency: usize,
) -> Report {
    let results: Vec<TaskResult> = stream::iter(tasks.iter().map(|t| {
        let (env, policy, value) = (env.clone(), policy.clone(), value.clone());
        async move {
            let run = async {
                let s = solve(env.as_ref(), t, policy.as_ref(), value.as_deref(), params).await?;
                let o = replay(env.as_ref(), t, &s.steps).await?;
                Ok::<_, crate::SearchError>(TaskResult {
                    task_id: t.id.clone(),
                    correct: o.verified == Some(true),
                    steps: s.steps,
                    value: s.value,
                    error: None,
                })
            };
            run.await.unwrap_or_else(|e| TaskResult {
                task_id: t.id.clone(),
                correct: false,
                steps: Vec::new(),
                value: None,
                error: Some(e.to_string()),
            })
        }
    }))
    .buffered(concurrency.max(1))
    .collect()
    .await;
    let correct = results.iter().filter(|r| r.correct).count();
    let n = results.len();
    Report {
        n,
        correct,
        accuracy: if n == 0 {
            0.0
        } else {
            correct as f64 / n as f64
        },
        ci95: wilson(correct, n),
        results,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_interval_matches_the_formula() {
        let (lo, hi) = wilson(8, 10);
        assert!(
            (lo - 0.4902).abs() < 1e-3 && (hi - 0.9433).abs() < 1e-3,
            "{lo} {hi}"
        );
        assert_eq!(wilson(0, 0), (0.0, 1.0));
        let (lo, _) = wilson(0, 50);
        assert_eq!(lo, 0.0);
    }
}
