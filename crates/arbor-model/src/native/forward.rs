//! The Llama decoder for generation on the CPU, on weights in their quantized blocks: no burn,
//! no f32 copy of the weights. Every sequence has its own KV cache and position, so one step may
//! hold prompts being read and samples being extended side by side (rows of any length join and
//! leave a batch freely; nothing is padded).
use std::cell::RefCell;
use std::collections::HashMap;

use super::kernels::{axpy, f32_dot as dot, QActs};
use super::matmul::{Acts, QMatrix};
use super::team::for_rows;
use crate::gguf::{Gguf, GgufError};
use crate::llama::LlamaConfig;

struct Block {
    attn_norm: Vec<f32>,
    wq: QMatrix,
    wk: QMatrix,
    wv: QMatrix,
    wo: QMatrix,
    ffn_norm: Vec<f32>,
    gate: QMatrix,
    up: QMatrix,
    down: QMatrix,
}

/// The network's weights for generation.
pub struct NativeLlama {
    pub cfg: LlamaConfig,
    embed: QMatrix,
    blocks: Vec<Block>,
    norm: Vec<f32>,
    /// Untied output matrix; the embedding when absent.
    head: Option<QMatrix>,
    /// Whether any matrix multiplies quantized activations (else they are never quantized).
    quantized: bool,
    /// cos / sin of position · base^(−2i/head_dim), `[context, head_dim/2]`.
    cos: Vec<f32>,
    sin: Vec<f32>,
}

/// One sequence's keys and values, `[position, kv_head, head_dim]` per layer, grown as it goes.
#[derive(Debug, Clone)]
pub struct SeqCache {
    pub len: usize,
    k: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
}

impl SeqCache {
    pub fn new(cfg: &LlamaConfig) -> Self {
        Self {
            len: 0,
            k: vec![Vec::new(); cfg.n_layers],
            v: vec![Vec::new(); cfg.n_layers],
        }
    }

    /// A copy of the first `len` positions (a position's keys and values depend only on the
    /// tokens up to it, so this is the cache of that prefix).
    pub fn prefix(&self, len: usize) -> Self {
        assert!(len <= self.len);
        let per = |layer: &Vec<f32>| layer.len() / self.len.max(1);
        Self {
            len,
            k: self.k.iter().map(|l| l[..len * per(l)].to_vec()).collect(),
            v: self.v.iter().map(|l| l[..len * per(l)].to_vec()).collect(),
        }
    }

    /// Zeros for `len` positions (tests of code that moves caches around).
    #[cfg(test)]
    pub fn filled(cfg: &LlamaConfig, len: usize) -> Self {
        let kv = cfg.n_kv_heads * cfg.head_dim();
        Self {
            len,
            k: vec![vec![0.0; len * kv]; cfg.n_layers],
            v: vec![vec![0.0; len * kv]; cfg.n_layers],
        }
    }
}

/// What one step reads for a sequence: its new tokens, and whether it wants the logits of
/// every new position or only the last one's.
pub struct Feed<'a> {
    pub tokens: &'a [u32],
    pub all_logits: bool,
}

impl NativeLlama {
    /// Builds from named tensors (GGUF names and `[out, in]` shapes, as `weight_shapes` lists).
    fn build(
        cfg: &LlamaConfig,
        mut matrix: impl FnMut(&str, usize, usize) -> Result<QMatrix, GgufError>,
        mut vector: impl FnMut(&str, usize) -> Result<Vec<f32>, GgufError>,
        untied: bool,
    ) -> Result<Self, GgufError> {
        let (d, kv, ff) = (cfg.d_model, cfg.n_kv_heads * cfg.head_dim(), cfg.d_ff);
        let blocks = (0..cfg.n_layers)
            .map(|i| {
                let n = |s: &str| format!("blk.{i}.{s}.weight");
                Ok(Block {
                    attn_norm: vector(&n("attn_norm"), d)?,
                    wq: matrix(&n("attn_q"), d, d)?,
                    wk: matrix(&n("attn_k"), kv, d)?,
                    wv: matrix(&n("attn_v"), kv, d)?,
                    wo: matrix(&n("attn_output"), d, d)?,
                    ffn_norm: vector(&n("ffn_norm"), d)?,
                    gate: matrix(&n("ffn_gate"), ff, d)?,
                    up: matrix(&n("ffn_up"), ff, d)?,
                    down: matrix(&n("ffn_down"), d, ff)?,
                })
            })
            .collect::<Result<Vec<_>, GgufError>>()?;
        let (hd, half) = (cfg.head_dim(), cfg.head_dim() / 2);
        let mut cos = Vec::with_capacity(cfg.context * half);
        let mut sin = Vec::with_capacity(cfg.context * half);
        for pos in 0..cfg.context {
            for k in 0..half {
                let theta = pos as f64 * cfg.rope_base.powf(-2.0 * k as f64 / hd as f64);
                cos.push(theta.cos() as f32);
                sin.push(theta.sin() as f32);
            }
        }
        let embed = matrix("token_embd.weight", cfg.vocab, d)?;
        let head = if untied {
            Some(matrix("output.weight", cfg.vocab, d)?)
        } else {
            None
        };
        let q = |m: &QMatrix| m.w.wants_quantized();
        let quantized = q(head.as_ref().unwrap_or(&embed))
            || blocks.iter().any(|b| {
                [&b.wq, &b.wk, &b.wv, &b.wo, &b.gate, &b.up, &b.down]
                    .into_iter()
                    .any(q)
            });
        Ok(Self {
            cfg: cfg.clone(),
            embed,
            blocks,
            norm: vector("output_norm.weight", d)?,
            head,
            quantized,
            cos,
            sin,
        })
    }

