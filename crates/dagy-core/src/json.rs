//! How deep Dagy's JSON may nest, and decoding that honours it.
//!
//! `serde_json` refuses documents nested deeper than 128 levels, and every walk over a
//! [`Value`] (encoding, comparing, cloning, dropping) recurses once per level, on whatever
//! thread it runs. So a task output is held to [`MAX_OUTPUT_DEPTH`] levels when it is written,
//! and everything Dagy reads back (stored outputs, run records, API answers) is decoded with
//! [`from_str`], which accepts [`MAX_DOCUMENT_DEPTH`] levels: the output plus the few levels a
//! record or an answer wraps it in. What a store accepted can therefore always be read back.
//!
//! ```
//! use serde_json::json;
//! assert_eq!(dagy_core::json::depth(&json!(1)), 0);
//! assert_eq!(dagy_core::json::depth(&json!({"a": [1, {"b": 2}]})), 3);
//! let deep = "[".repeat(300) + &"]".repeat(300);
//! let value: serde_json::Value = dagy_core::json::from_str(&deep).unwrap();
//! assert_eq!(dagy_core::json::depth(&value), 300);
//! ```

use std::fmt;

use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use serde_json::value::RawValue;

/// The deepest nesting of arrays and objects a task output may have. Deeper outputs are a
/// task error (`OutputTooDeep`). Measured: encoding, decoding and dropping 1,500 levels fits
/// the 2 MiB stack of an async runtime's worker thread in a debug build, so this leaves room.
pub const MAX_OUTPUT_DEPTH: usize = 512;

/// The deepest nesting [`from_str`] accepts: an output at its limit inside the run record,
/// task list and answer that carry it.
pub const MAX_DOCUMENT_DEPTH: usize = MAX_OUTPUT_DEPTH + 16;

/// How many arrays and objects nest inside each other in `value` (a scalar is 0). Iterative,
/// so any depth can be measured.
pub fn depth(value: &Value) -> usize {
    if !(value.is_array() || value.is_object()) {
        return 0;
    }
    let mut deepest = 0;
    let mut stack: Vec<(&Value, usize)> = vec![(value, 0)];
    while let Some((v, level)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match v {
            Value::Array(items) => Box::new(items.iter()),
            Value::Object(map) => Box::new(map.values()),
            _ => continue,
        };
        let inner = level + 1;
        deepest = deepest.max(inner);
        stack.extend(children.map(|c| (c, inner)));
    }
    deepest
}

/// The deepest nesting in JSON text, read without parsing it (strings are skipped); the text
/// need not be valid JSON.
pub fn text_depth(text: &str) -> usize {
    let (mut level, mut deepest) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for &byte in text.as_bytes() {
        if in_string {
            match (escaped, byte) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                level += 1;
                deepest = deepest.max(level);
            }
            b']' | b'}' => level = level.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// Decodes JSON text nested at most [`MAX_DOCUMENT_DEPTH`] levels deep (`serde_json::from_str`
/// stops at 128); deeper text is an error that names both depths.
pub fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, serde_json::Error> {
    let found = text_depth(text);
    if found > MAX_DOCUMENT_DEPTH {
        return Err(serde_json::Error::custom(format!(
            "the JSON nests {found} levels deep, more than the {MAX_DOCUMENT_DEPTH} Dagy reads"
        )));
    }
    let mut decoder = serde_json::Deserializer::from_str(text);
    // Safe: the depth was bounded above, so the recursion is too.
    decoder.disable_recursion_limit();
    let value = T::deserialize(&mut decoder)?;
    decoder.end()?;
    Ok(value)
}

/// [`from_str`] over bytes, which must be UTF-8.
pub fn from_slice<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, serde_json::Error> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| serde_json::Error::custom(format!("the JSON is not UTF-8: {e}")))?;
    from_str(text)
}

