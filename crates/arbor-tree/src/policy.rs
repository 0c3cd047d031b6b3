//! Step policies: what proposes the next reasoning steps of a state.
use std::sync::Arc;

use arbor_llm::{LanguageModel, LlmRequest, SamplingParams};
use async_trait::async_trait;

use arbor_envs::prompt::step_prompt;
use crate::SearchError;

/// A proposed next step with its log-probability under the policy, when known.
#[derive(Debug, Clone, PartialEq)]
pub struct Proposal {
    pub text: String,
    /// Summed token log-probability of the step.
    pub logprob: Option<f64>,
    pub tokens: usize,
}

#[async_trait]
pub trait StepPolicy: Send + Sync {
    /// Up to `k` distinct next steps after `steps` (fewer if the policy repeats itself).
    async fn propose(
        &self,
        question: &str,
        steps: &[String],
        k: usize,
    ) -> Result<Vec<Proposal>, SearchError>;
    /// `n` next steps drawn independently, in draw order, duplicates and blank ones kept (the
    /// ballots of a vote: `propose` would merge them).
    async fn sample(
        &self,
        question: &str,
        steps: &[String],
        n: usize,
    ) -> Result<Vec<Proposal>, SearchError>;
    /// The model name and sampling settings recorded as each node's provenance.
    fn provenance(&self) -> crate::Provenance;
    /// Completes the solution from `steps` to its end in one call per sample (for rollouts).
    async fn complete(
        &self,
        question: &str,
        steps: &[String],
        n: usize,
    ) -> Result<Vec<String>, SearchError>;
}

/// A policy backed by any [`LanguageModel`]: a raw-text completion of the step prompt that stops
/// at the step delimiter ("\n").
pub struct LlmStepPolicy {
    model: Arc<dyn LanguageModel>,
    model_name: String,
    pub temperature: f32,
    pub max_step_tokens: u32,
    pub max_solution_tokens: u32,
    pub delimiter: String,
    pub seed: Option<u64>,
}

impl LlmStepPolicy {
    pub fn new(model: Arc<dyn LanguageModel>, model_name: impl Into<String>) -> Self {
        Self {
            model,
            model_name: model_name.into(),
            temperature: 0.8,
            max_step_tokens: 96,
            max_solution_tokens: 384,
            delimiter: "\n".into(),
            seed: None,
        }
    }

    fn request(
        &self,
        question: &str,
        steps: &[String],
        n: usize,
        stop: Vec<String>,
        max_tokens: u32,
    ) -> LlmRequest {
        // The seed is mixed with the state so that repeated searches are reproducible while
        // different states still sample differently.
        let seed = self.seed.map(|s| s ^ fxhash(question, steps));
        LlmRequest::text(&self.model_name, step_prompt(question, steps)).with_params(
            SamplingParams {
                n: n as u32,
                temperature: Some(self.temperature),
                max_tokens: Some(max_tokens),
                stop,
                seed,
                logprobs: true,
                ..SamplingParams::default()
            },
        )
    }
}

fn fxhash(question: &str, steps: &[String]) -> u64 {
    arbor_core::fnv1a(
        question
            .bytes()
            .chain(steps.iter().flat_map(|s| s.bytes().chain([0u8]))),
    )
}

#[async_trait]
impl StepPolicy for LlmStepPolicy {
    async fn propose(
        &self,
        question: &str,
        steps: &[String],
        k: usize,
    ) -> Result<Vec<Proposal>, SearchError> {
        let mut out: Vec<Proposal> = Vec::new();
        for p in self.sample(question, steps, k).await? {
            if !p.text.is_empty() && !out.iter().any(|o| o.text == p.text) {
                out.push(p);
            }
        }
        Ok(out)
    }

    async fn sample(
        &self,
        question: &str,
        steps: &[String],
        n: usize,
    ) -> Result<Vec<Proposal>, SearchError> {
        let req = self.request(
            question,
            steps,
            n,
            vec![self.delimiter.clone()],
            self.max_step_tokens,
        );
        let c = self.model.generate(&req).await?;
        Ok(c.choices
            .into_iter()
            .map(|choice| {
                let (logprob, tokens) = match &choice.logprobs {
                    Some(lp) => (
                        Some(lp.iter().map(|t| f64::from(t.logprob)).sum()),
                        lp.len(),
                    ),
                    None => (None, 0),
                };
                Proposal {
                    text: choice.text.trim().to_string(),
                    logprob,
                    tokens,
                }
            })
            .collect())
    }

    fn provenance(&self) -> crate::Provenance {
        crate::Provenance {
            model: self.model_name.clone(),
            temperature: Some(self.temperature),
            seed: self.seed,
        }
    }

