//! Supervised fine-tuning; on OREO trajectories, rejection sampling (the correct ones only).

use super::core::{scalar, Context, LossInput, LossOut, Objective, Sequences};
use crate::config::Algo;
use crate::data::{Example, Question};
use crate::forward::token_pass;

pub struct Sft;

impl Objective for Sft {
    fn algo(&self) -> Algo {
        Algo::Sft
    }
    fn metrics(&self) -> &'static [&'static str] {
        &["nll"]
    }
    fn eval_metrics(&self) -> &'static [&'static str] {
        &["nll"]
    }
    fn sequences(&self, ex: Example) -> Result<Option<Sequences>, Example> {
        match ex {
            Example::Sft { question, steps } => Ok(Some(Sequences::of(vec![(question, vec![], steps)]))),
            Example::Trajectory {
                question,
                steps,
                reward,
            } => Ok((reward > 0.0)
                .then(|| Sequences::of(vec![(Question::Task(question), vec![], steps)]))),
            other => Err(other),
        }
    }
    fn loss(&self, cx: &mut Context, x: &LossInput<'_>) -> LossOut {
        let (policy, batch) = (x.policy, x.batch);
        let mask = batch.action_mask(&cx.device);
        let pass = token_pass(policy, &cx.lcfg, batch, &cx.device, None);
        let nll = (pass.logprobs * mask.clone()).sum().neg() / mask.sum().clamp_min(1.0);
        LossOut {
            metrics: vec![("nll", scalar(nll.clone()))],
            policy: nll,
            value: None,
        }
    }
}
