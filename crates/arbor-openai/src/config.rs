//! Endpoint configuration: where a model lives, how hard arbor may push it, how it retries.
use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use url::Url;

/// A configuration error that names the file and the field.
#[derive(Debug, thiserror::Error)]
#[error("{source_name}: {message}")]
pub struct ConfigError {
    pub source_name: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(source_name: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            source_name: source_name.into(),
            message: message.into(),
        }
    }
}

/// One OpenAI-compatible endpoint.
///
/// ```toml
/// base_url = "http://127.0.0.1:8080/v1"
/// model = "smollm2"
/// api_key_env = "OPENAI_API_KEY"   # optional: the variable that holds the key
/// timeout_secs = 60
/// [limits]
/// max_in_flight = 64
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointConfig {
    pub base_url: Url,
    pub model: String,
    /// Name of the environment variable holding the API key; the key itself never enters config.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Per-attempt timeout.
    #[serde(default = "defaults::timeout_secs")]
    pub timeout_secs: f64,
    #[serde(default)]
    pub limits: LimitsConfig,
    #[serde(default)]
    pub retry: RetryConfig,
    #[serde(default)]
    pub breaker: BreakerConfig,
    /// How a request for `n` choices goes out.
    #[serde(default)]
    pub n_choices: NChoices,
}

/// How a request for `n` > 1 choices goes out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NChoices {
    /// As parallel single-choice requests to a server that reports its slots (llama.cpp,
    /// which holds every choice's slot until the last one ends), as one request elsewhere.
    #[default]
    Auto,
    /// One request with `n` (parallel requests all the same if the server ignores `n`).
    Native,
    /// Always parallel single-choice requests.
    Parallel,
}

/// Limits shared by every caller of one endpoint. 0 means unlimited.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// The most requests in flight; with `adaptive`, the bound of a limit that follows the
    /// server's load (starting at 8, or at the slots the server reports).
    pub max_in_flight: usize,
    /// Grow the in-flight limit while the server answers without queueing, cut it when it
    /// queues or refuses (crates/arbor-openai/src/concurrency.rs). Off: exactly `max_in_flight`.
    pub adaptive: bool,
    pub requests_per_minute: u64,
    pub tokens_per_minute: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_in_flight: 64,
            adaptive: true,
            requests_per_minute: 0,
            tokens_per_minute: 0,
        }
    }
}

/// Jittered exponential backoff, bounded attempts.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Total attempts per request, the first included.
    pub max_attempts: u32,
    pub base_delay_ms: u64,
    pub max_delay_ms: u64,
    /// A `Retry-After` longer than this is cut down to it.
    pub max_retry_after_secs: u64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_attempts: 6,
            base_delay_ms: 250,
            max_delay_ms: 20_000,
            max_retry_after_secs: 120,
        }
    }
}

/// The breaker opens when `min_failures` attempts in a row failed and nothing succeeded for
/// `window_secs`; after `cooldown_secs` one probe may pass.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerConfig {
    pub min_failures: u64,
    pub window_secs: f64,
    pub cooldown_secs: f64,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            min_failures: 20,
            window_secs: 30.0,
            cooldown_secs: 30.0,
        }
    }
}

mod defaults {
    pub fn timeout_secs() -> f64 {
        120.0
    }
}

