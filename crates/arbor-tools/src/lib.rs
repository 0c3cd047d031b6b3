//! Tools for arbor's judges and environments.
//!
//! Each tool has a name, JSON-Schema arguments, an async `run` bounded by a timeout, and a
//! structured result ([`tool`]; the built-in ones in [`builtin`]). Judges call them through
//! OpenAI tool calls or, for models without tool-call support, the text protocol
//! ([`protocol`]); [`agent`] runs that loop against any `LanguageModel`.

pub mod agent;
pub mod builtin;
pub mod calculator;
pub mod format;
pub mod number;
pub mod protocol;
pub mod retrieval;
pub mod sandbox;
pub mod tool;
pub mod unit_tests;
pub mod verifier;
