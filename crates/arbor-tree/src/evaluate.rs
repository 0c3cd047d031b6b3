//! Evaluators: the value of a non-terminal state. Terminal states are always scored by the
//! environment's own verifier (see `arbor_envs::replay`); these estimate everything else.
use std::sync::Arc;

use arbor_envs::{replay, Environment, Task};
use arbor_llm::{LanguageModel, LlmRequest, SamplingParams};
use async_trait::async_trait;

use crate::policy::StepPolicy;
use crate::prompt::self_eval_prompt;
use crate::{Evaluation, SearchError};

/// What an evaluator sees: the environment, the task and the steps of the state.
pub struct EvalInput<'a> {
    pub env: &'a dyn Environment,
    pub task: &'a Task,
    pub steps: &'a [String],
}

#[async_trait]
pub trait Evaluator: Send + Sync {
    /// Fills `value_estimate` (in [0, 1]) and whatever else the evaluator knows.
    async fn evaluate(&self, input: &EvalInput<'_>) -> Result<Evaluation, SearchError>;
    fn name(&self) -> &'static str;
}

/// No estimate: non-terminal states are worth 0 until a terminal below them is backed up.
pub struct TerminalOnly;

#[async_trait]
impl Evaluator for TerminalOnly {
    async fn evaluate(&self, _: &EvalInput<'_>) -> Result<Evaluation, SearchError> {
        Ok(Evaluation {
            value_estimate: Some(0.0),
            ..Default::default()
        })
    }
    fn name(&self) -> &'static str {
        "terminal"
    }
}

/// LLM self-evaluation: P("Yes") / (P("Yes") + P("No")) for the next token after a
/// "is this correct?" prompt, read from the top log-probabilities.
pub struct SelfEval {
    pub model: Arc<dyn LanguageModel>,
    pub model_name: String,
}

/// The normalised probability of a yes among the top alternatives of one token.
pub fn yes_probability(top: &[(String, f32)]) -> f64 {
    let (mut yes, mut no) = (0.0f64, 0.0f64);
    for (tok, lp) in top {
        match tok.trim().to_ascii_lowercase().as_str() {
            "yes" => yes += f64::from(*lp).exp(),
            "no" => no += f64::from(*lp).exp(),
            _ => {}
        }
    }
    if yes + no == 0.0 {
        0.5
    } else {
        yes / (yes + no)
    }
}

#[async_trait]
impl Evaluator for SelfEval {
    async fn evaluate(&self, input: &EvalInput<'_>) -> Result<Evaluation, SearchError> {
        let req = LlmRequest::text(
            &self.model_name,
            self_eval_prompt(&input.task.prompt, input.steps),
        )
        .with_params(SamplingParams {
            n: 1,
            temperature: Some(0.0),
            max_tokens: Some(1),
            logprobs: true,
            top_logprobs: 10,
            ..Default::default()
        });
        let c = self.model.generate(&req).await?;
        let first = c
            .choices
            .first()
            .and_then(|ch| ch.logprobs.as_ref())
            .and_then(|lp| lp.first());
        let p = match first {
            Some(t) => {
                let mut top: Vec<(String, f32)> =
                    t.top.iter().map(|a| (a.token.clone(), a.logprob)).collect();
                if top.is_empty() {
                    top.push((t.token.clone(), t.logprob));
                }
                yes_probability(&top)
            }
            None => yes_probability(&[(c.text().to_string(), 0.0)]),
        };
        Ok(Evaluation {
            judge_score: Some(p),
            value_estimate: Some(p),
            ..Default::default()
        })
    }
    fn name(&self) -> &'static str {
        "self-eval"
    }
}

/// Monte Carlo rollouts: complete the solution `n` times with the policy and take the fraction
/// the environment's verifier accepts (Math-Shepherd's soft estimate).
pub struct Rollout {
    pub policy: Arc<dyn StepPolicy>,
    pub n: usize,
    pub delimiter: String,
}

#[async_trait]
impl Evaluator for Rollout {
    async fn evaluate(&self, input: &EvalInput<'_>) -> Result<Evaluation, SearchError> {
        let completions = self
            .policy
            .complete(&input.task.prompt, input.steps, self.n)
            .await?;
        let mut correct = 0usize;
        for text in &completions {
            let mut steps = input.steps.to_vec();
            steps.extend(crate::policy::completion_steps(text, &self.delimiter));
            if replay(input.env, input.task, &steps).await?.verified == Some(true) {
                correct += 1;
            }
        }
        let v = if completions.is_empty() {
            0.0
        } else {
            correct as f64 / completions.len() as f64
        };
        Ok(Evaluation {
            value_estimate: Some(v),
            ..Default::default()
        })
    }
    fn name(&self) -> &'static str {
        "rollout"
    }
}

/// A learned state-value function V(s) (arbor-train's OREO critic is one).
#[async_trait]
pub trait ValueFunction: Send + Sync {
    /// V of each path's state, in order. A `finished` path is valued at the state before its
    /// last action (a critic is trained on states that precede actions).
    async fn values(
        &self,
        question: &str,
        paths: &[(Vec<String>, bool)],
    ) -> Result<Vec<f64>, SearchError>;
}

/// Uses a [`ValueFunction`] as the evaluator.
pub struct Learned(pub Arc<dyn ValueFunction>);

#[async_trait]
impl Evaluator for Learned {
    async fn evaluate(&self, input: &EvalInput<'_>) -> Result<Evaluation, SearchError> {
        let v = self
            .0
            .values(&input.task.prompt, &[(input.steps.to_vec(), false)])
            .await?;
        Ok(Evaluation {
            value_estimate: v.first().copied(),
            ..Default::default()
        })
    }
    fn name(&self) -> &'static str {
        "learned"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yes_probability_normalises_over_yes_and_no() {
        let p = yes_probability(&[
            ("Yes".into(), (0.6f32).ln()),
            (" no".into(), (0.2f32).ln()),
            ("Maybe".into(), (0.2f32).ln()),
        ]);
        assert!((p - 0.75).abs() < 1e-6);
        assert_eq!(yes_probability(&[("x".into(), 0.0)]), 0.5);
    }
}
