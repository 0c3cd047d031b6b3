//! A Llama-architecture decoder in burn: RMSNorm, RoPE (adjacent-pair order, as GGUF stores
//! Q/K), grouped-query attention, SwiGLU, tied or separate output embeddings.
//!
//! Batches are left-padded: every row writes its new keys and values at the same cache index,
//! pads are masked out, and each row's RoPE positions count from its own first real token.
use burn::module::{Module, Param};
use burn::tensor::activation::{silu, softmax};
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};

use crate::gguf::{Gguf, GgufError};
use crate::precision::Precision;

mod weights;
pub use weights::{param_id, weight_shapes, RandomInit, WeightSource};

/// Hyper-parameters read from GGUF metadata (`llama.*`).
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaConfig {
    pub n_layers: usize,
    pub d_model: usize,
    pub d_ff: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub vocab: usize,
    pub rope_base: f64,
    pub rms_eps: f64,
    pub context: usize,
}

impl LlamaConfig {
    pub fn from_gguf(g: &Gguf) -> Result<Self, GgufError> {
        let arch = g.meta_str("general.architecture")?;
        if arch != "llama" {
            return Err(GgufError::Metadata {
                key: "general.architecture".into(),
                msg: format!("`{arch}` is not supported (llama is)"),
            });
        }
        let u = |k: &str| g.meta_u64(&format!("llama.{k}")).map(|v| v as usize);
        let vocab = g
            .meta("tokenizer.ggml.tokens")?
            .as_array()
            .map(|a| a.len())
            .unwrap_or(0);
        let cfg = Self {
            n_layers: u("block_count")?,
            d_model: u("embedding_length")?,
            d_ff: u("feed_forward_length")?,
            n_heads: u("attention.head_count")?,
            n_kv_heads: u("attention.head_count_kv").or_else(|_| u("attention.head_count"))?,
            vocab,
            rope_base: g.meta_f64("llama.rope.freq_base").unwrap_or(10_000.0),
            rms_eps: g
                .meta_f64("llama.attention.layer_norm_rms_epsilon")
                .unwrap_or(1e-5),
            context: u("context_length").unwrap_or(2048),
        };
        let bad = |msg: &str| GgufError::Metadata {
            key: "llama.*".into(),
            msg: msg.into(),
        };
        cfg.validate().map_err(|m| bad(&m))?;
        Ok(cfg)
    }

    /// The shape rules every source of a config (GGUF, `config.json`, `arbor model init`) must
    /// meet before a network is built from it.
    pub fn validate(&self) -> Result<(), String> {
        if self.n_heads == 0
            || self.n_kv_heads == 0
            || self.d_model % self.n_heads != 0
            || self.n_heads % self.n_kv_heads != 0
        {
            return Err("head counts do not divide the model width (heads must divide d_model and be a multiple of kv heads)".into());
        }
        if self.head_dim() % 2 != 0 || self.vocab == 0 || self.n_layers == 0 {
            return Err("odd head dimension, empty vocabulary or no layers".into());
        }
        if !(self.rope_base.is_finite() && self.rope_base > 0.0)
            || !(self.rms_eps.is_finite() && self.rms_eps >= 0.0)
            || self.context == 0
        {
            return Err(format!(
                "rope base {} must be positive, norm epsilon {} not negative, context {} at least 1",
                self.rope_base, self.rms_eps, self.context
            ));
        }
        Ok(())
    }

    pub fn head_dim(&self) -> usize {
        self.d_model / self.n_heads
    }
}

#[derive(Module, Debug)]
pub struct Block {
    attn_norm: Param<Tensor<1>>,
    /// Projections stored as GGUF has them, [out, in]: activations are feature-major
    /// ([features, tokens]) and every projection is W·x, which burn's flex GEMM runs faster
    /// with the large weight on the left.
    wq: Param<Tensor<2>>,
    wk: Param<Tensor<2>>,
    wv: Param<Tensor<2>>,
    wo: Param<Tensor<2>>,
    ffn_norm: Param<Tensor<1>>,
    w_gate: Param<Tensor<2>>,
    w_up: Param<Tensor<2>>,
    w_down: Param<Tensor<2>>,
}

#[derive(Module, Debug)]
pub struct Llama {
    /// [vocab, d_model]
    embed: Param<Tensor<2>>,
    blocks: Vec<Block>,
    norm: Param<Tensor<1>>,
    /// [vocab, d_model]; None when tied to the embedding.
    lm_head: Option<Param<Tensor<2>>>,
    /// The type of the matrix products (training's mixed precision; f32 unless set).
    #[module(skip)]
    precision: Precision,
}