    /// The GGUF's tensors in their stored blocks.
    pub fn from_gguf(g: &Gguf, cfg: &LlamaConfig) -> Result<Self, GgufError> {
        Self::build(
            cfg,
            |name, r, c| QMatrix::from_gguf(g, name, r, c),
            |name, n| g.dequantize(name, Some(&[n])),
            g.tensor("output.weight").is_ok(),
        )
    }

    /// From f32 weights named as `weight_shapes` lists them (a trained checkpoint).
    pub fn from_f32(
        cfg: &LlamaConfig,
        weights: Vec<(String, Vec<usize>, Vec<f32>)>,
    ) -> Result<Self, GgufError> {
        let map: RefCell<HashMap<String, Vec<f32>>> =
            RefCell::new(weights.into_iter().map(|(n, _, w)| (n, w)).collect());
        let untied = map.borrow().contains_key("output.weight");
        let take = |n: &str| {
            map.borrow_mut()
                .remove(n)
                .ok_or_else(|| GgufError::MissingTensor(n.into()))
        };
        Self::build(
            cfg,
            |n, r, c| Ok(QMatrix::from_f32(r, c, take(n)?)),
            |n, _| take(n),
            untied,
        )
    }

    /// Bytes of weights held.
    pub fn weight_bytes(&self) -> usize {
        let m = |q: &QMatrix| q.w.size();
        self.blocks
            .iter()
            .map(|b| m(&b.wq) + m(&b.wk) + m(&b.wv) + m(&b.wo) + m(&b.gate) + m(&b.up) + m(&b.down))
            .sum::<usize>()
            + m(&self.embed)
            + self.head.as_ref().map_or(0, m)
    }

