//! `arbor model export-gguf`: a model (any checkpoint arbor loads) written as a GGUF v3 file
//! that llama.cpp serves: the Llama hyper-parameters, the GPT-2 BPE vocabulary with its merges,
//! control tokens and chat template, and the weights in f32 or f16 (norms stay f32, as
//! llama.cpp's own converter writes them). Tensors keep arbor's GGUF names and RoPE row order,
//! so no permutation is needed.
use std::io::Write;
use std::path::Path;

use crate::generate::{EmbeddedModel, ModelError};

/// The weights' storage type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutType {
    F32,
    F16,
}

impl std::str::FromStr for OutType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "f32" => Ok(Self::F32),
            "f16" => Ok(Self::F16),
            _ => Err(format!("`{s}`: the type is f32 or f16")),
        }
    }
}

const ALIGN: u64 = 32;
// ggml type ids and GGUF value type ids (gguf.h).
const GGML_F32: u32 = 0;
const GGML_F16: u32 = 1;
const T_U32: u32 = 4;
const T_I32: u32 = 5;
const T_F32: u32 = 6;
const T_BOOL: u32 = 7;
const T_STR: u32 = 8;
const T_ARRAY: u32 = 9;

/// A GGUF file being assembled in memory (header, then aligned tensor data).
#[derive(Default)]
struct Writer {
    kv: Vec<u8>,
    n_kv: u64,
}

fn put_str(buf: &mut Vec<u8>, s: &str) {
    buf.extend((s.len() as u64).to_le_bytes());
    buf.extend(s.as_bytes());
}

impl Writer {
    fn key(&mut self, k: &str, ty: u32) -> &mut Vec<u8> {
        self.n_kv += 1;
        put_str(&mut self.kv, k);
        self.kv.extend(ty.to_le_bytes());
        &mut self.kv
    }
    fn u32(&mut self, k: &str, v: u32) {
        self.key(k, T_U32).extend(v.to_le_bytes());
    }
    fn f32(&mut self, k: &str, v: f32) {
        self.key(k, T_F32).extend(v.to_le_bytes());
    }
    fn bool(&mut self, k: &str, v: bool) {
        self.key(k, T_BOOL).push(v as u8);
    }
    fn str(&mut self, k: &str, v: &str) {
        put_str(self.key(k, T_STR), v);
    }
    fn strs(&mut self, k: &str, v: &[String]) {
        let b = self.key(k, T_ARRAY);
        b.extend(T_STR.to_le_bytes());
        b.extend((v.len() as u64).to_le_bytes());
        for s in v {
            put_str(b, s);
        }
    }
    fn i32s(&mut self, k: &str, v: &[i32]) {
        let b = self.key(k, T_ARRAY);
        b.extend(T_I32.to_le_bytes());
        b.extend((v.len() as u64).to_le_bytes());
        for x in v {
            b.extend(x.to_le_bytes());
        }
    }
}

fn pad(n: u64) -> u64 {
    n.div_ceil(ALIGN) * ALIGN
}

