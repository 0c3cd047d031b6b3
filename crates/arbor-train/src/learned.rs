//! A trained OREO critic as arbor-tree's [`ValueFunction`]: the `learned` evaluator of tree
//! search and the critic of best-of-n and value-guided beam decoding.
use std::path::Path;
use std::sync::Mutex;

use arbor_envs::prompt::step_prompt;
use arbor_model::host::{left_pad, to_f64};
use arbor_model::llama::LlamaConfig;
use arbor_model::tokenizer::TextTokenizer;
use arbor_model::DeviceKind;
use arbor_tree::evaluate::ValueFunction;
use arbor_tree::SearchError;
use async_trait::async_trait;
use burn::tensor::Device;

use crate::value::ValueModel;

pub struct LearnedValue {
    model: Mutex<ValueModel>,
    cfg: LlamaConfig,
    tokenizer: TextTokenizer,
    device: Device,
}

impl LearnedValue {
    /// Loads a critic directory written by `arbor train --algo oreo` (`OUT/value`).
    pub fn load(dir: &Path, device: DeviceKind) -> Result<Self, String> {
        let device = device.device();
        let (model, cfg) = ValueModel::load(dir, &device).map_err(|e| e.to_string())?;
        let tokenizer = TextTokenizer::from_hf_dir(dir).map_err(|e| e.to_string())?;
        Ok(Self {
            model: Mutex::new(model),
            cfg,
            tokenizer,
            device,
        })
    }

    /// V of each path's state. A finished path is read one token before its end, at the state
    /// before its last action: the critic was trained on states that precede actions.
    fn values_blocking(
        &self,
        question: &str,
        paths: &[(Vec<String>, bool)],
    ) -> Result<Vec<f64>, String> {
        if paths.is_empty() {
            return Ok(Vec::new());
        }
        let mut ids = Vec::with_capacity(paths.len());
        for (steps, finished) in paths {
            let mut t = self
                .tokenizer
                .encode(&step_prompt(question, steps), true)
                .map_err(|e| e.to_string())?;
            if *finished && t.len() > 1 {
                t.pop();
            }
            ids.push(t);
        }
        let (tokens, pads) = left_pad(&ids);
        let len = tokens.first().map_or(1, Vec::len);
        let model = self
            .model
            .lock()
            .map_err(|_| "the value model's lock is poisoned".to_string())?;
        let v = model
            .values(&self.cfg, &tokens, &pads, &self.device)
            .narrow(1, len - 1, 1);
        Ok(to_f64(v))
    }
}

#[async_trait]
impl ValueFunction for LearnedValue {
    async fn values(
        &self,
        question: &str,
        paths: &[(Vec<String>, bool)],
    ) -> Result<Vec<f64>, SearchError> {
        // A forward pass blocks: hand the worker's other tasks to another thread where the
        // runtime has one (block_in_place panics on a current-thread runtime).
        let run = || self.values_blocking(question, paths);
        let multi = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        let v = if multi {
            tokio::task::block_in_place(run)
        } else {
            run()
        };
        v.map_err(SearchError::Other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arbor_model::init::{init_tiny, TinySpec};

    /// A zero-headed critic over a tiny random model, as `arbor train --algo oreo` writes it.
    fn critic(dir: &Path) -> LearnedValue {
        let spec = TinySpec::minimal(1);
        init_tiny(&spec, &dir.join("policy")).unwrap();
        let start =
            crate::StartModel::load(&dir.join("policy").display().to_string(), DeviceKind::Cpu)
                .unwrap();
        ValueModel::new(start.model, &start.cfg, &start.device)
            .save(&dir.join("value"), &start.cfg, &start.tokenizer)
            .unwrap();
        LearnedValue::load(&dir.join("value"), DeviceKind::Cpu).unwrap()
    }

    #[test]
    fn values_come_back_on_either_runtime_flavor() {
        let dir = tempfile::tempdir().unwrap();
        let v = critic(dir.path());
        let paths = vec![(vec!["1+1 = 2".to_string()], false), (vec![], true)];
        for rt in [
            tokio::runtime::Builder::new_current_thread().build().unwrap(),
            tokio::runtime::Builder::new_multi_thread().build().unwrap(),
        ] {
            let got = rt
                .block_on(ValueFunction::values(&v, "What is 1+1?", &paths))
                .unwrap();
            // The head starts at zero, so V is 0 everywhere.
            assert_eq!(got, vec![0.0, 0.0]);
        }
    }
}
