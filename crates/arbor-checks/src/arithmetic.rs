//! Every worked equation in a text ("9 * 2 = $18", "16 - 3 - 4 = 9"), recomputed exactly.
//!
//! A judge model that reads solutions misses slips a calculator does not: a small judge scored
//! a GSM8K solution whose last product was off as often as the correct one. This finds the
//! `expression = number` steps of a worked answer and says which do not hold, so the judge's
//! verdict can rest on them (`arbor-synth`'s judge checks).
use std::sync::LazyLock;

use num_traits::Signed;
use regex::Regex;
use serde::Serialize;

use crate::calculator::{evaluate, render};
use crate::number::Rational;

/// One `expression = number` step and whether it holds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Equation {
    /// The expression as evaluated (currency signs and thousands separators dropped).
    pub expression: String,
    /// The number written after `=`.
    pub stated: String,
    /// The expression's exact value.
    pub value: String,
    /// The stated number is within one unit of its last written digit of the value (so
    /// rounding, flooring and ceiling all hold: "10 / 3 = 3.33", "7 / 2 = 3").
    pub holds: bool,
}

// `x` between operands is a times sign ("3 x 4", "32 x (30/60)"); `×` and `÷` are the written ones.
static TIMES_X: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"([\d)])\s*[xX]\s*([\d(.$])").expect("static regex"));
static GROUPED: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(\d),(\d{3})").expect("static regex"));
// "$350 000": a space as the thousands separator.
static SPACED: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\b(\d{1,3}) (\d{3})\b").expect("static regex"));
// A unit word after an operand ("12 slices - 4 slices = 8", "2 hours * 3 = 6"), which a reader
// skips: dropped when an operator or `=` follows it.
static UNIT: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(\d%?)\s+[A-Za-z][A-Za-z']*\s*([-+*/=]|x\s)").expect("static regex"));
static STATED: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^\s*\$?\s*(-?\d[\d,]*(?:\.\d+)?|-?\.\d+)(\s*%)?").expect("static regex"));
// The right side goes on computing ("= 14 / 2 = 7"): a chain, checked at its last `=`.
static CHAINED: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^\s*(?:[-+*/^(]|\*\*)\s*[\d($.]").expect("static regex"));
// An operator between two operands: what makes a run of symbols a computation.
static COMPUTES: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"[\d)%]\s*(?:[-+*/^]|\*\*)\s*[\d(.]").expect("static regex"));
// `%` followed by an operand reads as "of" in worked answers ("30/100%1000"), not as remainder.
static PERCENT_OF: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"%\s*[\d(]").expect("static regex"));

fn in_expression(c: char) -> bool {
    c.is_ascii_digit() || " .,+-*/^()%$".contains(c)
}

/// The checkable equations of `text`, in order. Steps whose left side is not a computation
/// (`x = 5`, `Total = 18`) or does not parse are not equations here: only what can be
/// recomputed is reported.
pub fn equations(text: &str) -> Vec<Equation> {
    // Twice each: "1,234,567" has overlapping groups, "3 apples + 4 apples - 2" overlapping units.
    let twice = |re: &Regex, t: String, with: &str| re.replace_all(&re.replace_all(&t, with), with).into_owned();
    let text = text.replace('×', "*").replace('÷', "/").replace(['–', '−'], "-");
    let text = twice(&SPACED, twice(&GROUPED, text, "$1$2"), "$1$2");
    let text = twice(&UNIT, text, "$1 $2");
    let text = TIMES_X.replace_all(&text, "$1 * $2").into_owned();
    let mut found = Vec::new();
    for (at, _) in text.match_indices('=') {
        let before = &text[..at];
        let after = &text[at + 1..];
        // Comparisons and chained signs are not steps.
        if before.ends_with(['=', '<', '>', '!']) || after.starts_with('=') {
            continue;
        }
        let Some(stated) = STATED.captures(after) else { continue };
        if CHAINED.is_match(&after[stated.get(0).map_or(0, |m| m.end())..]) {
            continue;
        }
        let start = before.char_indices().rev().take_while(|&(_, c)| in_expression(c)).last().map_or(at, |(i, _)| i);
        if let Some(eq) = check(&before[start..], &stated[1], stated.get(2).is_some()) {
            found.push(eq);
        }
    }
    found
}

