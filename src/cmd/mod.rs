//! One module per subcommand: flags onto the library's configs, and output; the work lives in
//! the crates (`arbor bench` is arbor-bench).
pub mod chat;
pub mod env;
pub mod iterate;
pub mod model;
pub mod queue;
pub mod synth;
pub mod train;
pub mod tree;

/// A flag value read as the config key reads it (serde's names: `kebab-case` variants).
pub fn parse_enum<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, String> {
    serde_json::from_value(serde_json::Value::String(s.to_string()))
        .map_err(|e| format!("`{s}`: {e}"))
}
