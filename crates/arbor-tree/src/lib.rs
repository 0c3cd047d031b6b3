//! Search trees over reasoning steps.
//!
//! [`store`] keeps one petgraph `StableGraph` per tree with the statistics search needs and
//! saves trees as JSONL; [`select`] holds the UCT and PUCT selection rules. Search algorithms,
//! evaluators, exports and the viewer build on these (issue 6).

pub mod select;
pub mod store;

pub use store::{Evaluation, LoadReport, Node, NodeId, Provenance, Tree, TreeError};
