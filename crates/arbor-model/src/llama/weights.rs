//! Where a Llama's weights come from (GGUF, random init, any [`WeightSource`]) and where they
//! go (`Llama::weights` for checkpoints), with parameter ids stable across processes.
use burn::module::{Param, ParamId};
use burn::tensor::{Device, Tensor, TensorData};

use super::{Block, Llama, LlamaConfig};
use crate::gguf::{Gguf, GgufError};
use crate::precision::Precision;

/// A stable parameter id per tensor name, so that optimizer state saved with one process's
/// model matches the parameters of a model loaded from a checkpoint in another.
pub fn param_id(name: &str) -> ParamId {
    // FNV-1a with the top bit set, away from the small counters burn hands out.
    ParamId::from(arbor_core::fnv1a(name.bytes()) | (1 << 63))
}

fn with_id<T: burn::module::Parameter>(name: &str, mut p: Param<T>) -> Param<T> {
    p.id = param_id(name);
    p
}

/// Where a model's weights come from: called once per tensor with its GGUF name (`blk.0.attn_q.weight`)
/// and shape (`[out, in]` for projections); returns the row-major values.
pub trait WeightSource {
    type Error;
    fn weight(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f32>, Self::Error>;
    /// Whether the model has an untied output matrix (`output.weight`).
    fn has_output(&mut self) -> bool;
}

/// The tensor names and shapes of a model with this config, in GGUF naming.
pub fn weight_shapes(cfg: &LlamaConfig, untied_output: bool) -> impl Iterator<Item = (String, Vec<usize>)> + '_ {
    // Lazily: a damaged config (2⁴⁰ layers) must fail at its first missing tensor, not build
    // a list of every tensor it claims.
    let (d, kv) = (cfg.d_model, cfg.n_kv_heads * cfg.head_dim());
    let layers = (0..cfg.n_layers).flat_map(move |i| {
        let n = move |s: &str| format!("blk.{i}.{s}.weight");
        [
            (n("attn_norm"), vec![d]),
            (n("attn_q"), vec![d, d]),
            (n("attn_k"), vec![kv, d]),
            (n("attn_v"), vec![kv, d]),
            (n("attn_output"), vec![d, d]),
            (n("ffn_norm"), vec![d]),
            (n("ffn_gate"), vec![cfg.d_ff, d]),
            (n("ffn_up"), vec![cfg.d_ff, d]),
            (n("ffn_down"), vec![d, cfg.d_ff]),
        ]
    });
    std::iter::once(("token_embd.weight".to_string(), vec![cfg.vocab, d]))
        .chain(layers)
        .chain(std::iter::once(("output_norm.weight".into(), vec![d])))
        .chain(untied_output.then(|| ("output.weight".into(), vec![cfg.vocab, d])))
}

struct GgufSource<'a>(&'a Gguf);

impl WeightSource for GgufSource<'_> {
    type Error = GgufError;
    fn weight(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f32>, GgufError> {
        // GGUF's dims are fastest-first, so row-major this is [out, in], the orientation W·x uses.
        self.0.dequantize(name, Some(shape))
    }
    fn has_output(&mut self) -> bool {
        self.0.tensor("output.weight").is_ok()
    }
}

/// Random weights for a model trained from scratch (tests, tiny models): N(0, 0.02²)
/// projections and embeddings, unit norms, from a seeded generator so every backend agrees.
pub struct RandomInit(pub rand::rngs::StdRng);

