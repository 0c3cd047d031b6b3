//! Offline training from arbor's exports: DPO (and IPO, step-DPO), OREO (soft-Bellman value +
//! policy, token/step/response level) and TPO (listwise with LiPO-λ and adaptive step
//! weights) in burn, plus SFT for rejection sampling; value-guided search at test time.
//!
//! [`losses`] are pure tensor functions, [`forward`] turns examples into the tensors they take,
//! [`trainer`] runs the optimisation with checkpoints, [`value`] is the OREO critic,
//! [`search`] uses it at test time, [`eval`] measures accuracy on an environment.
pub mod config;
pub mod curves;
pub mod data;
pub mod eval;
pub mod forward;
pub mod losses;
pub mod optim;
pub mod search;
pub mod trainer;
pub mod value;

pub use config::{Algo, TrainConfig};
pub use trainer::{train, Probe, RunOptions, StartModel, Summary, TrainError};
