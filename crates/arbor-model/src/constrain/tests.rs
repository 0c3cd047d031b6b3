//! The matcher against JSON texts: what it accepts parses and validates (random walks through
//! the grammar, checked by a separate reading of the schema), and valid answers are accepted.
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use super::grammar::Grammar;
use super::matcher::{advance, can_end, Frame, Stack};

fn start(g: &Grammar) -> Vec<Stack> {
    vec![vec![Frame::Value(g.root)]]
}

fn accepts(schema: &Value, text: &str) -> bool {
    let g = Grammar::compile(schema).unwrap();
    let mut s = start(&g);
    for &b in text.as_bytes() {
        s = advance(&g, &s, b);
        if s.is_empty() {
            return false;
        }
    }
    s.iter().any(|st| can_end(&g, st))
}

/// The schema subset, read again independently of the grammar.
fn valid(schema: &Value, v: &Value) -> bool {
    if let Some(e) = schema.get("enum").and_then(Value::as_array) {
        return e.contains(v);
    }
    if let Some(alts) = schema.get("anyOf").and_then(Value::as_array) {
        return alts.iter().any(|a| valid(a, v));
    }
    let num = |k: &str| schema.get(k).and_then(Value::as_f64);
    let count = |k: &str| schema.get(k).and_then(Value::as_u64).map(|x| x as usize);
    match schema.get("type").and_then(Value::as_str) {
        None => true,
        Some("string") => v.as_str().is_some_and(|s| {
            let n = s.chars().count();
            count("minLength").is_none_or(|m| n >= m) && count("maxLength").is_none_or(|m| n <= m)
        }),
        Some(t @ ("number" | "integer")) => v.as_f64().is_some_and(|x| {
            (t == "number" || v.is_i64() || v.is_u64())
                && num("minimum").is_none_or(|m| x >= m)
                && num("maximum").is_none_or(|m| x <= m)
        }),
        Some("boolean") => v.is_boolean(),
        Some("null") => v.is_null(),
        Some("array") => v.as_array().is_some_and(|a| {
            count("minItems").is_none_or(|m| a.len() >= m)
                && count("maxItems").is_none_or(|m| a.len() <= m)
                && a.iter().all(|x| schema.get("items").is_none_or(|i| valid(i, x)))
        }),
        Some("object") => v.as_object().is_some_and(|o| {
            let props = schema.get("properties").and_then(Value::as_object);
            let required = schema.get("required").and_then(Value::as_array);
            required.is_none_or(|r| r.iter().all(|k| o.contains_key(k.as_str().unwrap())))
                && o.iter().all(|(k, x)| match props {
                    Some(p) => p.get(k).is_some_and(|s| valid(s, x)),
                    None => true,
                })
        }),
        Some(_) => false,
    }
}

/// A random text the matcher accepts: bytes drawn among those allowed (structural ones
/// favoured, so walks end), stopping where the answer may end.
fn walk(g: &Grammar, rng: &mut StdRng) -> Option<String> {
    let alphabet: Vec<u8> = (0x20..0x7f).chain([0xc3, 0xa9, 0xe0, 0xed, 0x80, 0xa0]).collect();
    let mut s = start(g);
    let mut out = Vec::new();
    for _ in 0..600 {
        if s.iter().any(|st| can_end(g, st)) && rng.gen_bool(0.5) {
            return Some(String::from_utf8(out.clone()).expect("the matcher lets only well-formed UTF-8 through"));
        }
        let ok: Vec<(u8, Vec<Stack>)> = alphabet
            .iter()
            .map(|&b| (b, advance(g, &s, b)))
            .filter(|x| !x.1.is_empty())
            .collect();
        if ok.is_empty() {
            return s
                .iter()
                .any(|st| can_end(g, st))
                .then(|| String::from_utf8(out.clone()).expect("the matcher lets only well-formed UTF-8 through"));
        }
        let closing: Vec<usize> = (0..ok.len()).filter(|&i| b"\"]},".contains(&ok[i].0)).collect();
        let i = if !closing.is_empty() && rng.gen_bool(0.3) {
            closing[rng.gen_range(0..closing.len())]
        } else {
            rng.gen_range(0..ok.len())
        };
        out.push(ok[i].0);
        s = ok[i].1.clone();
    }
    None
}

fn schemas() -> Vec<Value> {
    vec![
        // arbor synth's judge, reward and optimizer schemas.
        json!({"type": "object", "properties": {
            "scores": {"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": 10}, "minItems": 3, "maxItems": 3},
            "rationale": {"type": "string", "maxLength": 40}}, "required": ["scores", "rationale"]}),
        json!({"type": "object", "properties": {"score": {"type": "number", "minimum": 1, "maximum": 10},
            "critique": {"type": "string", "maxLength": 30}}, "required": ["score", "critique"]}),
        json!({"type": "object", "properties": {"a": {"type": "string", "minLength": 2, "maxLength": 5},
            "b": {"type": ["integer", "null"], "minimum": -20, "maximum": 300}, "c": {"enum": ["x", 1, true, {"k": [1]}]},
            "d": {"type": "array", "items": {"type": "boolean"}, "maxItems": 2}}, "required": ["a", "c"]}),
        json!({"anyOf": [{"type": "number", "minimum": -3, "maximum": 7}, {"type": "object", "additionalProperties": {"type": "integer"}}]}),
        json!({"type": "object"}),
    ]
}

