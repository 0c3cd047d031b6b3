//! The embedded model: SmolLM2-135M-Instruct (or any Llama-architecture GGUF) run in burn.
//!
//! [`gguf`] reads the file, [`tokenizer`] builds the tokenizer and chat template from its
//! metadata, [`llama`] is the network, [`generate`] does batched decoding with a KV cache and
//! teacher-forced scoring, [`fetch`] downloads and verifies the default model, [`hf`] reads and writes Hugging Face
//! checkpoints (what training produces).

pub mod backend;
pub mod fetch;
pub mod generate;
pub mod gguf;
pub mod hf;
pub mod llama;
pub mod tokenizer;

pub use backend::EmbeddedBackend;
pub use generate::{EmbeddedModel, Finish, GenerateOptions, Generated, ModelError, Scored};
