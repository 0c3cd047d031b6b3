//! One module per subcommand: argument parsing and output; the work lives in the crates.
pub mod bench;
pub mod bench_synth;
pub mod bench_train;
pub mod bench_tree;
pub mod chat;
pub mod env;
pub mod mock;
pub mod model;
pub mod synth;
pub mod train;
pub mod tree;
