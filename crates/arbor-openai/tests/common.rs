//! Helpers shared by arbor-llm's integration tests.
#![allow(dead_code)]
use std::sync::Arc;

use arbor_core::Message;
use arbor_llm::{LlmRequest, SamplingParams};
use arbor_openai::{Endpoint, EndpointConfig, OpenAiClient};

/// A client with private endpoint state (limits and breaker not shared with other tests).
pub fn client(base_url: &str, tweak: impl FnOnce(&mut EndpointConfig)) -> OpenAiClient {
    let mut cfg = EndpointConfig::new(base_url.parse().unwrap(), "mock");
    tweak(&mut cfg);
    let ep = Arc::new(Endpoint::new(&cfg));
    OpenAiClient::with_endpoint(cfg, ep).unwrap()
}

pub fn chat(text: impl Into<String>, seed: u64) -> LlmRequest {
    LlmRequest::chat("mock", vec![Message::user(text)]).with_params(SamplingParams {
        seed: Some(seed),
        max_tokens: Some(16),
        ..Default::default()
    })
}
