//! `arbor mock-server`: an OpenAI-compatible server on 127.0.0.1 for tests and benchmarks.
//!
//! Replies are a pure function of the request body and the server seed, so a test can compare a
//! faulty run with a clean one. Faults are drawn per request at configured rates: 429 with
//! `Retry-After`, 500, 503, a hang past any sane client timeout, truncated JSON, a body of the
//! wrong schema, and empty `choices`. `GET /stats` reports what was served.
pub mod cli;
mod faults;
mod reply;
mod server;

pub use faults::{Fault, FaultRates};
pub use reply::reply;
pub use server::{fetch_health, fetch_stats, MockConfig, MockServer, MockStats};
