//! The embedded model: SmolLM2-135M-Instruct (or any Llama-architecture GGUF) run in burn.
//!
//! [`gguf`] reads the file, [`tokenizer`] builds the tokenizer and chat template from its
//! metadata, [`llama`] is the network in burn (f32: training, scoring, GPUs), [`native`] the quantized
//! CPU decoder that generates, [`generate`] does batched decoding with a KV cache and
//! teacher-forced scoring, [`constrain`] masks tokens so answers follow a JSON Schema, `gguf_write` exports a model as GGUF for llama.cpp, [`fetch`] downloads and verifies the default model, [`hf`] reads and writes Hugging Face
//! checkpoints (what training produces), [`host`] moves values between host vectors and tensors,
//! [`init`] writes tiny random models, `Precision` the mixed precision of training, `Models` opens the model behind a role (a server or
//! this crate's embedded model), `DeviceKind` names a device without burn types.

pub mod backend;
mod batch;
pub mod constrain;
mod device;
mod engine;
pub mod fetch;
pub mod generate;
pub mod gguf;
mod gguf_write;
pub mod hf;
pub mod host;
pub mod init;
pub mod llama;
pub mod native;
mod open;
mod precision;
pub mod quant;
mod sampling;
pub mod stream;
pub mod tokenizer;

pub use backend::EmbeddedBackend;
pub use device::DeviceKind;
pub use engine::Engine;
pub use generate::{EmbeddedModel, Finish, GenerateOptions, Generated, ModelError, Scored};
pub use gguf_write::OutType;
pub use open::{Models, EMBEDDED};
pub use precision::Precision;
