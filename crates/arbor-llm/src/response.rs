use arbor_core::ToolCall;
use serde::{Deserialize, Serialize};

/// Why generation stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// A stop sequence or the end-of-sequence token.
    Stop,
    /// `max_tokens` reached.
    Length,
    /// The model asked for a tool.
    ToolCalls,
    /// Refused by a content filter.
    ContentFilter,
    /// The backend gave no reason or one arbor does not know.
    Other,
}

impl FinishReason {
    pub fn parse(s: Option<&str>) -> Self {
        match s {
            Some("stop") | Some("eos") => Self::Stop,
            Some("length") => Self::Length,
            Some("tool_calls") | Some("function_call") => Self::ToolCalls,
            Some("content_filter") => Self::ContentFilter,
            _ => Self::Other,
        }
    }
}

/// An alternative token at one position, with its natural-log probability.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopLogprob {
    pub token: String,
    pub logprob: f32,
}

/// A generated token with its natural-log probability and the top alternatives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenLogprob {
    pub token: String,
    pub logprob: f32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub top: Vec<TopLogprob>,
}

/// One generated sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Choice {
    pub index: u32,
    pub text: String,
    pub finish_reason: FinishReason,
    /// Per-token log-probabilities, where requested and the backend gives them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<Vec<TokenLogprob>>,
    /// Tools the model asked to run (OpenAI tool calls).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
}

/// Token usage as the backend reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

impl Usage {
    pub fn total(&self) -> u64 {
        self.prompt_tokens + self.completion_tokens
    }
}

impl std::ops::AddAssign for Usage {
    fn add_assign(&mut self, o: Self) {
        self.prompt_tokens += o.prompt_tokens;
        self.completion_tokens += o.completion_tokens;
    }
}

/// How a result was obtained: not part of the model's answer, never cached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallMeta {
    /// Attempts: one plus the retries made, of any of its choices when `n` went out as several
    /// requests (0 for a cache hit).
    pub attempts: u32,
    /// Served from the response cache.
    pub cached: bool,
    /// `n` went out as parallel single-choice requests: the server ignores `n`, or decodes
    /// each choice in a slot of its own (see `arbor-openai`'s `generate_inner`).
    pub n_fallback: bool,
    /// The time the server says it worked on the request (llama.cpp's `timings`: prompt and
    /// generation), microseconds; the rest of the latency was network and its queue.
    #[serde(default)]
    pub server_us: Option<u64>,
    /// The tokens the server's `timings` say it generated (llama.cpp's `predicted_n`). With
    /// `n` > 1 llama.cpp reports the first choice's alone, in `timings` and `usage` both.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_tokens: Option<u64>,
}

/// The result of one [`crate::LlmRequest`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Completion {
    /// The model that answered, as the backend names it.
    pub model: String,
    pub choices: Vec<Choice>,
    pub usage: Usage,
    #[serde(default)]
    pub meta: CallMeta,
}

impl Completion {
    /// The first choice's text, or "" if there is none.
    pub fn text(&self) -> &str {
        self.choices.first().map(|c| c.text.as_str()).unwrap_or("")
    }
}
