use async_trait::async_trait;

use crate::{Completion, LlmError, LlmRequest, StatsSnapshot};

/// A language model: an HTTP endpoint, the embedded model, or a wrapper around either.
///
/// Implementations must be cheap to share (`Arc<dyn LanguageModel>`) and safe to call from many
/// tasks at once; limits and batching happen inside.
#[async_trait]
pub trait LanguageModel: Send + Sync {
    /// Runs one request: a chat conversation or a raw text completion, with `params.n` choices.
    async fn generate(&self, req: &LlmRequest) -> Result<Completion, LlmError>;

    /// A short human-readable name for logs and accounting (e.g. the endpoint URL).
    fn describe(&self) -> String;

    /// Request and token accounting so far, if this model keeps any.
    fn stats(&self) -> Option<StatsSnapshot> {
        None
    }
}
