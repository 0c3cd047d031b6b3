//! Format checks a judge can run on a candidate: a regular expression, a JSON Schema.
use serde::Serialize;

/// Whether `text` matches `pattern` (anywhere, or wholly with `full`), and the first match's
/// capture groups.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RegexCheck {
    pub matched: bool,
    pub captures: Vec<Option<String>>,
}

pub fn check_regex(text: &str, pattern: &str, full: bool) -> Result<RegexCheck, String> {
    let anchored = if full {
        format!("^(?:{pattern})$")
    } else {
        pattern.to_string()
    };
    let re = regex::RegexBuilder::new(&anchored)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| format!("invalid pattern: {e}"))?;
    Ok(match re.captures(text) {
        Some(c) => RegexCheck {
            matched: true,
            captures: c
                .iter()
                .skip(1)
                .map(|m| m.map(|m| m.as_str().to_string()))
                .collect(),
        },
        None => RegexCheck {
            matched: false,
            captures: Vec::new(),
        },
    })
}

/// Whether `text` is JSON valid under `schema`, with every violation and where it is.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SchemaCheck {
    pub valid: bool,
    pub errors: Vec<String>,
}

pub fn check_json_schema(text: &str, schema: &serde_json::Value) -> Result<SchemaCheck, String> {
    let validator =
        jsonschema::validator_for(schema).map_err(|e| format!("invalid schema: {e}"))?;
    let value: serde_json::Value = match serde_json::from_str(text.trim()) {
        Ok(v) => v,
        Err(e) => {
            return Ok(SchemaCheck {
                valid: false,
                errors: vec![format!("not JSON: {e}")],
            })
        }
    };
    let errors: Vec<String> = validator
        .iter_errors(&value)
        .map(|e| {
            let at = e.instance_path.to_string();
            format!("{}: {e}", if at.is_empty() { "/".to_string() } else { at })
        })
        .collect();
    Ok(SchemaCheck {
        valid: errors.is_empty(),
        errors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn regex_checks() {
        let r = check_regex("Answer: 42", r"Answer: (\d+)", false).unwrap();
        assert!(r.matched);
        assert_eq!(r.captures, vec![Some("42".to_string())]);
        assert!(
            !check_regex("Answer: 42!", r"Answer: \d+", true)
                .unwrap()
                .matched
        );
        assert!(check_regex("x", "(", false)
            .unwrap_err()
            .starts_with("invalid pattern"));
    }

    #[test]
    fn schema_checks() {
        let schema = json!({"type": "object", "required": ["score"], "properties": {"score": {"type": "number", "maximum": 10}}});
        assert!(check_json_schema(r#"{"score": 7}"#, &schema).unwrap().valid);
        let bad = check_json_schema(r#"{"score": 11}"#, &schema).unwrap();
        assert!(
            !bad.valid && bad.errors[0].starts_with("/score:"),
            "{bad:?}"
        );
        let missing = check_json_schema("{}", &schema).unwrap();
        assert!(missing.errors[0].contains("score"), "{missing:?}");
        assert!(check_json_schema("{not json", &schema).unwrap().errors[0].starts_with("not JSON"));
        assert!(check_json_schema("{}", &json!({"type": 5})).is_err());
    }
}
