//! The OpenAI-compatible HTTP backend (`/v1/chat/completions`, `/v1/completions`): works with
//! vLLM, llama.cpp's server, Ollama and OpenAI.
use std::sync::Arc;

use arbor_llm::{CallMeta, Completion, FinishReason, LanguageModel, LlmError, LlmRequest, StatsSnapshot, Usage};
use async_trait::async_trait;

use crate::concurrency::Outcome;
use crate::wire::{json_post_body, json_post_completion, parse_response, request_body};
use crate::{retry, ApiKey, ConfigError, Endpoint, EndpointConfig, NChoices};

/// A client for one OpenAI-compatible endpoint. Clones share the connection pool and the
/// endpoint's limits.
#[derive(Clone)]
pub struct OpenAiClient {
    cfg: Arc<EndpointConfig>,
    http: reqwest::Client,
    endpoint: Arc<Endpoint>,
    api_key: Option<ApiKey>,
    wire: Wire,
}

/// What travels over the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wire {
    /// OpenAI chat / legacy completions.
    OpenAi,
    /// A JSON service (a numeric reward model): the prompt text is a JSON object POSTed to the
    /// base URL itself, and the reply body is the completion's text.
    JsonPost,
}

impl OpenAiClient {
    /// A client sharing limits with every other client of the same base URL in this process.
    pub fn new(cfg: EndpointConfig) -> Result<Self, ConfigError> {
        let endpoint = Endpoint::shared(&cfg);
        Self::with_endpoint(cfg, endpoint)
    }

    /// A client over given endpoint state (tests use a private one).
    pub fn with_endpoint(
        cfg: EndpointConfig,
        endpoint: Arc<Endpoint>,
    ) -> Result<Self, ConfigError> {
        cfg.validate("endpoint")?;
        let api_key = cfg.api_key()?;
        let http = endpoint.http.clone();
        Ok(Self {
            cfg: Arc::new(cfg),
            http,
            endpoint,
            api_key,
            wire: Wire::OpenAi,
        })
    }

    /// A client for a JSON service at the base URL (a reward endpoint: POST `{…}` → `{…}`)
    /// with the same limits, retries, breaker and accounting as a model server. Requests carry
    /// the JSON body as their text prompt.
    pub fn json_post(cfg: EndpointConfig) -> Result<Self, ConfigError> {
        let mut c = Self::new(cfg)?;
        c.wire = Wire::JsonPost;
        Ok(c)
    }

    pub fn config(&self) -> &EndpointConfig {
        &self.cfg
    }

    pub fn endpoint(&self) -> &Arc<Endpoint> {
        &self.endpoint
    }

