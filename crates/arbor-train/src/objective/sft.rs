//! Supervised fine-tuning; on OREO trajectories, rejection sampling (the correct ones only).
use arbor_model::llama::Llama;

use super::core::{scalar, Context, LossOut, Objective, Prepared, Sequences};
use crate::config::Algo;
use crate::data::Example;
use crate::forward::{token_pass, Batch};
use crate::value::ValueModel;

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
            } => Ok((reward > 0.0).then(|| Sequences::of(vec![(question, vec![], steps)]))),
            other => Err(other),
        }
    }
    fn loss(
        &self,
        cx: &mut Context,
        policy: &Llama,
        _value: Option<&ValueModel>,
        batch: &Batch<'_>,
        _ids: &[usize],
        _ex: &[&Prepared],
    ) -> LossOut {
        let mask = batch.action_mask(&cx.device);
        let pass = token_pass(policy, &cx.lcfg, batch, &cx.device, false);
        let nll = (pass.logprobs * mask.clone()).sum().neg() / mask.sum().clamp_min(1.0);
        LossOut {
            metrics: vec![("nll", scalar(nll.clone()))],
            policy: nll,
            value: None,
        }
    }
}
