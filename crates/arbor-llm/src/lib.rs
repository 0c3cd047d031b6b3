//! The model-access interface of arbor.
//!
//! Everything in arbor that asks a language model for text goes through [`LanguageModel`]:
//! synthesis, tree search, judges and data collection. This crate holds the trait, its request
//! and response types, the accounting snapshot and the on-disk response cache — nothing that
//! speaks HTTP. The OpenAI-compatible client lives in `arbor-openai`, the embedded model in
//! `arbor-model`, servers and test kits (mock, `arbor serve`, llama.cpp launcher) in `arbor-serve`.

mod cache;
mod error;
mod metered;
mod model;
mod open;
pub mod priority;
mod request;
mod response;
mod stats;

pub use cache::{CachedModel, ResponseCache};
pub use error::LlmError;
pub use metered::{MeteredModel, Usage as RoleUsage};
pub use model::{Delta, LanguageModel};
pub use open::{ModelOpener, ModelSpec, OpenedModel};
pub use request::{LlmRequest, Prompt, SamplingParams};
pub use response::{CallMeta, Choice, Completion, FinishReason, TokenLogprob, TopLogprob, Usage};
pub use stats::StatsSnapshot;
