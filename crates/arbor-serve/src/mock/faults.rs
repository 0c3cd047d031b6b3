use rand::{rngs::SmallRng, Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// One kind of injected fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// HTTP 429 with a `Retry-After` header.
    RateLimited,
    /// HTTP 500.
    ServerError,
    /// HTTP 503.
    Unavailable,
    /// No answer until long after the client's timeout.
    Hang,
    /// HTTP 200 with the JSON body cut short.
    Truncated,
    /// HTTP 200 with valid JSON of the wrong shape.
    WrongSchema,
    /// HTTP 200 with `"choices": []`.
    EmptyChoices,
    /// A well-formed reply whose text stops half way, `finish_reason: "length"`: the model's
    /// fault, not the transport's (a JSON answer that never closes).
    CutAnswer,
    /// Every choice of the answer is the first one's text: a model that repeats itself
    /// (temperature 0, a collapsed policy). Also the model's doing.
    SameChoices,
}

impl Fault {
    pub const ALL: [Fault; 9] = [
        Fault::RateLimited,
        Fault::ServerError,
        Fault::Unavailable,
        Fault::Hang,
        Fault::Truncated,
        Fault::WrongSchema,
        Fault::EmptyChoices,
        Fault::CutAnswer,
        Fault::SameChoices,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Fault::RateLimited => "rate_limited",
            Fault::ServerError => "server_error",
            Fault::Unavailable => "unavailable",
            Fault::Hang => "hang",
            Fault::Truncated => "truncated",
            Fault::WrongSchema => "wrong_schema",
            Fault::EmptyChoices => "empty_choices",
            Fault::CutAnswer => "cut_answer",
            Fault::SameChoices => "same_choices",
        }
    }
}

/// The probability of each fault per request; their sum must not exceed 1.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FaultRates {
    pub rate_limited: f64,
    pub server_error: f64,
    pub unavailable: f64,
    pub hang: f64,
    pub truncated: f64,
    pub wrong_schema: f64,
    pub empty_choices: f64,
    pub cut_answer: f64,
    #[serde(default)]
    pub same_choices: f64,
}

impl FaultRates {
    /// The same rate for every transport fault; a cut answer and repeated choices (a model's
    /// doing, which the client cannot retry away) stay off.
    pub fn uniform(rate: f64) -> Self {
        Self {
            rate_limited: rate,
            server_error: rate,
            unavailable: rate,
            hang: rate,
            truncated: rate,
            wrong_schema: rate,
            empty_choices: rate,
            cut_answer: 0.0,
            same_choices: 0.0,
        }
    }

    pub fn rate(&self, f: Fault) -> f64 {
        match f {
            Fault::RateLimited => self.rate_limited,
            Fault::ServerError => self.server_error,
            Fault::Unavailable => self.unavailable,
            Fault::Hang => self.hang,
            Fault::Truncated => self.truncated,
            Fault::WrongSchema => self.wrong_schema,
            Fault::EmptyChoices => self.empty_choices,
            Fault::CutAnswer => self.cut_answer,
            Fault::SameChoices => self.same_choices,
        }
    }

    /// Sets one kind's rate from `KIND=RATE` (the kind as [`Fault::name`] spells it, or the
    /// status code for 429, 500 and 503).
    pub fn set(&mut self, spec: &str) -> Result<(), String> {
        let (kind, rate) = spec
            .split_once('=')
            .ok_or_else(|| format!("--fault {spec}: expected KIND=RATE, e.g. 500=0.02"))?;
        let rate: f64 = rate
            .parse()
            .map_err(|_| format!("--fault {spec}: `{rate}` is not a number"))?;
        let kind = match kind {
            "429" => Fault::RateLimited,
            "500" => Fault::ServerError,
            "503" => Fault::Unavailable,
            k => *Fault::ALL.iter().find(|f| f.name() == k).ok_or_else(|| {
                let names: Vec<&str> = Fault::ALL.iter().map(|f| f.name()).collect();
                format!("--fault {spec}: unknown kind `{k}` (429, 500, 503, {})", names.join(", "))
            })?,
        };
        *match kind {
            Fault::RateLimited => &mut self.rate_limited,
            Fault::ServerError => &mut self.server_error,
            Fault::Unavailable => &mut self.unavailable,
            Fault::Hang => &mut self.hang,
            Fault::Truncated => &mut self.truncated,
            Fault::WrongSchema => &mut self.wrong_schema,
            Fault::EmptyChoices => &mut self.empty_choices,
            Fault::SameChoices => &mut self.same_choices,
            Fault::CutAnswer => &mut self.cut_answer,
        } = rate;
        Ok(())
    }

    pub fn validate(&self) -> Result<(), String> {
        let mut total = 0.0;
        for f in Fault::ALL {
            let r = self.rate(f);
            if !(0.0..=1.0).contains(&r) {
                return Err(format!(
                    "fault rate for {} must be in [0, 1], got {r}",
                    f.name()
                ));
            }
            total += r;
        }
        if total > 1.0 + 1e-9 {
            return Err(format!("fault rates sum to {total}, more than 1"));
        }
        Ok(())
    }

    /// The fault for request number `serial`: deterministic given the seed and arrival order.
    pub fn draw(&self, seed: u64, serial: u64) -> Option<Fault> {
        let mut rng = SmallRng::seed_from_u64(seed ^ serial.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let u: f64 = rng.gen();
        let mut acc = 0.0;
        for f in Fault::ALL {
            acc += self.rate(f);
            if u < acc {
                return Some(f);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_match_rates() {
        let rates = FaultRates::uniform(0.1);
        let mut counts = std::collections::HashMap::new();
        let n = 70_000;
        for i in 0..n {
            *counts.entry(rates.draw(7, i)).or_insert(0u32) += 1;
        }
        for f in Fault::ALL.into_iter().filter(|f| !matches!(f, Fault::CutAnswer | Fault::SameChoices)) {
            let share = f64::from(counts[&Some(f)]) / n as f64;
            assert!((share - 0.1).abs() < 0.01, "{f:?}: {share}");
        }
        assert!(FaultRates::uniform(0.2).validate().is_err());
        let mut r = FaultRates::default();
        r.set("500=0.25").unwrap();
        r.set("cut_answer=0.5").unwrap();
        assert_eq!((r.server_error, r.cut_answer), (0.25, 0.5));
        assert!(r.set("teapot=1").unwrap_err().contains("unknown kind"));
        assert!(r.set("500").is_err() && r.set("500=x").is_err());
        assert!(FaultRates::default().draw(1, 1).is_none());
    }
}
