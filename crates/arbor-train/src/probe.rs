//! The training losses of a fixed set of examples, outside the training loop, with models the
//! caller passes: for gradient checks, and the batch other implementations compute the same
//! loss on (`arbor bench train`).
use arbor_model::llama::Llama;
use burn::tensor::Tensor;
use serde_json::json;

use crate::config::TrainConfig;
use crate::data::Example;
use crate::forward::Batch;
use crate::losses::OreoInputs;
use crate::objective::oreo::oreo_inputs;
use crate::objective::{LossInput, Prepared};
use crate::start::StartModel;
use crate::trainer::Trainer;
use crate::value::ValueModel;
use crate::TrainError;

pub struct Probe {
    trainer: Trainer,
}

impl Probe {
    /// The losses are built on the autodiff mode of `start`'s device.
    pub fn new(
        cfg: &TrainConfig,
        start: &StartModel,
        examples: Vec<Example>,
    ) -> Result<Self, TrainError> {
        let mut trainer = Trainer::new(cfg, start);
        trainer.set_examples(examples)?;
        Ok(Self { trainer })
    }

    fn all(&self) -> Vec<usize> {
        (0..self.trainer.data.examples.len()).collect()
    }

    /// (policy loss, critic loss) of every example as one batch; models on the autodiff device.
    pub fn losses(
        &mut self,
        policy: &Llama,
        value: Option<&ValueModel>,
    ) -> (Tensor<1>, Option<Tensor<1>>) {
        let all = self.all();
        let out = self.trainer.loss_with(&all, policy, value);
        (out.policy, out.value)
    }

    /// OREO's inputs for every example as one batch (the gradient checks rebuild the loss from them).
    pub fn oreo_inputs(&mut self, policy: &Llama, value: &ValueModel) -> OreoInputs {
        let t = &mut self.trainer;
        let ex: Vec<&Prepared> = t.data.examples.iter().collect();
        let ids: Vec<usize> = ex.iter().flat_map(|e| e.seqs.iter().copied()).collect();
        let batch = Batch::new(ids.iter().map(|&i| &t.data.encoded[i]).collect());
        let x = LossInput {
            policy,
            value: Some(value),
            batch: &batch,
            ids: &ids,
            ex: &ex,
        };
        oreo_inputs(&mut t.cx, &x)
    }

    /// The batch as token ids, for other implementations to compute the same loss on:
    /// per example its sequences (`tokens`, `prompt_len`, `step_ends`) and reward.
    pub fn batch_json(&self) -> serde_json::Value {
        let t = &self.trainer;
        let ex: Vec<serde_json::Value> = t
            .data
            .examples
            .iter()
            .map(|p| {
                let seqs: Vec<serde_json::Value> = p.seqs.iter().map(|&i| {
                    let e = &t.data.encoded[i];
                    json!({"tokens": e.tokens, "prompt_len": e.prompt_len, "step_ends": e.step_ends})
                }).collect();
                json!({"seqs": seqs, "reward": p.reward, "scores": p.scores})
            })
            .collect();
        json!({"algo": t.cfg.algo.name(), "beta": t.cfg.beta(), "alpha": t.cfg.alpha(), "examples": ex})
    }

    /// Response tokens in the batch.
    pub fn action_tokens(&self) -> usize {
        self.trainer.action_tokens(&self.all())
    }

    /// One optimizer step on every example as one batch at learning rate `lr`; returns the
    /// metrics.
    pub fn step(&mut self, lr: f64) -> Vec<(String, f64)> {
        let all = self.all();
        self.trainer.step(&[all], lr, lr)
    }
}
