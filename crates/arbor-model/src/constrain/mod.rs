//! Structured output for the embedded model: a JSON Schema becomes a grammar ([`grammar`]), a
//! byte-level recognizer of the answers it allows ([`matcher`]), and, against the tokenizer's
//! vocabulary, the set of tokens allowed at each step ([`mask`]), which generation applies to the
//! logits so that every answer parses and validates; [`closing`] finds the shortest way to end an
//! answer, which generation writes when `max_tokens` is about to run out.
pub mod closing;
pub mod grammar;
pub mod mask;
pub mod matcher;

pub use grammar::Grammar;
pub use mask::{allows, Cursor, JsonConstraint, Mask, TokenTrie};

#[cfg(test)]
mod tests;
