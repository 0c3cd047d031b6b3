//! Search over reasoning steps: the shared machinery (configuration, environment replay, node
//! expansion, counters) and the algorithms in [`mcts`], [`tot`] and [`beam`].
//!
//! The split follows llm-reasoners: the world is an arbor-envs [`Environment`], the step
//! proposer is a [`StepPolicy`], the state scorer an [`Evaluator`], and the algorithms here know
//! nothing of HTTP or burn.
pub mod beam;
pub mod mcts;
pub mod tot;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arbor_envs::{Environment, Task};
use futures::stream::{self, StreamExt};
use serde::{Deserialize, Serialize};

use crate::evaluate::{EvalInput, Evaluator};
use crate::policy::{priors, StepPolicy};
use crate::select::Rule;
use crate::{Evaluation, NodeId, SearchError, Tree};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Algo {
    #[default]
    Mcts,
    TotBfs,
    TotDfs,
    Beam,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum RuleName {
    #[default]
    Puct,
    Uct,
}

/// Every knob of every algorithm (one TOML table; keys not used by the chosen algorithm are
/// ignored).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SearchConfig {
    pub algo: Algo,
    /// Steps below the root after which a path is cut off and verified as it stands.
    pub max_depth: u32,
    /// Children proposed per expansion (MCTS expansion width, ToT k, beam expansions per beam).
    pub width: usize,
    /// MCTS: selection rule and exploration constant (1.0 as in MCTS-DPO).
    pub rule: RuleName,
    pub c: f64,
    /// MCTS: simulations per tree.
    pub iterations: usize,
    /// MCTS: simulations of one tree in flight at once (virtual loss keeps them apart).
    pub parallel: usize,
    /// ToT-BFS: states kept per depth (b).
    pub breadth: usize,
    /// ToT-DFS: children below this value are pruned.
    pub threshold: f64,
    /// Node budget: MCTS and ToT-DFS stop once the tree has this many nodes.
    pub max_nodes: usize,
    /// Beam search: beam width B.
    pub beam: usize,
}

impl Default for SearchConfig {
    fn default() -> Self {
        Self {
            algo: Algo::Mcts,
            max_depth: 8,
            width: 3,
            rule: RuleName::Puct,
            c: 1.0,
            iterations: 16,
            parallel: 4,
            breadth: 2,
            threshold: 0.5,
            max_nodes: 256,
            beam: 3,
        }
    }
}

impl SearchConfig {
    pub fn rule(&self) -> Rule {
        match self.rule {
            RuleName::Puct => Rule::Puct { c: self.c },
            RuleName::Uct => Rule::Uct { c: self.c },
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("max_depth", self.max_depth as usize),
            ("width", self.width),
            ("iterations", self.iterations),
            ("parallel", self.parallel),
            ("breadth", self.breadth),
            ("max_nodes", self.max_nodes),
            ("beam", self.beam),
        ];
        for (k, v) in positive {
            if v == 0 {
                return Err(format!("search.{k} must be at least 1"));
            }
        }
        if !(self.c.is_finite() && self.c >= 0.0) {
            return Err("search.c must be a finite number >= 0".into());
        }
        Ok(())
    }
}

/// Live counters for progress display and reports.
#[derive(Debug, Default)]
pub struct Counters {
    pub nodes: AtomicU64,
    pub policy_calls: AtomicU64,
    pub evaluations: AtomicU64,
    pub trees_done: AtomicU64,
    /// Best terminal reward seen so far (f64 bits).
    best_bits: AtomicU64,
}

impl Counters {
    pub fn best_value(&self) -> f64 {
        f64::from_bits(self.best_bits.load(Ordering::Relaxed))
    }
    fn offer_best(&self, v: f64) {
        let _ = self
            .best_bits
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                (v > f64::from_bits(b)).then(|| v.to_bits())
            });
    }
}

/// What a search runs with.
pub struct Searcher {
    pub env: Arc<dyn Environment>,
    pub policy: Arc<dyn StepPolicy>,
    pub evaluator: Arc<dyn Evaluator>,
    pub config: SearchConfig,
    pub counters: Arc<Counters>,
}

/// Where a path ends up in the environment.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub terminal: bool,
    /// The verifier's score for terminal paths (0 otherwise).
    pub reward: f64,
    pub verified: Option<bool>,
}

/// Replays `steps` in a fresh episode of `task` and reports whether the path has ended and, if
/// so, the verifier's verdict.
pub async fn replay(
    env: &dyn Environment,
    task: &Task,
    steps: &[String],
) -> Result<Outcome, SearchError> {
    let mut episode = env.start(task)?;
    for s in steps {
        if episode.done() {
            break;
        }
        episode.step(s).await;
    }
    if episode.done() {
        let v = episode.verify().await;
        Ok(Outcome {
            terminal: true,
            reward: v.score,
            verified: Some(v.correct),
        })
    } else {
        Ok(Outcome {
            terminal: false,
            reward: 0.0,
            verified: None,
        })
    }
}

/// A child produced by an expansion, ready to attach.
#[derive(Debug, Clone)]
pub struct Expansion {
    pub text: String,
    pub prior: f64,
    pub terminal: bool,
    pub reward: Option<f64>,
    pub eval: Evaluation,
    /// The value backed up for this child: the verifier's reward at a terminal, else the
    /// evaluator's estimate.
    pub value: f64,
}

