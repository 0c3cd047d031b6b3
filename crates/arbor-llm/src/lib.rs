//! Model access for arbor.
//!
//! Everything in arbor that asks a language model for text goes through [`LanguageModel`]:
//! synthesis, tree search, judges and data collection. This crate holds the trait, its request
//! and response types, the OpenAI-compatible HTTP backend with per-endpoint limits, retries and a
//! circuit breaker, an on-disk response cache, per-endpoint accounting, and `mock`, an
//! OpenAI-compatible server with fault injection for tests and benchmarks.

mod breaker;
mod cache;
mod config;
mod endpoint;
mod error;
mod limits;
pub mod llamacpp;
pub mod mock;
mod model;
mod openai;
mod request;
mod response;
mod retry;
pub mod serve;
mod stats;

pub use cache::{CachedModel, ResponseCache};
pub use config::{ApiKey, BreakerConfig, ConfigError, EndpointConfig, LimitsConfig, RetryConfig};
pub use endpoint::Endpoint;
pub use error::LlmError;
pub use model::LanguageModel;
pub use openai::OpenAiClient;
pub use request::{LlmRequest, Prompt, SamplingParams};
pub use response::{CallMeta, Choice, Completion, FinishReason, TokenLogprob, TopLogprob, Usage};
pub use stats::{EndpointStats, StatsSnapshot};
