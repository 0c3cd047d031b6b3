//! The offline trainer: batches of exported examples, the algorithm's loss on an autodiff
//! device, gradient accumulation, AdamW with warm-up + cosine and norm clipping, periodic
//! evaluation, checkpoints that resume to the same result, curves.
//!
//! The reference policy is the starting model on the plain (non-autodiff) device: it shares
//! nothing with the trained policy but the frozen weights both started from.
use std::path::{Path, PathBuf};
use std::time::Instant;

use arbor_model::llama::{Llama, LlamaConfig};
use arbor_model::tokenizer::TextTokenizer;
use burn::module::Module;
use burn::optim::{GradientsAccumulator, GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Tensor, TensorData};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde_json::json;

use crate::config::{Algo, TrainConfig};
use crate::curves::Curves;
use crate::data::{read_examples, Example};
use crate::forward::{encode, exact_kl, to_device, token_pass, Batch, Encoded, Level, Units};
use crate::losses::{
    adaptive_step_weights, dpo, oreo_policy_loss, oreo_value_loss, sequence_logratio, tpo,
    OreoInputs,
};
use crate::optim::{adamw, clip_global_norm};
use crate::value::ValueModel;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("{0}")]
    Data(String),
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Io(String),
}

/// The starting point: a model (the policy's initial weights and the frozen reference).
pub struct StartModel {
    pub cfg: LlamaConfig,
    pub tokenizer: TextTokenizer,
    pub model: Llama,
    /// Names the start in checkpoints, so a resume with another model is refused.
    pub source: String,
}

/// A prepared example: indices into the encoded sequences.
struct Prepared {
    seqs: Vec<usize>,
    reward: f64,
    scores: Vec<f64>,
}

/// What one loss evaluation gives back.
struct LossOut {
    policy: Tensor<1>,
    value: Option<Tensor<1>>,
    metrics: Vec<(&'static str, f64)>,
}

pub struct Summary {
    pub steps: usize,
    pub examples: usize,
    pub skipped_rows: Vec<String>,
    pub train_tokens: usize,
    pub seconds: f64,
    pub last: Vec<(String, f64)>,
}

struct Run<'a> {
    cfg: &'a TrainConfig,
    lcfg: LlamaConfig,
    device: Device,
    plain: Device,
    reference: Llama,
    encoded: Vec<Encoded>,
    ref_cache: Vec<Option<Vec<f32>>>,
}

fn scalar(t: Tensor<1>) -> f64 {
    t.into_scalar::<f32>() as f64
}

fn mean_of(t: Tensor<1>) -> f64 {
    scalar(t.mean())
}