/// Catches: a bound not enforced (minItems, maxLength, a number's range, required keys),
/// malformed UTF-8, an escape or a number left open, free text where a value must be.
#[test]
fn every_accepted_text_parses_and_validates() {
    let mut rng = StdRng::seed_from_u64(7);
    for schema in schemas() {
        let g = Grammar::compile(&schema).unwrap();
        let mut ended = 0;
        for _ in 0..300 {
            let Some(text) = walk(&g, &mut rng) else { continue };
            ended += 1;
            let v: Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{text:?} under {schema}: {e}"));
            assert!(valid(&schema, &v), "{text:?} does not validate under {schema}");
        }
        assert!(ended > 200, "{schema}: only {ended} of 300 walks ended");
    }
}

/// Catches: a grammar stricter than the schema (a valid answer refused).
#[test]
fn valid_answers_are_accepted_and_invalid_ones_refused() {
    let s = &schemas();
    for (i, text, ok) in [
        (0, r#"{"scores": [1, 10, 7], "rationale": "fine"}"#, true),
        (0, r#"{"rationale":"","scores":[3,3,3]}"#, true),
        (0, r#"{"scores": [1, 10], "rationale": "two"}"#, false),
        (0, r#"{"scores": [0, 1, 2], "rationale": "zero"}"#, false),
        (0, r#"{"scores": [11, 1, 2], "rationale": "eleven"}"#, false),
        (0, r#"{"scores": [1, 2, 3]}"#, false),
        (1, r#"{"score": 9.5, "critique": "ok \"quoted\" \u00e9"}"#, true),
        (1, r#"{"score": 10, "critique": ""}"#, true),
        (1, r#"{"score": 10.5, "critique": ""}"#, false),
        (1, r#"{"score": 0.9, "critique": ""}"#, false),
        (1, r#"{"score": 1e1, "critique": ""}"#, false),
        (2, r#"{"a": "hé", "c": {"k":[1]}, "b": null, "d": []}"#, true),
        (2, r#"{"a": "h\u00e9", "c": true}"#, true),
        (2, r#"{"a": "h", "c": 1}"#, false),
        (2, r#"{"a": "abc", "c": 1, "b": -21}"#, false),
        (2, r#"{"a": "abc", "c": 1, "b": 300}"#, true),
        (2, r#"{"a": "abc", "c": 2}"#, false),
        (2, r#"{"a": "abc", "c": 1, "a": "def"}"#, false),
        (2, r#"{"a": "abc", "c": 1, "e": 1}"#, false),
        (3, "-3", true),
        (3, "7.0", true),
        (3, "-3.5", false),
        (3, r#"{"x": 1, "y": -2}"#, true),
        (3, r#"{"x": 1.5}"#, false),
        (4, r#"{"x": [1, {"y": null}], "z": "w"}"#, true),
        (4, r#"[1]"#, false),
        (4, r#"{"x": 1}  "#, false),
    ] {
        assert_eq!(accepts(&s[i], text), ok, "{text} under schema {i}");
    }
}

#[test]
fn unsupported_schemas_name_the_place() {
    let e = Grammar::compile(&json!({"type": "object", "properties": {"a": {"type": "date"}}})).unwrap_err();
    assert!(e.contains("/properties/a") && e.contains("date"), "{e}");
    let e = Grammar::compile(&json!({"type": "object", "properties": {}, "required": ["z"]})).unwrap_err();
    assert!(e.contains("\"z\""), "{e}");
    let e = Grammar::compile(&json!({"$ref": "#/$defs/nope"})).unwrap_err();
    assert!(e.contains("nope"), "{e}");
    // A recursive definition compiles and bounds nothing it should not.
    let tree = json!({"$defs": {"t": {"type": "object", "properties": {"kids": {"type": "array", "items": {"$ref": "#/$defs/t"}}}, "required": ["kids"]}}, "$ref": "#/$defs/t"});
    assert!(accepts(&tree, r#"{"kids": [{"kids": []}, {"kids": [{"kids": []}]}]}"#));
    assert!(!accepts(&tree, r#"{"kids": [{}]}"#));
}

/// Catches: a closing that does not end the answer (an unclosed string or array, a required key
/// left out, a number out of its bounds), or none found where one exists.
#[test]
fn every_prefix_closes_into_a_valid_answer() {
    let mut rng = StdRng::seed_from_u64(11);
    for schema in schemas() {
        let g = Grammar::compile(&schema).unwrap();
        for _ in 0..200 {
            let Some(text) = walk(&g, &mut rng) else { continue };
            let cut = rng.gen_range(0..=text.len());
            let prefix = &text.as_bytes()[..cut];
            let mut s = start(&g);
            for &b in prefix {
                s = advance(&g, &s, b);
            }
            let tail = super::closing::closing(&g, &s, 512)
                .unwrap_or_else(|| panic!("no closing for {:?}", String::from_utf8_lossy(prefix)));
            let whole = [prefix, &tail].concat();
            let whole = String::from_utf8_lossy(&whole);
            let v: Value = serde_json::from_str(&whole).unwrap_or_else(|e| panic!("{whole:?}: {e}"));
            assert!(valid(&schema, &v), "{whole:?} under {schema}");
        }
    }
}