/// An API key: never printed, never logged.
#[derive(Clone)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `text` (a server's error body) with the key cut out: some servers repeat the key they
    /// were sent, and arbor prints their messages.
    pub fn redact(&self, text: &str) -> String {
        if self.0.is_empty() {
            return text.to_string();
        }
        text.replace(&self.0, "<redacted>")
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

impl EndpointConfig {
    pub fn new(base_url: Url, model: impl Into<String>) -> Self {
        Self {
            base_url,
            model: model.into(),
            api_key_env: None,
            timeout_secs: defaults::timeout_secs(),
            limits: LimitsConfig::default(),
            retry: RetryConfig::default(),
            breaker: BreakerConfig::default(),
            n_choices: NChoices::Auto,
        }
    }

    /// Parses TOML text; `source_name` (usually the file path) prefixes every error.
    pub fn from_toml(text: &str, source_name: &str) -> Result<Self, ConfigError> {
        let cfg: Self = toml::from_str(text)
            .map_err(|e| ConfigError::new(source_name, toml_error(&e, text)))?;
        cfg.validate(source_name)?;
        Ok(cfg)
    }

    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new(&name, format!("cannot read: {e}")))?;
        Self::from_toml(&text, &name)
    }

    /// Checks what serde cannot: URL scheme, positive numbers, that the key variable exists.
    pub fn validate(&self, source_name: &str) -> Result<(), ConfigError> {
        let err = |field: &str, msg: String| {
            ConfigError::new(source_name, format!("field `{field}`: {msg}"))
        };
        if !matches!(self.base_url.scheme(), "http" | "https") {
            return Err(err(
                "base_url",
                format!("`{}` is not an http(s) URL", self.base_url),
            ));
        }
        if self.model.trim().is_empty() {
            return Err(err("model", "must not be empty".into()));
        }
        if !(self.timeout_secs.is_finite() && self.timeout_secs > 0.0) {
            return Err(err(
                "timeout_secs",
                "must be a positive number of seconds".into(),
            ));
        }
        if self.retry.max_attempts == 0 {
            return Err(err("retry.max_attempts", "must be at least 1".into()));
        }
        if let Some(var) = &self.api_key_env {
            if std::env::var_os(var).is_none() {
                return Err(err(
                    "api_key_env",
                    format!("environment variable `{var}` is not set"),
                ));
            }
        }
        Ok(())
    }

    /// Reads the API key from the variable `api_key_env` names.
    pub fn api_key(&self) -> Result<Option<ApiKey>, ConfigError> {
        match &self.api_key_env {
            None => Ok(None),
            Some(var) => match std::env::var(var) {
                Ok(k) => Ok(Some(ApiKey(k))),
                Err(_) => Err(ConfigError::new(
                    "endpoint",
                    format!("field `api_key_env`: environment variable `{var}` is not set"),
                )),
            },
        }
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_secs_f64(self.timeout_secs)
    }

    /// The URL of an API path such as `chat/completions`. A base URL without a path gets `/v1`,
    /// the convention of every OpenAI-compatible server.
    pub fn url_for(&self, path: &str) -> Url {
        let mut base = self.base_url.clone();
        if base.path() == "/" || base.path().is_empty() {
            base.set_path("/v1");
        }
        let joined = format!("{}/{}", base.path().trim_end_matches('/'), path);
        base.set_path(&joined);
        base
    }
}

/// toml's messages carry a snippet; say instead: line, field (table-qualified), message.
fn toml_error(e: &toml::de::Error, text: &str) -> String {
    let msg = e.message().trim();
    let Some(before) = e.span().and_then(|s| text.get(..s.start)) else {
        return msg.to_string();
    };
    let line_no = before.matches('\n').count() + 1;
    let line = text.lines().nth(line_no - 1).unwrap_or("");
    let key = line
        .split_once('=')
        .map(|(k, _)| k.trim().trim_matches('"'))
        .filter(|k| !k.is_empty());
    let table = before
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('[') && l.ends_with(']'))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim());
    match (key, table) {
        (Some(k), Some(t)) => format!("line {line_no}, field `{t}.{k}`: {msg}"),
        (Some(k), None) => format!("line {line_no}, field `{k}`: {msg}"),
        _ => format!("line {line_no}: {msg}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_field_is_named() {
        let e = EndpointConfig::from_toml(
            "base_url = \"http://127.0.0.1:1/v1\"\nmodel = \"m\"\n[limits]\nmax_inflight = 3\n",
            "a.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("a.toml: line 4, field `limits.max_inflight`:"),
            "{e}"
        );
        assert!(e.contains("unknown field `max_inflight`"), "{e}");
    }

    #[test]
    fn malformed_url_is_named() {
        let e = EndpointConfig::from_toml("base_url = \"http//nope\"\nmodel = \"m\"\n", "b.toml")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("b.toml: line 1, field `base_url`:"), "{e}");
        let e = EndpointConfig::from_toml("base_url = \"ftp://x/v1\"\nmodel = \"m\"\n", "c.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("field `base_url`"), "{e}");
    }

    #[test]
    fn wrong_types_and_missing_fields_are_named() {
        let e = EndpointConfig::from_toml(
            "base_url = \"http://x/v1\"\n[limits]\nmax_in_flight = \"a\"\n",
            "t.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("field `limits.max_in_flight`"), "{e}");
        let e = EndpointConfig::from_toml("base_url = \"http://x/v1\"\n", "t.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing field `model`"), "{e}");
    }

    #[test]
    fn missing_key_variable_is_named() {
        let e = EndpointConfig::from_toml(
            "base_url = \"http://x/v1\"\nmodel = \"m\"\napi_key_env = \"ARBOR_TEST_SURELY_UNSET_KEY\"\n",
            "d.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("field `api_key_env`"), "{e}");
        assert!(e.contains("ARBOR_TEST_SURELY_UNSET_KEY"), "{e}");
    }

    #[test]
    fn api_key_is_redacted() {
        let k = ApiKey("sk-secret".into());
        assert!(!format!("{k:?}").contains("secret"));
    }

    #[test]
    fn url_for_adds_v1_only_when_missing() {
        let c = EndpointConfig::new("http://h:1".parse().unwrap(), "m");
        assert_eq!(
            c.url_for("chat/completions").as_str(),
            "http://h:1/v1/chat/completions"
        );
        let c = EndpointConfig::new("http://h:1/api/v1/".parse().unwrap(), "m");
        assert_eq!(
            c.url_for("completions").as_str(),
            "http://h:1/api/v1/completions"
        );
    }
}
