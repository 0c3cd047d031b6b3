//! What arbor checks answers with, as plain functions (no model, no HTTP): [`calculator`],
//! [`arithmetic`] (every worked `expression = number` step recomputed) and
//! [`number`] (exact big-rational arithmetic), [`verifier`] (final-answer extraction and
//! comparison), [`sandbox`] (untrusted Python under bubblewrap) with [`unit_tests`],
//! [`retrieval`] (BM25 over a directory) and [`format`] (regex, JSON Schema). Environments use
//! them to score episodes; `arbor-tools` wraps them as tools a judge can call.

pub mod arithmetic;
pub mod calculator;
pub mod format;
pub mod number;
pub mod retrieval;
pub mod sandbox;
pub mod unit_tests;
pub mod verifier;
