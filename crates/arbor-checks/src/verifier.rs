//! Final-answer extraction, normalization and comparison with a reference.
use std::sync::LazyLock;

use regex::Regex;
use serde::Serialize;

use crate::number::{format_exact, parse_number, Rational};

/// Where in a response the final answer was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// `#### 42` (GSM8K's convention).
    Hashes,
    /// `\boxed{42}`.
    Boxed,
    /// "The answer is 42" / "Answer: 42".
    AnswerIs,
    /// The last number in the text.
    LastNumber,
}

/// A final answer as written and where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Extracted {
    pub raw: String,
    pub method: Method,
}

/// A normalized answer: a number when one can be read, else lower-cased text.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Number(Rational),
    Text(String),
}

impl std::fmt::Display for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Answer::Number(n) => f.write_str(&format_exact(n)),
            Answer::Text(t) => f.write_str(t),
        }
    }
}

/// The verdict on one response.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    pub correct: bool,
    pub extracted: Option<Extracted>,
    /// The normalized response answer and reference, as compared.
    pub answer: Option<String>,
    pub reference: String,
}

static HASHES: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"####\s*([^\n]+)").expect("static regex"));
static ANSWER_IS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)(?:the\s+(?:final\s+)?answer\s+is|final\s+answer\s*[:=]|answer\s*[:=])\s*:?\s*([^\n]+)").expect("static regex")
});
static NUMBER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"-?\d[\d,]*(?:\.\d+)?(?:/\d+)?|-?\.\d+").expect("static regex"));
static FRAC: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\\[dt]?frac\{([^{}]*)\}\{([^{}]*)\}").expect("static regex"));

/// Finds the final answer: `####`, then `\boxed{}`, then "the answer is", then the last number.
/// The last occurrence of each marker wins (models restate and correct themselves).
pub fn extract(text: &str) -> Option<Extracted> {
    let found = |raw: &str, method| {
        let raw = raw.trim();
        (!raw.is_empty()).then(|| Extracted {
            raw: raw.to_string(),
            method,
        })
    };
    if let Some(c) = HASHES.captures_iter(text).last() {
        if let Some(e) = found(&c[1], Method::Hashes) {
            return Some(e);
        }
    }
    if let Some(b) = last_boxed(text) {
        if let Some(e) = found(&b, Method::Boxed) {
            return Some(e);
        }
    }
    if let Some(c) = ANSWER_IS.captures_iter(text).last() {
        // "The answer is 42." — drop a sentence-ending period, keep decimals.
        let raw = c[1]
            .trim()
            .trim_end_matches(|ch: char| ch == '.' || ch == '!')
            .to_string();
        if let Some(e) = found(&raw, Method::AnswerIs) {
            return Some(e);
        }
    }
    NUMBER
        .find_iter(text)
        .last()
        .and_then(|m| found(m.as_str(), Method::LastNumber))
}

/// The content of the last `\boxed{…}`, braces balanced.
fn last_boxed(text: &str) -> Option<String> {
    let start = text.rfind("\\boxed{")? + "\\boxed{".len();
    let mut depth = 1;
    for (i, c) in text[start..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(text[start..start + i].to_string());
                }
            }
            _ => {}
        }
    }
    None
}

