//! AdamW as the papers configure it, with clipping by the global gradient norm (burn's built-in
//! clipping bounds each parameter tensor's norm separately, which is not what PyTorch's
//! `clip_grad_norm_`, TRL or the OREO code do).
use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::Tensor;

/// AdamW (β₁ 0.9, β₂ 0.95, ε 1e-8) with decoupled weight decay `weight_decay`, no clipping.
pub fn adamw(weight_decay: f64) -> ModuleOptimizer {
    AdamWConfig::new()
        .with_beta_1(0.9)
        .with_beta_2(0.95)
        .with_epsilon(1e-8)
        .with_weight_decay(weight_decay as f32)
        .init()
}

/// The squared norms summed on the device, read once: one read per parameter tensor would
/// wait for the device hundreds of times a step.
struct SumSquares<'a> {
    grads: &'a GradientsParams,
    total: Option<Tensor<1>>,
}

impl ModuleVisitor for SumSquares<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.get::<D>(param.id) {
            let sq = g.powi_scalar(2).sum();
            self.total = Some(match self.total.take() {
                Some(t) => t + sq,
                None => sq,
            });
        }
    }
}

struct Scale<'a> {
    grads: &'a mut GradientsParams,
    factor: f64,
}

impl ModuleVisitor for Scale<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.remove::<D>(param.id) {
            self.grads.register(param.id, g.mul_scalar(self.factor));
        }
    }
}

/// Scales every gradient of `module` by min(1, max_norm / ‖g‖₂) over all of them together;
/// returns the norm before clipping.
pub fn clip_global_norm<M: Module>(module: &M, grads: &mut GradientsParams, max_norm: f64) -> f64 {
    let mut s = SumSquares { grads, total: None };
    module.visit(&mut s);
    let norm = s
        .total
        .map_or(0.0, |t| (t.into_scalar::<f32>() as f64).sqrt());
    if max_norm > 0.0 && norm > max_norm {
        module.visit(&mut Scale {
            grads,
            factor: max_norm / norm,
        });
    }
    norm
}