impl Run<'_> {
    /// Reference per-token log-probs `[B, T−1]` on the training device, and the full
    /// distributions when the KL needs them.
    fn reference(
        &mut self,
        batch: &Batch<'_>,
        ids: &[usize],
        keep_dist: bool,
    ) -> (Tensor<2>, Option<Tensor<3>>) {
        let cached = self.cfg.precompute_reference
            && !keep_dist
            && ids.iter().all(|&i| self.ref_cache[i].is_some());
        if !cached {
            let pass = token_pass(&self.reference, &self.lcfg, batch, &self.plain, keep_dist);
            let lp = pass
                .logprobs
                .clone()
                .into_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .expect("f32");
            let t = batch.len - 1;
            if self.cfg.precompute_reference {
                for (row, &i) in ids.iter().enumerate() {
                    let pad = batch.pads[row];
                    self.ref_cache[i] = Some(lp[row * t + pad.min(t)..(row + 1) * t].to_vec());
                }
            }
            return (
                to_device(pass.logprobs, &self.device),
                pass.dist.map(|d| to_device(d, &self.device)),
            );
        }
        let t = batch.len - 1;
        let mut flat = Vec::with_capacity(ids.len() * t);
        for &i in ids {
            let v = self.ref_cache[i].as_ref().expect("cached");
            flat.extend(std::iter::repeat_n(0f32, t - v.len()));
            flat.extend_from_slice(v);
        }
        (
            Tensor::from_data(TensorData::new(flat, [ids.len(), t]), &self.device),
            None,
        )
    }

    /// OREO's per-unit ρ, values, KL and rewards for a batch of trajectories.
    fn oreo_inputs(
        &mut self,
        policy: &Llama,
        value: &ValueModel,
        batch: &Batch<'_>,
        ids: &[usize],
        ex: &[&Prepared],
    ) -> OreoInputs {
        let device = self.device.clone();
        let keep = self.cfg.alpha() > 0.0;
        let mask = batch.action_mask(&device);
        let pass = token_pass(policy, &self.lcfg, batch, &device, keep);
        let (ref_lp, ref_dist) = self.reference(batch, ids, keep);
        let units = Units::new(batch, self.cfg.oreo_level, &device);
        let rho_tok = (pass.logprobs - ref_lp) * mask.clone();
        let kl_tok = match (pass.dist, ref_dist) {
            (Some(p), Some(r)) => exact_kl(p, r) * mask,
            _ => rho_tok.zeros_like(),
        };
        let v = value
            .values(&self.lcfg, &batch.tokens, &batch.pads, &device)
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

    fn loss(&mut self, policy: &Llama, value: Option<&ValueModel>, ex: &[&Prepared]) -> LossOut {
        let ids: Vec<usize> = ex.iter().flat_map(|e| e.seqs.iter().copied()).collect();
        let encoded = std::mem::take(&mut self.encoded);
        let batch = Batch::new(ids.iter().map(|&i| &encoded[i]).collect());
        let device = self.device.clone();
        let beta = self.cfg.beta();
        let mask = batch.action_mask(&device);
        let out = match self.cfg.algo {
            Algo::Sft => {
                let pass = token_pass(policy, &self.lcfg, &batch, &device, false);
                let nll = (pass.logprobs * mask.clone()).sum().neg() / mask.sum().clamp_min(1.0);
                LossOut {
                    metrics: vec![("nll", scalar(nll.clone()))],
                    policy: nll,
                    value: None,
                }
            }
            Algo::Dpo => {
                let pass = token_pass(policy, &self.lcfg, &batch, &device, false);
                let (ref_lp, _) = self.reference(&batch, &ids, false);
                let n = ex.len();
                // Rows alternate chosen, rejected.
                let chosen_nll = {
                    let t = batch.len - 1;
                    let lp = (pass.logprobs.clone() * mask.clone())
                        .reshape([n, 2, t])
                        .narrow(1, 0, 1)
                        .reshape([n, t]);
                    let m = mask
                        .clone()
                        .reshape([n, 2, t])
                        .narrow(1, 0, 1)
                        .reshape([n, t]);
                    lp.sum().neg() / m.sum().clamp_min(1.0)
                };
                let sums =
                    sequence_logratio(pass.logprobs - ref_lp, mask, self.cfg.dpo.length_normalize);
                let sums = sums.reshape([n, 2]);
                let chosen = sums.clone().narrow(1, 0, 1).reshape([n]);
                let rejected = sums.narrow(1, 1, 1).reshape([n]);
                let (loss, z) = dpo(chosen.clone(), rejected.clone(), &self.cfg.dpo_with_beta());
                let loss = if self.cfg.dpo.nll_weight > 0.0 {
                    loss + chosen_nll.clone().mul_scalar(self.cfg.dpo.nll_weight)
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
            Algo::Oreo => {
                let alpha = self.cfg.alpha();
                let x =
                    self.oreo_inputs(policy, value.expect("OREO has a critic"), &batch, &ids, ex);
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
            Algo::Tpo => {
                let pass = token_pass(policy, &self.lcfg, &batch, &device, false);
                let (ref_lp, _) = self.reference(&batch, &ids, false);
                let units = Units::new(&batch, Level::Step, &device);
                let k = units.mask.dims()[1];
                let step_rho = units.sum((pass.logprobs - ref_lp) * mask);
                let mut weights = units
                    .mask
                    .clone()
                    .into_data()
                    .convert::<f32>()
                    .try_to_vec::<f32>()
                    .expect("f32");
                if self.cfg.tpo_adaptive {
                    let means = units.mean_hidden(pass.hidden.detach());
                    let d = means.dims()[2];
                    let m: Vec<f32> = means
                        .into_data()
                        .convert::<f32>()
                        .try_to_vec::<f32>()
                        .expect("f32");
                    let mut row = 0;
                    for e in ex {
                        let steps: Vec<Vec<Vec<f32>>> = (0..e.seqs.len())
                            .map(|r| {
                                let n_steps = encoded[e.seqs[r]].step_ends.len().min(k);
                                (0..n_steps)
                                    .map(|s| {
                                        m[((row + r) * k + s) * d..((row + r) * k + s + 1) * d]
                                            .to_vec()
                                    })
                                    .collect()
                            })
                            .collect();
                        for (r, ws) in adaptive_step_weights(&steps).into_iter().enumerate() {
                            for (s, w) in ws.into_iter().enumerate() {
                                weights[(row + r) * k + s] *= w;
                            }
                        }
                        row += e.seqs.len();
                    }
                }
                // Lists of different lengths: pad each to the longest with zero rows.
                let n_max = ex.iter().map(|e| e.seqs.len()).max().unwrap_or(0);
                let mut lists = Vec::new();
                let mut wl = Vec::new();
                let mut row = 0;
                for e in ex {
                    let n = e.seqs.len();
                    let part = step_rho.clone().narrow(0, row, n);
                    let mut w = weights[row * k..(row + n) * k].to_vec();
                    w.extend(std::iter::repeat_n(0.0, (n_max - n) * k));
                    let part = if n < n_max {
                        Tensor::cat(vec![part, Tensor::zeros([n_max - n, k], &device)], 0)
                    } else {
                        part
                    };
                    lists.push(part);
                    wl.extend(w);
                    row += n;
                }
                let rho3 = Tensor::stack::<3>(lists, 0);
                let w3 = Tensor::<3>::from_data(TensorData::new(wl, [ex.len(), n_max, k]), &device);
                let scores: Vec<Vec<Option<f64>>> = ex
                    .iter()
                    .map(|e| (0..n_max).map(|i| e.scores.get(i).copied()).collect())
                    .collect();
                let (loss, s) = tpo(rho3, w3, &scores, beta, self.cfg.tpo_lambda, &device);
                let top_margin = {
                    let sv: Vec<f32> = s
                        .into_data()
                        .convert::<f32>()
                        .try_to_vec::<f32>()
                        .expect("f32");
                    let m: Vec<f64> = ex
                        .iter()
                        .enumerate()
                        .map(|(b, e)| (sv[b * n_max] - sv[b * n_max + e.seqs.len() - 1]) as f64)
                        .collect();
                    m.iter().sum::<f64>() / m.len().max(1) as f64
                };
                LossOut {
                    metrics: vec![
                        ("loss", scalar(loss.clone())),
                        ("margin_best_worst", top_margin),
                    ],
                    policy: loss,
                    value: None,
                }
            }
        };
        drop(batch);
        self.encoded = encoded;
        out
    }
}

impl TrainConfig {
    fn dpo_with_beta(&self) -> crate::losses::DpoOptions {
        crate::losses::DpoOptions {
            beta: self.beta(),
            ..self.dpo
        }
    }
}

/// Turns examples into encoded sequences for `algo`; examples of another kind are an error.
fn prepare(
    algo: Algo,
    tok: &TextTokenizer,
    examples: Vec<Example>,
    max_len: usize,
) -> Result<(Vec<Encoded>, Vec<Prepared>, usize), TrainError> {
    let mut encoded = Vec::new();
    let mut prepared = Vec::new();
    let mut too_long = 0;
    let kind = |e: &Example| match e {
        Example::Sft { .. } => "sft",
        Example::Pair { .. } => "a preference pair",
        Example::Trajectory { .. } => "an OREO trajectory",
        Example::List { .. } => "a TPO list",
    };
    for (i, ex) in examples.into_iter().enumerate() {
        let seqs: Vec<(String, Vec<String>, Vec<String>)>;
        let (mut reward, mut scores) = (0.0, Vec::new());
        match (algo, ex) {
            (Algo::Sft, Example::Sft { question, steps }) => seqs = vec![(question, vec![], steps)],
            // Rejection sampling from trajectories: keep the correct ones.
            (
                Algo::Sft,
                Example::Trajectory {
                    question,
                    steps,
                    reward,
                },
            ) if reward > 0.0 => seqs = vec![(question, vec![], steps)],
            (Algo::Sft, Example::Trajectory { .. }) => continue,
            (
                Algo::Dpo,
                Example::Pair {
                    question,
                    prefix,
                    chosen,
                    rejected,
                },
            ) => {
                seqs = vec![
                    (question.clone(), prefix.clone(), chosen),
                    (question, prefix, rejected),
                ]
            }
            (
                Algo::Oreo,
                Example::Trajectory {
                    question,
                    steps,
                    reward: r,
                },
            ) => {
                reward = r;
                seqs = vec![(question, vec![], steps)];
            }
            (
                Algo::Tpo,
                Example::List {
                    question,
                    responses,
                    scores: s,
                },
            ) => {
                scores = s;
                seqs = responses
                    .into_iter()
                    .map(|r| (question.clone(), vec![], r))
                    .collect();
            }
            (a, e) => {
                return Err(TrainError::Data(format!(
                    "example {}: {} cannot be trained with {} (export the matching format)",
                    i + 1,
                    kind(&e),
                    a.name()
                )))
            }
        }
        let enc: Vec<Encoded> = seqs
            .iter()
            .map(|(q, p, s)| encode(tok, q, p, s))
            .collect::<Result<_, _>>()
            .map_err(|e| TrainError::Data(format!("example {}: {e}", i + 1)))?;
        if enc.iter().any(|e| e.tokens.len() > max_len) {
            too_long += 1;
            continue;
        }
        let first = encoded.len();
        encoded.extend(enc);
        prepared.push(Prepared {
            seqs: (first..encoded.len()).collect(),
            reward,
            scores,
        });
    }
    Ok((encoded, prepared, too_long))
}

/// Where a training run keeps its files.
pub struct OutDir(pub PathBuf);

impl OutDir {
    pub fn checkpoint(&self) -> PathBuf {
        self.0.join("checkpoint")
    }
    pub fn curves(&self) -> PathBuf {
        self.0.join("curves.csv")
    }
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> TrainError + '_ {
    move |e| TrainError::Io(format!("{}: {e}", path.display()))
}

/// Options of one call besides the config.
pub struct RunOptions {
    pub resume: bool,
    pub progress: bool,
}

/// Trains `start` on `data` into `out`; returns what happened. The final policy is written to
/// `out` as a Hugging Face checkpoint (the OREO critic to `out/value`).
pub fn train(
    cfg: &TrainConfig,
    data: &Path,
    start: StartModel,
    out: &Path,
    device: &Device,
    opts: RunOptions,
) -> Result<Summary, TrainError> {
    cfg.validate().map_err(TrainError::Config)?;
    let dirs = OutDir(out.to_path_buf());
    std::fs::create_dir_all(out).map_err(io(out))?;
    let (mut examples, bad) = read_examples(data).map_err(TrainError::Data)?;
    // A canonical order first: searches write trees as they finish, and the run must depend
    // only on the data and the seed, not on the order of the file's rows.
    examples.sort_by_cached_key(|e| format!("{e:?}"));
    for b in &bad {
        tracing::warn!("skipped {}", b.message);
    }
    let (encoded, mut prepared, too_long) =
        prepare(cfg.algo, &start.tokenizer, examples, cfg.max_len)?;
    if too_long > 0 {
        tracing::warn!(
            "skipped {too_long} examples longer than max_len = {}",
            cfg.max_len
        );
    }
    if prepared.is_empty() {
        return Err(TrainError::Data(format!(
            "{}: no usable {} examples",
            data.display(),
            cfg.algo.name()
        )));
    }
    // A fixed shuffle splits off the evaluation set.
    prepared.shuffle(&mut rand::rngs::StdRng::seed_from_u64(cfg.seed ^ 0xe7a1));
    let n_eval = if prepared.len() >= 20 {
        ((prepared.len() as f64 * cfg.eval_fraction).round() as usize).max(1)
    } else {
        0
    };
    let eval_set: Vec<Prepared> = prepared.drain(..n_eval).collect();
    let train_set = prepared;
    let n = train_set.len();
    let micro_total = (n * cfg.epochs).div_ceil(cfg.batch_size);
    // The learning-rate schedule spans the steps that will run (`max_steps` cuts the epochs).
    let epoch_steps = micro_total.div_ceil(cfg.grad_accum).max(1);
    let total_steps = cfg
        .max_steps
        .map_or(epoch_steps, |m| m.clamp(1, epoch_steps));
    let schedule_steps = total_steps;

    let plain = device.clone();
    let ad = device.clone().autodiff();
    let mut run = Run {
        cfg,
        lcfg: start.cfg.clone(),
        device: ad.clone(),
        plain: plain.clone(),
        reference: start.model.clone(),
        ref_cache: vec![None; encoded.len()],
        encoded,
    };
    let mut policy = start.model.clone().fork(&ad).train();
    let mut value = (cfg.algo == Algo::Oreo).then(|| {
        ValueModel::new(start.model.clone(), &start.cfg, &plain)
            .fork(&ad)
            .train()
    });
    let mut opt_p = adamw(cfg.weight_decay);
    let mut opt_v = adamw(cfg.weight_decay);
    let columns: Vec<&str> = match cfg.algo {
        Algo::Sft => vec!["lr", "nll", "eval_nll"],
        Algo::Dpo => vec![
            "lr",
            "loss",
            "reward_chosen",
            "reward_rejected",
            "margin",
            "reward_accuracy",
            "chosen_nll",
            "eval_loss",
            "eval_reward_accuracy",
        ],
        Algo::Oreo => vec![
            "lr",
            "value_loss",
            "policy_loss",
            "bellman",
            "kl",
            "value_error",
            "eval_value_loss",
            "eval_policy_loss",
        ],
        Algo::Tpo => vec!["lr", "loss", "margin_best_worst", "eval_loss"],
    }
    .into_iter()
    .chain(["grad_norm", "value_grad_norm", "tokens_per_s"])
    .collect();
    let mut curves = Curves::new(&columns);

    // Resume from the last checkpoint.
    let mut first_step = 0;
    let ck = dirs.checkpoint();
    if opts.resume && ck.join("state.json").is_file() {
        let state: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(ck.join("state.json")).map_err(io(&ck))?)
                .map_err(|e| TrainError::Io(format!("{}: {e}", ck.display())))?;
        if state["source"] != json!(start.source)
            || state["config"] != serde_json::to_value(cfg).expect("json")
        {
            return Err(TrainError::Config(format!(
                "{}: the checkpoint was made with another start model or config; use a new --out",
                ck.display()
            )));
        }
        first_step = state["step"].as_u64().unwrap_or(0) as usize;
        let c = arbor_model::hf::load(&ck.join("policy"), &plain)
            .map_err(|e| TrainError::Io(e.to_string()))?;
        policy = c.model.fork(&ad).train();
        opt_p = opt_p
            .load(ck.join("optim-policy.bpk"))
            .map_err(|e| TrainError::Io(format!("{}: {e:?}", ck.display())))?;
        if value.is_some() {
            let (v, _) = ValueModel::load(&ck.join("value"), &plain)
                .map_err(|e| TrainError::Io(e.to_string()))?;
            value = Some(v.fork(&ad).train());
            opt_v = opt_v
                .load(ck.join("optim-value.bpk"))
                .map_err(|e| TrainError::Io(format!("{}: {e:?}", ck.display())))?;
        }
        curves = Curves::read(&dirs.curves(), first_step).map_err(TrainError::Io)?;
        tracing::info!("resuming at step {first_step} of {total_steps}");
    }

    // Micro-batch m takes training positions [m·B, (m+1)·B) of the concatenated epoch orders.
    let order = |epoch: usize| {
        let mut o: Vec<usize> = (0..n).collect();
        o.shuffle(&mut rand::rngs::StdRng::seed_from_u64(
            cfg.seed.wrapping_add(epoch as u64),
        ));
        o
    };
    let micro = |m: usize| -> Vec<usize> {
        (m * cfg.batch_size..((m + 1) * cfg.batch_size).min(n * cfg.epochs))
            .map(|p| order(p / n)[p % n])
            .collect()
    };

    let bar = if opts.progress {
        indicatif::ProgressBar::new(total_steps as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} steps {msg}")
            .expect("template"),
    );
    bar.set_position(first_step as u64);
    let started = Instant::now();
    let mut tokens_total = 0usize;
    let mut last = Vec::new();
    for step in first_step..total_steps {
        let t0 = Instant::now();
        let lr = cfg.lr_at(cfg.lr, step, schedule_steps);
        let lr_v = cfg.lr_at(cfg.value_lr, step, schedule_steps);
        let mut acc_p = GradientsAccumulator::<Llama>::new();
        let mut acc_v = GradientsAccumulator::<ValueModel>::new();
        let mut sums: Vec<(&'static str, f64)> = Vec::new();
        let mut step_tokens = 0;
        let mut parts = 0;
        for m in step * cfg.grad_accum..((step + 1) * cfg.grad_accum).min(micro_total) {
            let idx = micro(m);
            let ex: Vec<&Prepared> = idx.iter().map(|&i| &train_set[i]).collect();
            step_tokens += ex
                .iter()
                .flat_map(|e| &e.seqs)
                .map(|&s| run.encoded[s].tokens.len() - run.encoded[s].prompt_len)
                .sum::<usize>();
            let out = run.loss(&policy, value.as_ref(), &ex);
            // Each micro-batch's gradient is scaled so the step averages over them.
            let scale = 1.0 / cfg.grad_accum as f64;
            acc_p.accumulate(
                &policy,
                GradientsParams::from_grads(out.policy.mul_scalar(scale).backward(), &policy),
            );
            if let (Some(vl), Some(v)) = (out.value, value.as_ref()) {
                acc_v.accumulate(
                    v,
                    GradientsParams::from_grads(vl.mul_scalar(scale).backward(), v),
                );
            }
            for (k, x) in out.metrics {
                match sums.iter_mut().find(|s| s.0 == k) {
                    Some(s) => s.1 += x,
                    None => sums.push((k, x)),
                }
            }
            parts += 1;
        }
        // The critic steps before the actor.
        let mut norms = Vec::new();
        if let Some(v) = value.take() {
            let mut g = acc_v.grads();
            norms.push(("value_grad_norm", clip_global_norm(&v, &mut g, cfg.clip)));
            value = Some(opt_v.step(lr_v, v, g));
        }
        let mut g = acc_p.grads();
        norms.push(("grad_norm", clip_global_norm(&policy, &mut g, cfg.clip)));
        policy = opt_p.step(lr, policy, g);
        tokens_total += step_tokens;
        let mut row: Vec<(&str, f64)> = sums
            .iter()
            .map(|(k, x)| (*k, x / parts.max(1) as f64))
            .chain(norms)
            .collect();
        row.push(("lr", lr));
        row.push((
            "tokens_per_s",
            step_tokens as f64 / t0.elapsed().as_secs_f64().max(1e-9),
        ));
        let done = step + 1;
        if !eval_set.is_empty() && (done % cfg.eval_every == 0 || done == total_steps) {
            let mut ev: Vec<(&'static str, f64)> = Vec::new();
            let chunks: Vec<Vec<&Prepared>> = eval_set
                .iter()
                .collect::<Vec<_>>()
                .chunks(cfg.batch_size)
                .map(|c| c.to_vec())
                .collect();
            for c in &chunks {
                let out = run.loss(&policy, value.as_ref(), c);
                for (k, x) in out.metrics {
                    let w = c.len() as f64 / eval_set.len() as f64;
                    match ev.iter_mut().find(|s| s.0 == k) {
                        Some(s) => s.1 += x * w,
                        None => ev.push((k, x * w)),
                    }
                }
            }
            for (k, x) in ev {
                let name: &'static str = match k {
                    "nll" => "eval_nll",
                    "loss" => "eval_loss",
                    "reward_accuracy" => "eval_reward_accuracy",
                    "value_loss" => "eval_value_loss",
                    "policy_loss" => "eval_policy_loss",
                    _ => continue,
                };
                row.push((name, x));
            }
        }
        curves.push(step, &row);
        let shown = row
            .iter()
            .find(|r| ["loss", "nll", "policy_loss"].contains(&r.0))
            .map(|r| r.1)
            .unwrap_or(f64::NAN);
        bar.set_message(format!(
            "loss {shown:.4} · {:.0} tok/s",
            row.iter()
                .find(|r| r.0 == "tokens_per_s")
                .map_or(0.0, |r| r.1)
        ));
        bar.inc(1);
        last = row.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        if done % cfg.save_every == 0 && done < total_steps {
            save_checkpoint(
                &dirs,
                cfg,
                &start,
                done,
                &policy,
                value.as_ref(),
                &opt_p,
                &opt_v,
            )?;
            curves.write_csv(&dirs.curves()).map_err(io(out))?;
        }
    }
    bar.finish_and_clear();
    curves.write_csv(&dirs.curves()).map_err(io(out))?;
    curves
        .write_svg(
            &out.join("curves.svg"),
            &format!("arbor train --algo {}", cfg.algo.name()),
        )
        .map_err(TrainError::Io)?;
    arbor_model::hf::save(out, &start.cfg, &policy.valid(), &start.tokenizer)
        .map_err(|e| TrainError::Io(e.to_string()))?;
    if let Some(v) = &value {
        v.valid()
            .save(&out.join("value"), &start.cfg, &start.tokenizer)
            .map_err(|e| TrainError::Io(e.to_string()))?;
    }
    let summary = Summary {
        steps: total_steps,
        examples: n,
        skipped_rows: bad.into_iter().map(|b| b.message).collect(),
        train_tokens: tokens_total,
        seconds: started.elapsed().as_secs_f64(),
        last,
    };
    let report = json!({
        "algo": cfg.algo.name(), "steps": summary.steps, "train_examples": n, "eval_examples": eval_set.len(),
        "skipped_rows": summary.skipped_rows, "too_long": too_long, "train_tokens": tokens_total,
        "seconds": summary.seconds, "last": summary.last.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>(),
        "config": cfg, "start": start.source,
    });
    std::fs::write(
        out.join("train.json"),
        serde_json::to_string_pretty(&report).expect("json"),
    )
    .map_err(io(out))?;
    Ok(summary)
}

#[allow(clippy::too_many_arguments)]
fn save_checkpoint(
    dirs: &OutDir,
    cfg: &TrainConfig,
    start: &StartModel,
    step: usize,
    policy: &Llama,
    value: Option<&ValueModel>,
    opt_p: &ModuleOptimizer,
    opt_v: &ModuleOptimizer,
) -> Result<(), TrainError> {
    let ck = dirs.checkpoint();
    let tmp = dirs.0.join("checkpoint.tmp");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    let e = |x: &dyn std::fmt::Debug| TrainError::Io(format!("{}: {x:?}", tmp.display()));
    arbor_model::hf::save(
        &tmp.join("policy"),
        &start.cfg,
        &policy.valid(),
        &start.tokenizer,
    )
    .map_err(|x| e(&x))?;
    opt_p
        .save(tmp.join("optim-policy.bpk"))
        .map_err(|x| e(&x))?;
    if let Some(v) = value {
        v.valid()
            .save(&tmp.join("value"), &start.cfg, &start.tokenizer)
            .map_err(|x| e(&x))?;
        opt_v.save(tmp.join("optim-value.bpk")).map_err(|x| e(&x))?;
    }
    let state = json!({"step": step, "source": start.source, "config": cfg});
    std::fs::write(tmp.join("state.json"), state.to_string()).map_err(io(&tmp))?;
    // Swap in the new checkpoint: the old one stays until the new one is complete.
    let old = dirs.0.join("checkpoint.old");
    let _ = std::fs::remove_dir_all(&old);
    if ck.exists() {
        std::fs::rename(&ck, &old).map_err(io(&ck))?;
    }
    std::fs::rename(&tmp, &ck).map_err(io(&ck))?;
    let _ = std::fs::remove_dir_all(&old);
    Ok(())
}

/// The training losses of a fixed set of examples, outside the training loop: for gradient
/// checks and for measuring one step's cost (`arbor bench train`).
pub struct Probe<'a> {
    run: Run<'a>,
    prepared: Vec<Prepared>,
}

impl<'a> Probe<'a> {
    /// `device` is the plain device; losses are built on its autodiff mode.
    pub fn new(
        cfg: &'a TrainConfig,
        start: &StartModel,
        examples: Vec<Example>,
        device: &Device,
    ) -> Result<Self, TrainError> {
        let (encoded, prepared, _) = prepare(cfg.algo, &start.tokenizer, examples, cfg.max_len)?;
        let run = Run {
            cfg,
            lcfg: start.cfg.clone(),
            device: device.clone().autodiff(),
            plain: device.clone(),
            reference: start.model.clone(),
            ref_cache: vec![None; encoded.len()],
            encoded,
        };
        Ok(Self { run, prepared })
    }

    /// (policy loss, critic loss) of every example as one batch; models on the autodiff device.
    pub fn losses(
        &mut self,
        policy: &Llama,
        value: Option<&ValueModel>,
    ) -> (Tensor<1>, Option<Tensor<1>>) {
        let prepared = std::mem::take(&mut self.prepared);
        let out = self
            .run
            .loss(policy, value, &prepared.iter().collect::<Vec<_>>());
        self.prepared = prepared;
        (out.policy, out.value)
    }

    /// OREO's inputs for every example as one batch (the gradient checks rebuild the loss from them).
    pub fn oreo_inputs(&mut self, policy: &Llama, value: &ValueModel) -> OreoInputs {
        let ids: Vec<usize> = self
            .prepared
            .iter()
            .flat_map(|e| e.seqs.iter().copied())
            .collect();
        let encoded = std::mem::take(&mut self.run.encoded);
        let prepared = std::mem::take(&mut self.prepared);
        let batch = Batch::new(ids.iter().map(|&i| &encoded[i]).collect());
        let x = self.run.oreo_inputs(
            policy,
            value,
            &batch,
            &ids,
            &prepared.iter().collect::<Vec<_>>(),
        );
        drop(batch);
        self.run.encoded = encoded;
        self.prepared = prepared;
        x
    }

    /// The batch as token ids, for other implementations to compute the same loss on:
    /// per example its sequences (`tokens`, `prompt_len`, `step_ends`) and reward.
    pub fn batch_json(&self) -> serde_json::Value {
        let ex: Vec<serde_json::Value> = self
            .prepared
            .iter()
            .map(|p| {
                let seqs: Vec<serde_json::Value> = p.seqs.iter().map(|&i| {
                    let e = &self.run.encoded[i];
                    json!({"tokens": e.tokens, "prompt_len": e.prompt_len, "step_ends": e.step_ends})
                }).collect();
                json!({"seqs": seqs, "reward": p.reward, "scores": p.scores})
            })
            .collect();
        json!({"algo": self.run.cfg.algo.name(), "beta": self.run.cfg.beta(), "alpha": self.run.cfg.alpha(), "examples": ex})
    }

    /// Response tokens in the batch.
    pub fn action_tokens(&self) -> usize {
        self.prepared
            .iter()
            .flat_map(|p| &p.seqs)
            .map(|&s| self.run.encoded[s].tokens.len() - self.run.encoded[s].prompt_len)
            .sum()
    }
}
