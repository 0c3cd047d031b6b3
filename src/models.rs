//! Opening the model behind a role: an OpenAI-compatible server when a URL is given, otherwise
//! the embedded model (loaded once and shared by every role that uses it).
use std::path::PathBuf;
use std::sync::Arc;

use arbor_llm::{EndpointConfig, LanguageModel, OpenAiClient};
use tokio::sync::OnceCell;

/// The model name used for the embedded model in requests and provenance.
pub const EMBEDDED: &str = "embedded";

/// Which model a command talks to: a server, or (without `--base-url`) the embedded model.
#[derive(clap::Args, Clone, Debug)]
pub struct ModelArgs {
    /// Base URL of an OpenAI-compatible server, e.g. http://127.0.0.1:8080/v1. Without it the
    /// embedded model answers.
    #[arg(long)]
    pub base_url: Option<url::Url>,
    /// Model name on that server.
    #[arg(long)]
    pub model: Option<String>,
    /// Without a server: another GGUF instead of the embedded default.
    #[arg(long)]
    pub gguf: Option<PathBuf>,
}

#[derive(Default)]
pub struct Models {
    embedded: OnceCell<Arc<arbor_model::EmbeddedBackend>>,
    gguf: Option<PathBuf>,
}

impl Models {
    pub fn new(gguf: Option<PathBuf>) -> Self {
        Self {
            embedded: OnceCell::new(),
            gguf,
        }
    }

    /// The model at `url` named `model`, or the embedded model when `url` is unset. Returns the
    /// model and the name to put in requests.
    pub async fn open(
        &self,
        url: Option<&url::Url>,
        model: Option<&str>,
    ) -> anyhow::Result<(Arc<dyn LanguageModel>, String)> {
        self.open_with(url, model, None, None).await
    }

    /// [`Models::open`] with the endpoint's in-flight limit and request timeout set.
    pub async fn open_with(
        &self,
        url: Option<&url::Url>,
        model: Option<&str>,
        max_in_flight: Option<usize>,
        timeout_secs: Option<f64>,
    ) -> anyhow::Result<(Arc<dyn LanguageModel>, String)> {
        match url {
            Some(u) => {
                let name = model
                    .ok_or_else(|| anyhow::anyhow!("a model name is required with the URL {u}"))?;
                let mut cfg = EndpointConfig::new(u.clone(), name);
                if let Some(n) = max_in_flight {
                    cfg.limits.max_in_flight = n;
                }
                if let Some(t) = timeout_secs {
                    cfg.timeout_secs = t;
                }
                cfg.validate("command line")?;
                Ok((Arc::new(OpenAiClient::new(cfg)?), name.to_string()))
            }
            None => {
                let gguf = self.gguf.clone();
                let backend = self
                    .embedded
                    .get_or_try_init(|| async move {
                        let b = tokio::task::spawn_blocking(move || {
                            arbor_model::EmbeddedBackend::load_default(gguf.as_deref())
                        })
                        .await??;
                        Ok::<_, anyhow::Error>(Arc::new(b))
                    })
                    .await?;
                Ok((
                    backend.clone() as Arc<dyn LanguageModel>,
                    EMBEDDED.to_string(),
                ))
            }
        }
    }
}
