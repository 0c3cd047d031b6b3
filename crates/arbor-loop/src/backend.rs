//! Where the loop runs the policy π_t for search and evaluation: in burn (the embedded
//! backend), or on a llama.cpp server of π_t exported as GGUF (`backend = "llamacpp"`), which
//! decodes several times faster on CPU today. Training and the critic stay in burn either way.
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arbor_llm::{LanguageModel, ModelOpener, ModelSpec};
use arbor_model::{EmbeddedBackend, EmbeddedModel, Models, OutType, EMBEDDED};
use arbor_serve::llamacpp::LlamaCppServer;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    #[default]
    Embedded,
    Llamacpp,
}

/// `[llamacpp]`: how the loop starts llama.cpp's server (the xllamacpp wheel from PyPI).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LlamaCppFile {
    /// A Python with `xllamacpp` installed (default: `$ARBOR_HOME/venv/bin/python`).
    pub python: Option<PathBuf>,
    /// The launcher script (`serve_xllamacpp.py`).
    pub script: PathBuf,
    /// Server slots: requests decoded together.
    pub parallel: u32,
    /// The exported weights' type: f16 or f32.
    pub gguf_type: String,
}

impl Default for LlamaCppFile {
    fn default() -> Self {
        Self {
            python: None,
            script: PathBuf::from("../shared/tools/serve_xllamacpp.py"),
            parallel: 8,
            gguf_type: "f16".into(),
        }
    }
}

impl LlamaCppFile {
    pub fn validate(&self) -> Result<(), String> {
        self.gguf_type
            .parse::<OutType>()
            .map(drop)
            .map_err(|e| format!("[llamacpp] gguf_type: {e}"))
    }
}

/// π_t opened for requests; holds the server (if any) until dropped.
pub struct Policy {
    pub model: Arc<dyn LanguageModel>,
    pub name: String,
    _server: Option<LlamaCppServer>,
}

/// Opens the model at `path` on `backend`; the llama.cpp backend writes `dir/policy.gguf`.
pub async fn open(
    backend: Backend,
    llamacpp: &LlamaCppFile,
    path: &Path,
    dir: &Path,
) -> Result<Policy, String> {
    match backend {
        Backend::Embedded => {
            let p = path.to_path_buf();
            let b = tokio::task::spawn_blocking(move || EmbeddedBackend::load_default(Some(&p)))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
            Ok(Policy {
                model: Arc::new(b),
                name: EMBEDDED.into(),
                _server: None,
            })
        }
        Backend::Llamacpp => {
            let gguf = dir.join("policy.gguf");
            let ty: OutType = llamacpp.gguf_type.parse()?;
            let (p, g) = (path.to_path_buf(), gguf.clone());
            tokio::task::spawn_blocking(move || {
                EmbeddedModel::load(&p, arbor_model::DeviceKind::Cpu.device())?.save_gguf(&g, ty)
            })
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("exporting {} as GGUF: {e}", path.display()))?;
            let python = llamacpp
                .python
                .clone()
                .unwrap_or_else(|| arbor_model::fetch::arbor_home().join("venv/bin/python"));
            let server =
                LlamaCppServer::start(&python, &llamacpp.script, &gguf, llamacpp.parallel).await?;
            let spec = ModelSpec {
                url: Some(server.base_url.clone()),
                model: Some("policy".into()),
                max_in_flight: Some(llamacpp.parallel as usize),
                timeout_secs: Some(600.0),
            };
            let (model, name) = Models::default()
                .open(&spec)
                .await
                .map_err(|e| e.to_string())?;
            Ok(Policy {
                model,
                name,
                _server: Some(server),
            })
        }
    }
}
