//! Shared types for arbor: chat messages and content-addressed ids.
//!
//! Every other crate speaks these types; this crate depends on nothing of arbor's.

mod id;
mod message;

pub use id::{canonical_json, content_hash};
pub use message::{Message, Role, ToolCall, ToolSpec};
