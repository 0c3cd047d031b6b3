use async_trait::async_trait;

use crate::{Completion, LlmError, LlmRequest, StatsSnapshot, TokenLogprob};

/// A piece of one choice's text as it is generated (streaming). A choice's deltas, in order,
/// add up to its final text.
#[derive(Debug, Clone, PartialEq)]
pub struct Delta {
    pub index: u32,
    pub text: String,
    /// Log-probs of the tokens behind this piece, when the request asked for them.
    pub logprobs: Vec<TokenLogprob>,
}

/// A language model: an HTTP endpoint, the embedded model, or a wrapper around either.
///
/// Implementations must be cheap to share (`Arc<dyn LanguageModel>`) and safe to call from many
/// tasks at once; limits and batching happen inside.
#[async_trait]
pub trait LanguageModel: Send + Sync {
    /// Runs one request: a chat conversation or a raw text completion, with `params.n` choices.
    async fn generate(&self, req: &LlmRequest) -> Result<Completion, LlmError>;

    /// Like [`Self::generate`], sending text to `deltas` as it is produced. The default sends
    /// each choice's whole text once the completion is done; the embedded model streams tokens.
    async fn generate_stream(
        &self,
        req: &LlmRequest,
        deltas: tokio::sync::mpsc::UnboundedSender<Delta>,
    ) -> Result<Completion, LlmError> {
        let c = self.generate(req).await?;
        for ch in &c.choices {
            let _ = deltas.send(Delta {
                index: ch.index,
                text: ch.text.clone(),
                logprobs: ch.logprobs.clone().unwrap_or_default(),
            });
        }
        Ok(c)
    }

    /// A short human-readable name for logs and accounting (e.g. the endpoint URL).
    fn describe(&self) -> String;

    /// Request and token accounting so far, if this model keeps any.
    fn stats(&self) -> Option<StatsSnapshot> {
        None
    }
}
