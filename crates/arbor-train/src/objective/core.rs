//! What every training objective shares: the [`Objective`] contract (which examples it takes,
//! its loss and metrics), prepared examples, and the [`Context`] a loss computes in (the frozen
//! reference model and its cached log-probs).
use arbor_model::host::to_f32;
use arbor_model::llama::{Llama, LlamaConfig};
use arbor_model::tokenizer::TextTokenizer;
use burn::tensor::{Device, Tensor, TensorData};

use crate::config::{Algo, TrainConfig};
use crate::data::{Example, Question};
use crate::forward::{encode, reference_pass, to_device, Batch, Encoded};
use crate::value::ValueModel;

/// A one-element tensor's value.
pub fn scalar(t: Tensor<1>) -> f64 {
    t.into_scalar::<f32>() as f64
}

pub fn mean_of(t: Tensor<1>) -> f64 {
    scalar(t.mean())
}

/// One example's sequences: (question, prefix steps, response steps) each.
pub struct Sequences {
    pub seqs: Vec<(Question, Vec<String>, Vec<String>)>,
    /// OREO: the trajectory's reward.
    pub reward: f64,
    /// TPO: the list's scores.
    pub scores: Vec<f64>,
}

impl Sequences {
    pub fn of(seqs: Vec<(Question, Vec<String>, Vec<String>)>) -> Self {
        Self {
            seqs,
            reward: 0.0,
            scores: Vec::new(),
        }
    }
}

/// A prepared example: indices into the encoded sequences.
pub struct Prepared {
    pub seqs: Vec<usize>,
    pub reward: f64,
    pub scores: Vec<f64>,
}

/// What one loss evaluation gives back.
pub struct LossOut {
    pub policy: Tensor<1>,
    pub value: Option<Tensor<1>>,
    pub metrics: Vec<(&'static str, f64)>,
}

/// One training objective (SFT, DPO, OREO, TPO).
pub trait Objective: Send {
    fn algo(&self) -> Algo;
    /// The step's metrics, in curve order.
    fn metrics(&self) -> &'static [&'static str];
    /// The metrics also reported on the evaluation set (as `eval_<name>`).
    fn eval_metrics(&self) -> &'static [&'static str];
    /// Whether a critic trains beside the policy.
    fn has_critic(&self) -> bool {
        false
    }
    /// The sequences of one example: `Ok(None)` skips it (an incorrect trajectory for SFT),
    /// `Err` hands back an example of a kind the objective cannot train on.
    fn sequences(&self, ex: Example) -> Result<Option<Sequences>, Example>;
    /// The loss of a batch.
    fn loss(&self, cx: &mut Context, x: &LossInput<'_>) -> LossOut;
}

/// A batch as a loss sees it: the models, and the rows of `ex` in order (`ids`: the rows'
/// sequence ids).
pub struct LossInput<'a> {
    pub policy: &'a Llama,
    pub value: Option<&'a ValueModel>,
    pub batch: &'a Batch<'a>,
    pub ids: &'a [usize],
    pub ex: &'a [&'a Prepared],
}

/// The device and frozen reference a loss computes with.
pub struct Context {
    pub cfg: TrainConfig,
    pub lcfg: LlamaConfig,
    /// The autodiff device of the trained models.
    pub device: Device,
    /// The plain device of the reference.
    pub plain: Device,
    pub reference: Llama,
    /// Reference log-probs per sequence id (response positions), with `precompute_reference`.
    ref_cache: Vec<Option<Vec<f32>>>,
}

impl Context {
    pub fn new(cfg: &TrainConfig, lcfg: LlamaConfig, reference: Llama, plain: &Device) -> Self {
        Self {
            cfg: cfg.clone(),
            lcfg,
            device: plain.clone().autodiff(),
            plain: plain.clone(),
            reference,
            ref_cache: Vec::new(),
        }
    }

    /// Reference per-token log-probs `[B, T−1]` on the training device, and the full
    /// distributions at the action positions (`[N, V]`) when the KL needs them.
    pub fn reference(
        &mut self,
        batch: &Batch<'_>,
        ids: &[usize],
        keep_dist: bool,
    ) -> (Tensor<2>, Option<Tensor<2>>) {
        let most = ids.iter().max().map_or(0, |&i| i + 1);
        if self.ref_cache.len() < most {
            self.ref_cache.resize(most, None);
        }
        let t = batch.len - 1;
        let cached = self.cfg.precompute_reference
            && !keep_dist
            && ids.iter().all(|&i| self.ref_cache[i].is_some());
        if !cached {
            let (logprobs, dist) =
                reference_pass(&self.reference, &self.lcfg, batch, &self.plain, keep_dist);
            if self.cfg.precompute_reference {
                let lp = to_f32(logprobs.clone());
                for (row, &i) in ids.iter().enumerate() {
                    let pad = batch.pads[row];
                    self.ref_cache[i] = Some(lp[row * t + pad.min(t)..(row + 1) * t].to_vec());
                }
            }
            return (
                to_device(logprobs, &self.device),
                dist.map(|d| to_device(d, &self.device)),
            );
        }
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
}

/// Encoded sequences and the examples over them, for one objective.
#[derive(Default)]
pub struct PreparedSet {
    pub encoded: Vec<Encoded>,
    pub examples: Vec<Prepared>,
    /// Examples left out for exceeding `max_len`.
    pub too_long: usize,
}

/// Turns examples into encoded sequences for `objective`; examples of another kind are an
/// error naming the example.
pub fn prepare(
    objective: &dyn Objective,
    tok: &TextTokenizer,
    examples: Vec<Example>,
    max_len: usize,
) -> Result<PreparedSet, String> {
    let mut out = PreparedSet::default();
    for (i, ex) in examples.into_iter().enumerate() {
        let s = match objective.sequences(ex) {
            Ok(Some(s)) => s,
            Ok(None) => continue,
            Err(e) => {
                return Err(format!(
                    "example {}: {} cannot be trained with {} (export the matching format)",
                    i + 1,
                    e.kind(),
                    objective.algo().name()
                ))
            }
        };
        let enc: Vec<Encoded> = s
            .seqs
            .iter()
            .map(|(q, p, r)| encode(tok, q, p, r))
            .collect::<Result<_, _>>()
            .map_err(|e| format!("example {}: {e}", i + 1))?;
        if enc.iter().any(|e| e.tokens.len() > max_len) {
            out.too_long += 1;
            continue;
        }
        let first = out.encoded.len();
        out.encoded.extend(enc);
        out.examples.push(Prepared {
            seqs: (first..out.encoded.len()).collect(),
            reward: s.reward,
            scores: s.scores,
        });
    }
    Ok(out)
}
