use std::time::Duration;

/// Why a model call failed. Each variant names the endpoint and the cause, so a report of a
/// failed item says what went wrong without a log dive.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LlmError {
    #[error("cannot connect to {endpoint}: {detail}")]
    Connect { endpoint: String, detail: String },
    #[error("request to {endpoint} timed out after {}s", .after.as_secs_f32())]
    Timeout { endpoint: String, after: Duration },
    #[error("{endpoint} answered HTTP {status}: {body}")]
    Http {
        endpoint: String,
        status: u16,
        body: String,
        retry_after: Option<Duration>,
    },
    #[error("{endpoint} sent an unusable response: {detail}")]
    BadResponse { endpoint: String, detail: String },
    #[error(
        "circuit breaker open for {endpoint}: {failures} failed attempts and no success for \
         {}s; last error: {last_error}", .since_success.as_secs()
    )]
    CircuitOpen {
        endpoint: String,
        failures: u64,
        since_success: Duration,
        last_error: String,
    },
    #[error("gave up after {attempts} attempts: {last}")]
    Exhausted { attempts: u32, last: Box<LlmError> },
    #[error("response cache: {0}")]
    Cache(String),
    #[error("{0}")]
    Invalid(String),
}

impl LlmError {
    /// Worth another attempt: the same request may succeed later.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Connect { .. } | Self::Timeout { .. } | Self::BadResponse { .. } => true,
            Self::Http { status, .. } => *status == 408 || *status == 429 || *status >= 500,
            _ => false,
        }
    }

    /// The wait the server asked for, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Http { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// A stable label for accounting and dead-letter causes.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Connect { .. } => "connect",
            Self::Timeout { .. } => "timeout",
            Self::Http { status: 429, .. } => "http_429",
            Self::Http { status, .. } if *status >= 500 => "http_5xx",
            Self::Http { .. } => "http_4xx",
            Self::BadResponse { .. } => "bad_response",
            Self::CircuitOpen { .. } => "circuit_open",
            Self::Exhausted { last, .. } => last.kind(),
            Self::Cache(_) => "cache",
            Self::Invalid(_) => "invalid",
        }
    }

    /// The endpoint is down for good as far as this job is concerned: stop, don't skip items.
    pub fn is_fatal(&self) -> bool {
        matches!(self, Self::CircuitOpen { .. })
            || matches!(self, Self::Exhausted { last, .. } if last.is_fatal())
    }
}
