//! Environments for search and training.
//!
//! An [`Environment`] is a task set plus the rules of an episode: the initial observation,
//! `step(action)` → observation, reward, done, the final verification, and the judge tools that
//! suit it. Tasks print as JSONL that `arbor synth` reads as input.

pub mod code;
mod env;
pub mod household;
pub mod math;
pub mod prompt;
mod registry;
mod replay;
mod task;

pub use env::{EnvError, Environment, Episode, Step, Verification};
pub use registry::{by_name, names, with_table};
pub use replay::{replay, Outcome};
pub use task::{read_tasks, Task};
