//! Finite-difference checks of every loss's gradient through a tiny Llama: the autodiff
//! derivative of the loss with respect to a weight matches (L(w+ε) − L(w−ε)) / 2ε.
use std::collections::HashMap;

use arbor_model::host::{to_f32, to_f64};
use arbor_model::llama::{param_id, Llama, LlamaConfig, RandomInit, WeightSource};
use arbor_model::tokenizer::TextTokenizer;
use arbor_train::data::Example;
use arbor_train::forward::Level;
use arbor_train::losses::{LambdaWeights, OreoInputs};
use arbor_train::value::{head_param, ValueModel};
use arbor_train::{Algo, Probe, StartModel, TrainConfig};
use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor, TensorData};
use rand::SeedableRng;

struct Table(HashMap<String, Vec<f32>>);
impl WeightSource for Table {
    type Error = String;
    fn weight(&mut self, name: &str, _shape: &[usize]) -> Result<Vec<f32>, String> {
        self.0.get(name).cloned().ok_or_else(|| name.to_string())
    }
    fn has_output(&mut self) -> bool {
        false
    }
}

fn tiny() -> (LlamaConfig, TextTokenizer, Llama) {
    let tok = TextTokenizer::byte_level().unwrap();
    let cfg = LlamaConfig {
        n_layers: 1,
        d_model: 8,
        d_ff: 16,
        n_heads: 2,
        n_kv_heads: 1,
        vocab: tok.vocab_size,
        rope_base: 10_000.0,
        rms_eps: 1e-5,
        context: 512,
    };
    // Larger weights than the default init so that the loss has curvature worth checking.
    let mut src = RandomInit(rand::rngs::StdRng::seed_from_u64(3));
    let mut w: HashMap<String, Vec<f32>> = HashMap::new();
    for (name, shape) in arbor_model::llama::weight_shapes(&cfg, false) {
        let v = src.weight(&name, &shape).unwrap();
        let v = if name.ends_with("norm.weight") {
            v
        } else {
            v.into_iter().map(|x| x * 20.0).collect()
        };
        w.insert(name, v);
    }
    let m = Llama::load(&cfg, &mut Table(w), &Device::flex()).unwrap();
    (cfg, tok, m)
}

fn with_weight(cfg: &LlamaConfig, m: &Llama, name: &str, idx: usize, delta: f32) -> Llama {
    let mut w: HashMap<String, Vec<f32>> =
        m.weights().into_iter().map(|(n, _, v)| (n, v)).collect();
    w.get_mut(name).unwrap()[idx] += delta;
    Llama::load(cfg, &mut Table(w), &Device::flex()).unwrap()
}

fn steps(s: &[&str]) -> Vec<String> {
    s.iter().map(|x| x.to_string()).collect()
}

fn examples(algo: Algo) -> Vec<Example> {
    let q = "Ava has 3 cards. She buys 2 more.";
    match algo {
        Algo::Sft => vec![Example::Sft {
            question: q.into(),
            steps: steps(&["3+2 = 5", "The answer is 5"]),
        }],
        Algo::Dpo => vec![
            Example::Pair {
                question: q.into(),
                prefix: vec![],
                chosen: steps(&["3+2 = 5", "The answer is 5"]),
                rejected: steps(&["3+2 = 6", "The answer is 6"]),
            },
            Example::Pair {
                question: q.into(),
                prefix: steps(&["3+2 = 5"]),
                chosen: steps(&["The answer is 5"]),
                rejected: steps(&["The answer is 4"]),
            },
        ],
        Algo::Oreo => vec![
            Example::Trajectory {
                question: q.into(),
                steps: steps(&["3+2 = 5", "The answer is 5"]),
                reward: 1.0,
            },
            Example::Trajectory {
                question: q.into(),
                steps: steps(&["3*2 = 6"]),
                reward: 0.0,
            },
        ],
        Algo::Tpo => vec![Example::List {
            question: q.into(),
            responses: vec![
                steps(&["3+2 = 5", "The answer is 5"]),
                steps(&["3+2 = 5", "The answer is 6"]),
                steps(&["3-2 = 1"]),
            ],
            scores: vec![1.0, 0.4, 0.0],
        }],
    }
}

