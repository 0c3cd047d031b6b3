//! Accuracy of a policy on an environment's task set (any decoding strategy of
//! [`crate::search::decode`]), with a Wilson 95% interval.
use std::sync::Arc;

use arbor_core::Progress;
use arbor_envs::{replay, Environment, Task};
use futures::stream::{self, StreamExt};
use serde::{Deserialize, Serialize};

use crate::evaluate::ValueFunction;
use crate::policy::StepPolicy;
use crate::search::decode::{chains, pick, solve, DecodeParams, Solution, Strategy};
use crate::SearchError;

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

impl Report {
    /// The accuracy of `results`, with its interval.
    pub fn of(results: Vec<TaskResult>) -> Report {
        let (correct, n) = (results.iter().filter(|r| r.correct).count(), results.len());
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

/// Accuracy of `b` minus accuracy of `a` on the same tasks (matched by id), paired: the
/// difference, its 95% interval and McNemar's z = (wins − losses) / √(wins + losses), where a
/// win is a task `b` solves and `a` does not.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Paired {
    pub n: usize,
    pub wins: usize,
    pub losses: usize,
    pub difference: f64,
    pub ci95: (f64, f64),
    pub z: f64,
}

pub fn paired(a: &Report, b: &Report) -> Paired {
    let before: std::collections::HashMap<&str, bool> = a
        .results
        .iter()
        .map(|r| (r.task_id.as_str(), r.correct))
        .collect();
    let (mut n, mut wins, mut losses) = (0, 0, 0);
    for r in &b.results {
        if let Some(&was) = before.get(r.task_id.as_str()) {
            n += 1;
            match (was, r.correct) {
                (false, true) => wins += 1,
                (true, false) => losses += 1,
                _ => {}
            }
        }
    }
    let nf = n.max(1) as f64;
    let d = (wins as f64 - losses as f64) / nf;
    // Variance of the mean of per-task differences in {−1, 0, 1}.
    let var = ((wins + losses) as f64 / nf - d * d) / nf;
    let half = 1.96 * var.max(0.0).sqrt();
    let disc = (wins + losses) as f64;
    Paired {
        n,
        wins,
        losses,
        difference: d,
        ci95: (d - half, d + half),
        z: if disc > 0.0 {
            (wins as f64 - losses as f64) / disc.sqrt()
        } else {
            0.0
        },
    }
}

/// Solves every task (`concurrency` at once, so model calls batch) and verifies the answers,
/// counting finished tasks in `progress`. A task whose search fails counts as wrong and keeps
/// its error.
pub async fn evaluate(
    env: Arc<dyn Environment>,
    tasks: &[Task],
    policy: Arc<dyn StepPolicy>,
    value: Option<Arc<dyn ValueFunction>>,
    params: &DecodeParams,
    concurrency: usize,
    progress: &Progress,
) -> Report {
    let per_task = for_each_task(tasks, concurrency, progress, |t| {
        let (env, policy, value) = (env.clone(), policy.clone(), value.clone());
        async move {
            let s = solve(env.as_ref(), t, policy.as_ref(), value.as_deref(), params).await;
            vec![verified(env.as_ref(), t, s.map_err(|e| e.to_string())).await]
        }
    })
    .await;
    Report::of(per_task.into_iter().flatten().collect())
}

/// One report per strategy of `strategies` (each one that [`Strategy::picks_a_chain`]), all
/// picking from the same `k` [`chains`] of each task: the reports differ by the selection rule
/// alone, and the policy samples once for all of them. Any other strategy reports an error on
/// every task.
#[allow(clippy::too_many_arguments)]
pub async fn evaluate_shared_chains(
    env: Arc<dyn Environment>,
    tasks: &[Task],
    policy: Arc<dyn StepPolicy>,
    value: Option<Arc<dyn ValueFunction>>,
    strategies: &[Strategy],
    k: usize,
    max_depth: usize,
    concurrency: usize,
    progress: &Progress,
) -> Vec<Report> {
    let per_task = for_each_task(tasks, concurrency, progress, |t| {
        let (env, policy, value) = (env.clone(), policy.clone(), value.clone());
        async move {
            let drawn = chains(env.as_ref(), t, policy.as_ref(), k.max(1), max_depth)
                .await
                .map_err(|e| e.to_string());
            let mut out = Vec::new();
            for &s in strategies {
                let sol = match &drawn {
                    Ok(d) => pick(env.as_ref(), &t.prompt, value.as_deref(), s, d.clone())
                        .await
                        .map_err(|e| e.to_string()),
                    Err(e) => Err(e.clone()),
                };
                out.push(verified(env.as_ref(), t, sol).await);
            }
            out
        }
    })
    .await;
    (0..strategies.len())
        .map(|i| Report::of(per_task.iter().map(|r| r[i].clone()).collect()))
        .collect()
}

/// `run` on every task, `concurrency` at once (so model calls batch), in task order, each
/// finished task counted in `progress`.
async fn for_each_task<'a, F, Fut>(
    tasks: &'a [Task],
    concurrency: usize,
    progress: &Progress,
    run: F,
) -> Vec<Vec<TaskResult>>
where
    F: Fn(&'a Task) -> Fut,
    Fut: std::future::Future<Output = Vec<TaskResult>>,
{
    progress.start(0, tasks.len() as u64, "tasks");
    stream::iter(tasks.iter().map(|t| {
        let fut = run(t);
        async move {
            let r = fut.await;
            progress.inc();
            r
        }
    }))
    .buffered(concurrency.max(1))
    .collect()
    .await
}

/// The verified result of solving `t` (a failed solve counts as wrong and keeps its error).
async fn verified(env: &dyn Environment, t: &Task, solved: Result<Solution, String>) -> TaskResult {
    let checked = match solved {
        Ok(s) => match replay(env, t, &s.steps).await {
            Ok(o) => Ok((s, o)),
            Err(e) => Err(SearchError::from(e).to_string()),
        },
        Err(e) => Err(e),
    };
    match checked {
        Ok((s, o)) => TaskResult {
            task_id: t.id.clone(),
            correct: o.verified == Some(true),
            steps: s.steps,
            value: s.value,
            error: None,
        },
        Err(e) => TaskResult {
            task_id: t.id.clone(),
            correct: false,
            steps: Vec::new(),
            value: None,
            error: Some(e),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Proposal;
    use std::sync::atomic::Ordering::Relaxed;

    fn report(correct: &[bool]) -> Report {
        let results: Vec<TaskResult> = correct
            .iter()
            .enumerate()
            .map(|(i, &c)| TaskResult {
                task_id: format!("t{i}"),
                correct: c,
                steps: Vec::new(),
                value: None,
                error: None,
            })
            .collect();
        Report::of(results)
    }

    #[test]
    fn paired_difference_counts_wins_and_losses_on_the_same_tasks() {
        let a = report(&[true, false, false, false, true]);
        let b = report(&[true, true, true, false, false]);
        let p = paired(&a, &b);
        assert_eq!((p.n, p.wins, p.losses), (5, 2, 1));
        assert!((p.difference - 0.2).abs() < 1e-12);
        assert!((p.z - 1.0 / 3f64.sqrt()).abs() < 1e-12);
        // var = (3/5 − 0.04) / 5 = 0.112
        assert!((p.ci95.1 - (0.2 + 1.96 * 0.112f64.sqrt())).abs() < 1e-12);
        assert_eq!(paired(&a, &a).z, 0.0);
    }

    /// Each draw states a number no other draw states (a running count), and V is that number.
    struct Counting {
        draws: std::sync::atomic::AtomicUsize,
        requests: std::sync::atomic::AtomicUsize,
    }

    #[async_trait::async_trait]
    impl StepPolicy for Counting {
        async fn propose(
            &self,
            _: &str,
            _: &[String],
            _: usize,
        ) -> Result<Vec<Proposal>, SearchError> {
            Ok(Vec::new())
        }
        async fn sample(
            &self,
            _: &str,
            _: &[String],
            n: usize,
        ) -> Result<Vec<Proposal>, SearchError> {
            self.requests.fetch_add(1, Relaxed);
            Ok((0..n)
                .map(|_| Proposal {
                    text: format!("The answer is {}", self.draws.fetch_add(1, Relaxed)),
                    logprob: None,
                    tokens: 1,
                })
                .collect())
        }
        async fn complete(
            &self,
            _: &str,
            _: &[String],
            _: usize,
        ) -> Result<Vec<String>, SearchError> {
            Ok(Vec::new())
        }
        fn provenance(&self) -> crate::Provenance {
            crate::Provenance {
                model: "counting".into(),
                temperature: None,
                seed: None,
            }
        }
    }

    struct StatedNumber;

    #[async_trait::async_trait]
    impl ValueFunction for StatedNumber {
        async fn values(
            &self,
            _: &str,
            paths: &[(Vec<String>, bool)],
        ) -> Result<Vec<f64>, SearchError> {
            let n = |p: &(Vec<String>, bool)| {
                p.0.last().and_then(|s| s.rsplit(' ').next()?.parse().ok())
            };
            Ok(paths.iter().map(|p| n(p).unwrap_or(f64::NAN)).collect())
        }
    }

    /// One sample, the vote and best-of-K pick from one set of draws per task: the policy is
    /// asked once per task, one sample is the first draw, best-of-K the draw V ranks highest
    /// (a pass per strategy would ask three times and state numbers of other draws).
    #[tokio::test]
    async fn shared_chains_are_drawn_once_for_every_strategy() {
        use arbor_envs::math::{MathConfig, MathEnv};
        let env: Arc<dyn Environment> = Arc::new(MathEnv::new(MathConfig::default()).unwrap());
        let tasks = env.sample(3, 5).unwrap();
        let policy = Arc::new(Counting {
            draws: 0.into(),
            requests: 0.into(),
        });
        // Value-guided beam searches step by step: it cannot be read off the drawn chains.
        let strategies = [
            Strategy::Sample,
            Strategy::Majority,
            Strategy::BestOfN,
            Strategy::ValueBeam,
        ];
        let reports = evaluate_shared_chains(
            env.clone(),
            &tasks,
            policy.clone(),
            Some(Arc::new(StatedNumber)),
            &strategies,
            4,
            3,
            1,
            &Progress::default(),
        )
        .await;
        assert_eq!(policy.requests.load(Relaxed), 3);
        let stated = |r: &Report, i: usize| r.results[i].steps.clone();
        for i in 0..3 {
            let draw = |d: usize| vec![format!("The answer is {}", 4 * i + d)];
            assert_eq!(stated(&reports[0], i), draw(0));
            // Four answers, one vote each: the first stated wins, with a quarter of the votes.
            assert_eq!(
                (stated(&reports[1], i), reports[1].results[i].value),
                (draw(0), Some(0.25))
            );
            assert_eq!(stated(&reports[2], i), draw(3));
            let beam = &reports[3].results[i];
            assert!(
                !beam.correct
                    && beam
                        .error
                        .as_deref()
                        .is_some_and(|e| e.contains("ValueBeam"))
            );
        }
    }

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