/// `run` against the stated number: the step holds when some tail of it (dropping whole
/// leading tokens: "is 3, 4 + 5", a bullet's "- 3 + 4") computes the number, and is reported by
/// its longest computing tail when none does.
fn check(run: &str, stated: &str, percent: bool) -> Option<Equation> {
    let want = evaluate(&stated.replace(',', "")).ok()?;
    let wants = if percent { vec![&want / Rational::from_integer(100.into()), want] } else { vec![want] };
    let decimals = stated.split_once('.').map_or(0, |(_, f)| f.len()) + if percent { 2 } else { 0 };
    let unit = Rational::new(1.into(), num_traits::pow(num_bigint::BigInt::from(10), decimals));
    let stated = format!("{stated}{}", if percent { "%" } else { "" });
    let run = run.trim();
    // A run that starts at an operator lost its first operand to a word ("X*4 + 240 = 1920",
    // "50 students - 10 - 5 = 35"): it may hold, but cannot be said not to; nor can one whose
    // whole does not parse ("3 1/2 - 2", "(1/2) 278 + 11"), where only a tail computes.
    let whole = !run.starts_with(['*', '/', '+', '-', '^', '%', '=']);
    let tails = std::iter::once(0).chain(run.char_indices().filter(|&(_, c)| c == ' ').map(|(i, _)| i + 1));
    let mut longest = None;
    for (k, s) in tails.enumerate() {
        let expr = run[s..].replace('$', "");
        let expr = expr.trim_start_matches([',', ' ']).trim();
        let expr = if expr.starts_with('.') && !expr[1..].starts_with(|c: char| c.is_ascii_digit()) { expr[1..].trim() } else { expr };
        if !COMPUTES.is_match(expr) || PERCENT_OF.is_match(expr) {
            continue;
        }
        let Ok(value) = evaluate(expr) else { continue };
        // "18 / 450 * 100 = 4%": a percent sign on the result may only label it.
        let holds = wants.iter().any(|w| (&value - w).abs() < unit);
        let eq = Equation { expression: expr.to_string(), stated: stated.clone(), value: render(&value), holds };
        if holds {
            return Some(eq);
        }
        if k == 0 && whole {
            longest = Some(eq);
        }
    }
    longest
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wrong(text: &str) -> Vec<String> {
        equations(text).into_iter().filter(|e| !e.holds).map(|e| e.expression).collect()
    }

    #[test]
    fn worked_steps_are_recomputed() {
        let t = "Janet sells 16 - 3 - 4 = 9 duck eggs a day.\nShe makes 9 * 2 = $21 every day.";
        let eqs = equations(t);
        assert_eq!(eqs.len(), 2, "{eqs:?}");
        assert!(eqs[0].holds && !eqs[1].holds);
        assert_eq!(eqs[1].expression, "9 * 2");
        assert_eq!(eqs[1].value, "18");
        // Written signs, currency, separators, percentages, parentheses.
        assert!(wrong("3 x 4 = 12, 12 × 2 = 24 and 48 ÷ 2 = 24; $1,200 + $300 = $1,500; 15% * 80 = 12; (2 + 3) * 4 = 20").is_empty());
        assert_eq!(wrong("(2 + 3) * 4 = 24"), vec!["(2 + 3) * 4"]);
        // Rounding in either direction holds; a slip of one unit does not.
        assert!(wrong("10 / 3 = 3.33 and 7 / 2 = 3 and 7 / 2 = 4 and 1/8 = 12.5%").is_empty());
        assert_eq!(wrong("7 / 2 = 5"), vec!["7 / 2"]);
        assert_eq!(wrong("The total is 4 + 5 = 10."), vec!["4 + 5"]);
        // Units between operands (this step is wrong as written).
        assert_eq!(wrong("300 students * 4/5 = 250"), vec!["300 * 4/5"]);
        assert_eq!(wrong("60 questions x 40/100 = 25"), vec!["60 * 40/100"]);
        // Units between operands, leading decimal points, chains, spaced thousands, `x (`.
        assert!(wrong("12 slices - 4 slices - 3 slices = 5 slices; .20*10 = $2.00; 14 * 1/2 = 14 / 2 = 7; $350 000 x 5/100 = $17500; 32 x (30/60) = 16").is_empty());
        assert_eq!(wrong("12 slices - 4 slices - 3 slices = 6 slices"), vec!["12 - 4 - 3"]);
        assert_eq!(wrong("4 * 60 / 5 = 4 * 12 = 46"), vec!["4 * 12"]);
    }

    #[test]
    fn what_is_not_a_computation_is_left_alone() {
        for t in ["x = 5", "Total = 18", "a == b", "3 <= 4", "2 + 2 == 4", "He has 3 = 4 apples? no", "f(2) = 4", "= 7", "2 + 2 = four", "- 3 + 4 = 8", "5, 4 + 5 = 10", "students * 4/5 = 250", "3x +4 - 4 = 28", "3 1/2 - 2 = 1 1/2", "(1/2) 278 + 11 = 150", "30/100%1000 = 300"] {
            assert!(equations(t).is_empty(), "{t}: {:?}", equations(t));
        }
    }
}
