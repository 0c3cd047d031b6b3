//! Exact numbers from text: "1,234.5", "3/4", "-2", "1e3", "12.5%" → big rationals.
use num_bigint::BigInt;
use num_rational::BigRational;
use num_traits::{One, Signed, ToPrimitive, Zero};

pub type Rational = BigRational;

/// Parses an unsigned decimal literal: digits with optional thousands separators ("1,234"),
/// a fraction part, an exponent. Returns the value and the bytes consumed.
pub fn parse_decimal_prefix(s: &str) -> Option<(Rational, usize)> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut digits = String::new();
    let mut group = 0;
    while i < b.len() && b[i].is_ascii_digit() {
        digits.push(b[i] as char);
        group += 1;
        i += 1;
        // "1,234": after a group of at most three digits, a comma followed by exactly three
        // digits (and no fourth) is a thousands separator.
        if i < b.len() && b[i] == b',' && group <= 3 {
            let rest = &b[i + 1..];
            let three = rest.len() >= 3 && rest[..3].iter().all(u8::is_ascii_digit);
            let fourth = rest.len() > 3 && rest[3].is_ascii_digit();
            if three && !fourth {
                i += 1;
                group = 0;
            }
        }
    }
    let mut frac = String::new();
    if i < b.len() && b[i] == b'.' && i + 1 < b.len() && b[i + 1].is_ascii_digit() {
        i += 1;
        while i < b.len() && b[i].is_ascii_digit() {
            frac.push(b[i] as char);
            i += 1;
        }
    }
    if digits.is_empty() && frac.is_empty() {
        return None;
    }
    let mut exp: i64 = 0;
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        let mut j = i + 1;
        let neg = j < b.len() && b[j] == b'-';
        if j < b.len() && (b[j] == b'-' || b[j] == b'+') {
            j += 1;
        }
        let start = j;
        while j < b.len() && b[j].is_ascii_digit() && j - start < 4 {
            j += 1;
        }
        if j > start && !(j < b.len() && b[j].is_ascii_alphanumeric()) {
            let e: i64 = s[start..j].parse().ok()?;
            exp = if neg { -e } else { e };
            i = j;
        }
    }
    let mantissa: BigInt = format!("{}{}", if digits.is_empty() { "0" } else { &digits }, frac)
        .parse()
        .ok()?;
    let scale = exp - frac.len() as i64;
    let ten = BigInt::from(10);
    let value = if scale >= 0 {
        Rational::from_integer(mantissa * num_traits::pow(ten, scale as usize))
    } else {
        Rational::new(mantissa, num_traits::pow(ten, (-scale) as usize))
    };
    Some((value, i))
}

/// Parses a whole string as a number: optional sign, decimal, optional "/denominator",
/// optional trailing '%' (kept as the number: "50%" is 50, as answers state percentages).
pub fn parse_number(s: &str) -> Option<Rational> {
    let s = s.trim();
    let (neg, body) = match s.strip_prefix('-').or_else(|| s.strip_prefix('−')) {
        Some(rest) => (true, rest.trim_start()),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let (mut v, used) = parse_decimal_prefix(body)?;
    let mut rest = body[used..].trim_start();
    if let Some(den) = rest.strip_prefix('/') {
        let (d, used) = parse_decimal_prefix(den.trim_start())?;
        if d.is_zero() {
            return None;
        }
        v /= d;
        rest = den.trim_start()[used..].trim_start();
    }
    let rest = rest.strip_prefix('%').unwrap_or(rest).trim();
    if !rest.is_empty() {
        return None;
    }
    Some(if neg { -v } else { v })
}

/// Renders exactly when possible: "42", "-0.125"; otherwise "10/3".
pub fn format_exact(v: &Rational) -> String {
    if v.is_integer() {
        return v.numer().to_string();
    }
    // A terminating decimal iff the reduced denominator has no prime factors but 2 and 5.
    let mut d = v.denom().clone();
    let (two, five) = (BigInt::from(2), BigInt::from(5));
    let (mut twos, mut fives) = (0usize, 0usize);
    while (&d % &two).is_zero() {
        d /= &two;
        twos += 1;
    }
    while (&d % &five).is_zero() {
        d /= &five;
        fives += 1;
    }
    if d.is_one() {
        let places = twos.max(fives);
        let scaled =
            (v * Rational::from_integer(num_traits::pow(BigInt::from(10), places))).to_integer();
        let neg = scaled.is_negative();
        let digits = scaled.abs().to_string();
        let padded = format!("{:0>width$}", digits, width = places + 1);
        let (int, frac) = padded.split_at(padded.len() - places);
        return format!("{}{}.{}", if neg { "-" } else { "" }, int, frac);
    }
    format!("{}/{}", v.numer(), v.denom())
}

/// A float approximation for display.
pub fn approx(v: &Rational) -> f64 {
    v.to_f64().unwrap_or(f64::NAN)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(n: i64, d: i64) -> Rational {
        Rational::new(n.into(), d.into())
    }

    #[test]
    fn parses_the_usual_shapes() {
        assert_eq!(parse_number("1,234"), Some(r(1234, 1)));
        assert_eq!(parse_number("1,234,567.5"), Some(r(2469135, 2)));
        assert_eq!(parse_number("-3/4"), Some(r(-3, 4)));
        assert_eq!(parse_number(".5"), Some(r(1, 2)));
        assert_eq!(parse_number("1e3"), Some(r(1000, 1)));
        assert_eq!(parse_number("2.5e-1"), Some(r(1, 4)));
        assert_eq!(parse_number("50%"), Some(r(50, 1)));
        assert_eq!(parse_number("1/0"), None);
        assert_eq!(parse_number("12abc"), None);
        assert_eq!(parse_number(""), None);
        // "1,23" is not a thousands separator.
        assert_eq!(parse_decimal_prefix("1,23").map(|x| x.1), Some(1));
    }

    #[test]
    fn formats_exactly() {
        assert_eq!(format_exact(&r(42, 1)), "42");
        assert_eq!(format_exact(&r(-1, 8)), "-0.125");
        assert_eq!(format_exact(&r(5, 2)), "2.5");
        assert_eq!(format_exact(&r(10, 3)), "10/3");
        assert_eq!(format_exact(&r(1, 100)), "0.01");
    }
}
