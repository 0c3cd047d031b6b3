//! Hugging Face Llama checkpoints: a directory with `config.json`, `model.safetensors` (HF
//! tensor names, `[out, in]` projections, Q/K rows in HF's rotate-half order) and the tokenizer
//! files, loadable by `transformers.AutoModelForCausalLM` and by arbor (`--model DIR`).
use std::collections::HashMap;
use std::path::Path;

use burn::tensor::Device;
use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;
use serde_json::{json, Value};

use crate::llama::{Llama, LlamaConfig, WeightSource};
use crate::tokenizer::TextTokenizer;

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{path}: {msg}")]
    File { path: String, msg: String },
}

fn err(path: &Path, msg: impl std::fmt::Display) -> CheckpointError {
    CheckpointError::File {
        path: path.display().to_string(),
        msg: msg.to_string(),
    }
}

/// A tensor by name: shape and row-major f32 values.
pub type Tensors = HashMap<String, (Vec<usize>, Vec<f32>)>;

/// The HF name of a GGUF tensor name.
pub fn hf_name(gguf: &str) -> String {
    let fixed = match gguf {
        "token_embd.weight" => Some("model.embed_tokens.weight"),
        "output_norm.weight" => Some("model.norm.weight"),
        "output.weight" => Some("lm_head.weight"),
        _ => None,
    };
    if let Some(f) = fixed {
        return f.to_string();
    }
    let rest = gguf.strip_prefix("blk.").unwrap_or(gguf);
    let (layer, part) = rest.split_once('.').unwrap_or((rest, ""));
    let part = part.trim_end_matches(".weight");
    let hf = match part {
        "attn_norm" => "input_layernorm",
        "attn_q" => "self_attn.q_proj",
        "attn_k" => "self_attn.k_proj",
        "attn_v" => "self_attn.v_proj",
        "attn_output" => "self_attn.o_proj",
        "ffn_norm" => "post_attention_layernorm",
        "ffn_gate" => "mlp.gate_proj",
        "ffn_up" => "mlp.up_proj",
        "ffn_down" => "mlp.down_proj",
        other => other,
    };
    format!("model.layers.{layer}.{hf}.weight")
}

/// How many heads a Q or K projection's rows hold (None for tensors RoPE does not touch).
fn rope_heads(cfg: &LlamaConfig, gguf: &str) -> Option<usize> {
    if gguf.ends_with("attn_q.weight") {
        Some(cfg.n_heads)
    } else if gguf.ends_with("attn_k.weight") {
        Some(cfg.n_kv_heads)
    } else {
        None
    }
}

/// Reorders the rows of a Q/K projection between GGUF's adjacent-pair RoPE order (row 2i+j of a
/// head) and HF's rotate-half order (row j·hd/2+i); `to_hf` picks the direction.
fn permute_rope_rows(w: &[f32], heads: usize, cols: usize, to_hf: bool) -> Vec<f32> {
    let hd = w.len() / cols / heads;
    let half = hd / 2;
    let mut out = vec![0.0; w.len()];
    for h in 0..heads {
        for i in 0..half {
            for j in 0..2 {
                let gguf_row = h * hd + 2 * i + j;
                let hf_row = h * hd + j * half + i;
                let (src, dst) = if to_hf {
                    (gguf_row, hf_row)
                } else {
                    (hf_row, gguf_row)
                };
                out[dst * cols..(dst + 1) * cols].copy_from_slice(&w[src * cols..(src + 1) * cols]);
            }
        }
    }
    out
}

/// HF `config.json` of a Llama model.
pub fn config_json(cfg: &LlamaConfig, tied: bool, tok: &TextTokenizer) -> Value {
    json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": cfg.d_model,
        "intermediate_size": cfg.d_ff,
        "num_hidden_layers": cfg.n_layers,
        "num_attention_heads": cfg.n_heads,
        "num_key_value_heads": cfg.n_kv_heads,
        "head_dim": cfg.head_dim(),
        "vocab_size": cfg.vocab,
        "rms_norm_eps": cfg.rms_eps,
        "rope_theta": cfg.rope_base,
        "max_position_embeddings": cfg.context,
        "tie_word_embeddings": tied,
        "hidden_act": "silu",
        "attention_bias": false,
        "mlp_bias": false,
        "bos_token_id": tok.bos,
        "eos_token_id": tok.eos,
        "torch_dtype": "float32",
    })
}

