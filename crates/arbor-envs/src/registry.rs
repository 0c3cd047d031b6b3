//! The environments arbor knows, by name, each with its config file format.
use std::path::Path;

use crate::code::{CodeConfig, CodeEnv};
use crate::household::{HouseholdConfig, HouseholdEnv};
use crate::math::{MathConfig, MathEnv};
use crate::{EnvError, Environment};

pub fn names() -> [&'static str; 3] {
    ["math", "household", "code"]
}

/// The environment `name`, configured from `config` (TOML) or its defaults.
pub fn by_name(name: &str, config: Option<&Path>) -> Result<Box<dyn Environment>, EnvError> {
    let Some(path) = config else {
        return with_table(name, toml::Table::new(), "defaults");
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| EnvError::Io(format!("{}: {e}", path.display())))?;
    let table = toml::from_str(&text)
        .map_err(|e| EnvError::Config(format!("{}: {}", path.display(), e.message())))?;
    with_table(name, table, &path.display().to_string())
}

/// The environment `name`, configured from the keys of its config file held in `table`
/// (`origin` names where they came from in errors).
pub fn with_table(
    name: &str,
    table: toml::Table,
    origin: &str,
) -> Result<Box<dyn Environment>, EnvError> {
    fn load<T: serde::de::DeserializeOwned>(t: toml::Table, origin: &str) -> Result<T, EnvError> {
        T::deserialize(toml::Value::Table(t))
            .map_err(|e| EnvError::Config(format!("{origin}: {}", e.message())))
    }
    Ok(match name {
        "math" => Box::new(MathEnv::new(load::<MathConfig>(table, origin)?)?),
        "household" => Box::new(HouseholdEnv::new(load::<HouseholdConfig>(table, origin)?)?),
        "code" => Box::new(CodeEnv::new(load::<CodeConfig>(table, origin)?)?),
        other => {
            return Err(EnvError::Config(format!(
                "unknown environment `{other}`; known: {}",
                names().join(", ")
            )))
        }
    })
}
