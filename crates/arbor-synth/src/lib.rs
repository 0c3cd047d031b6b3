//! Anyprefer preference-data synthesis (Zhou et al. 2025): target and judge as a cooperative
//! game, a judge that gathers evidence with tools, a reward gate on the pair, and feedback that
//! rewrites both prompts.
//!
//! - [`config`]: `synth.toml` (every CLI flag a key).
//! - [`input`]: JSONL/Parquet items with per-line errors.
//! - [`prompts`]: templates (prompts/synth), prompt versions, the lagged prompt pool.
//! - [`game`]: the moves (sample, judge in two orders, pair, reward, optimize); [`checks`]:
//!   what arbor's own tool calls find in each candidate before judging; [`schemas`]:
//!   the JSON Schemas of the roles' answers.
//! - `play`: one item's rounds as an async state machine; [`engine`]: admission under the
//!   in-flight limit and the journal actor; [`journal`]: durable progress for exact resume;
//!   [`output`]: the dataset files and card.
//! - [`job`]: the job as a library call (open with resume checks, run, summary); [`plan`]: its
//!   calls and tokens before it runs (`--dry-run`).

pub mod accounting;
pub mod checks;
pub mod config;
pub mod dedup;
pub mod engine;
pub mod game;
pub mod input;
pub mod job;
pub mod journal;
pub mod jury;
pub mod output;
mod play;
pub mod plan;
pub mod progress;
pub mod prompts;
pub mod schemas;

pub use config::SynthConfig;
pub use job::{Job, JobError, Summary};