#[cfg(test)]
mod tests {
    #[test]
    fn json_text_keeps_the_text_and_reads_back_through_every_path() {
        let value = serde_json::json!({"b": [1, 2.5, "x"], "a": null});
        let text = JsonText::from(&value);
        assert_eq!(
            text.json(),
            r#"{"b":[1,2.5,"x"],"a":null}"#,
            "compact, keys in order"
        );
        assert_eq!(text.to_value(), value);
        // Serialised as the value it holds, to text and to a `Value`; read back from both.
        let record = serde_json::json!({"output": &text});
        assert_eq!(record["output"], value);
        let written = serde_json::to_string(&[&text]).expect("writes");
        assert_eq!(written, r#"[{"b":[1,2.5,"x"],"a":null}]"#);
        let [read]: [JsonText; 1] = from_str(&written).expect("reads");
        assert_eq!(read, text);
        let from_value: JsonText = serde_json::from_value(value.clone()).expect("from a Value");
        assert_eq!(from_value, text);
        // Its length is the length of the value's JSON, which the output limit is held to.
        for value in [
            json!(null),
            json!(12.5),
            json!("é\"\n"),
            json!({"a": [1, {"b": "c"}], "d": {}}),
        ] {
            assert_eq!(JsonText::from(&value).json(), value.to_string(), "{value}");
        }
    }

    #[test]
    fn json_text_reads_values_deeper_than_serde_json_allows() {
        let deep = "[".repeat(400) + &"]".repeat(400);
        let text: JsonText = from_str(&deep).expect("reads");
        assert_eq!(depth(&text.to_value()), 400);
        assert_eq!(JsonText::from(text.to_value()).json(), deep);
    }

    use super::*;
    use serde_json::json;

    fn nested(levels: usize) -> String {
        "[".repeat(levels) + &"]".repeat(levels)
    }

    #[test]
    fn depth_counts_containers_not_scalars() {
        assert_eq!(depth(&json!("x")), 0);
        assert_eq!(depth(&json!([])), 1);
        assert_eq!(depth(&json!({"a": {"b": [1]}, "c": 2})), 3);
    }

    #[test]
    fn text_depth_ignores_brackets_inside_strings() {
        assert_eq!(text_depth(r#"{"a": "[[[{{{", "b": ["\"]"]}"#), 2);
        assert_eq!(text_depth(&nested(40)), 40);
    }

    #[test]
    fn text_and_value_depths_agree() {
        let value = json!({"a": [[{"b": "]]}}"}], 3], "c": {}});
        assert_eq!(text_depth(&value.to_string()), depth(&value));
    }

    #[test]
    fn an_output_at_its_limit_reads_back_inside_a_record() {
        let text = format!(
            r#"{{"tasks": [{{"output": {}}}]}}"#,
            nested(MAX_OUTPUT_DEPTH)
        );
        let value: Value = from_str(&text).expect("decodes");
        assert_eq!(depth(&value), MAX_OUTPUT_DEPTH + 3);
    }

    #[test]
    fn deeper_documents_are_refused_with_both_depths() {
        let err = from_str::<Value>(&nested(MAX_DOCUMENT_DEPTH + 1)).expect_err("too deep");
        let message = err.to_string();
        assert!(
            message.contains(&format!("{} levels", MAX_DOCUMENT_DEPTH + 1)),
            "{message}"
        );
        assert!(
            message.contains(&MAX_DOCUMENT_DEPTH.to_string()),
            "{message}"
        );
    }

    #[test]
    fn trailing_garbage_is_still_an_error() {
        assert!(from_str::<Value>("[1] x").is_err());
    }
}

/// A JSON value kept as its compact text: a task's `args` in a flow, a task's output in a run
/// record. A run holds one of each per task, and text takes a fraction of the memory of a
/// parsed [`Value`] (a one-field object's map is about 230 bytes, its text about 10); the
/// engine parses one when a task's input needs it, and the stores keep text anyway.
///
/// ```
/// use dagy_core::json::JsonText;
///
/// let args = JsonText::from(serde_json::json!({"table": "sales", "days": 7}));
/// assert_eq!(args.json(), r#"{"table":"sales","days":7}"#);
/// assert_eq!(args.to_value()["days"], 7);
/// ```
#[derive(Clone)]
pub struct JsonText(Box<RawValue>);

impl JsonText {
    /// The JSON text.
    pub fn json(&self) -> &str {
        self.0.get()
    }

    /// The value, parsed.
    ///
    /// # Panics
    /// When the value nests deeper than [`MAX_DOCUMENT_DEPTH`]: validation refuses such `args`,
    /// and the engine such outputs.
    pub fn to_value(&self) -> Value {
        // Written from a `Value` or read by serde_json as a value, and read back here without
        // serde_json's recursion limit (the depth is bounded where the text came in), so it
        // always parses.
        from_str(self.0.get()).expect("JsonText holds one JSON value")
    }
}

impl From<Value> for JsonText {
    fn from(value: Value) -> JsonText {
        JsonText::from(&value)
    }
}

impl From<&Value> for JsonText {
    fn from(value: &Value) -> JsonText {
        // Writing a `Value` as JSON cannot fail: its map keys are strings, its numbers finite.
        JsonText(serde_json::value::to_raw_value(value).expect("a Value writes as JSON"))
    }
}

impl PartialEq for JsonText {
    /// The same text: values written the same way (keys in the same order) compare equal.
    fn eq(&self, other: &JsonText) -> bool {
        self.json() == other.json()
    }
}

impl fmt::Debug for JsonText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.json())
    }
}

impl Serialize for JsonText {
    /// The text as it is, not re-encoded.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for JsonText {
    /// From JSON text, the value's text is kept as read, without building a [`Value`].
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<JsonText, D::Error> {
        Box::<RawValue>::deserialize(deserializer).map(JsonText)
    }
}
