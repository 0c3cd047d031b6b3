//! The [`Trainer`]: a policy (and, for OREO, a critic) on the autodiff device with their
//! optimizers, the objective, and the prepared examples. [`Trainer::step`] is one optimizer
//! step — the loop in `run.rs` and `arbor bench train` both call it.
//!
//! The reference policy is the starting model on the plain (non-autodiff) device: it shares
//! nothing with the trained policy but the frozen weights both started from.
use arbor_model::llama::Llama;
use arbor_model::tokenizer::TextTokenizer;
use burn::module::Module;
use burn::optim::{GradientsAccumulator, GradientsParams, ModuleOptimizer};

use crate::config::TrainConfig;
use crate::data::Example;
use crate::forward::Batch;
use crate::objective::{
    for_algo, prepare, Context, LossInput, LossOut, Objective, Prepared, PreparedSet,
};
use crate::optim::{adamw, clip_factor, global_norm, scale_grads, LossScaler};
use crate::start::StartModel;
use crate::value::ValueModel;
use crate::TrainError;

pub struct Trainer {
    pub cfg: TrainConfig,
    pub objective: Box<dyn Objective>,
    pub cx: Context,
    pub data: PreparedSet,
    tokenizer: TextTokenizer,
    /// Always present between calls; taken while the optimizer consumes it (so that its
    /// tensors are updated in place).
    policy: Option<Llama>,
    pub value: Option<ValueModel>,
    pub opt_policy: ModuleOptimizer,
    pub opt_value: ModuleOptimizer,
    /// f16's loss scale (a factor of 1 otherwise); saved with checkpoints.
    pub scaler: LossScaler,
}

/// A step's (or an evaluation's) metrics by column name.
pub type Metrics = Vec<(String, f64)>;

impl Trainer {
    pub fn new(cfg: &TrainConfig, start: &StartModel) -> Self {
        crate::alloc::keep_freed_memory();
        let p = cfg.precision;
        let reference = start.reference.clone().unwrap_or_else(|| start.model.clone());
        let cx = Context::new(cfg, start.cfg.clone(), reference.with_precision(p), &start.device);
        let objective = for_algo(cfg.algo);
        let policy = start.model.clone().fork(&cx.device).train().with_precision(p);
        let value = objective.has_critic().then(|| {
            let fresh = || ValueModel::new(start.model.clone(), &start.cfg, &start.device);
            start
                .critic
                .clone()
                .unwrap_or_else(fresh)
                .fork(&cx.device)
                .train()
                .with_precision(p)
        });
        Self {
            cfg: cfg.clone(),
            objective,
            cx,
            data: PreparedSet::default(),
            tokenizer: start.tokenizer.clone(),
            policy: Some(policy),
            value,
            opt_policy: adamw(cfg.weight_decay),
            opt_value: adamw(cfg.weight_decay),
            scaler: LossScaler::new(p, cfg.loss_scale),
        }
    }

    pub fn policy(&self) -> &Llama {
        self.policy.as_ref().expect("the policy is present between steps")
    }

    /// Replaces the policy (a restored checkpoint), computing in the configured precision.
    pub fn set_policy(&mut self, policy: Llama) {
        self.policy = Some(policy.with_precision(self.cfg.precision));
    }

    /// Replaces the critic, likewise.
    pub fn set_value(&mut self, value: ValueModel) {
        self.value = Some(value.with_precision(self.cfg.precision));
    }

    /// Encodes `examples` for the objective (they replace any earlier ones).
    pub fn set_examples(&mut self, examples: Vec<Example>) -> Result<(), TrainError> {
        self.data = prepare(
            self.objective.as_ref(),
            &self.tokenizer,
            examples,
            self.cfg.max_len,
        )
        .map_err(TrainError::Data)?;
        Ok(())
    }

