//! `arbor loop`: from a model to a better one, iteration after iteration. Iteration t searches
//! a fresh slice of training tasks with π_{t−1}, exports the trees in the algorithm's format,
//! trains π_t from π_{t−1}, and evaluates π_t on one fixed held-out set (π_0 is evaluated as
//! iteration 0).
//!
//! [`config`] is `loop.toml`; [`stages`] runs one stage of one iteration into
//! `DIR/iter-<t>/`, each finished stage marked by a file written last, so a killed loop resumes
//! at the stage it stopped in; [`backend`] runs π_t in burn or on a llama.cpp server of its
//! GGUF export; [`critic`] measures an OREO critic; [`report`] is `DIR/report.json` and the table;
//! [`compare`] pairs finished loops on their shared held-out tasks.

pub mod backend;
pub mod compare;
pub mod config;
pub mod critic;
pub mod report;
pub mod stages;

pub use config::LoopConfig;
pub use report::{IterationReport, LoopReport};
pub use stages::{run, LoopError, Observer};
