//! arbor's OpenAI-compatible HTTP client (`/v1/chat/completions`, `/v1/completions`): vLLM,
//! llama.cpp's server, Ollama, OpenAI. One [`Endpoint`] per base URL in the process holds the
//! limits ([`limits`], the adaptive in-flight limit in [`concurrency`]), the circuit breaker ([`breaker`]) and the accounting; [`retry`] is the
//! backoff; [`wire`] the request and response shapes.

mod breaker;
mod concurrency;
mod config;
mod endpoint;
mod limits;
mod openai;
mod retry;
mod stats;
mod wire;

pub use config::{ApiKey, BreakerConfig, ConfigError, EndpointConfig, LimitsConfig, NChoices, RetryConfig};
pub use concurrency::ConcurrencyStats;
pub use endpoint::{Endpoint, ServerProps};
pub use openai::OpenAiClient;
pub use stats::EndpointStats;