    /// The curve columns: lr, the objective's metrics, their evaluation twins, gradient norms
    /// and throughput.
    pub fn columns(&self) -> Vec<String> {
        let o = &self.objective;
        std::iter::once("lr".to_string())
            .chain(o.metrics().iter().map(|m| m.to_string()))
            .chain(o.eval_metrics().iter().map(|m| format!("eval_{m}")))
            .chain(["grad_norm", "value_grad_norm", "tokens_per_s"].map(String::from))
            .chain(self.scaler.enabled.then(|| "loss_scale".to_string()))
            .collect()
    }

    /// Response tokens of the examples `idx`.
    pub fn action_tokens(&self, idx: &[usize]) -> usize {
        idx.iter()
            .flat_map(|&i| &self.data.examples[i].seqs)
            .map(|&s| self.data.encoded[s].tokens.len() - self.data.encoded[s].prompt_len)
            .sum()
    }

    /// The loss of the examples `idx` as one batch, with the given models (gradient checks
    /// pass models of their own).
    pub fn loss_with(
        &mut self,
        idx: &[usize],
        policy: &Llama,
        value: Option<&ValueModel>,
    ) -> LossOut {
        loss_of(self.objective.as_ref(), &mut self.cx, &self.data, idx, policy, value)
    }

    fn loss(&mut self, idx: &[usize]) -> LossOut {
        let (p, v) = (self.policy.as_ref(), self.value.as_ref());
        let p = p.expect("the policy is present between steps");
        loss_of(self.objective.as_ref(), &mut self.cx, &self.data, idx, p, v)
    }

    /// One optimizer step over `micro` micro-batches (example indices), at learning rates `lr`
    /// (policy) and `lr_value` (critic). Returns the metrics averaged over the micro-batches and
    /// the gradient norms before clipping. In f16 a step whose gradients overflow changes no
    /// weight (its norms read as non-finite) and lowers the loss scale.
    pub fn step(&mut self, micro: &[Vec<usize>], lr: f64, lr_value: f64) -> Metrics {
        let mut acc_p = GradientsAccumulator::<Llama>::new();
        let mut acc_v = GradientsAccumulator::<ValueModel>::new();
        let mut sums: Metrics = Vec::new();
        // Each micro-batch's gradient is scaled so the step averages over them, and by the
        // loss scale (f16), which is divided out before clipping.
        let ls = self.scaler.factor();
        let scale = ls / self.cfg.grad_accum as f64;
        for idx in micro {
            let out = self.loss(idx);
            let g = out.policy.mul_scalar(scale).backward();
            let p = self.policy();
            acc_p.accumulate(p, GradientsParams::from_grads(g, p));
            if let (Some(vl), Some(v)) = (out.value, self.value.as_ref()) {
                let g = vl.mul_scalar(scale).backward();
                acc_v.accumulate(v, GradientsParams::from_grads(g, v));
            }
            add_metrics(&mut sums, &out.metrics, 1.0);
        }
        for s in &mut sums {
            s.1 /= micro.len().max(1) as f64;
        }
        let (mut gp, mut gv) = (acc_p.grads(), acc_v.grads());
        let norm_p = global_norm(self.policy(), &gp) / ls;
        let norm_v = self.value.as_ref().map(|v| global_norm(v, &gv) / ls);
        sums.extend(norm_v.map(|n| ("value_grad_norm".to_string(), n)));
        sums.push(("grad_norm".into(), norm_p));
        if self.scaler.enabled {
            sums.push(("loss_scale".into(), ls));
        }
        if !self.scaler.update(&[norm_p, norm_v.unwrap_or(0.0)]) {
            return sums;
        }
        let clip = self.cfg.clip;
        // The critic steps before the actor.
        if let (Some(v), Some(n)) = (self.value.take(), norm_v) {
            scale_grads(&v, &mut gv, clip_factor(n, clip) / ls);
            self.value = Some(self.opt_value.step(lr_value, v, gv));
        }
        let policy = self.policy.take().expect("the policy is present between steps");
        scale_grads(&policy, &mut gp, clip_factor(norm_p, clip) / ls);
        self.policy = Some(self.opt_policy.step(lr, policy, gp));
        sums
    }

