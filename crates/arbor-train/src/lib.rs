//! Offline training from arbor's exports: DPO (and IPO, step-DPO), OREO (soft-Bellman value +
//! policy, token/step/response level) and TPO (listwise with LiPO-λ and adaptive step
//! weights) in burn, plus SFT for rejection sampling; the learned value for test-time search.
//!
//! [`losses`] are pure tensor functions, [`forward`] turns examples into the tensors they take
//! ([`head`]: the output layer's log-probs and KL with closed-form gradients),
//! [`objective`] holds one module per algorithm behind one trait, [`trainer`] is one optimizer
//! step over them, [`run`] the whole run (schedule, evaluation, [`checkpoint`]s, curves),
//! [`start`] loads the starting model, [`value`] is the OREO critic and [`learned`] uses it in
//! arbor-tree's searches; [`probe`] computes losses outside the loop (gradient checks, bench);
//! [`device_check`] compares a device's losses and gradients with the CPU's.
pub mod alloc;
pub mod checkpoint;
pub mod config;
pub mod curves;
pub mod data;
pub mod device_check;
pub mod forward;
pub mod head;
pub mod learned;
pub mod losses;
pub mod objective;
pub mod optim;
pub mod probe;
pub mod run;
pub mod start;
pub mod trainer;
pub mod value;

pub use config::{Algo, TrainConfig};
pub use learned::LearnedValue;
pub use probe::Probe;
pub use run::{train, RunOptions, Summary};
pub use start::StartModel;
pub use trainer::Trainer;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("{0}")]
    Data(String),
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Io(String),
}
