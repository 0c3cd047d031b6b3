//! OREO (Wang et al. 2024): the soft-Bellman value loss for the critic and the policy loss at
//! token, step or response level, with the exact full-vocabulary KL.
use burn::tensor::{Tensor, TensorData};

use super::core::{mean_of, scalar, Context, LossInput, LossOut, Objective, Sequences};
use crate::config::Algo;
use crate::data::{Example, Question};
use crate::forward::{token_pass, Units};
use crate::losses::{oreo_policy_loss, oreo_value_loss, OreoInputs};

pub struct Oreo;

/// OREO's per-unit ρ, values, KL and rewards for a batch of trajectories (the critic is
/// `x.value`).
pub fn oreo_inputs(cx: &mut Context, x: &LossInput<'_>) -> OreoInputs {
    let (policy, batch, ex) = (x.policy, x.batch, x.ex);
    let value = x.value.expect("OREO has a critic");
    let device = cx.device.clone();
    let keep = cx.cfg.alpha() > 0.0;
    let mask = batch.action_mask(&device);
    let (ref_lp, ref_dist) = cx.reference(batch, x.ids, keep);
    let pass = token_pass(policy, &cx.lcfg, batch, &device, ref_dist);
    let units = Units::new(batch, cx.cfg.oreo_level, &device);
    let rho_tok = (pass.logprobs - ref_lp) * mask.clone();
    let kl_tok = match pass.kl {
        Some(kl) => kl * mask,
        None => rho_tok.zeros_like(),
    };
    let v = value
        .values(&cx.lcfg, &batch.tokens, &batch.pads, &device)
        .narrow(1, 0, batch.len - 1);
    let rewards: Vec<f32> = ex.iter().map(|e| e.reward as f32).collect();
    OreoInputs {
        rho: units.sum(rho_tok),
        values: units.at_start(v),
        kl: units.sum(kl_tok),
        mask: units.mask.clone(),
        reward: Tensor::from_data(TensorData::new(rewards, [ex.len()]), &device),
    }
}

impl Objective for Oreo {
    fn algo(&self) -> Algo {
        Algo::Oreo
    }
    fn metrics(&self) -> &'static [&'static str] {
        &["value_loss", "policy_loss", "bellman", "kl", "value_error"]
    }
    fn eval_metrics(&self) -> &'static [&'static str] {
        &["value_loss", "policy_loss"]
    }
    fn has_critic(&self) -> bool {
        true
    }
    fn sequences(&self, ex: Example) -> Result<Option<Sequences>, Example> {
        match ex {
            Example::Trajectory {
                question,
                steps,
                reward,
            } => Ok(Some(Sequences {
                reward,
                ..Sequences::of(vec![(Question::Task(question), vec![], steps)])
            })),
            other => Err(other),
        }
    }
    fn loss(&self, cx: &mut Context, x: &LossInput<'_>) -> LossOut {
        let ex = x.ex;
        let (beta, alpha) = (cx.cfg.beta(), cx.cfg.alpha());
        let x = oreo_inputs(cx, x);
        let vloss = oreo_value_loss(&x, beta);
        let (ploss, bellman, kl) = oreo_policy_loss(&x, beta, alpha);
        let v0 = x
            .values
            .clone()
            .narrow(1, 0, 1)
            .reshape([ex.len()])
            .detach();
        let value_error = mean_of((v0 - x.reward.clone()).abs());
        let metrics = vec![
            ("value_loss", scalar(vloss.clone())),
            ("policy_loss", scalar(ploss.clone())),
            ("bellman", scalar(bellman)),
            ("kl", scalar(kl)),
            ("value_error", value_error),
        ];
        LossOut {
            policy: ploss,
            value: Some(vloss),
            metrics,
        }
    }
}