    async fn complete(
        &self,
        question: &str,
        steps: &[String],
        n: usize,
    ) -> Result<Vec<String>, SearchError> {
        let req = self.request(question, steps, n, Vec::new(), self.max_solution_tokens);
        let c = self.model.generate(&req).await?;
        Ok(c.choices.into_iter().map(|c| c.text).collect())
    }
}

/// The steps of a completion written in one call: its pieces between `delimiter`s, trimmed,
/// empty ones dropped (rollouts and majority votes read whole solutions this way).
pub fn completion_steps(text: &str, delimiter: &str) -> Vec<String> {
    text.split(delimiter)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// Priors for sibling proposals: a softmax over each step's mean token log-probability (so
/// long steps are not penalised for their length); uniform when log-probabilities are missing.
pub fn priors(proposals: &[Proposal]) -> Vec<f64> {
    let means: Option<Vec<f64>> = proposals
        .iter()
        .map(|p| p.logprob.map(|lp| lp / p.tokens.max(1) as f64))
        .collect();
    match means {
        Some(m) if !m.is_empty() => {
            let max = m.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = m.iter().map(|x| (x - max).exp()).collect();
            let s: f64 = e.iter().sum();
            e.into_iter().map(|x| x / s).collect()
        }
        _ => vec![1.0 / proposals.len().max(1) as f64; proposals.len()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priors_are_a_softmax_of_mean_logprobs() {
        let p = |lp: f64, t: usize| Proposal {
            text: String::new(),
            logprob: Some(lp),
            tokens: t,
        };
        let pr = priors(&[p(-2.0, 2), p(-4.0, 2)]);
        // means -1 and -2: softmax = [e^0, e^-1] / (1 + e^-1)
        let z = 1.0 + (-1.0f64).exp();
        assert!((pr[0] - 1.0 / z).abs() < 1e-12 && (pr[1] - (-1.0f64).exp() / z).abs() < 1e-12);
        let none = Proposal {
            text: String::new(),
            logprob: None,
            tokens: 0,
        };
        assert_eq!(priors(&[none.clone(), none]), vec![0.5, 0.5]);
    }
}

/// A policy that answers at once without a model, for bookkeeping benchmarks and tests of the
/// search algorithms: at each state it proposes `k` numbered steps; from depth `answer_depth`
/// on, the steps give a final answer, correct for the first proposal and wrong for the others.
pub struct SyntheticPolicy {
    pub answer_depth: usize,
    /// Reference answer by question.
    answers: std::collections::HashMap<String, String>,
}

impl SyntheticPolicy {
    pub fn for_tasks(tasks: &[arbor_envs::Task], answer_depth: usize) -> Self {
        let answers = tasks
            .iter()
            .map(|t| (t.prompt.clone(), t.reference.clone().unwrap_or_default()))
            .collect();
        Self {
            answer_depth,
            answers,
        }
    }
}

#[async_trait]
impl StepPolicy for SyntheticPolicy {
    async fn propose(
        &self,
        question: &str,
        steps: &[String],
        k: usize,
    ) -> Result<Vec<Proposal>, SearchError> {
        let reference = self
            .answers
            .get(question)
            .map(String::as_str)
            .unwrap_or("0");
        Ok((0..k)
            .map(|i| {
                let text = if steps.len() + 1 >= self.answer_depth {
                    if i == 0 {
                        format!("The answer is {reference}")
                    } else {
                        format!("The answer is {reference}{i}")
                    }
                } else {
                    format!("Step {} option {i}", steps.len() + 1)
                };
                Proposal {
                    text,
                    logprob: Some(-(i as f64) - 1.0),
                    tokens: 4,
                }
            })
            .collect())
    }

    /// Its proposals are distinct by construction: the same `n` steps.
    async fn sample(
        &self,
        question: &str,
        steps: &[String],
        n: usize,
    ) -> Result<Vec<Proposal>, SearchError> {
        self.propose(question, steps, n).await
    }

    fn provenance(&self) -> crate::Provenance {
        crate::Provenance {
            model: "synthetic".into(),
            temperature: None,
            seed: None,
        }
    }

    async fn complete(
        &self,
        question: &str,
        steps: &[String],
        n: usize,
    ) -> Result<Vec<String>, SearchError> {
        // The first proposal at each state, down to the answer.
        let mut path = steps.to_vec();
        let mut added = Vec::new();
        while path.len() < self.answer_depth {
            let next = self.propose(question, &path, 1).await?.remove(0).text;
            path.push(next.clone());
            added.push(next);
        }
        Ok(vec![added.join("\n"); n])
    }
}
