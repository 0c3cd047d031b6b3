use serde::Serialize;
use sha2::{Digest, Sha256};

/// Serializes `value` as JSON with object keys sorted, so that equal values give equal bytes.
///
/// serde_json's `Value` keeps objects in a `BTreeMap` (the `preserve_order` feature is off), so a
/// round trip through `Value` sorts every nested object.
pub fn canonical_json<T: Serialize + ?Sized>(value: &T) -> String {
    let v = serde_json::to_value(value).expect("arbor types always serialize to JSON");
    v.to_string()
}

/// Hex sha256 of the canonical JSON of `value`: the id of anything addressed by content
/// (cache keys, pair ids, resume keys).
pub fn content_hash<T: Serialize + ?Sized>(value: &T) -> String {
    hex::encode(Sha256::digest(canonical_json(value).as_bytes()))
}

/// Writes `bytes` to `path` through `<path>.tmp` and a rename, so a kill leaves the old file
/// or the new one, never half of one.
pub fn write_atomic(path: &std::path::Path, bytes: impl AsRef<[u8]>) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// Hex sha256 of a file's bytes (what a resumed job checks its input against).
pub fn file_sha256(path: &std::path::Path) -> std::io::Result<String> {
    let mut h = Sha256::new();
    let mut f = std::fs::File::open(path)?;
    std::io::copy(&mut f, &mut h)?;
    Ok(hex::encode(h.finalize()))
}

/// 64-bit FNV-1a of a byte stream: a fast, stable, non-cryptographic hash for ids that must
/// agree across processes (parameter ids, synthetic step choices), where sha256 is overkill.
pub fn fnv1a(bytes: impl IntoIterator<Item = u8>) -> u64 {
    bytes.into_iter().fold(0xcbf29ce484222325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fnv1a_matches_the_reference_vectors() {
        assert_eq!(fnv1a(*b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a(*b"a"), 0xaf63dc4c8601ec8c);
    }

    #[test]
    fn key_order_does_not_change_the_hash() {
        let a = json!({"b": 1, "a": {"y": [1, 2], "x": "s"}});
        let b: serde_json::Value =
            serde_json::from_str(r#"{"a": {"x": "s", "y": [1, 2]}, "b": 1}"#).unwrap();
        assert_eq!(canonical_json(&a), r#"{"a":{"x":"s","y":[1,2]},"b":1}"#);
        assert_eq!(content_hash(&a), content_hash(&b));
        assert_ne!(content_hash(&a), content_hash(&json!({"b": 2})));
    }
}