impl Searcher {
    pub fn new(
        env: Arc<dyn Environment>,
        policy: Arc<dyn StepPolicy>,
        evaluator: Arc<dyn Evaluator>,
        config: SearchConfig,
    ) -> Self {
        Self {
            env,
            policy,
            evaluator,
            config,
            counters: Arc::new(Counters::default()),
        }
    }

    /// Builds one tree for `task` with the configured algorithm.
    pub async fn search(&self, task: &Task) -> Result<Tree, SearchError> {
        let tree = match self.config.algo {
            Algo::Mcts => mcts::run(self, task).await?,
            Algo::TotBfs => tot::bfs(self, task).await?,
            Algo::TotDfs => tot::dfs(self, task).await?,
            Algo::Beam => beam::run(self, task).await?,
        };
        self.counters.trees_done.fetch_add(1, Ordering::Relaxed);
        Ok(tree)
    }

    /// Searches many tasks, `concurrency` trees at once, so their model calls go out together;
    /// each finished tree (or its error) is handed to `done` as it completes.
    pub async fn search_many<F>(&self, tasks: &[Task], concurrency: usize, mut done: F)
    where
        F: FnMut(&Task, Result<Tree, SearchError>),
    {
        let mut results = stream::iter(
            tasks
                .iter()
                .map(|t| async move { (t, self.search(t).await) }),
        )
        .buffer_unordered(concurrency.max(1));
        while let Some((task, result)) = results.next().await {
            done(task, result);
        }
    }

    /// Proposes and scores the children of `node` (nothing is attached yet).
    pub async fn expand(
        &self,
        tree: &Tree,
        task: &Task,
        node: NodeId,
    ) -> Result<Vec<Expansion>, SearchError> {
        let steps = tree.steps(node);
        let depth = tree.node(node)?.depth + 1;
        let proposals = self
            .policy
            .propose(&task.prompt, &steps, self.config.width)
            .await?;
        self.counters.policy_calls.fetch_add(1, Ordering::Relaxed);
        let priors = priors(&proposals);
        let scored = proposals.into_iter().zip(priors).map(|(p, prior)| {
            let mut path = steps.clone();
            path.push(p.text.clone());
            async move {
                let mut outcome = replay(self.env.as_ref(), task, &path).await?;
                if !outcome.terminal && depth >= self.config.max_depth {
                    // Cut off at the depth limit: a path that never finished has not solved the task.
                    outcome = Outcome {
                        terminal: true,
                        reward: 0.0,
                        verified: Some(false),
                    };
                }
                let (eval, value) = if outcome.terminal {
                    self.counters.offer_best(outcome.reward);
                    (
                        Evaluation {
                            verified: outcome.verified,
                            ..Default::default()
                        },
                        outcome.reward,
                    )
                } else {
                    self.counters.evaluations.fetch_add(1, Ordering::Relaxed);
                    let e = self
                        .evaluator
                        .evaluate(&EvalInput {
                            env: self.env.as_ref(),
                            task,
                            steps: &path,
                        })
                        .await?;
                    let v = e.value_estimate.unwrap_or(0.0);
                    (e, v)
                };
                Ok::<_, SearchError>(Expansion {
                    text: p.text,
                    prior,
                    terminal: outcome.terminal,
                    reward: outcome.terminal.then_some(outcome.reward),
                    eval,
                    value,
                })
            }
        });
        futures::future::try_join_all(scored).await
    }

    /// Attaches expansions under `parent` and backs each child's value up to the root.
    pub fn attach(
        &self,
        tree: &mut Tree,
        parent: NodeId,
        children: Vec<Expansion>,
    ) -> Result<Vec<NodeId>, SearchError> {
        let provenance = self.policy.provenance();
        let mut ids = Vec::with_capacity(children.len());
        for c in children {
            let id = tree.add_child(parent, c.text, c.prior)?;
            let n = tree.node_mut(id)?;
            n.terminal = c.terminal;
            n.reward = c.reward;
            n.eval = c.eval;
            n.provenance = Some(provenance.clone());
            tree.backup(id, c.value)?;
            ids.push(id);
        }
        self.counters
            .nodes
            .fetch_add(ids.len() as u64, Ordering::Relaxed);
        Ok(ids)
    }

    /// Expands every node of `layer` at once and attaches the children; returns them all.
    pub async fn expand_layer(
        &self,
        tree: &mut Tree,
        task: &Task,
        layer: &[NodeId],
    ) -> Result<Vec<NodeId>, SearchError> {
        let expansions =
            futures::future::try_join_all(layer.iter().map(|&n| self.expand(tree, task, n)))
                .await?;
        let mut children = Vec::new();
        for (parent, exp) in layer.iter().zip(expansions) {
            children.extend(self.attach(tree, *parent, exp)?);
        }
        Ok(children)
    }

    /// A fresh tree for `task` (the root is the prompt).
    pub fn new_tree(&self, task: &Task) -> Tree {
        let mut t = Tree::new(task.id.clone(), task.prompt.clone(), task.reference.clone());
        t.env = Some(task.env.clone());
        t
    }
}

/// The value a node stands for when it is reached again: its reward at a terminal, else its
/// evaluation.
pub fn node_value(tree: &Tree, id: NodeId) -> f64 {
    tree.node(id)
        .map(|n| n.reward.or(n.eval.value_estimate).unwrap_or(0.0))
        .unwrap_or(0.0)
}
