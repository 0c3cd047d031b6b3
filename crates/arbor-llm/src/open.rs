//! Opening the model a role names (synthesis roles, the search policy, judges): a server when a
//! URL is given, otherwise the process's default model. Jobs take a [`ModelOpener`] so that
//! they need not know which backends exist; `arbor_model::Models` is the one the CLI uses.
use std::sync::Arc;

use async_trait::async_trait;

use crate::{LanguageModel, LlmError};

/// Where one role's model lives, and the client settings it asks for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModelSpec {
    /// Base URL of an OpenAI-compatible server; `None`: the default (embedded) model.
    pub url: Option<String>,
    /// The model name on that server.
    pub model: Option<String>,
    pub max_in_flight: Option<usize>,
    pub timeout_secs: Option<f64>,
}

/// An opened model and the name requests use for it.
pub type OpenedModel = (Arc<dyn LanguageModel>, String);

#[async_trait]
pub trait ModelOpener: Send + Sync {
    async fn open(&self, spec: &ModelSpec) -> Result<OpenedModel, LlmError>;
}