/// Keys and values of every layer for a batch, `[batch, kv_heads, capacity, head_dim]`.
pub struct KvCache {
    pub layers: Vec<(Tensor<4>, Tensor<4>)>,
    /// Positions filled so far (the same for every row: batches are left-padded).
    pub len: usize,
    pub capacity: usize,
}

impl KvCache {
    pub fn new(cfg: &LlamaConfig, batch: usize, capacity: usize, device: &Device) -> Self {
        let shape = [batch, cfg.n_kv_heads, capacity, cfg.head_dim()];
        let layers = (0..cfg.n_layers)
            .map(|_| (Tensor::zeros(shape, device), Tensor::zeros(shape, device)))
            .collect();
        Self {
            layers,
            len: 0,
            capacity,
        }
    }

    /// This one-row cache (a shared prompt's prefill) repeated over `rows` rows, with room for
    /// `capacity` positions.
    pub fn repeat(&self, rows: usize, capacity: usize, device: &Device) -> Self {
        let grow = |x: &Tensor<4>| {
            let [_, h, _, hd] = x.dims();
            let filled = x.clone().narrow(2, 0, self.len).repeat_dim(0, rows);
            let room = Tensor::zeros([rows, h, capacity - self.len, hd], device);
            Tensor::cat(vec![filled, room], 2)
        };
        Self {
            layers: self.layers.iter().map(|(k, v)| (grow(k), grow(v))).collect(),
            len: self.len,
            capacity,
        }
    }

    /// Rows `rows` (with repeats) of this cache: n samples share a prompt's prefill this way.
    pub fn select_rows(&self, rows: &[usize], device: &Device) -> Self {
        let idx = Tensor::<1, Int>::from_data(
            TensorData::new(
                rows.iter().map(|&r| r as i64).collect::<Vec<_>>(),
                [rows.len()],
            ),
            device,
        );
        let layers = self
            .layers
            .iter()
            .map(|(k, v)| {
                (
                    k.clone().select(0, idx.clone()),
                    v.clone().select(0, idx.clone()),
                )
            })
            .collect();
        Self {
            layers,
            len: self.len,
            capacity: self.capacity,
        }
    }
}

/// RMSNorm of feature-major activations `[features, tokens]`.
fn rms_norm(x: Tensor<2>, w: &Param<Tensor<1>>, eps: f64) -> Tensor<2> {
    let n = w.val().dims()[0];
    let ms = x.clone().powi_scalar(2).mean_dim(0);
    let scale = ms.add_scalar(eps).sqrt().recip();
    (x * scale) * w.val().reshape([n, 1])
}

/// Rotates adjacent pairs (2i, 2i+1) of the last dimension by angle pos·base^(−2i/dim).
/// `cos`/`sin` are `[batch, 1, seq, dim/2]`.
fn rope(x: Tensor<4>, cos: &Tensor<4>, sin: &Tensor<4>) -> Tensor<4> {
    let [b, h, t, hd] = x.dims();
    let pairs = x.reshape([b, h, t, hd / 2, 2]);
    let x0 = pairs.clone().narrow(4, 0, 1).reshape([b, h, t, hd / 2]);
    let x1 = pairs.narrow(4, 1, 1).reshape([b, h, t, hd / 2]);
    let r0 = x0.clone() * cos.clone() - x1.clone() * sin.clone();
    let r1 = x0 * sin.clone() + x1 * cos.clone();
    Tensor::stack::<5>(vec![r0, r1], 4).reshape([b, h, t, hd])
}

/// W·x for a weight `[out, in]` and feature-major activations `[in, tokens]`.
fn blk_proj(p: Precision, w: &Param<Tensor<2>>, x: Tensor<2>) -> Tensor<2> {
    p.matmul(w.val(), x)
}

/// What a forward pass needs besides the tokens.
pub struct Step<'a> {
    /// `[batch, seq]` token ids (pads may be any id).
    pub tokens: &'a [Vec<u32>],
    /// Per row, how many leading positions of the whole sequence (cache included) are pads.
    pub pads: &'a [usize],
    /// Return logits for every new position, not just the last.
    pub all_logits: bool,
}

