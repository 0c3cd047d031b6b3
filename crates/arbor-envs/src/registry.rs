//! The environments arbor knows, by name, each with its config file format.
use std::path::Path;

use crate::code::{CodeConfig, CodeEnv};
use crate::household::{HouseholdConfig, HouseholdEnv};
use crate::math::{MathConfig, MathEnv};
use crate::{EnvError, Environment};

pub fn names() -> [&'static str; 3] {
    ["math", "household", "code"]
}

fn load<T: serde::de::DeserializeOwned + Default>(config: Option<&Path>) -> Result<T, EnvError> {
    let Some(path) = config else {
        return Ok(T::default());
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| EnvError::Io(format!("{}: {e}", path.display())))?;
    toml::from_str(&text)
        .map_err(|e| EnvError::Config(format!("{}: {}", path.display(), e.message())))
}

/// The environment `name`, configured from `config` (TOML) or its defaults.
pub fn by_name(name: &str, config: Option<&Path>) -> Result<Box<dyn Environment>, EnvError> {
    Ok(match name {
        "math" => Box::new(MathEnv::new(load::<MathConfig>(config)?)?),
        "household" => Box::new(HouseholdEnv::new(load::<HouseholdConfig>(config)?)?),
        "code" => Box::new(CodeEnv::new(load::<CodeConfig>(config)?)?),
        other => {
            return Err(EnvError::Config(format!(
                "unknown environment `{other}`; known: {}",
                names().join(", ")
            )))
        }
    })
}
