//! AdamW as the papers configure it, with clipping by the global gradient norm (burn's built-in
//! clipping bounds each parameter tensor's norm separately, which is not what PyTorch's
//! `clip_grad_norm_`, TRL or the OREO code do), and f16's loss scaling.
use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer};
use arbor_model::Precision;
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

/// The global L2 norm of `module`'s gradients (one read from the device).
pub fn global_norm<M: Module>(module: &M, grads: &GradientsParams) -> f64 {
    let mut s = SumSquares { grads, total: None };
    module.visit(&mut s);
    s.total
        .map_or(0.0, |t| (t.into_scalar::<f32>() as f64).sqrt())
}

/// Multiplies every gradient of `module` by `factor` (nothing to do for 1).
pub fn scale_grads<M: Module>(module: &M, grads: &mut GradientsParams, factor: f64) {
    if factor != 1.0 {
        module.visit(&mut Scale { grads, factor });
    }
}

/// The factor that clips by the global norm: min(1, max_norm / ‖g‖₂) (1 when `max_norm` is 0).
pub fn clip_factor(norm: f64, max_norm: f64) -> f64 {
    if max_norm > 0.0 && norm > max_norm {
        max_norm / norm
    } else {
        1.0
    }
}

/// f16's dynamic loss scaling, with PyTorch GradScaler's policy: the loss is multiplied by the
/// scale before backward so that small gradients survive f16's range; a step whose gradients
/// overflow (a non-finite norm) is skipped and the scale halved; after `GROWTH_INTERVAL` clean
/// steps in a row it doubles. Off (a factor of 1, no skipping) for f32 and bf16.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LossScaler {
    pub scale: f64,
    /// Clean steps since the last overflow or growth.
    pub clean: usize,
    /// Steps skipped so far.
    pub skipped: usize,
    pub enabled: bool,
}

pub const GROWTH_INTERVAL: usize = 2000;

impl LossScaler {
    pub fn new(precision: Precision, init: f64) -> Self {
        let enabled = precision == Precision::F16;
        Self {
            scale: if enabled { init } else { 1.0 },
            clean: 0,
            skipped: 0,
            enabled,
        }
    }

    /// What the loss is multiplied by before backward.
    pub fn factor(&self) -> f64 {
        self.scale
    }

    /// Records a step whose unscaled gradient norms are `norms`; false: skip the step.
    pub fn update(&mut self, norms: &[f64]) -> bool {
        if !self.enabled {
            return true;
        }
        if norms.iter().all(|n| n.is_finite()) {
            self.clean += 1;
            if self.clean == GROWTH_INTERVAL {
                self.scale *= 2.0;
                self.clean = 0;
            }
            true
        } else {
            self.scale = (self.scale / 2.0).max(1.0);
            self.clean = 0;
            self.skipped += 1;
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Overflow halves and skips, a clean run doubles at the interval; f32 never skips.
    #[test]
    fn the_loss_scale_halves_on_overflow_and_grows_after_clean_steps() {
        let mut s = LossScaler::new(Precision::F16, 1024.0);
        assert!(!s.update(&[1.0, f64::INFINITY]));
        assert!(!s.update(&[f64::NAN]));
        assert_eq!((s.scale, s.skipped), (256.0, 2));
        for _ in 0..GROWTH_INTERVAL - 1 {
            assert!(s.update(&[0.5]));
        }
        assert_eq!(s.scale, 256.0);
        assert!(s.update(&[0.5]));
        assert_eq!((s.scale, s.clean), (512.0, 0));
        let mut off = LossScaler::new(Precision::Bf16, 1024.0);
        assert_eq!(off.factor(), 1.0);
        assert!(off.update(&[f64::NAN]));
        assert_eq!(off.skipped, 0);
    }
}