    /// Reads each feed's tokens into its sequence's cache (extending it) and returns the logits
    /// asked for, in feed order: the last new position's, or every new position's.
    pub fn step(&self, caches: &mut [&mut SeqCache], feeds: &[Feed<'_>]) -> Vec<Vec<f32>> {
        assert_eq!(caches.len(), feeds.len());
        let cfg = &self.cfg;
        let (d, hd) = (cfg.d_model, cfg.head_dim());
        let (h, kvh) = (cfg.n_heads, cfg.n_kv_heads);
        // The batch's tokens, flattened: (sequence, position).
        let mut at = Vec::new();
        for (s, f) in feeds.iter().enumerate() {
            let start = caches[s].len;
            assert!(start + f.tokens.len() <= cfg.context, "past the context");
            at.extend((0..f.tokens.len()).map(|i| (s, start + i)));
        }
        let n = at.len();
        let mut x = vec![0f32; n * d];
        for (t, tok) in feeds.iter().flat_map(|f| f.tokens).enumerate() {
            self.embed.row(*tok as usize, &mut x[t * d..(t + 1) * d]);
        }
        let kv = kvh * hd;
        let (mut q, mut k, mut v) = (vec![0f32; n * d], vec![0f32; n * kv], vec![0f32; n * kv]);
        let mut att = vec![0f32; n * d];
        let (mut gate, mut up) = (vec![0f32; n * cfg.d_ff], vec![0f32; n * cfg.d_ff]);
        let mut delta = vec![0f32; n * d];
        for (layer, blk) in self.blocks.iter().enumerate() {
            let xn = rms_norm(&x, &blk.attn_norm, d, cfg.rms_eps);
            let qa = self.quantize(&xn, d);
            let a = Acts { x: &xn, q: &qa };
            blk.wq.matmul(&a, &mut q);
            blk.wk.matmul(&a, &mut k);
            blk.wv.matmul(&a, &mut v);
            for (t, &(_, pos)) in at.iter().enumerate() {
                self.rope(&mut q[t * d..(t + 1) * d], pos);
                self.rope(&mut k[t * kv..(t + 1) * kv], pos);
            }
            for (t, &(s, _)) in at.iter().enumerate() {
                caches[s].k[layer].extend_from_slice(&k[t * kv..(t + 1) * kv]);
                caches[s].v[layer].extend_from_slice(&v[t * kv..(t + 1) * kv]);
            }
            // Attention per (token, head): a token at position p sees its sequence's 0..=p.
            let group = h / kvh;
            let scale = 1.0 / (hd as f32).sqrt();
            let views: Vec<(&[f32], &[f32])> = caches
                .iter()
                .map(|c| (&c.k[layer][..], &c.v[layer][..]))
                .collect();
            for_rows(&mut att, hd, 1, |pairs, out| {
                for (i, out) in pairs.zip(out.chunks_exact_mut(hd)) {
                    let (t, head) = (i / h, i % h);
                    let (s, pos) = at[t];
                    let (keys, vals) = views[s];
                    let g = head / group;
                    let qh = &q[t * d + head * hd..t * d + (head + 1) * hd];
                    attend(qh, keys, vals, pos, kv, g * hd, scale, out);
                }
            });
            let qa = self.quantize(&att, d);
            blk.wo.matmul(&Acts { x: &att, q: &qa }, &mut delta);
            add(&mut x, &delta);

            let xn = rms_norm(&x, &blk.ffn_norm, d, cfg.rms_eps);
            let qa = self.quantize(&xn, d);
            let a = Acts { x: &xn, q: &qa };
            blk.gate.matmul(&a, &mut gate);
            blk.up.matmul(&a, &mut up);
            for (g, u) in gate.iter_mut().zip(&up) {
                *g = *g / (1.0 + (-*g).exp()) * u;
            }
            let qa = self.quantize(&gate, cfg.d_ff);
            blk.down.matmul(&Acts { x: &gate, q: &qa }, &mut delta);
            add(&mut x, &delta);
        }
        for (s, f) in feeds.iter().enumerate() {
            caches[s].len += f.tokens.len();
        }
        // Logits only where asked: the last token of each feed, or all of its tokens.
        let mut want = Vec::new();
        let mut t0 = 0;
        for f in feeds {
            let len = f.tokens.len();
            if f.all_logits {
                want.extend(t0..t0 + len);
            } else if len > 0 {
                want.push(t0 + len - 1);
            }
            t0 += len;
        }
        let picked: Vec<f32> = want
            .iter()
            .flat_map(|&t| x[t * d..(t + 1) * d].to_vec())
            .collect();
        let xn = rms_norm(&picked, &self.norm, d, cfg.rms_eps);
        let qa = self.quantize(&xn, d);
        let head = self.head.as_ref().unwrap_or(&self.embed);
        let mut logits = vec![0f32; want.len() * cfg.vocab];
        head.matmul(&Acts { x: &xn, q: &qa }, &mut logits);
        logits
            .chunks_exact(cfg.vocab)
            .map(<[f32]>::to_vec)
            .collect()
    }

    /// Each token's activations quantized per block, for the matrices that multiply them so;
    /// none when no matrix does (f32 checkpoints, whose widths need not be whole blocks: a
    /// quantized matrix's width always is, the file's block layout requires it).
    fn quantize(&self, x: &[f32], width: usize) -> Vec<QActs> {
        if !self.quantized || width % super::kernels::QK != 0 {
            return Vec::new();
        }
        x.chunks_exact(width).map(QActs::quantize).collect()
    }

    /// Rotates adjacent pairs (2i, 2i+1) of every head in `x` by position `pos`.
    fn rope(&self, x: &mut [f32], pos: usize) {
        let half = self.cfg.head_dim() / 2;
        let (cos, sin) = (
            &self.cos[pos * half..(pos + 1) * half],
            &self.sin[pos * half..(pos + 1) * half],
        );
        for head in x.chunks_exact_mut(2 * half) {
            for (i, pair) in head.chunks_exact_mut(2).enumerate() {
                let (a, b) = (pair[0], pair[1]);
                pair[0] = a * cos[i] - b * sin[i];
                pair[1] = a * sin[i] + b * cos[i];
            }
        }
    }
}

/// One query head over keys and values `0..=pos` (rows of `stride` values, the head's `hd`
/// at `offset`): softmax(q·k·scale)·v into `out`.
#[allow(clippy::too_many_arguments)]
fn attend(
    q: &[f32],
    keys: &[f32],
    vals: &[f32],
    pos: usize,
    stride: usize,
    offset: usize,
    scale: f32,
    out: &mut [f32],
) {
    let hd = q.len();
    let mut scores: Vec<f32> = (0..=pos)
        .map(|j| dot(q, &keys[j * stride + offset..j * stride + offset + hd]) * scale)
        .collect();
    let max = scores.iter().fold(f32::NEG_INFINITY, |m, &s| m.max(s));
    let mut sum = 0f32;
    for s in &mut scores {
        *s = (*s - max).exp();
        sum += *s;
    }
    out.fill(0.0);
    for (j, w) in scores.iter().enumerate() {
        axpy(
            w / sum,
            &vals[j * stride + offset..j * stride + offset + hd],
            out,
        );
    }
}

fn rms_norm(x: &[f32], w: &[f32], d: usize, eps: f64) -> Vec<f32> {
    let mut out = vec![0f32; x.len()];
    for (row, o) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
        let ms = row.iter().map(|v| v * v).sum::<f32>() / d as f32;
        let scale = 1.0 / (ms + eps as f32).sqrt();
        for ((o, v), g) in o.iter_mut().zip(row).zip(w) {
            *o = v * scale * g;
        }
    }
    out
}

fn add(x: &mut [f32], delta: &[f32]) {
    for (a, b) in x.iter_mut().zip(delta) {
        *a += b;
    }
}
