//! Tool calling for arbor's judges.
//!
//! Each tool has a name, JSON-Schema arguments, an async `run` bounded by a timeout, and a
//! structured result ([`tool`]; the built-in ones in [`builtin`], thin adapters over
//! `arbor-checks`). Judges call them through OpenAI tool calls or, for models without tool-call
//! support, the text protocol ([`protocol`]); [`agent`] runs that loop against any
//! `LanguageModel`.

pub mod agent;
pub mod builtin;
pub mod protocol;
pub mod tool;
