//! Shared types for arbor: chat messages, content-addressed ids, row tables (JSONL/Parquet) and
//! config files with command-line overrides.
//!
//! Every other crate speaks these types; this crate depends on nothing of arbor's.

pub mod config;
pub mod crash;
mod id;
mod message;
pub mod progress;
pub mod table;

pub use id::{canonical_json, content_hash, file_sha256, fnv1a, write_atomic};
pub use message::{Message, Role, ToolCall, ToolSpec};
pub use progress::Progress;
