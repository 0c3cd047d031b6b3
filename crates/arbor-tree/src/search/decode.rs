//! Test-time decoding without a tree (OREO §4.4): greedy, one sample, best-of-K by value,
//! majority vote of K (self-consistency) and value-guided step beam search, with any
//! [`ValueFunction`] as the critic. Selection never consults the verifier; the environment
//! only says whether a path has ended and which answer it states.
use arbor_envs::{replay, Environment, Task};
use serde::{Deserialize, Serialize};

use crate::evaluate::ValueFunction;
use crate::policy::{completion_steps, StepPolicy};
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
    /// K sampled solutions; one stating the answer most of them state (self-consistency,
    /// Wang et al. 2022), no critic.
    Majority,
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
        Strategy::Majority => return vote(env, task, policy, p).await,
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

/// Majority of K: K whole solutions sampled independently (duplicates count: they are the
/// votes), each cut at the step where its episode ends or at `max_depth`; then [`majority`].
async fn vote(
    env: &dyn Environment,
    task: &Task,
    policy: &dyn StepPolicy,
    p: &DecodeParams,
) -> Result<Solution, SearchError> {
    let mut done = Vec::new();
    for text in policy.complete(&task.prompt, &[], p.width.max(1)).await? {
        let mut path = Vec::new();
        let mut finished = false;
        for l in completion_steps(&text, "\n").into_iter().take(p.max_depth) {
            path.push(l);
            if replay(env, task, &path).await?.terminal {
                finished = true;
                break;
            }
        }
        done.push((path, finished));
    }
    Ok(majority(env, done))
}

/// The first finished path stating the answer most finished paths state (ties: the answer
/// stated first); its value is that answer's share of the votes. Without any stated answer,
/// the first path.
fn majority(env: &dyn Environment, mut done: Vec<(Vec<String>, bool)>) -> Solution {
    let answers: Vec<Option<String>> = done
        .iter()
        .map(|(steps, fin)| fin.then(|| env.answer_of(steps)).flatten())
        .collect();
    let votes = |a: &String| answers.iter().flatten().filter(|b| *b == a).count();
    let mut best: Option<(usize, usize)> = None; // (index, votes)
    for (i, a) in answers.iter().enumerate() {
        if let Some(a) = a {
            let v = votes(a);
            if best.is_none_or(|(_, bv)| v > bv) {
                best = Some((i, v));
            }
        }
    }
    if done.is_empty() {
        return Solution {
            steps: Vec::new(),
            finished: false,
            value: None,
        };
    }
    let voters = answers.iter().flatten().count();
    let (i, share) = match best {
        Some((i, v)) => (i, Some(v as f64 / voters as f64)),
        None => (0, None),
    };
    let (steps, finished) = done.swap_remove(i);
    Solution {
        steps,
        finished,
        value: share,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Proposal;
    use arbor_envs::math::{MathConfig, MathEnv};
    use async_trait::async_trait;

    /// Whole solutions in a fixed order, for the vote.
    struct Scripted(Vec<String>);

    #[async_trait]
    impl StepPolicy for Scripted {
        async fn propose(&self, _: &str, _: &[String], _: usize) -> Result<Vec<Proposal>, SearchError> {
            Ok(Vec::new())
        }
        fn provenance(&self) -> crate::Provenance {
            crate::Provenance { model: "scripted".into(), temperature: None, seed: None }
        }
        async fn complete(&self, _: &str, _: &[String], n: usize) -> Result<Vec<String>, SearchError> {
            Ok(self.0.iter().take(n).cloned().collect())
        }
    }

    /// The answer most samples state wins although another comes first, equal answers written
    /// differently count together, and cut-off paths do not vote.
    #[tokio::test]
    async fn the_majority_answer_wins() {
        let env = MathEnv::new(MathConfig::default()).unwrap();
        let task = env.sample(1, 3).unwrap().remove(0);
        let s = |t: &str| t.to_string();
        let policy = Scripted(vec![
            s("1+1 = 2\nThe answer is 9"),
            s("The answer is 7"),
            s("3+4 = 7\nThe answer is 7.0"),
            s("The answer is 9"),
            s("thinking\nstill thinking\nmore"),
            s("The answer is 7"),
        ]);
        let p = DecodeParams { strategy: Strategy::Majority, width: 6, max_depth: 2 };
        let sol = solve(&env, &task, &policy, None, &p).await.unwrap();
        assert_eq!(sol.steps, vec![s("The answer is 7")]);
        assert!(sol.finished);
        assert_eq!(sol.value, Some(3.0 / 5.0));
        // K = 2: one vote each, the first answer stated wins.
        let p = DecodeParams { width: 2, ..p };
        let sol = solve(&env, &task, &policy, None, &p).await.unwrap();
        assert_eq!(sol.steps.last(), Some(&s("The answer is 9")));
    }
}
