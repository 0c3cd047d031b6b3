//! The machinery every algorithm shares: the [`Searcher`] (environment, policy, evaluator,
//! config), node expansion with replay and evaluation, attach + backup, live counters.
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use arbor_envs::{replay, Environment, Outcome, Task};

use super::config::SearchConfig;
use crate::evaluate::{EvalInput, Evaluator};
use crate::policy::{priors, StepPolicy};
use crate::{Evaluation, NodeId, SearchError, Tree};

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
    /// Once set (Ctrl-C), `search_many` starts no more trees; those in flight finish.
    pub stop: Arc<AtomicBool>,
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
            stop: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The searcher stopping when `stop` is set.
    pub fn with_stop(mut self, stop: Arc<AtomicBool>) -> Self {
        self.stop = stop;
        self
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
