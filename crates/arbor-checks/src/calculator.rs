//! Exact arithmetic on big rationals: + − × ÷ ^ %, parentheses, decimals, percentages.
//!
//! `%` after a number is a percentage ("15% * 80" = 12) unless an operand follows it, in which
//! case it is the remainder ("7 % 3" = 1). `^` and `**` are powers with integer exponents.
use num_bigint::BigInt;
use num_traits::{Signed, ToPrimitive, Zero};

use crate::number::{format_exact, parse_decimal_prefix, Rational};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CalcError {
    #[error("division by zero at position {0}")]
    DivisionByZero(usize),
    #[error("malformed expression at position {pos}: {msg}")]
    Syntax { pos: usize, msg: String },
    #[error("exponent must be an integer of at most 4096 in magnitude (position {0})")]
    BadExponent(usize),
    #[error("result too large")]
    TooLarge,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Num(Rational),
    Plus,
    Minus,
    Times,
    Divide,
    Percent,
    Power,
    Open,
    Close,
}

fn lex(src: &str) -> Result<Vec<(Tok, usize)>, CalcError> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < src.len() {
        let rest = &src[i..];
        let c = rest.chars().next().expect("i < len");
        let tok = match c {
            ' ' | '\t' | '\n' | '$' | '€' | '£' => None,
            '+' => Some(Tok::Plus),
            '-' | '−' | '–' => Some(Tok::Minus),
            '*' if rest.starts_with("**") => {
                out.push((Tok::Power, i));
                i += 2;
                continue;
            }
            '*' | '×' | '·' | 'x' | 'X' => Some(Tok::Times),
            '/' | '÷' => Some(Tok::Divide),
            '%' => Some(Tok::Percent),
            '^' => Some(Tok::Power),
            '(' | '[' => Some(Tok::Open),
            ')' | ']' => Some(Tok::Close),
            '0'..='9' | '.' => {
                let (v, used) = parse_decimal_prefix(rest).ok_or_else(|| CalcError::Syntax {
                    pos: i,
                    msg: "bad number".into(),
                })?;
                out.push((Tok::Num(v), i));
                i += used;
                continue;
            }
            other => {
                return Err(CalcError::Syntax {
                    pos: i,
                    msg: format!("unexpected character `{other}`"),
                })
            }
        };
        if let Some(t) = tok {
            out.push((t, i));
        }
        i += c.len_utf8();
    }
    Ok(out)
}

struct Parser {
    toks: Vec<(Tok, usize)>,
    at: usize,
    end: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.at).map(|t| &t.0)
    }
    fn pos(&self) -> usize {
        self.toks.get(self.at).map(|t| t.1).unwrap_or(self.end)
    }
    fn starts_operand(&self, k: usize) -> bool {
        matches!(
            self.toks.get(k).map(|t| &t.0),
            Some(Tok::Num(_)) | Some(Tok::Open)
        )
    }

    fn expr(&mut self) -> Result<Rational, CalcError> {
        let mut v = self.term()?;
        loop {
            match self.peek() {
                Some(Tok::Plus) => {
                    self.at += 1;
                    v += self.term()?;
                }
                Some(Tok::Minus) => {
                    self.at += 1;
                    v -= self.term()?;
                }
                _ => return Ok(v),
            }
        }
    }

    fn term(&mut self) -> Result<Rational, CalcError> {
        let mut v = self.unary()?;
        loop {
            let pos = self.pos();
            match self.peek() {
                Some(Tok::Times) => {
                    self.at += 1;
                    v *= self.unary()?;
                }
                Some(Tok::Divide) => {
                    self.at += 1;
                    let d = self.unary()?;
                    if d.is_zero() {
                        return Err(CalcError::DivisionByZero(pos));
                    }
                    v /= d;
                }
                Some(Tok::Percent) => {
                    self.at += 1;
                    let d = self.unary()?;
                    if d.is_zero() {
                        return Err(CalcError::DivisionByZero(pos));
                    }
                    // Remainder with the sign of the divisor: a − d·⌊a/d⌋.
                    v = &v - &d * (&v / &d).floor();
                }
                // Juxtaposition: "2(3+4)" and "(1+2)(3)".
                Some(Tok::Open) => v *= self.unary()?,
                _ => return Ok(v),
            }
        }
    }

    fn unary(&mut self) -> Result<Rational, CalcError> {
        match self.peek() {
            Some(Tok::Minus) => {
                self.at += 1;
                Ok(-self.unary()?)
            }
            Some(Tok::Plus) => {
                self.at += 1;
                self.unary()
            }
            _ => self.power(),
        }
    }

    fn power(&mut self) -> Result<Rational, CalcError> {
        let base = self.postfix()?;
        if self.peek() != Some(&Tok::Power) {
            return Ok(base);
        }
        let pos = self.pos();
        self.at += 1;
        let exp = self.unary()?;
        if !exp.is_integer() {
            return Err(CalcError::BadExponent(pos));
        }
        let e = exp
            .to_integer()
            .to_i64()
            .filter(|e| e.abs() <= 4096)
            .ok_or(CalcError::BadExponent(pos))?;
        let bits = base.numer().bits().max(base.denom().bits());
        if bits.saturating_mul(e.unsigned_abs()) > 1_000_000 {
            return Err(CalcError::TooLarge);
        }
        if e < 0 && base.is_zero() {
            return Err(CalcError::DivisionByZero(pos));
        }
        let p = num_traits::pow(base, e.unsigned_abs() as usize);
        Ok(if e < 0 { p.recip() } else { p })
    }

    fn postfix(&mut self) -> Result<Rational, CalcError> {
        let mut v = self.primary()?;
        // A '%' not followed by an operand is a percentage.
        while self.peek() == Some(&Tok::Percent) && !self.starts_operand(self.at + 1) {
            self.at += 1;
            v /= Rational::from_integer(BigInt::from(100));
        }
        Ok(v)
    }

    fn primary(&mut self) -> Result<Rational, CalcError> {
        let pos = self.pos();
        match self.toks.get(self.at).map(|t| t.0.clone()) {
            Some(Tok::Num(v)) => {
                self.at += 1;
                Ok(v)
            }
            Some(Tok::Open) => {
                self.at += 1;
                let v = self.expr()?;
                if self.peek() != Some(&Tok::Close) {
                    return Err(CalcError::Syntax {
                        pos: self.pos(),
                        msg: "expected `)`".into(),
                    });
                }
                self.at += 1;
                Ok(v)
            }
            Some(t) => Err(CalcError::Syntax {
                pos,
                msg: format!("expected a number, found {t:?}"),
            }),
            None => Err(CalcError::Syntax {
                pos,
                msg: "expression ends too early".into(),
            }),
        }
    }
}

