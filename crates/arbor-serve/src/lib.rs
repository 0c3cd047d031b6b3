//! Servers around arbor's models: [`serve`] puts any `LanguageModel` behind the OpenAI HTTP API
//! (`arbor serve`) with [`wire`] reading and writing OpenAI's format, [`mock`] is the deterministic OpenAI-compatible mock with fault injection
//! (tests and benchmarks), [`llamacpp`] starts a real llama.cpp server from PyPI for tests.

pub mod llamacpp;
pub mod mock;
pub mod serve;
pub mod wire;