fn config_from_json(v: &Value, path: &Path) -> Result<(LlamaConfig, bool), CheckpointError> {
    // A field that is absent (or null, as transformers writes unset ones) takes its default;
    // one that is present must have the right type.
    let field = |k: &str, want: &str, ok: fn(&Value) -> bool| -> Result<Option<&Value>, CheckpointError> {
        match v.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(x) if ok(x) => Ok(Some(x)),
            Some(x) => Err(err(path, format!("field `{k}` is {x}, not {want}"))),
        }
    };
    let whole = |k: &str| Ok::<_, CheckpointError>(field(k, "a whole number", |x| x.as_u64().is_some())?.and_then(Value::as_u64).map(|x| x as usize));
    let u = |k: &str| whole(k)?.ok_or_else(|| err(path, format!("field `{k}` is missing")));
    let f = |k: &str, default: f64| Ok::<_, CheckpointError>(field(k, "a number", |x| x.is_number())?.and_then(Value::as_f64).unwrap_or(default));
    if let Some(t) = field("model_type", "a string", Value::is_string)?.and_then(Value::as_str) {
        if t != "llama" {
            return Err(err(
                path,
                format!("model_type `{t}` is not supported (llama is)"),
            ));
        }
    }
    let n_heads = u("num_attention_heads")?;
    let cfg = LlamaConfig {
        n_layers: u("num_hidden_layers")?,
        d_model: u("hidden_size")?,
        d_ff: u("intermediate_size")?,
        n_heads,
        n_kv_heads: whole("num_key_value_heads")?.unwrap_or(n_heads),
        vocab: u("vocab_size")?,
        rope_base: f("rope_theta", 10_000.0)?,
        rms_eps: f("rms_norm_eps", 1e-5)?,
        context: whole("max_position_embeddings")?.unwrap_or(2048),
    };
    cfg.validate().map_err(|m| err(path, m))?;
    let tied = field("tie_word_embeddings", "true or false", Value::is_boolean)?;
    Ok((cfg, tied.and_then(Value::as_bool).unwrap_or(false)))
}

/// Writes `tensors` (name, shape, values) as one f32 safetensors file.
pub fn write_safetensors(
    path: &Path,
    tensors: &[(String, Vec<usize>, Vec<f32>)],
) -> Result<(), CheckpointError> {
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, _, w)| w.iter().flat_map(|x| x.to_le_bytes()).collect())
        .collect();
    let views = tensors
        .iter()
        .zip(&bytes)
        .map(|((name, shape, _), b)| {
            TensorView::new(Dtype::F32, shape.clone(), b).map(|v| (name.clone(), v))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(path, e))?;
    let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
    let tmp = path.with_extension("safetensors.tmp");
    safetensors::serialize_to_file(views, Some(meta), &tmp).map_err(|e| err(path, e))?;
    std::fs::rename(&tmp, path).map_err(|e| err(path, e))
}

/// Reads every tensor of a safetensors file as f32 (F32, F16 and BF16 are accepted).
pub fn read_safetensors(path: &Path) -> Result<Tensors, CheckpointError> {
    let bytes = std::fs::read(path).map_err(|e| err(path, e))?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| err(path, e))?;
    let mut out = HashMap::new();
    for (name, view) in st.tensors() {
        let d = view.data();
        let w: Vec<f32> = match view.dtype() {
            Dtype::F32 => d
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            Dtype::F16 => d
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            Dtype::BF16 => d
                .chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            other => {
                return Err(err(
                    path,
                    format!("tensor `{name}` has dtype {other:?} (F32, F16, BF16 are supported)"),
                ))
            }
        };
        out.insert(name, (view.shape().to_vec(), w));
    }
    Ok(out)
}

/// The model's weights under HF names (Q/K rows permuted to HF's order).
pub fn hf_tensors(cfg: &LlamaConfig, model: &Llama) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    model
        .weights()
        .into_iter()
        .map(|(name, shape, w)| {
            let w = match rope_heads(cfg, &name) {
                Some(h) => permute_rope_rows(&w, h, shape[1], true),
                None => w,
            };
            (hf_name(&name), shape, w)
        })
        .collect()
}