/// Evaluates `src` exactly.
pub fn evaluate(src: &str) -> Result<Rational, CalcError> {
    let toks = lex(src)?;
    let mut p = Parser {
        toks,
        at: 0,
        end: src.len(),
    };
    let v = p.expr()?;
    if p.at != p.toks.len() {
        return Err(CalcError::Syntax {
            pos: p.pos(),
            msg: "unexpected trailing input".into(),
        });
    }
    Ok(v)
}

/// The result as text: exact ("2.5", "10/3"), with a decimal approximation for non-terminating
/// fractions ("10/3 ≈ 3.333333333333").
pub fn render(v: &Rational) -> String {
    let exact = format_exact(v);
    if exact.contains('/') {
        format!("{exact} ≈ {:.12}", crate::number::approx(v))
    } else {
        exact
    }
}

/// Rounds to `places` decimals, half away from zero (how people round in worked solutions).
pub fn round_to(v: &Rational, places: usize) -> Rational {
    let scale = Rational::from_integer(num_traits::pow(BigInt::from(10), places));
    let scaled = v * &scale;
    let half = Rational::new(BigInt::from(1), BigInt::from(2));
    let r = if scaled.is_negative() {
        -((-scaled) + half).floor()
    } else {
        (scaled + half).floor()
    };
    r / scale
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ev(s: &str) -> String {
        format_exact(&evaluate(s).unwrap())
    }

    #[test]
    fn arithmetic() {
        assert_eq!(ev("1 + 2 * 3"), "7");
        assert_eq!(ev("(1 + 2) * 3"), "9");
        assert_eq!(ev("2 ^ 3 ^ 2"), "512");
        assert_eq!(ev("-2 ^ 2"), "-4");
        assert_eq!(ev("2 ** -2"), "0.25");
        assert_eq!(ev("10 / 4"), "2.5");
        assert_eq!(ev("1/3 + 1/6"), "0.5");
        assert_eq!(ev("0.1 + 0.2"), "0.3");
        assert_eq!(ev("7 % 3"), "1");
        assert_eq!(ev("-7 % 3"), "2");
        assert_eq!(ev("15% * 80"), "12");
        assert_eq!(ev("80 * 15%"), "12");
        assert_eq!(ev("200 - 10%"), "199.9");
        assert_eq!(ev("1,000 * 3"), "3000");
        assert_eq!(ev("$5 × 4 ÷ 2"), "10");
        assert_eq!(ev("2(3+4)"), "14");
        assert_eq!(render(&evaluate("10/3").unwrap()), "10/3 ≈ 3.333333333333");
    }

    #[test]
    fn errors_are_clear() {
        assert_eq!(evaluate("1 / (2 - 2)"), Err(CalcError::DivisionByZero(2)));
        assert!(matches!(
            evaluate("5 % 0"),
            Err(CalcError::DivisionByZero(_))
        ));
        assert!(matches!(evaluate("1 +"), Err(CalcError::Syntax { .. })));
        assert!(matches!(evaluate("(1 + 2"), Err(CalcError::Syntax { .. })));
        assert!(matches!(
            evaluate("2 ^ 0.5"),
            Err(CalcError::BadExponent(_))
        ));
        assert!(matches!(
            evaluate("9 ^ 9 ^ 9"),
            Err(CalcError::BadExponent(_))
        ));
        assert!(matches!(
            evaluate("1 + a"),
            Err(CalcError::Syntax { pos: 4, .. })
        ));
        assert!(matches!(evaluate(""), Err(CalcError::Syntax { .. })));
    }

    #[test]
    fn rounding() {
        assert_eq!(
            format_exact(&round_to(&evaluate("10/3").unwrap(), 2)),
            "3.33"
        );
        assert_eq!(format_exact(&round_to(&evaluate("-2.5").unwrap(), 0)), "-3");
    }

    proptest! {
        #[test]
        fn never_panics(s in "[0-9+*/%^().x -]{0,40}") {
            let _ = evaluate(&s);
        }

        #[test]
        fn matches_integer_arithmetic(a in -1000i64..1000, b in -1000i64..1000, c in 1i64..100) {
            let got = evaluate(&format!("({a}) + ({b}) * ({c}) - ({a}) / ({c})")).unwrap();
            let want = Rational::from_integer((a + b * c).into()) - Rational::new(a.into(), c.into());
            prop_assert_eq!(got, want);
        }
    }
}
