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
    /// K solutions sampled independently ([`chains`]); the one whose final state the critic
    /// values most.
    BestOfN,
    /// The same K samples; one stating the answer most of them state (self-consistency,
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

    /// Whether the strategy picks one of a task's [`chains`] ([`pick`]), so that strategies
    /// compared on the same tasks can share one set of draws.
    pub fn picks_a_chain(self) -> bool {
        matches!(self, Self::Sample | Self::BestOfN | Self::Majority)
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
        Some(v) => Ok(v
            .values(question, paths)
            .await?
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
    value: Option<&dyn ValueFunction>,
    p: &DecodeParams,
) -> Result<Solution, SearchError> {
    let q = task.prompt.as_str();
    let width = p.width.max(1);
    // Live partial solutions and finished ones.
    let mut live: Vec<Vec<String>> = vec![Vec::new()];
    let mut done: Vec<(Vec<String>, bool)> = Vec::new();
    if p.strategy.picks_a_chain() {
        let k = if p.strategy == Strategy::Sample {
            1
        } else {
            width
        };
        let drawn = chains(env, task, policy, k, p.max_depth).await?;
        return pick(env, q, value, p.strategy, drawn).await;
    }
    let (keep, per_state) = if p.strategy == Strategy::Greedy {
        (1, 1)
    } else {
        (width, width)
    };
    for _ in 0..p.max_depth {
        let mut cands: Vec<(Vec<String>, bool)> = Vec::new();
        for state in &live {
            for prop in policy.propose(q, state, per_state).await? {
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
    best(value, q, done).await
}

/// The solution a chain strategy ([`Strategy::picks_a_chain`]) selects from `drawn`, one task's
/// [`chains`]: the first (one sample; under a seeded policy the first of K chains is the chain
/// of K = 1), the majority answer, or the final state the critic values most.
pub async fn pick(
    env: &dyn Environment,
    q: &str,
    value: Option<&dyn ValueFunction>,
    strategy: Strategy,
    drawn: Vec<(Vec<String>, bool)>,
) -> Result<Solution, SearchError> {
    match strategy {
        Strategy::Majority => Ok(majority(env, drawn)),
        Strategy::BestOfN => best(value, q, drawn).await,
        Strategy::Sample => Ok(first(drawn)),
        // A step-wise strategy (greedy, beams) searches instead of picking: taking the first
        // chain for it would report sampling under its name.
        other => Err(SearchError::Other(format!(
            "{other:?} does not pick from drawn chains"
        ))),
    }
}

/// The path the critic values most (ties: the earlier); no critic call for a single path.
async fn best(
    value: Option<&dyn ValueFunction>,
    q: &str,
    mut done: Vec<(Vec<String>, bool)>,
) -> Result<Solution, SearchError> {
    if done.is_empty() {
        return Ok(first(done));
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

/// The first path, or an empty unfinished solution.
fn first(done: Vec<(Vec<String>, bool)>) -> Solution {
    let (steps, finished) = done.into_iter().next().unwrap_or_default();
    Solution {
        steps,
        finished,
        value: None,
    }
}

/// `k` solutions sampled independently one step at a time, in draw order, duplicates kept (they
/// are a vote's ballots), each ending at the step where its episode ends or cut at `max_depth`.
/// Chains that share a partial solution draw their next steps in one request of that many
/// choices, so a seeded policy still samples them independently. A chain whose next line comes
/// back blank goes on as one whole-solution completion would: its remaining steps are one
/// `complete`, cut where the episode ends. Sampling a step at a time stops at the answer where
/// a whole completion runs on to its token limit.
pub async fn chains(
    env: &dyn Environment,
    task: &Task,
    policy: &dyn StepPolicy,
    k: usize,
    max_depth: usize,
) -> Result<Vec<(Vec<String>, bool)>, SearchError> {
    let q = task.prompt.as_str();
    let mut live: Vec<(usize, Vec<String>)> = (0..k).map(|i| (i, Vec::new())).collect();
    let mut done: Vec<(usize, Vec<String>, bool)> = Vec::new();
    for _ in 0..max_depth {
        // Chains with the same partial solution, in first-draw order.
        let mut groups: Vec<(Vec<String>, Vec<usize>)> = Vec::new();
        for (i, path) in live.drain(..) {
            match groups.iter_mut().find(|g| g.0 == path) {
                Some(g) => g.1.push(i),
                None => groups.push((path, vec![i])),
            }
        }
        for (path, ids) in groups {
            let drawn = policy.sample(q, &path, ids.len()).await?;
            let mut blank = Vec::new();
            for (n, &i) in ids.iter().enumerate() {
                match drawn.get(n).filter(|p| !p.text.is_empty()) {
                    Some(p) => {
                        let mut next = path.clone();
                        next.push(p.text.clone());
                        if replay(env, task, &next).await?.terminal {
                            done.push((i, next, true));
                        } else {
                            live.push((i, next));
                        }
                    }
                    None => blank.push(i),
                }
            }
            if !blank.is_empty() {
                let texts = policy.complete(q, &path, blank.len()).await?;
                for (n, i) in blank.into_iter().enumerate() {
                    let text = texts.get(n).map_or("", String::as_str);
                    let (steps, fin) = finish(env, task, path.clone(), text, max_depth).await?;
                    done.push((i, steps, fin));
                }
            }
        }
        if live.is_empty() {
            break;
        }
    }
    // Paths cut off at the depth limit count too (they will verify as wrong).
    done.extend(live.into_iter().map(|(i, p)| (i, p, false)));
    done.sort_by_key(|d| d.0);
    Ok(done.into_iter().map(|(_, p, f)| (p, f)).collect())
}

/// `path` followed by the steps of a completion `text`, up to the step where the episode ends
/// (finished) or `max_depth` steps in all.
async fn finish(
    env: &dyn Environment,
    task: &Task,
    mut path: Vec<String>,
    text: &str,
    max_depth: usize,
) -> Result<(Vec<String>, bool), SearchError> {
    for l in completion_steps(text, "\n") {
        if path.len() >= max_depth {
            break;
        }
        path.push(l);
        if replay(env, task, &path).await?.terminal {
            return Ok((path, true));
        }
    }
    Ok((path, false))
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

    fn step(text: &str) -> Proposal {
        Proposal {
            text: text.to_string(),
            logprob: None,
            tokens: 1,
        }
    }

    /// Whole solutions in a fixed order, drawn a step at a time: the next steps of a partial
    /// solution are those of the scripted solutions that begin with it, in order.
    struct Scripted(Vec<String>);

    #[async_trait]
    impl StepPolicy for Scripted {
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
            steps: &[String],
            n: usize,
        ) -> Result<Vec<Proposal>, SearchError> {
            let next = self
                .0
                .iter()
                .map(|s| completion_steps(s, "\n"))
                .filter_map(|l| {
                    l.starts_with(steps)
                        .then(|| l.get(steps.len()).cloned())
                        .flatten()
                });
            Ok(next.take(n).map(|t| step(&t)).collect())
        }
        fn provenance(&self) -> crate::Provenance {
            crate::Provenance {
                model: "scripted".into(),
                temperature: None,
                seed: None,
            }
        }
        async fn complete(
            &self,
            _: &str,
            _: &[String],
            _: usize,
        ) -> Result<Vec<String>, SearchError> {
            Ok(Vec::new())
        }
    }

    /// Like a seeded server: the i-th of `n` draws at a state is fixed by the state and i, so a
    /// request for one draw always returns the first. Draws by depth; a blank draw's chain goes
    /// on with `complete`, which returns `rest`.
    struct Seeded {
        draws: Vec<Vec<&'static str>>,
        rest: &'static str,
    }

    #[async_trait]
    impl StepPolicy for Seeded {
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
            steps: &[String],
            n: usize,
        ) -> Result<Vec<Proposal>, SearchError> {
            Ok(self.draws[steps.len()]
                .iter()
                .take(n)
                .map(|t| step(t))
                .collect())
        }
        fn provenance(&self) -> crate::Provenance {
            crate::Provenance {
                model: "seeded".into(),
                temperature: None,
                seed: Some(1),
            }
        }
        async fn complete(
            &self,
            _: &str,
            _: &[String],
            n: usize,
        ) -> Result<Vec<String>, SearchError> {
            Ok(vec![self.rest.to_string(); n])
        }
    }

    /// K chains are K independent draws even from a seeded policy: chains at the same state are
    /// drawn in one request (a policy asked once per chain would return the first draw K times,
    /// and the vote would be unanimous); duplicates are kept as ballots; a blank line continues
    /// as a whole completion cut at the answer; draw order is kept.
    #[tokio::test]
    async fn chains_are_independent_draws_kept_in_order() {
        let env = MathEnv::new(MathConfig::default()).unwrap();
        let task = env.sample(1, 3).unwrap().remove(0);
        let policy = Seeded {
            draws: vec![vec![
                "The answer is 7",
                "2+2 = 4",
                "The answer is 7",
                "",
                "The answer is 8",
            ]],
            rest: "work\nThe answer is 9\nmore text",
        };
        let policy = Seeded {
            draws: [policy.draws, vec![vec!["The answer is 9"]]].concat(),
            ..policy
        };
        let got = chains(&env, &task, &policy, 4, 4).await.unwrap();
        let s = |v: &[&str]| v.iter().map(|t| t.to_string()).collect::<Vec<_>>();
        assert_eq!(
            got,
            vec![
                (s(&["The answer is 7"]), true),
                (s(&["2+2 = 4", "The answer is 9"]), true),
                (s(&["The answer is 7"]), true),
                (s(&["work", "The answer is 9"]), true),
            ]
        );
        // 7 and 9 tie two to two: the answer drawn first wins, with half the votes.
        let p = DecodeParams {
            strategy: Strategy::Majority,
            width: 4,
            max_depth: 4,
        };
        let sol = solve(&env, &task, &policy, None, &p).await.unwrap();
        assert_eq!((sol.steps, sol.value), (s(&["The answer is 7"]), Some(0.5)));
        // One sample is the first chain; the depth limit cuts a chain unfinished.
        let p = DecodeParams {
            strategy: Strategy::Sample,
            width: 1,
            max_depth: 1,
        };
        let sol = solve(&env, &task, &policy, None, &p).await.unwrap();
        assert_eq!((sol.steps, sol.finished), (s(&["The answer is 7"]), true));
        let cut = chains(&env, &task, &policy, 2, 1).await.unwrap();
        assert_eq!(cut[1], (s(&["2+2 = 4"]), false));
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
        let p = DecodeParams {
            strategy: Strategy::Majority,
            width: 6,
            max_depth: 2,
        };
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