fn vec2(t: Tensor<2>) -> Vec<f64> {
    to_f64(t)
}

/// OREO's policy loss with its stop-gradient parts frozen at the base point: values V₀ and
/// suffix sums S₀ = Σ_{i>t} ρ⁰_i. Its derivative is the semi-gradient autodiff computes.
fn oreo_policy_surrogate(x: &OreoInputs, v0: &[f64], s0: &[f64], beta: f64, alpha: f64) -> f64 {
    let (rho, kl, mask) = (
        vec2(x.rho.clone()),
        vec2(x.kl.clone()),
        vec2(x.mask.clone()),
    );
    let r: Vec<f64> = to_f64(x.reward.clone());
    let k = rho.len() / r.len();
    let mut total = 0.0;
    for b in 0..r.len() {
        let (mut sq, mut kls, mut n) = (0.0, 0.0, 0.0);
        for t in 0..k {
            let i = b * k + t;
            if mask[i] > 0.0 {
                sq += (v0[i] - r[b] + beta * rho[i] + beta * s0[i]).powi(2);
                kls += kl[i];
                n += 1.0;
            }
        }
        total += sq / n + alpha * kls / n;
    }
    total / r.len() as f64
}

fn exclusive_suffix(rho: &[f64], mask: &[f64], k: usize) -> Vec<f64> {
    let mut out = vec![0.0; rho.len()];
    for b in 0..rho.len() / k {
        let mut acc = 0.0;
        for t in (0..k).rev() {
            out[b * k + t] = acc;
            acc += rho[b * k + t] * mask[b * k + t];
        }
    }
    out
}

/// Autodiff vs central difference for the largest-gradient entry of `name`.
fn check(cfg: &TrainConfig, name: &str, critic: bool) {
    check_eps(cfg, name, critic, 1e-2)
}

