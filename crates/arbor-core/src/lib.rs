//! Shared types for arbor: chat messages, content-addressed ids and row tables (JSONL/Parquet).
//!
//! Every other crate speaks these types; this crate depends on nothing of arbor's.

mod id;
mod message;
pub mod table;

pub use id::{canonical_json, content_hash};
pub use message::{Message, Role, ToolCall, ToolSpec};
