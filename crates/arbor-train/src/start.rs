//! The starting point of a run: a model (the policy's initial weights and the frozen reference)
//! with its tokenizer, on the device training runs on.
use std::path::Path;

use arbor_model::llama::{Llama, LlamaConfig};
use arbor_model::tokenizer::TextTokenizer;
use arbor_model::{DeviceKind, EmbeddedModel};
use burn::tensor::Device;

use crate::TrainError;

pub struct StartModel {
    pub cfg: LlamaConfig,
    pub tokenizer: TextTokenizer,
    pub model: Llama,
    /// The plain device of the model; training runs on its autodiff mode.
    pub device: Device,
    /// Names the start in checkpoints, so a resume with another model is refused.
    pub source: String,
}

impl StartModel {
    /// `embedded` (the fetched SmolLM2 GGUF), a GGUF file, or a Hugging Face checkpoint
    /// directory, loaded on `device`.
    pub fn load(model: &str, device: DeviceKind) -> Result<Self, TrainError> {
        let given = (model != "embedded").then(|| Path::new(model));
        let path = arbor_model::fetch::resolve_model(given)
            .map_err(|e| TrainError::Config(e.to_string()))?;
        let device = device.device();
        let m = EmbeddedModel::load(&path, device.clone())
            .map_err(|e| TrainError::Config(format!("loading {}: {e}", path.display())))?;
        Ok(Self {
            cfg: m.cfg.clone(),
            tokenizer: m.tokenizer.clone(),
            model: m.llama().clone(),
            device,
            source: std::fs::canonicalize(&path)
                .unwrap_or(path)
                .display()
                .to_string(),
        })
    }
}
