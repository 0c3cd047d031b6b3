use arbor_core::{content_hash, Message, ToolSpec};
use serde::{Deserialize, Serialize};

/// What the model continues: a chat conversation or raw text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Prompt {
    Chat(Vec<Message>),
    Text(String),
}

/// Sampling settings shared by every backend. `None` leaves the backend's default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SamplingParams {
    /// Number of choices to return.
    pub n: u32,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<u32>,
    pub max_tokens: Option<u32>,
    pub stop: Vec<String>,
    pub seed: Option<u64>,
    /// Return the log-probability of each generated token.
    pub logprobs: bool,
    /// With `logprobs`, also the k most likely alternatives at each position.
    pub top_logprobs: u32,
    /// Structured output: a JSON Schema the reply must follow (OpenAI `response_format` of type
    /// `json_schema`; vLLM and llama.cpp's server honour it too). Left out of the cache key when
    /// unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json_schema: Option<serde_json::Value>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            n: 1,
            temperature: None,
            top_p: None,
            top_k: None,
            max_tokens: None,
            stop: Vec::new(),
            seed: None,
            logprobs: false,
            top_logprobs: 0,
            json_schema: None,
        }
    }
}

/// One request to a language model. `model` names the model on the endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlmRequest {
    pub model: String,
    pub prompt: Prompt,
    pub params: SamplingParams,
    /// Tools offered to the model (chat only). Omitted from the key when empty, so tool-less
    /// requests keep their cache keys.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<ToolSpec>,
}

impl LlmRequest {
    pub fn chat(model: impl Into<String>, messages: Vec<Message>) -> Self {
        Self {
            model: model.into(),
            prompt: Prompt::Chat(messages),
            params: SamplingParams::default(),
            tools: Vec::new(),
        }
    }

    pub fn text(model: impl Into<String>, prompt: impl Into<String>) -> Self {
        Self {
            model: model.into(),
            prompt: Prompt::Text(prompt.into()),
            params: SamplingParams::default(),
            tools: Vec::new(),
        }
    }

    pub fn with_tools(mut self, tools: Vec<ToolSpec>) -> Self {
        self.tools = tools;
        self
    }

    pub fn with_params(mut self, params: SamplingParams) -> Self {
        self.params = params;
        self
    }

    /// The content address of this request (model, prompt, every parameter, seed): the cache key.
    pub fn key(&self) -> String {
        content_hash(&("arbor.llm-request/1", self))
    }

    /// A rough token count for rate limiting before the server reports real usage:
    /// ~4 bytes a token for the prompt, plus the most the reply may spend.
    pub fn estimated_tokens(&self) -> u64 {
        self.estimated_prompt_tokens() + self.max_completion_tokens() * u64::from(self.params.n.max(1))
    }

    /// The same estimate for one of the `n` sequences: what one server slot must hold.
    pub fn estimated_tokens_per_sequence(&self) -> u64 {
        self.estimated_prompt_tokens() + self.max_completion_tokens()
    }

    fn estimated_prompt_tokens(&self) -> u64 {
        let prompt_bytes = match &self.prompt {
            Prompt::Chat(m) => m.iter().map(|m| m.content.len() + 4).sum::<usize>(),
            Prompt::Text(t) => t.len(),
        };
        (prompt_bytes as u64).div_ceil(4)
    }

    fn max_completion_tokens(&self) -> u64 {
        u64::from(self.params.max_tokens.unwrap_or(256))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_depends_on_every_part() {
        let base = LlmRequest::chat("m", vec![Message::user("hi")]);
        let mut seeded = base.clone();
        seeded.params.seed = Some(1);
        let mut other_model = base.clone();
        other_model.model = "m2".into();
        let text = LlmRequest::text("m", "hi");
        let keys = [base.key(), seeded.key(), other_model.key(), text.key()];
        for i in 0..keys.len() {
            for j in i + 1..keys.len() {
                assert_ne!(keys[i], keys[j]);
            }
        }
        assert_eq!(base.key(), base.clone().key());
    }

    #[test]
    fn n_choices_multiply_the_request_estimate_not_one_sequence() {
        // 40 bytes of text = 10 tokens.
        let mut req = LlmRequest::text("m", "x".repeat(40));
        req.params.max_tokens = Some(100);
        req.params.n = 3;
        assert_eq!(req.estimated_tokens(), 10 + 300);
        assert_eq!(req.estimated_tokens_per_sequence(), 10 + 100);
    }
}
