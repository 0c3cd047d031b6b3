//! The CLI's [`ModelOpener`]: an OpenAI-compatible server when a URL is given, otherwise the
//! embedded model (loaded once, off the async runtime, and shared by every role that uses it).
use std::path::PathBuf;
use std::sync::Arc;

use arbor_llm::{LanguageModel, LlmError, ModelOpener, ModelSpec, OpenedModel};
use arbor_openai::{EndpointConfig, OpenAiClient};
use async_trait::async_trait;
use tokio::sync::OnceCell;

use crate::EmbeddedBackend;

/// The model name used for the embedded model in requests and provenance.
pub const EMBEDDED: &str = "embedded";

#[derive(Default)]
pub struct Models {
    embedded: OnceCell<Arc<EmbeddedBackend>>,
    /// Another GGUF or checkpoint instead of the fetched default.
    gguf: Option<PathBuf>,
}

impl Models {
    pub fn new(gguf: Option<PathBuf>) -> Self {
        Self {
            embedded: OnceCell::new(),
            gguf,
        }
    }

    /// The model at `url` named `model`, or the embedded model when `url` is unset.
    pub async fn open_url(
        &self,
        url: Option<&url::Url>,
        model: Option<&str>,
    ) -> Result<OpenedModel, LlmError> {
        self.open(&ModelSpec {
            url: url.map(|u| u.to_string()),
            model: model.map(str::to_string),
            ..Default::default()
        })
        .await
    }
}

#[async_trait]
impl ModelOpener for Models {
    async fn open(&self, spec: &ModelSpec) -> Result<OpenedModel, LlmError> {
        let Some(u) = &spec.url else {
            let gguf = self.gguf.clone();
            let backend = self
                .embedded
                .get_or_try_init(|| async move {
                    let b = tokio::task::spawn_blocking(move || {
                        EmbeddedBackend::load_default(gguf.as_deref())
                    })
                    .await
                    .map_err(|e| LlmError::Invalid(format!("loading the embedded model: {e}")))??;
                    Ok::<_, LlmError>(Arc::new(b))
                })
                .await?;
            return Ok((backend.clone() as Arc<dyn LanguageModel>, EMBEDDED.into()));
        };
        let url: url::Url = u
            .parse()
            .map_err(|e| LlmError::Invalid(format!("`{u}`: {e}")))?;
        let name = spec
            .model
            .clone()
            .ok_or_else(|| LlmError::Invalid(format!("a model name is required with the URL {u}")))?;
        let mut cfg = EndpointConfig::new(url, &name);
        if let Some(n) = spec.max_in_flight {
            cfg.limits.max_in_flight = n;
        }
        if let Some(t) = spec.timeout_secs {
            cfg.timeout_secs = t;
        }
        cfg.validate("command line")
            .map_err(|e| LlmError::Invalid(e.to_string()))?;
        let client = OpenAiClient::new(cfg).map_err(|e| LlmError::Invalid(e.to_string()))?;
        Ok((Arc::new(client), name))
    }
}