/// RoPE angles per row and position, `[batch, 1, seq, head_dim/2]` each: a row's position counts
/// from its first real token.
fn rope_tables(
    cfg: &LlamaConfig,
    pads: &[usize],
    start: usize,
    t: usize,
    device: &Device,
) -> (Tensor<4>, Tensor<4>) {
    let hd = cfg.head_dim();
    let half = hd / 2;
    let b = pads.len();
    let mut cos = Vec::with_capacity(b * t * half);
    let mut sin = Vec::with_capacity(b * t * half);
    for &pad in pads {
        for i in 0..t {
            let pos = (start + i).saturating_sub(pad) as f64;
            for k in 0..half {
                let theta = pos * cfg.rope_base.powf(-2.0 * k as f64 / hd as f64);
                cos.push(theta.cos() as f32);
                sin.push(theta.sin() as f32);
            }
        }
    }
    (
        Tensor::<4>::from_data(TensorData::new(cos, [b, 1, t, half]), device),
        Tensor::<4>::from_data(TensorData::new(sin, [b, 1, t, half]), device),
    )
}

/// Query i (absolute start+i) may see key j when pad <= j <= start+i. A pad query sees itself,
/// so no row of scores is all −inf (which would put NaN into the cache or the gradients).
fn causal_mask(
    pads: &[usize],
    start: usize,
    t: usize,
    total: usize,
    device: &Device,
) -> Tensor<4, Bool> {
    let b = pads.len();
    let mut mask = Vec::with_capacity(b * t * total);
    for &pad in pads {
        for i in 0..t {
            let q = start + i;
            for j in 0..total {
                let visible = (j >= pad && j <= q) || (q < pad && j == q);
                mask.push(!visible);
            }
        }
    }
    Tensor::<4, Bool>::from_data(TensorData::new(mask, [b, 1, t, total]), device)
}

impl Llama {
    /// The decoder stack on `tokens`: the residual stream `[d, batch·seq]` (feature-major) before
    /// the final norm. With a cache, keys and values are appended to it and attention reads the
    /// whole cache; without one (training, scoring) the sequence attends to itself only.
    fn trunk(
        &self,
        cfg: &LlamaConfig,
        tokens: &[Vec<u32>],
        pads: &[usize],
        mut cache: Option<&mut KvCache>,
        device: &Device,
    ) -> Tensor<2> {
        let b = tokens.len();
        let t = tokens[0].len();
        let start = cache.as_ref().map_or(0, |c| c.len);
        let total = start + t;
        if let Some(c) = &cache {
            assert!(
                total <= c.capacity,
                "KV cache too small: {total} > {}",
                c.capacity
            );
        }
        let (h, kvh, hd) = (cfg.n_heads, cfg.n_kv_heads, cfg.head_dim());
        let p = self.precision;

        let ids: Vec<i64> = tokens
            .iter()
            .flat_map(|r| r.iter().map(|&x| x as i64))
            .collect();
        let ids = Tensor::<1, Int>::from_data(TensorData::new(ids, [b * t]), device);
        let x = self.embed.val().select(0, ids);
        let (cos, sin) = rope_tables(cfg, pads, start, t, device);
        let mask = causal_mask(pads, start, t, total, device);
        let scale = 1.0 / (hd as f64).sqrt();
        let group = h / kvh;
        // The mask per row of the grouped score matrix: rows are (group member, position).
        let group_mask = mask
            .reshape([b, 1, 1, t, total])
            .expand([b, kvh, group, t, total])
            .reshape([b, kvh, group * t, total]);
        let placeholder = Tensor::<4>::zeros([1, 1, 1, 1], device);

        // Hidden states are feature-major, [d, batch·seq]: each projection is one W·x GEMM that
        // reads the weight once for the whole batch.
        let n = b * t;
        let mut x = x.transpose(); // [d, n]
        for (layer, blk) in self.blocks.iter().enumerate() {
            let xn = rms_norm(x.clone(), &blk.attn_norm, cfg.rms_eps);
            // Token-major for attention: [n, features] → [b, heads, t, hd].
            let heads = |w: &Param<Tensor<2>>, nh: usize| {
                blk_proj(p, w, xn.clone())
                    .transpose()
                    .reshape([b, t, nh, hd])
                    .swap_dims(1, 2)
            };
            let q = rope(heads(&blk.wq, h), &cos, &sin);
            let k = rope(heads(&blk.wk, kvh), &cos, &sin);
            let v = heads(&blk.wv, kvh);
            let (keys, vals) = match cache.as_deref_mut() {
                Some(cache) => {
                    // Take the cache tensors out so each is uniquely owned: slice_assign can then
                    // write in place instead of copying the whole cache every layer and step.
                    let (ck, cv) = &mut cache.layers[layer];
                    let k_all = std::mem::replace(ck, placeholder.clone())
                        .slice_assign([0..b, 0..kvh, start..total, 0..hd], k);
                    let v_all = std::mem::replace(cv, placeholder.clone())
                        .slice_assign([0..b, 0..kvh, start..total, 0..hd], v);
                    let kv = (
                        k_all.clone().narrow(2, 0, total),
                        v_all.clone().narrow(2, 0, total),
                    );
                    *ck = k_all;
                    *cv = v_all;
                    kv
                }
                None => (k, v),
            };
            // Grouped-query attention without copying keys per query head: query head j reads KV
            // head j / group, so the group's queries stack along the row axis.
            let q = q.reshape([b, kvh, group * t, hd]);
            let scores = p.matmul(q, keys.swap_dims(2, 3)).mul_scalar(scale); // [b, kvh, group·t, total]
            let scores = scores.mask_fill(group_mask.clone(), f32::NEG_INFINITY);
            let attn = p.matmul(softmax(scores, 3), vals); // [b, kvh, group·t, hd]
            let attn = attn
                .reshape([b, h, t, hd])
                .swap_dims(1, 2)
                .reshape([n, cfg.d_model])
                .transpose();
            x = x + blk_proj(p, &blk.wo, attn);

            let xn = rms_norm(x.clone(), &blk.ffn_norm, cfg.rms_eps);
            let gate = silu(blk_proj(p, &blk.w_gate, xn.clone()));
            let up = blk_proj(p, &blk.w_up, xn);
            x = x + blk_proj(p, &blk.w_down, gate * up);
        }
        if let Some(c) = cache {
            c.len = total;
        }
        x
    }

