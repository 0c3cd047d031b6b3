//! Training objectives, one module each behind one trait ([`Objective`]: which examples it
//! takes, its loss and metric columns): [`sft`], [`dpo`], [`oreo`], [`tpo`]. The shared
//! contract and the reference-model context are in `core`.
mod core;
pub mod dpo;
pub mod oreo;
pub mod sft;
pub mod tpo;

pub use self::core::{
    prepare, Context, LossInput, LossOut, Objective, Prepared, PreparedSet, Sequences,
};
use crate::config::Algo;

/// The objective that trains `algo`.
pub fn for_algo(algo: Algo) -> Box<dyn Objective> {
    match algo {
        Algo::Sft => Box::new(sft::Sft),
        Algo::Dpo => Box::new(dpo::Dpo),
        Algo::Oreo => Box::new(oreo::Oreo),
        Algo::Tpo => Box::new(tpo::Tpo),
    }
}