    /// The policy and critic with gradient tracking off, for passes that never run backward.
    /// burn's autodiff frees a graph only when some backward sweeps it, so an evaluation on the
    /// tracked models kept every chunk's activations until the next step: +14 GB over the 52
    /// held-out OREO trajectories of a SmolLM2 loop iteration, which the kernel's OOM killer
    /// ended on this 24 GiB machine.
    fn untracked(&self) -> (Llama, Option<ValueModel>) {
        let policy = self.policy().clone().no_grad();
        (policy, self.value.clone().map(|v| v.no_grad()))
    }

    /// The objective's evaluation metrics (`eval_<name>`) over the examples `set`, in
    /// micro-batches, weighted by their size.
    pub fn evaluate(&mut self, set: &[usize]) -> Metrics {
        let (policy, value) = self.untracked();
        let mut ev: Metrics = Vec::new();
        for chunk in set.chunks(self.cfg.batch_size) {
            let out = self.loss_with(chunk, &policy, value.as_ref());
            add_metrics(&mut ev, &out.metrics, chunk.len() as f64 / set.len() as f64);
        }
        let keep = self.objective.eval_metrics();
        ev.into_iter()
            .filter(|(k, _)| keep.contains(&k.as_str()))
            .map(|(k, x)| (format!("eval_{k}"), x))
            .collect()
    }
}

fn loss_of(
    objective: &dyn Objective,
    cx: &mut Context,
    data: &PreparedSet,
    idx: &[usize],
    policy: &Llama,
    value: Option<&ValueModel>,
) -> LossOut {
    let ex: Vec<&Prepared> = idx.iter().map(|&i| &data.examples[i]).collect();
    let ids: Vec<usize> = ex.iter().flat_map(|e| e.seqs.iter().copied()).collect();
    let batch = Batch::new(ids.iter().map(|&i| &data.encoded[i]).collect());
    let x = LossInput {
        policy,
        value,
        batch: &batch,
        ids: &ids,
        ex: &ex,
    };
    objective.loss(cx, &x)
}

fn add_metrics(sums: &mut Metrics, metrics: &[(&'static str, f64)], weight: f64) {
    for &(k, x) in metrics {
        match sums.iter_mut().find(|s| s.0 == k) {
            Some(s) => s.1 += x * weight,
            None => sums.push((k.to_string(), x * weight)),
        }
    }
}

#[cfg(test)]
mod tests {
    use arbor_model::init::{init_tiny, TinySpec};
    use arbor_model::DeviceKind;

    use crate::config::{Algo, TrainConfig};
    use crate::{StartModel, Trainer};

    /// An evaluation's losses carry no autodiff graph (a tracked one is kept until the next
    /// backward, chunk after chunk), while the same examples' training loss does.
    #[test]
    fn evaluation_passes_build_no_graph() {
        let dir = tempfile::tempdir().unwrap();
        init_tiny(&TinySpec::minimal(5), dir.path()).unwrap();
        let start = StartModel::load(&dir.path().display().to_string(), DeviceKind::Cpu).unwrap();
        let cfg = TrainConfig {
            algo: Algo::Oreo,
            ..TrainConfig::default()
        };
        let mut t = Trainer::new(&cfg, &start);
        t.set_examples(crate::device_check::examples(Algo::Oreo)).unwrap();
        let (policy, value) = t.untracked();
        let eval = t.loss_with(&[0], &policy, value.as_ref());
        assert!(!eval.policy.is_tracked() && !eval.value.unwrap().is_tracked());
        let train = t.loss(&[0]);
        assert!(train.policy.is_tracked() && train.value.unwrap().is_tracked());
    }
}