/// Saves a checkpoint directory: `model.safetensors`, `config.json`, the tokenizer files.
pub fn save(
    dir: &Path,
    cfg: &LlamaConfig,
    model: &Llama,
    tok: &TextTokenizer,
) -> Result<(), CheckpointError> {
    std::fs::create_dir_all(dir).map_err(|e| err(dir, e))?;
    let tensors = hf_tensors(cfg, model);
    let tied = !tensors.iter().any(|t| t.0 == "lm_head.weight");
    write_safetensors(&dir.join("model.safetensors"), &tensors)?;
    let write_json = |name: &str, v: &Value| {
        let p = dir.join(name);
        std::fs::write(&p, serde_json::to_string_pretty(v).expect("json")).map_err(|e| err(&p, e))
    };
    write_json("config.json", &config_json(cfg, tied, tok))?;
    write_json(
        "generation_config.json",
        &json!({"bos_token_id": tok.bos, "eos_token_id": tok.eos}),
    )?;
    tok.save_hf(dir).map_err(|e| err(dir, e))
}

/// Tensors of a checkpoint looked up by their GGUF names.
struct HfSource<'a> {
    cfg: &'a LlamaConfig,
    tensors: Tensors,
    tied: bool,
    path: &'a Path,
}

impl WeightSource for HfSource<'_> {
    type Error = CheckpointError;
    fn weight(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f32>, CheckpointError> {
        let hf = hf_name(name);
        let (got, w) = self
            .tensors
            .remove(&hf)
            .ok_or_else(|| err(self.path, format!("tensor `{hf}` is missing (config.json implies it)")))?;
        if got != shape {
            return Err(err(
                self.path,
                format!("tensor `{hf}` has shape {got:?}, config.json implies {shape:?}"),
            ));
        }
        Ok(match rope_heads(self.cfg, name) {
            Some(h) => permute_rope_rows(&w, h, shape[1], false),
            None => w,
        })
    }
    fn has_output(&mut self) -> bool {
        !self.tied && self.tensors.contains_key("lm_head.weight")
    }
}

/// A loaded checkpoint directory.
pub struct Checkpoint {
    pub cfg: LlamaConfig,
    pub tokenizer: TextTokenizer,
    pub model: Llama,
}

/// Loads a checkpoint directory written by [`save`] or by `transformers` (`save_pretrained`).
pub fn load(dir: &Path, device: &Device) -> Result<Checkpoint, CheckpointError> {
    let cfg_path = dir.join("config.json");
    let text = std::fs::read_to_string(&cfg_path).map_err(|e| err(&cfg_path, e))?;
    let v: Value = serde_json::from_str(&text).map_err(|e| err(&cfg_path, e))?;
    let (cfg, tied) = config_from_json(&v, &cfg_path)?;
    let st = dir.join("model.safetensors");
    let tensors = read_safetensors(&st)?;
    let model = Llama::load(
        &cfg,
        &mut HfSource {
            cfg: &cfg,
            tensors,
            tied,
            path: &st,
        },
        device,
    )?;
    let tokenizer = TextTokenizer::from_hf_dir(dir).map_err(|e| err(dir, e))?;
    Ok(Checkpoint {
        cfg,
        tokenizer,
        model,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rope_permutation_round_trips_and_moves_pairs_to_halves() {
        // One head of dim 4, two columns: GGUF rows (pair 0: r0 r1, pair 1: r2 r3) become HF rows
        // (first halves r0 r2, second halves r1 r3).
        let w: Vec<f32> = (0..8).map(|x| x as f32).collect();
        let hf = permute_rope_rows(&w, 1, 2, true);
        assert_eq!(hf, vec![0., 1., 4., 5., 2., 3., 6., 7.]);
        assert_eq!(permute_rope_rows(&hf, 1, 2, false), w);
    }

    #[test]
    fn names_follow_transformers() {
        assert_eq!(
            hf_name("blk.3.attn_q.weight"),
            "model.layers.3.self_attn.q_proj.weight"
        );
        assert_eq!(
            hf_name("blk.0.ffn_norm.weight"),
            "model.layers.0.post_attention_layernorm.weight"
        );
        assert_eq!(hf_name("token_embd.weight"), "model.embed_tokens.weight");
    }
}
