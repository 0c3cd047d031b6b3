//! A Llama-architecture decoder in burn: RMSNorm, RoPE (adjacent-pair order, as GGUF stores
//! Q/K), grouped-query attention, SwiGLU, tied or separate output embeddings.
//!
//! Batches are left-padded: every row writes its new keys and values at the same cache index,
//! pads are masked out, and each row's RoPE positions count from its own first real token.
use burn::module::{Module, Param};
use burn::tensor::activation::{silu, softmax};
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};

use crate::gguf::{Gguf, GgufError};

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
            return Err(GgufError::Metadata { key: "general.architecture".into(), msg: format!("`{arch}` is not supported (llama is)") });
        }
        let u = |k: &str| g.meta_u64(&format!("llama.{k}")).map(|v| v as usize);
        let vocab = g.meta("tokenizer.ggml.tokens")?.as_array().map(|a| a.len()).unwrap_or(0);
        let cfg = Self {
            n_layers: u("block_count")?,
            d_model: u("embedding_length")?,
            d_ff: u("feed_forward_length")?,
            n_heads: u("attention.head_count")?,
            n_kv_heads: u("attention.head_count_kv").or_else(|_| u("attention.head_count"))?,
            vocab,
            rope_base: g.meta_f64("llama.rope.freq_base").unwrap_or(10_000.0),
            rms_eps: g.meta_f64("llama.attention.layer_norm_rms_epsilon").unwrap_or(1e-5),
            context: u("context_length").unwrap_or(2048),
        };
        let bad = |msg: &str| GgufError::Metadata { key: "llama.*".into(), msg: msg.into() };
        if cfg.n_heads == 0 || cfg.n_kv_heads == 0 || cfg.d_model % cfg.n_heads != 0 || cfg.n_heads % cfg.n_kv_heads != 0 {
            return Err(bad("head counts do not divide the model width"));
        }
        if (cfg.d_model / cfg.n_heads) % 2 != 0 || cfg.vocab == 0 || cfg.n_layers == 0 {
            return Err(bad("odd head dimension, empty vocabulary or no layers"));
        }
        Ok(cfg)
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
        let layers = (0..cfg.n_layers).map(|_| (Tensor::zeros(shape, device), Tensor::zeros(shape, device))).collect();
        Self { layers, len: 0, capacity }
    }

    /// Rows `rows` (with repeats) of this cache: n samples share a prompt's prefill this way.
    pub fn select_rows(&self, rows: &[usize], device: &Device) -> Self {
        let idx = Tensor::<1, Int>::from_data(TensorData::new(rows.iter().map(|&r| r as i64).collect::<Vec<_>>(), [rows.len()]), device);
        let layers = self.layers.iter().map(|(k, v)| (k.clone().select(0, idx.clone()), v.clone().select(0, idx.clone()))).collect();
        Self { layers, len: self.len, capacity: self.capacity }
    }
}

fn load2(g: &Gguf, name: &str, out: usize, inp: usize, device: &Device) -> Result<Param<Tensor<2>>, GgufError> {
    // GGUF's dims are fastest-first, so row-major this is [out, in], the orientation W·x uses.
    let w = g.dequantize(name, Some(&[out, inp]))?;
    Ok(Param::from_tensor(Tensor::from_data(TensorData::new(w, [out, inp]), device)))
}

fn load1(g: &Gguf, name: &str, n: usize, device: &Device) -> Result<Param<Tensor<1>>, GgufError> {
    let w = g.dequantize(name, Some(&[n]))?;
    Ok(Param::from_tensor(Tensor::from_data(TensorData::new(w, [n]), device)))
}