impl EmbeddedModel {
    /// Writes the model to `path` as a GGUF file with weights of type `ty`.
    pub fn save_gguf(&self, path: &Path, ty: OutType) -> Result<(), ModelError> {
        let (cfg, tok) = (&self.cfg, &self.tokenizer);
        let vocab = tok.gguf_vocab()?;
        let mut w = Writer::default();
        w.str("general.architecture", "llama");
        w.str("general.name", &self.name);
        w.u32("general.alignment", ALIGN as u32);
        w.u32("general.file_type", if ty == OutType::F16 { 1 } else { 0 });
        w.u32("llama.vocab_size", cfg.vocab as u32);
        w.u32("llama.context_length", cfg.context as u32);
        w.u32("llama.embedding_length", cfg.d_model as u32);
        w.u32("llama.block_count", cfg.n_layers as u32);
        w.u32("llama.feed_forward_length", cfg.d_ff as u32);
        w.u32("llama.rope.dimension_count", (cfg.d_model / cfg.n_heads) as u32);
        w.u32("llama.attention.head_count", cfg.n_heads as u32);
        w.u32("llama.attention.head_count_kv", cfg.n_kv_heads as u32);
        w.f32("llama.attention.layer_norm_rms_epsilon", cfg.rms_eps as f32);
        w.f32("llama.rope.freq_base", cfg.rope_base as f32);
        w.str("tokenizer.ggml.model", "gpt2");
        w.str("tokenizer.ggml.pre", "smollm");
        w.strs("tokenizer.ggml.tokens", &vocab.tokens);
        w.i32s("tokenizer.ggml.token_type", &vocab.types);
        w.strs("tokenizer.ggml.merges", &vocab.merges);
        w.u32("tokenizer.ggml.bos_token_id", tok.bos);
        w.u32("tokenizer.ggml.eos_token_id", tok.eos);
        w.u32("tokenizer.ggml.padding_token_id", tok.eos);
        w.bool("tokenizer.ggml.add_bos_token", false);
        if let Some(t) = &vocab.chat_template {
            w.str("tokenizer.chat_template", t);
        }

        // Tensor directory, then the data, each tensor at an aligned offset.
        let tensors = self.llama().weights();
        let mut dir = Vec::new();
        let mut offset = 0u64;
        let mut layout = Vec::with_capacity(tensors.len());
        for (name, shape, _) in &tensors {
            // Norms (1-D) stay f32.
            let t = if ty == OutType::F16 && shape.len() > 1 { GGML_F16 } else { GGML_F32 };
            put_str(&mut dir, name);
            dir.extend((shape.len() as u32).to_le_bytes());
            for d in shape.iter().rev() {
                dir.extend((*d as u64).to_le_bytes());
            }
            dir.extend(t.to_le_bytes());
            dir.extend(offset.to_le_bytes());
            let n: usize = shape.iter().product();
            let bytes = n as u64 * if t == GGML_F16 { 2 } else { 4 };
            layout.push((offset, t));
            offset = pad(offset + bytes);
        }
        let mut head = Vec::new();
        head.extend(b"GGUF");
        head.extend(3u32.to_le_bytes());
        head.extend((tensors.len() as u64).to_le_bytes());
        head.extend(w.n_kv.to_le_bytes());
        head.extend(&w.kv);
        head.extend(&dir);
        head.resize(pad(head.len() as u64) as usize, 0);

        let io = |e: std::io::Error| ModelError::Invalid(format!("{}: {e}", path.display()));
        let tmp = path.with_extension("gguf.tmp");
        let file = std::fs::File::create(&tmp).map_err(io)?;
        let mut out = std::io::BufWriter::new(file);
        out.write_all(&head).map_err(io)?;
        let mut written = 0u64;
        for ((_, _, data), (off, t)) in tensors.iter().zip(&layout) {
            out.write_all(&vec![0u8; (off - written) as usize]).map_err(io)?;
            let bytes: Vec<u8> = if *t == GGML_F16 {
                data.iter().flat_map(|x| half::f16::from_f32(*x).to_le_bytes()).collect()
            } else {
                data.iter().flat_map(|x| x.to_le_bytes()).collect()
            };
            out.write_all(&bytes).map_err(io)?;
            written = off + bytes.len() as u64;
        }
        out.write_all(&vec![0u8; (pad(written) - written) as usize]).map_err(io)?;
        out.into_inner().map_err(|e| io(e.into_error()))?.sync_all().map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::Gguf;
    use crate::init::{init_tiny, TinySpec};

    /// The written file reads back (arbor's reader) with the same config, vocabulary and weights.
    #[test]
    fn a_tiny_model_round_trips_through_gguf() {
        let dir = tempfile::tempdir().unwrap();
        init_tiny(&TinySpec::minimal(3), &dir.path().join("ckpt")).unwrap();
        let dev = burn::tensor::Device::flex();
        let m = EmbeddedModel::load(&dir.path().join("ckpt"), dev.clone()).unwrap();
        for ty in [OutType::F32, OutType::F16] {
            let p = dir.path().join("m.gguf");
            m.save_gguf(&p, ty).unwrap();
            let g = Gguf::open(&p).unwrap();
            assert_eq!(g.meta_u64("llama.block_count").unwrap(), 1);
            let back = EmbeddedModel::load(&p, dev.clone()).unwrap();
            assert_eq!(back.tokenizer.vocab_size, m.tokenizer.vocab_size);
            let text = "<|im_start|>user\nWhat is 3+4?<|im_end|>";
            assert_eq!(
                back.tokenizer.encode(text, true).unwrap(),
                m.tokenizer.encode(text, true).unwrap()
            );
            let tol = if ty == OutType::F32 { 0.0 } else { 1e-3 };
            for ((n, s, a), (_, s2, b)) in m.llama().weights().iter().zip(back.llama().weights()) {
                assert_eq!(s, &s2, "{n}");
                let err = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
                assert!(err <= tol, "{n}: {err}");
            }
        }
    }
}