impl WeightSource for RandomInit {
    type Error = std::convert::Infallible;
    fn weight(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f32>, Self::Error> {
        use rand::Rng;
        let n: usize = shape.iter().product();
        if name.ends_with("norm.weight") {
            return Ok(vec![1.0; n]);
        }
        // Box–Muller.
        Ok((0..n)
            .map(|_| {
                let (u1, u2): (f64, f64) = (self.0.gen::<f64>().max(1e-12), self.0.gen());
                (0.02 * (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
            })
            .collect())
    }
    fn has_output(&mut self) -> bool {
        false
    }
}

impl Llama {
    pub fn from_gguf(g: &Gguf, cfg: &LlamaConfig, device: &Device) -> Result<Self, GgufError> {
        Self::load(cfg, &mut GgufSource(g), device)
    }

    /// Builds the model from any weight source; parameter ids are a function of tensor names.
    pub fn load<S: WeightSource>(
        cfg: &LlamaConfig,
        src: &mut S,
        device: &Device,
    ) -> Result<Self, S::Error> {
        let untied = src.has_output();
        let mut tensors = std::collections::HashMap::new();
        for (name, shape) in weight_shapes(cfg, untied) {
            let w = src.weight(&name, &shape)?;
            tensors.insert(name, (w, shape));
        }
        let mut take1 = |name: &str| -> Param<Tensor<1>> {
            let (w, shape) = tensors
                .remove(name)
                .expect("weight_shapes lists every tensor");
            with_id(
                name,
                Param::from_tensor(Tensor::<1>::from_data(
                    TensorData::new(w, [shape[0]]),
                    device,
                )),
            )
        };
        let norms: Vec<(Param<Tensor<1>>, Param<Tensor<1>>)> = (0..cfg.n_layers)
            .map(|i| {
                (
                    take1(&format!("blk.{i}.attn_norm.weight")),
                    take1(&format!("blk.{i}.ffn_norm.weight")),
                )
            })
            .collect();
        let norm = take1("output_norm.weight");
        let mut take2 = |name: &str| -> Param<Tensor<2>> {
            let (w, shape) = tensors
                .remove(name)
                .expect("weight_shapes lists every tensor");
            with_id(
                name,
                Param::from_tensor(Tensor::<2>::from_data(
                    TensorData::new(w, [shape[0], shape[1]]),
                    device,
                )),
            )
        };
        let embed = take2("token_embd.weight");
        let lm_head = untied.then(|| take2("output.weight"));
        let blocks = norms
            .into_iter()
            .enumerate()
            .map(|(i, (attn_norm, ffn_norm))| {
                let n = |s: &str| format!("blk.{i}.{s}.weight");
                Block {
                    attn_norm,
                    wq: take2(&n("attn_q")),
                    wk: take2(&n("attn_k")),
                    wv: take2(&n("attn_v")),
                    wo: take2(&n("attn_output")),
                    ffn_norm,
                    w_gate: take2(&n("ffn_gate")),
                    w_up: take2(&n("ffn_up")),
                    w_down: take2(&n("ffn_down")),
                }
            })
            .collect();
        Ok(Self {
            embed,
            blocks,
            norm,
            lm_head,
            precision: Precision::F32,
        })
    }

    /// Every weight with its GGUF name, shape and row-major values (for checkpoints).
    pub fn weights(&self) -> Vec<(String, Vec<usize>, Vec<f32>)> {
        fn data<const D: usize>(p: &Param<Tensor<D>>) -> (Vec<usize>, Vec<f32>) {
            let t = p.val();
            let shape = t.dims().to_vec();
            (shape, crate::host::to_f32(t))
        }
        let mut out = Vec::new();
        let mut push =
            |name: String, (shape, w): (Vec<usize>, Vec<f32>)| out.push((name, shape, w));
        push("token_embd.weight".into(), data(&self.embed));
        for (i, b) in self.blocks.iter().enumerate() {
            let n = |s: &str| format!("blk.{i}.{s}.weight");
            push(n("attn_norm"), data(&b.attn_norm));
            push(n("attn_q"), data(&b.wq));
            push(n("attn_k"), data(&b.wk));
            push(n("attn_v"), data(&b.wv));
            push(n("attn_output"), data(&b.wo));
            push(n("ffn_norm"), data(&b.ffn_norm));
            push(n("ffn_gate"), data(&b.w_gate));
            push(n("ffn_up"), data(&b.w_up));
            push(n("ffn_down"), data(&b.w_down));
        }
        push("output_norm.weight".into(), data(&self.norm));
        if let Some(h) = &self.lm_head {
            push("output.weight".into(), data(h));
        }
        out
    }
}
