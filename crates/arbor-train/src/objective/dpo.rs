//! DPO (and IPO, cDPO, length-normalised DPO, DPO+NLL as in Iterative RPO; step-DPO through
//! the pair's shared prefix). Rows alternate chosen, rejected.

use super::core::{mean_of, scalar, Context, LossInput, LossOut, Objective, Sequences};
use crate::config::Algo;
use crate::data::Example;
use crate::forward::token_pass;
use crate::losses::{dpo, sequence_logratio, DpoOptions};

pub struct Dpo;

impl Objective for Dpo {
    fn algo(&self) -> Algo {
        Algo::Dpo
    }
    fn metrics(&self) -> &'static [&'static str] {
        &[
            "loss",
            "reward_chosen",
            "reward_rejected",
            "margin",
            "reward_accuracy",
            "chosen_nll",
        ]
    }
    fn eval_metrics(&self) -> &'static [&'static str] {
        &["loss", "reward_accuracy"]
    }
    fn sequences(&self, ex: Example) -> Result<Option<Sequences>, Example> {
        match ex {
            Example::Pair {
                question,
                prefix,
                chosen,
                rejected,
            } => Ok(Some(Sequences::of(vec![
                (question.clone(), prefix.clone(), chosen),
                (question, prefix, rejected),
            ]))),
            other => Err(other),
        }
    }
    fn loss(&self, cx: &mut Context, x: &LossInput<'_>) -> LossOut {
        let (policy, batch) = (x.policy, x.batch);
        let device = cx.device.clone();
        let beta = cx.cfg.beta();
        let mask = batch.action_mask(&device);
        let pass = token_pass(policy, &cx.lcfg, batch, &device, None);
        let (ref_lp, _) = cx.reference(batch, x.ids, false);
        let n = x.ex.len();
        let t = batch.len - 1;
        let chosen_rows = |x: burn::tensor::Tensor<2>| {
            x.reshape([n, 2, t]).narrow(1, 0, 1).reshape([n, t])
        };
        let chosen_nll = chosen_rows(pass.logprobs.clone() * mask.clone()).sum().neg()
            / chosen_rows(mask.clone()).sum().clamp_min(1.0);
        let sums = sequence_logratio(pass.logprobs - ref_lp, mask, cx.cfg.dpo.length_normalize)
            .reshape([n, 2]);
        let chosen = sums.clone().narrow(1, 0, 1).reshape([n]);
        let rejected = sums.narrow(1, 1, 1).reshape([n]);
        let opts = DpoOptions {
            beta,
            ..cx.cfg.dpo
        };
        let (loss, z) = dpo(chosen.clone(), rejected.clone(), &opts);
        let loss = if cx.cfg.dpo.nll_weight > 0.0 {
            loss + chosen_nll.clone().mul_scalar(cx.cfg.dpo.nll_weight)
        } else {
            loss
        };
        let acc = mean_of(z.clone().greater_elem(0.0).float());
        let metrics = vec![
            ("loss", scalar(loss.clone())),
            ("reward_chosen", beta * mean_of(chosen.detach())),
            ("reward_rejected", beta * mean_of(rejected.detach())),
            ("margin", mean_of(z.detach())),
            ("reward_accuracy", acc),
            ("chosen_nll", scalar(chosen_nll)),
        ];
        LossOut {
            policy: loss,
            value: None,
            metrics,
        }
    }
}
