//! Config files with command-line overrides, one way for every job: the TOML file (or the
//! defaults) is read into the config type, then each flag that was given replaces the key of
//! the same name (`candidates`, `target.url`), and the result is read again, so a flag is
//! checked exactly like the key it sets.
use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Flag values keyed by config key; dotted keys reach into tables.
#[derive(Debug, Default, Clone)]
pub struct Overrides(toml::Table);

impl Overrides {
    /// Sets `key` when the flag was given.
    pub fn set<V: Serialize>(&mut self, key: &str, value: Option<V>) -> &mut Self {
        let Some(v) = value else { return self };
        let v = toml::Value::try_from(v).expect("flag values are TOML values");
        let mut parts: Vec<&str> = key.split('.').collect();
        let last = parts.pop().expect("a key has a name");
        let mut table = &mut self.0;
        for p in parts {
            table = table
                .entry(p)
                .or_insert_with(|| toml::Value::Table(Default::default()))
                .as_table_mut()
                .expect("override keys nest tables");
        }
        table.insert(last.to_string(), v);
        self
    }

    /// Sets `key = true` when a switch was given (a switch never turns a key off).
    pub fn switch(&mut self, key: &str, on: bool) -> &mut Self {
        self.set(key, on.then_some(true))
    }
}

fn merge(base: &mut toml::Table, over: &toml::Table) {
    for (k, v) in over {
        match (base.get_mut(k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            _ => {
                base.insert(k.clone(), v.clone());
            }
        }
    }
}

/// Reads `path` (or the defaults when `None`) as `T` with `overrides` applied. Errors name the
/// file, the line and the key.
pub fn load_toml<T>(path: Option<&Path>, overrides: &Overrides) -> Result<T, String>
where
    T: Serialize + DeserializeOwned + Default,
{
    let base: T = match path {
        None => T::default(),
        Some(p) => {
            let text =
                std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
            let at = |line: usize| {
                let shown = text.lines().nth(line - 1).unwrap_or("").trim();
                format!("{}:{line}: `{}`", p.display(), shown.chars().take(80).collect::<String>())
            };
            if let Some(line) = non_finite_line(&text) {
                return Err(format!("{}: a finite number is needed", at(line)));
            }
            toml::from_str(&text).map_err(|e| {
                // file:line: `the line`: the message.
                match e.span() {
                    Some(r) => {
                        let before = &text.as_bytes()[..r.start.min(text.len())];
                        let line = before.iter().filter(|b| **b == b'\n').count() + 1;
                        format!("{}: {}", at(line), e.message())
                    }
                    None => format!("{}: {}", p.display(), e.message()),
                }
            })?
        }
    };
    if overrides.0.is_empty() {
        return Ok(base);
    }
    let mut table = toml::Table::try_from(&base).map_err(|e| e.to_string())?;
    merge(&mut table, &overrides.0);
    // Through the text form, so that an error quotes the offending `key = value` line.
    let text = toml::to_string(&table).map_err(|e| e.to_string())?;
    if let Some(line) = non_finite_line(&text) {
        let shown = text.lines().nth(line - 1).unwrap_or("").trim().to_string();
        return Err(format!("command line: `{shown}`: a finite number is needed"));
    }
    toml::from_str(&text).map_err(|e| format!("command line: {}", e.to_string().trim()))
}

/// The first line (1-based) whose value is a non-finite float (`nan`, `inf`, signed or not,
/// alone or in an array): TOML allows them, no setting of arbor means them, and a NaN
/// temperature or learning rate would only show up as garbage far from its cause.
fn non_finite_line(text: &str) -> Option<usize> {
    let doc: toml::Table = toml::from_str(text).ok()?;
    fn any(v: &toml::Value) -> bool {
        match v {
            toml::Value::Float(f) => !f.is_finite(),
            toml::Value::Array(a) => a.iter().any(any),
            toml::Value::Table(t) => t.values().any(any),
            _ => false,
        }
    }
    if !doc.values().any(any) {
        return None;
    }
    let word = |l: &str| {
        l.split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
            .any(|w| matches!(w, "nan" | "inf"))
    };
    text.lines()
        .position(|l| {
            // The value, with its quoted strings and comment taken out.
            l.split_once('=').is_some_and(|(_, v)| {
                let bare: String = v.split('"').step_by(2).collect();
                word(bare.split('#').next().unwrap_or(""))
            })
        })
        .map(|i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields, default)]
    struct Role {
        url: Option<String>,
        temperature: Option<f64>,
    }

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields, default)]
    struct Cfg {
        n: u32,
        role: Role,
    }
    impl Default for Cfg {
        fn default() -> Self {
            Self {
                n: 4,
                role: Role {
                    url: None,
                    temperature: Some(0.9),
                },
            }
        }
    }

    #[test]
    fn non_finite_numbers_are_refused_with_their_line() {
        #[derive(Debug, Default, Serialize, Deserialize)]
        #[serde(default)]
        struct F {
            name: String,
            t: f64,
        }
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "name = \"nan bread\"\n\nt = nan  # oops\n").unwrap();
        let e = load_toml::<F>(Some(&p), &Overrides::default()).unwrap_err();
        assert!(e.contains("c.toml:3: `t = nan  # oops`: a finite number"), "{e}");
        let mut o = Overrides::default();
        o.set("t", Some(f64::INFINITY));
        let e = load_toml::<F>(None, &o).unwrap_err();
        assert!(e.starts_with("command line: `t = inf`"), "{e}");
        std::fs::write(&p, "name = \"nan bread\"\nt = 0.5\n").unwrap();
        assert_eq!(load_toml::<F>(Some(&p), &Overrides::default()).unwrap().t, 0.5);
    }

    #[test]
    fn flags_replace_only_their_keys_and_are_checked_like_keys() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "n = 2\n").unwrap();
        let mut o = Overrides::default();
        o.set("role.url", Some("http://x")).set("missing", None::<u32>);
        let c: Cfg = load_toml(Some(&p), &o).unwrap();
        // The file's n, the flag's url, and the default temperature kept beside it.
        assert_eq!(c.n, 2);
        assert_eq!(c.role.url.as_deref(), Some("http://x"));
        assert_eq!(c.role.temperature, Some(0.9));
        let mut bad = Overrides::default();
        bad.set("n", Some("many"));
        let e = load_toml::<Cfg>(None, &bad).unwrap_err();
        assert!(e.contains("command line") && e.contains("n = \"many\""), "{e}");
        std::fs::write(&p, "nn = 2\n").unwrap();
        let e = load_toml::<Cfg>(Some(&p), &Overrides::default()).unwrap_err();
        assert!(e.contains("c.toml") && e.contains("nn"), "{e}");
    }
}
