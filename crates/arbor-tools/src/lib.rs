//! Tools for arbor's judges and environments.
//!
//! Each tool has a name, JSON-Schema arguments, an async `run` bounded by a timeout, and a
//! structured result ([`tool`]). Judges call them through OpenAI tool calls or, for models
//! without tool-call support, through a text protocol ([`protocol`]); [`agent`] runs that loop.

pub mod calculator;
pub mod format;
pub mod number;
pub mod retrieval;
pub mod sandbox;
pub mod unit_tests;
pub mod verifier;
