//! Search trees over reasoning steps.
//!
//! - [`store`]: one petgraph `StableGraph` per tree, saved as JSONL (`arbor.tree/1`).
//! - [`select`]: UCT and PUCT.
//! - [`policy`], [`evaluate`]: what proposes steps (any `LanguageModel`) and what scores states
//!   (verifier, self-evaluation, rollouts, a learned value).
//! - [`search`]: MCTS, Tree-of-Thought BFS/DFS and step beam search over an arbor-envs
//!   environment; tree-less decoding (greedy, best-of-n, value-guided beam) in `search::decode`.
//! - [`eval`]: accuracy on a task set with a Wilson interval.
//! - [`export`]: training data (DPO, step-DPO, TPO, OREO, PRM, SFT, KTO, llm-reasoners tree logs).
//! - [`view`]: a self-contained HTML viewer and Graphviz DOT.
//! - [`job`]: `search.toml`, the policy and evaluator it names, a search run into a directory.

pub mod eval;
pub mod evaluate;
pub mod export;
pub mod job;
pub mod policy;
pub mod prompt;
pub mod search;
pub mod select;
pub mod store;
pub mod view;

pub use search::{Algo, SearchConfig, Searcher};
pub use store::{load_path, Evaluation, LoadReport, Node, NodeId, Provenance, Tree, TreeError};

/// Why a search could not finish a tree.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error("model: {0}")]
    Model(#[from] arbor_llm::LlmError),
    #[error("environment: {0}")]
    Env(#[from] arbor_envs::EnvError),
    #[error("tree: {0}")]
    Tree(#[from] TreeError),
    #[error("{0}")]
    Other(String),
}