    /// One request with retries, backoff, limits and the breaker. Not counted as a logical
    /// request: `generate` does that.
    async fn call_with_retry(&self, req: &LlmRequest) -> Result<Completion, LlmError> {
        let ep = &self.endpoint;
        let est = req.estimated_tokens();
        if self.wire == Wire::OpenAi {
            ep.learn_slots(&self.cfg).await;
            // `n` choices each take a slot of their own: one sequence must fit one slot.
            ep.check_context(req.estimated_tokens_per_sequence());
        }
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            // Held for the attempt (see `Breaker::check`).
            let _probe = match ep.breaker.check() {
                Ok(p) => p,
                Err(open) => return Err(give_up(attempt - 1, open)),
            };
            // `n` choices decode as `n` sequences, in as many of the server's slots.
            let permit = ep.limiter.acquire(est, req.params.n.max(1)).await;
            ep.stats.attempt(attempt > 1);
            // The attempt's time counts from here: a wait for the permit is not the server's.
            let sent = std::time::Instant::now();
            let result = self.send_once(req).await;
            permit.done(load_signal(&result, sent.elapsed()));
            match result {
                Ok(mut c) => {
                    ep.breaker.record_success();
                    self.count_every_choice(&mut c, req).await;
                    ep.limiter.settle_tokens(est, c.usage.total());
                    c.meta.attempts = attempt;
                    return Ok(c);
                }
                Err(e) => {
                    ep.stats.attempt_failed(&e);
                    if !e.is_retryable() {
                        return Err(give_up(attempt - 1, e));
                    }
                    ep.breaker.record_failure(&e);
                    if attempt >= self.cfg.retry.max_attempts {
                        return Err(give_up(attempt, e));
                    }
                    let wait = retry::delay_after(&self.cfg.retry, attempt, &e);
                    tracing::debug!(endpoint = %ep.name, attempt, error = %e, wait_ms = wait.as_millis() as u64, "retrying");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// llama.cpp answers `n` > 1 with the usage of its first choice alone (its `timings` say
    /// the same count), so the others are counted here: a choice cut at the limit generated
    /// `max_tokens`; one that stopped, its text's tokens on the server plus the end token.
    async fn count_every_choice(&self, c: &mut Completion, req: &LlmRequest) {
        let first_only = c.choices.len() > 1 && c.meta.server_tokens == Some(c.usage.completion_tokens);
        if !first_only {
            return;
        }
        let counts = c.choices[1..].iter().map(|ch| async move {
            match (ch.finish_reason, req.params.max_tokens) {
                (FinishReason::Length, Some(max)) => u64::from(max),
                _ => {
                    // A tool call was generated as text too: its name and arguments.
                    let text = ch.tool_calls.iter().fold(ch.text.clone(), |t, call| t + &call.name + &call.arguments);
                    match self.endpoint.count_tokens(&self.cfg, &text).await {
                        Some(n) => n + 1,
                        // A server without `/tokenize`: about four characters a token.
                        None => text.len() as u64 / 4 + 1,
                    }
                }
            }
        });
        c.usage.completion_tokens += futures::future::join_all(counts).await.iter().sum::<u64>();
    }

    async fn send_once(&self, req: &LlmRequest) -> Result<Completion, LlmError> {
        let ep = &self.endpoint.name;
        let (url, body) = match self.wire {
            Wire::OpenAi => {
                let (path, body) = request_body(req);
                (self.cfg.url_for(path), body)
            }
            Wire::JsonPost => (
                self.cfg.base_url.clone(),
                json_post_body(req).map_err(LlmError::Invalid)?,
            ),
        };
        let mut rb = self
            .http
            .post(url)
            .timeout(self.cfg.timeout())
            .json(&body);
        if let Some(key) = &self.api_key {
            rb = rb.bearer_auth(key.expose());
        }
        let transport = |e: reqwest::Error| {
            if e.is_timeout() {
                LlmError::Timeout {
                    endpoint: ep.clone(),
                    after: self.cfg.timeout(),
                }
            } else {
                LlmError::Connect {
                    endpoint: ep.clone(),
                    detail: error_chain(&e),
                }
            }
        };
        let resp = rb.send().await.map_err(transport)?;
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(retry::parse_retry_after);
        let bytes = resp.bytes().await.map_err(transport)?;
        let redact = |text: String| match &self.api_key {
            Some(k) => k.redact(&text),
            None => text,
        };
        if !status.is_success() {
            // Redacted before it is cut, so a key across the cut cannot leave half of itself.
            let body = redact(String::from_utf8_lossy(&bytes).into_owned());
            let body = body.chars().take(400).collect();
            return Err(LlmError::Http {
                endpoint: ep.clone(),
                status: status.as_u16(),
                body,
                retry_after,
            });
        }
        let parsed = match self.wire {
            Wire::OpenAi => parse_response(&bytes, req),
            Wire::JsonPost => json_post_completion(&bytes),
        };
        parsed.map_err(|detail| LlmError::BadResponse {
            endpoint: ep.clone(),
            detail: redact(detail),
        })
    }

    /// Sends `n` as `count` single-choice requests with distinct seeds, indices from `first`.
    async fn fan_out(
        &self,
        req: &LlmRequest,
        count: u32,
        first: u32,
    ) -> Result<Completion, LlmError> {
        let base = req.params.seed.unwrap_or_else(rand::random);
        let calls = (0..count).map(|i| {
            let mut one = req.clone();
            one.params.n = 1;
            one.params.seed = Some(base.wrapping_add(u64::from(first + i)));
            async move { self.call_with_retry(&one).await }
        });
        let mut out = Completion {
            model: req.model.clone(),
            choices: Vec::new(),
            usage: Usage::default(),
            meta: CallMeta { attempts: 1, ..CallMeta::default() },
        };
        for (i, r) in futures::future::join_all(calls)
            .await
            .into_iter()
            .enumerate()
        {
            let c = r?;
            out.model = c.model;
            out.usage += c.usage;
            // Counted as one request's attempts: one, plus every retry of any choice.
            out.meta.attempts += c.meta.attempts.saturating_sub(1);
            if let Some(mut ch) = c.choices.into_iter().next() {
                ch.index = first + i as u32;
                out.choices.push(ch);
            }
        }
        out.meta.n_fallback = true;
        Ok(out)
    }

    async fn generate_inner(&self, req: &LlmRequest) -> Result<Completion, LlmError> {
        let n = req.params.n.max(1);
        if n > 1 && self.wire == Wire::OpenAi {
            self.endpoint.learn_slots(&self.cfg).await;
        }
        // A server that reports its slots (llama.cpp) decodes each of `n` choices in a slot of
        // its own and answers when the last one ends: the permits of the choices that ended
        // first would sit idle until then. Sent as single-choice requests, each permit returns
        // when its own choice ends (docs/benchmarks.md, issue 17: slots busy 6.3 → 7.5 of 8).
        let per_slot = match self.cfg.n_choices {
            NChoices::Auto => self.endpoint.server_slots().is_some(),
            NChoices::Native => false,
            NChoices::Parallel => true,
        };
        if n > 1 && (per_slot || self.endpoint.ignores_n()) {
            if !per_slot {
                self.endpoint.stats.n_fallback();
            }
            return self.fan_out(req, n, 0).await;
        }
        let mut c = self.call_with_retry(req).await?;
        let got = c.choices.len() as u32;
        if got < n {
            // The server ignored `n` (llama.cpp builds without it, some proxies): fill up with
            // single-choice requests and remember, so later requests fan out directly.
            if got == 1 {
                self.endpoint
                    .ignores_n
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                tracing::info!(endpoint = %self.endpoint.name, "server ignores n > 1; using parallel requests");
            }
            self.endpoint.stats.n_fallback();
            let rest = self.fan_out(req, n - got, got).await?;
            c.choices.extend(rest.choices);
            c.usage += rest.usage;
            c.meta.attempts += rest.meta.attempts.saturating_sub(1);
            c.meta.n_fallback = true;
        }
        Ok(c)
    }
}

#[async_trait]
impl LanguageModel for OpenAiClient {
    async fn generate(&self, req: &LlmRequest) -> Result<Completion, LlmError> {
        let stats = &self.endpoint.stats;
        stats.request();
        let r = self.generate_inner(req).await;
        match &r {
            Ok(c) => stats.finished(true, c.usage),
            Err(_) => stats.finished(false, Usage::default()),
        }
        r
    }

    fn describe(&self) -> String {
        format!("{} ({})", self.endpoint.name, self.cfg.model)
    }

    fn stats(&self) -> Option<StatsSnapshot> {
        Some(self.endpoint.snapshot())
    }
}

/// What an attempt says about the server's load (see `concurrency`).
fn load_signal(result: &Result<Completion, LlmError>, latency: std::time::Duration) -> Outcome {
    match result {
        Ok(c) => Outcome::Answered {
            latency,
            server: c.meta.server_us.map(std::time::Duration::from_micros),
            tokens: c.usage.completion_tokens,
        },
        Err(LlmError::Timeout { .. } | LlmError::Connect { .. }) => Outcome::Overloaded,
        Err(LlmError::Http { status, .. }) if matches!(status, 429 | 503) => Outcome::Overloaded,
        Err(_) => Outcome::Neutral,
    }
}

fn give_up(attempts: u32, last: LlmError) -> LlmError {
    if attempts <= 1 || matches!(last, LlmError::Exhausted { .. }) {
        last
    } else {
        LlmError::Exhausted {
            attempts,
            last: Box::new(last),
        }
    }
}

/// reqwest's top-level message is terse ("error sending request"); the cause says why.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(cause) = src {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        src = cause.source();
    }
    s
}