fn check_eps(cfg: &TrainConfig, name: &str, critic: bool, eps: f32) {
    let (lcfg, tok, base) = tiny();
    let start = StartModel {
        cfg: lcfg.clone(),
        tokenizer: tok,
        model: base.clone(),
        device: Device::flex(),
        source: "tiny".into(),
        critic: None,
        reference: None,
    };
    let ad = Device::flex().autodiff();
    let mut probe = Probe::new(cfg, &start, examples(cfg.algo)).unwrap();
    // The policy starts away from the reference so that ρ ≠ 0.
    let policy0 = with_weight(&lcfg, &base, "blk.0.ffn_down.weight", 3, 0.5);
    let head = Tensor::<2>::from_data(
        TensorData::new(
            (0..lcfg.d_model)
                .map(|i| 0.3 - 0.07 * i as f32)
                .collect::<Vec<_>>(),
            [lcfg.d_model, 1],
        ),
        &Device::flex(),
    );
    let value_of = |m: &Llama| ValueModel {
        trunk: m.clone(),
        head: head_param(head.clone()),
    };
    // OREO's policy loss below the response level holds stop-gradient terms that depend on
    // the policy itself: the finite difference is taken of the loss with them frozen.
    let semi = cfg.algo == Algo::Oreo && !critic && cfg.oreo_level != Level::Response;
    let frozen = semi.then(|| {
        let x = probe.oreo_inputs(
            &policy0.clone().fork(&ad).train(),
            &value_of(&base).fork(&ad).train(),
        );
        let (rho, mask) = (vec2(x.rho.clone()), vec2(x.mask.clone()));
        let k = x.rho.dims()[1];
        (vec2(x.values.clone()), exclusive_suffix(&rho, &mask, k))
    });
    let loss_at = |probe: &mut Probe, m: &Llama| -> f64 {
        if let Some((v0, s0)) = &frozen {
            let x = probe.oreo_inputs(
                &m.clone().fork(&ad).train(),
                &value_of(&base).fork(&ad).train(),
            );
            return oreo_policy_surrogate(&x, v0, s0, cfg.beta(), cfg.alpha());
        }
        let (p, v) = if critic {
            (policy0.clone(), Some(value_of(m).fork(&ad).train()))
        } else {
            (
                m.clone(),
                (cfg.algo == Algo::Oreo).then(|| value_of(&base).fork(&ad).train()),
            )
        };
        let (pl, vl) = probe.losses(&p.fork(&ad).train(), v.as_ref());
        let l = if critic { vl.unwrap() } else { pl };
        l.into_scalar::<f32>() as f64
    };
    // Autodiff gradient.
    let subject = if critic {
        base.clone()
    } else {
        policy0.clone()
    };
    let grad: Vec<f32> = {
        let m = subject.clone().fork(&ad).train();
        if critic {
            let v = value_of(&subject).fork(&ad).train();
            let (_, vl) = probe.losses(&policy0.clone().fork(&ad).train(), Some(&v));
            let g = GradientsParams::from_grads(vl.unwrap().backward(), &v);
            to_f32(g.get::<2>(param_id(name)).expect("gradient"))
        } else {
            let v = (cfg.algo == Algo::Oreo).then(|| value_of(&base).fork(&ad).train());
            let (pl, _) = probe.losses(&m, v.as_ref());
            let g = GradientsParams::from_grads(pl.backward(), &m);
            to_f32(g.get::<2>(param_id(name)).expect("gradient"))
        }
    };
    let (idx, &g) = grad
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
        .unwrap();
    assert!(g.abs() > 1e-4, "{name}: gradient vanishes ({g})");
    let plus = loss_at(&mut probe, &with_weight(&lcfg, &subject, name, idx, eps));
    let minus = loss_at(&mut probe, &with_weight(&lcfg, &subject, name, idx, -eps));
    let fd = (plus - minus) / (2.0 * eps as f64);
    let rel = (fd - g as f64).abs() / (g.abs() as f64).max(1e-6);
    assert!(
        rel < 0.03,
        "{:?} {name}[{idx}]: autodiff {g} vs finite difference {fd} (relative error {rel:.4})",
        cfg.algo
    );
}

#[test]
fn sft_gradient() {
    check(
        &TrainConfig {
            algo: Algo::Sft,
            ..Default::default()
        },
        "blk.0.attn_q.weight",
        false,
    );
}

#[test]
fn dpo_gradient() {
    let mut c = TrainConfig {
        algo: Algo::Dpo,
        precompute_reference: false,
        ..Default::default()
    };
    c.dpo.beta = 0.5;
    check(&c, "blk.0.ffn_up.weight", false);
    c.dpo.ipo = true;
    check(&c, "token_embd.weight", false);
}

#[test]
fn oreo_gradients_token_and_step_level() {
    for level in [Level::Token, Level::Step, Level::Response] {
        let c = TrainConfig {
            algo: Algo::Oreo,
            beta: Some(0.5),
            alpha: Some(0.2),
            oreo_level: level,
            ..Default::default()
        };
        check(&c, "blk.0.attn_v.weight", false);
        check(&c, "blk.0.ffn_gate.weight", true);
    }
}

#[test]
fn tpo_gradient() {
    // Adaptive step weights are a stop-gradient function of the hidden states, so the
    // finite difference would see them move; the check runs with them off.
    let c = TrainConfig {
        algo: Algo::Tpo,
        beta: Some(0.5),
        tpo_adaptive: false,
        tpo_lambda: LambdaWeights::Constant,
        ..Default::default()
    };
    check(&c, "blk.0.attn_output.weight", false);
    // LiPO-λ is piecewise constant in the model's ranks: a smaller step keeps them fixed.
    check_eps(
        &TrainConfig {
            tpo_lambda: LambdaWeights::Lipo,
            ..c
        },
        "blk.0.attn_q.weight",
        false,
        1e-3,
    );
}