impl Llama {
    pub fn from_gguf(g: &Gguf, cfg: &LlamaConfig, device: &Device) -> Result<Self, GgufError> {
        let (d, kv) = (cfg.d_model, cfg.n_kv_heads * cfg.head_dim());
        let embed = load2(g, "token_embd.weight", cfg.vocab, d, device)?;
        let lm_head = match g.tensor("output.weight") {
            Ok(_) => Some(load2(g, "output.weight", cfg.vocab, d, device)?),
            Err(_) => None,
        };
        let blocks = (0..cfg.n_layers)
            .map(|i| {
                let n = |s: &str| format!("blk.{i}.{s}.weight");
                Ok(Block {
                    attn_norm: load1(g, &n("attn_norm"), d, device)?,
                    wq: load2(g, &n("attn_q"), d, d, device)?,
                    wk: load2(g, &n("attn_k"), kv, d, device)?,
                    wv: load2(g, &n("attn_v"), kv, d, device)?,
                    wo: load2(g, &n("attn_output"), d, d, device)?,
                    ffn_norm: load1(g, &n("ffn_norm"), d, device)?,
                    w_gate: load2(g, &n("ffn_gate"), cfg.d_ff, d, device)?,
                    w_up: load2(g, &n("ffn_up"), cfg.d_ff, d, device)?,
                    w_down: load2(g, &n("ffn_down"), d, cfg.d_ff, device)?,
                })
            })
            .collect::<Result<Vec<_>, GgufError>>()?;
        Ok(Self { embed, blocks, norm: load1(g, "output_norm.weight", d, device)?, lm_head })
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
fn blk_proj(w: &Param<Tensor<2>>, x: Tensor<2>) -> Tensor<2> {
    w.val().matmul(x)
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

impl Llama {
    /// Runs `step` on top of `cache` (extending it) and returns logits `[batch, seq or 1, vocab]`.
    pub fn forward(&self, cfg: &LlamaConfig, step: Step<'_>, cache: &mut KvCache, device: &Device) -> Tensor<3> {
        let b = step.tokens.len();
        let t = step.tokens[0].len();
        let start = cache.len;
        let total = start + t;
        assert!(total <= cache.capacity, "KV cache too small: {total} > {}", cache.capacity);
        let (h, kvh, hd) = (cfg.n_heads, cfg.n_kv_heads, cfg.head_dim());

        let ids: Vec<i64> = step.tokens.iter().flat_map(|r| r.iter().map(|&x| x as i64)).collect();
        let ids = Tensor::<1, Int>::from_data(TensorData::new(ids, [b * t]), device);
        let x = self.embed.val().select(0, ids);

        // RoPE angles per row and position: a row's position counts from its first real token.
        let half = hd / 2;
        let mut cos = Vec::with_capacity(b * t * half);
        let mut sin = Vec::with_capacity(b * t * half);
        for &pad in step.pads {
            for i in 0..t {
                let pos = (start + i).saturating_sub(pad) as f64;
                for k in 0..half {
                    let theta = pos * cfg.rope_base.powf(-2.0 * k as f64 / hd as f64);
                    cos.push(theta.cos() as f32);
                    sin.push(theta.sin() as f32);
                }
            }
        }
        let cos = Tensor::<4>::from_data(TensorData::new(cos, [b, 1, t, half]), device);
        let sin = Tensor::<4>::from_data(TensorData::new(sin, [b, 1, t, half]), device);

        // Mask: query i (absolute start+i) may see key j when pad <= j <= start+i. A pad query
        // sees itself, so no row of scores is all −inf (which would put NaN into the cache).
        let mut mask = Vec::with_capacity(b * t * total);
        for &pad in step.pads {
            for i in 0..t {
                let q = start + i;
                for j in 0..total {
                    let visible = (j >= pad && j <= q) || (q < pad && j == q);
                    mask.push(!visible);
                }
            }
        }
        let mask = Tensor::<4, Bool>::from_data(TensorData::new(mask, [b, 1, t, total]), device);
        let scale = 1.0 / (hd as f64).sqrt();
        let group = h / kvh;
        // The mask per row of the grouped score matrix: rows are (group member, position).
        let group_mask = mask.reshape([b, 1, 1, t, total]).expand([b, kvh, group, t, total]).reshape([b, kvh, group * t, total]);
        let placeholder = Tensor::<4>::zeros([1, 1, 1, 1], device);

        // Hidden states are feature-major, [d, batch·seq]: each projection is one W·x GEMM that
        // reads the weight once for the whole batch.
        let n = b * t;
        let mut x = x.transpose(); // [d, n]
        for (layer, blk) in self.blocks.iter().enumerate() {
            let xn = rms_norm(x.clone(), &blk.attn_norm, cfg.rms_eps);
            // Token-major for attention: [n, features] → [b, heads, t, hd].
            let heads = |w: &Param<Tensor<2>>, nh: usize| blk_proj(w, xn.clone()).transpose().reshape([b, t, nh, hd]).swap_dims(1, 2);
            let q = rope(heads(&blk.wq, h), &cos, &sin);
            let k = rope(heads(&blk.wk, kvh), &cos, &sin);
            let v = heads(&blk.wv, kvh);
            // Take the cache tensors out so each is uniquely owned: slice_assign can then write in
            // place instead of copying the whole cache every layer and step.
            let (ck, cv) = &mut cache.layers[layer];
            let k_all = std::mem::replace(ck, placeholder.clone()).slice_assign([0..b, 0..kvh, start..total, 0..hd], k);
            let v_all = std::mem::replace(cv, placeholder.clone()).slice_assign([0..b, 0..kvh, start..total, 0..hd], v);
            let keys = k_all.clone().narrow(2, 0, total);
            let vals = v_all.clone().narrow(2, 0, total);
            *ck = k_all;
            *cv = v_all;
            // Grouped-query attention without copying keys per query head: query head j reads KV
            // head j / group, so the group's queries stack along the row axis.
            let q = q.reshape([b, kvh, group * t, hd]);
            let scores = q.matmul(keys.swap_dims(2, 3)).mul_scalar(scale); // [b, kvh, group·t, total]
            let scores = scores.mask_fill(group_mask.clone(), f32::NEG_INFINITY);
            let attn = softmax(scores, 3).matmul(vals); // [b, kvh, group·t, hd]
            let attn = attn.reshape([b, h, t, hd]).swap_dims(1, 2).reshape([n, cfg.d_model]).transpose();
            x = x + blk_proj(&blk.wo, attn);

            let xn = rms_norm(x.clone(), &blk.ffn_norm, cfg.rms_eps);
            let gate = silu(blk_proj(&blk.w_gate, xn.clone()));
            let up = blk_proj(&blk.w_up, xn);
            x = x + blk_proj(&blk.w_down, gate * up);
        }
        cache.len = total;
        // Logits for the last position of each row, or all positions.
        let x = if step.all_logits {
            x
        } else {
            let last: Vec<i64> = (0..b).map(|r| (r * t + t - 1) as i64).collect();
            x.select(1, Tensor::<1, Int>::from_data(TensorData::new(last, [b]), device))
        };
        let rows = if step.all_logits { t } else { 1 };
        let x = rms_norm(x, &self.norm, cfg.rms_eps);
        let head = self.lm_head.as_ref().unwrap_or(&self.embed);
        blk_proj(head, x).transpose().reshape([b, rows, cfg.vocab])
    }
}