    /// Runs `step` on top of `cache` (extending it) and returns logits `[batch, seq or 1, vocab]`.
    pub fn forward(
        &self,
        cfg: &LlamaConfig,
        step: Step<'_>,
        cache: &mut KvCache,
        device: &Device,
    ) -> Tensor<3> {
        let (b, t) = (step.tokens.len(), step.tokens[0].len());
        let x = self.trunk(cfg, step.tokens, step.pads, Some(cache), device);
        // Logits for the last position of each row, or all positions.
        let x = if step.all_logits {
            x
        } else {
            let last: Vec<i64> = (0..b).map(|r| (r * t + t - 1) as i64).collect();
            x.select(
                1,
                Tensor::<1, Int>::from_data(TensorData::new(last, [b]), device),
            )
        };
        let rows = if step.all_logits { t } else { 1 };
        let x = rms_norm(x, &self.norm, cfg.rms_eps);
        let head = self.lm_head.as_ref().unwrap_or(&self.embed);
        blk_proj(self.precision, head, x)
            .transpose()
            .reshape([b, rows, cfg.vocab])
    }

    /// Final-normed hidden states `[batch, seq, d]` of left-padded `tokens`, without a cache:
    /// the differentiable path of training, and the input of value heads.
    pub fn hidden(
        &self,
        cfg: &LlamaConfig,
        tokens: &[Vec<u32>],
        pads: &[usize],
        device: &Device,
    ) -> Tensor<3> {
        let (b, t) = (tokens.len(), tokens[0].len());
        let x = rms_norm(
            self.trunk(cfg, tokens, pads, None, device),
            &self.norm,
            cfg.rms_eps,
        );
        x.transpose().reshape([b, t, cfg.d_model])
    }

    /// [`Llama::hidden`] on top of `cache` (extending it): a value head reads many states of one
    /// prompt without recomputing the prompt.
    pub fn hidden_cached(
        &self,
        cfg: &LlamaConfig,
        tokens: &[Vec<u32>],
        pads: &[usize],
        cache: &mut KvCache,
        device: &Device,
    ) -> Tensor<3> {
        let (b, t) = (tokens.len(), tokens[0].len());
        let x = rms_norm(
            self.trunk(cfg, tokens, pads, Some(cache), device),
            &self.norm,
            cfg.rms_eps,
        );
        x.transpose().reshape([b, t, cfg.d_model])
    }

    /// Logits `[batch, seq, vocab]` of hidden states from [`Llama::hidden`].
    pub fn logits(&self, hidden: Tensor<3>) -> Tensor<3> {
        let head = self.lm_head.as_ref().unwrap_or(&self.embed).val();
        self.precision
            .matmul(hidden, head.transpose().unsqueeze::<3>())
    }

    /// The model with its matrix products in `precision` (the weights stay f32).
    pub fn with_precision(mut self, precision: Precision) -> Self {
        self.precision = precision;
        self
    }
}