/// Normalizes an answer: strips LaTeX wrappers, currency, thousands separators, units and
/// trailing words, and reads fractions, mixed numbers, decimals and percentages exactly.
pub fn normalize(raw: &str) -> Answer {
    let mut s = raw.trim().to_string();
    s = FRAC.replace_all(&s, "($1)/($2)").into_owned();
    for junk in [
        "\\text", "\\mathrm", "\\!", "\\,", "\\$", "\\%", "$", "€", "£", "¥", "{", "}",
    ] {
        s = s.replace(junk, if junk == "\\%" { "%" } else { "" });
    }
    let s = s.trim().trim_end_matches('.').trim();
    if let Some(n) = parse_number(&s.replace(['(', ')'], "")) {
        return Answer::Number(n);
    }
    // Mixed number "1 1/2".
    if let Some((whole, frac)) = s.split_once(' ') {
        if let (Some(w), Some(f)) = (parse_number(whole), parse_number(frac)) {
            if w.is_integer() && frac.contains('/') {
                let sign = if w < Rational::from_integer(0.into()) {
                    -f.clone()
                } else {
                    f
                };
                return Answer::Number(w + sign);
            }
        }
    }
    // A number followed by units or words: "18 dollars", "$1,250.50 per week", "5 km/h".
    if let Some(m) = NUMBER.find(s) {
        if m.start() == 0 || s[..m.start()].trim().is_empty() {
            if let Some(n) = parse_number(m.as_str()) {
                return Answer::Number(n);
            }
        }
    }
    Answer::Text(
        s.to_lowercase()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" "),
    )
}

/// Equal as numbers (exactly, or within 1e-6 relative for answers given in rounded decimals)
/// or as normalized text.
pub fn answers_match(a: &Answer, b: &Answer) -> bool {
    match (a, b) {
        (Answer::Number(x), Answer::Number(y)) => {
            if x == y {
                return true;
            }
            let (fx, fy) = (crate::number::approx(x), crate::number::approx(y));
            (fx - fy).abs() <= 1e-6 * fy.abs().max(1.0)
        }
        (Answer::Text(x), Answer::Text(y)) => x == y,
        _ => false,
    }
}

/// Extracts the final answer from `response` and compares it with `reference`.
pub fn verify(response: &str, reference: &str) -> Verdict {
    let want = normalize(reference);
    let extracted = extract(response);
    let got = extracted.as_ref().map(|e| normalize(&e.raw));
    Verdict {
        correct: got.as_ref().is_some_and(|g| answers_match(g, &want)),
        answer: got.map(|g| g.to_string()),
        extracted,
        reference: want.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn extraction_order() {
        assert_eq!(
            extract("so 3 + 4 = 7\n#### 7").unwrap().method,
            Method::Hashes
        );
        assert_eq!(
            extract("x \\boxed{\\frac{1}{2}} y 9").unwrap().raw,
            "\\frac{1}{2}"
        );
        let e = extract("We get 5 then 6. The answer is 42.").unwrap();
        assert_eq!((e.raw.as_str(), e.method), ("42", Method::AnswerIs));
        assert_eq!(
            extract("first 3, then 1,250.5 apples").unwrap().raw,
            "1,250.5"
        );
        assert!(extract("no numbers here").is_none());
    }

    #[test]
    fn normalization() {
        let n = |s: &str| normalize(s).to_string();
        assert_eq!(n("$1,250.50"), "1250.5");
        assert_eq!(n("18 dollars"), "18");
        assert_eq!(n("\\frac{3}{4}"), "0.75");
        assert_eq!(n("1 1/2"), "1.5");
        assert_eq!(n("-2 1/2"), "-2.5");
        assert_eq!(n("50%"), "50");
        assert_eq!(n("\\$5"), "5");
        assert_eq!(n("10.00"), "10");
        assert_eq!(n("Paris."), "paris");
    }

    #[test]
    fn verdicts() {
        assert!(verify("The total is $1,000.", "1000").correct);
        assert!(verify("... #### 0.5", "1/2").correct);
        assert!(verify("\\boxed{3/4}", "0.75").correct);
        assert!(!verify("The answer is 41.", "42").correct);
        assert!(!verify("nothing", "42").correct);
        assert!(verify("The answer is 0.333333333", "1/3").correct);
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,80}") {
            let _ = verify(&s, &s);
        }

        #[test]
        fn integers_round_trip_through_prose(n in -1_000_000i64..1_000_000) {
            let text = format!("Step one. Step two gives {}. The answer is {}.", n + 1, n);
            prop_assert!(verify(&text, &n.to_string()).correct);
        }
    }
}
