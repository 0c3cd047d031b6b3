//! The starting point of a run: a model (the policy's initial weights and the frozen reference)
//! with its tokenizer, on the device training runs on.
use std::path::Path;

use arbor_model::llama::{Llama, LlamaConfig};
use arbor_model::tokenizer::TextTokenizer;
use arbor_model::{DeviceKind, EmbeddedModel};
use burn::tensor::Device;

use crate::value::{ValueModel, HEAD_FILE};
use crate::TrainError;

pub struct StartModel {
    pub cfg: LlamaConfig,
    pub tokenizer: TextTokenizer,
    pub model: Llama,
    /// The plain device of the model; training runs on its autodiff mode.
    pub device: Device,
    /// Names the start in checkpoints, so a resume with another model is refused.
    pub source: String,
    /// The critic that came with the model (the `value/` of an OREO output): OREO continues
    /// it instead of starting a fresh one, so the loop carries the critic between iterations.
    pub critic: Option<ValueModel>,
    /// The frozen reference when it is not the start itself (the loop's `reference = "start"`
    /// trains π_t against π_0).
    pub reference: Option<Llama>,
}

impl StartModel {
    /// Trains against `reference` (a model of the same shape) instead of the start; its name
    /// joins the start's in checkpoints.
    pub fn with_reference(mut self, reference: StartModel) -> Result<Self, TrainError> {
        if reference.cfg != self.cfg {
            return Err(TrainError::Config(format!(
                "the reference {} has another shape than the start {}",
                reference.source, self.source
            )));
        }
        self.source = format!("{} (reference {})", self.source, reference.source);
        self.reference = Some(reference.model);
        Ok(self)
    }

    /// `embedded` (the fetched SmolLM2 GGUF), a GGUF file, or a Hugging Face checkpoint
    /// directory, loaded on `device`.
    pub fn load(model: &str, device: DeviceKind) -> Result<Self, TrainError> {
        let given = (model != "embedded").then(|| Path::new(model));
        let path = arbor_model::fetch::resolve_model(given)
            .map_err(|e| TrainError::Config(e.to_string()))?;
        let device = device.device();
        let m = EmbeddedModel::load(&path, device.clone())
            .map_err(|e| TrainError::Config(format!("loading {}: {e}", path.display())))?;
        let value = path.join("value");
        let critic = if value.join(HEAD_FILE).is_file() {
            let (v, _) = ValueModel::load(&value, &device)
                .map_err(|e| TrainError::Config(format!("loading {}: {e}", value.display())))?;
            Some(v)
        } else {
            None
        };
        Ok(Self {
            critic,
            reference: None,
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

#[cfg(test)]
mod tests {
    use super::*;
    use arbor_model::init::{init_tiny, TinySpec};
    use burn::module::Module;
    use burn::tensor::Tensor;

    use crate::config::{Algo, TrainConfig};
    use crate::value::head_param;
    use crate::Trainer;

    #[test]
    fn an_oreo_output_starts_oreo_again_with_its_critic() {
        let dir = tempfile::tempdir().unwrap();
        let spec = TinySpec::minimal(5);
        init_tiny(&spec, dir.path()).unwrap();
        let plain = StartModel::load(&dir.path().display().to_string(), DeviceKind::Cpu).unwrap();
        assert!(plain.critic.is_none());
        let head = || Tensor::<2>::ones([16, 1], &plain.device);
        ValueModel {
            trunk: plain.model.clone(),
            head: head_param(head()),
        }
        .save(&dir.path().join("value"), &plain.cfg, &plain.tokenizer)
        .unwrap();
        let start = StartModel::load(&dir.path().display().to_string(), DeviceKind::Cpu).unwrap();
        let cfg = TrainConfig {
            algo: Algo::Oreo,
            ..TrainConfig::default()
        };
        let t = Trainer::new(&cfg, &start);
        let got = t.value.as_ref().unwrap().valid().head.val();
        assert_eq!(arbor_model::host::to_f32(got), vec![1.0; 16]);
    }
}
