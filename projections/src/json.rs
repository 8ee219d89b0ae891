//! JSON held as compact text: what a read model keeps of an AI output or its context.
//!
//! A `serde_json::Value` object costs ~770 bytes even with one key (its map node), and an item
//! holds several; at a million items that was most of the board's memory (BENCHMARKS.md). Kept
//! as the compact text serde_json writes (object keys sorted), the same JSON takes its length.
//! It serializes as the JSON it holds, not as a string. Clones share the text (an `Arc<str>`), so the
//! current output, the revision it came from and a decision's final output are one allocation.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use std::sync::Arc;

/// A JSON value as compact text.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct JsonText(Arc<str>);

impl JsonText {
    pub fn from_value(value: &Value) -> JsonText {
        JsonText(
            serde_json::to_string(value)
                .expect("a Value always serializes")
                .into(),
        )
    }

    /// The value again (the text is serde_json's own output, so it always parses).
    pub fn to_value(&self) -> Value {
        serde_json::from_str(&self.0).expect("JsonText holds valid JSON")
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for JsonText {
    fn default() -> Self {
        JsonText("null".into())
    }
}

impl std::fmt::Debug for JsonText {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(&self.0)
    }
}

impl From<&Value> for JsonText {
    fn from(value: &Value) -> Self {
        JsonText::from_value(value)
    }
}

impl PartialEq<Value> for JsonText {
    fn eq(&self, other: &Value) -> bool {
        self.to_value() == *other
    }
}

impl PartialEq<JsonText> for Value {
    fn eq(&self, other: &JsonText) -> bool {
        other == self
    }
}

/// serde_json's marker for a raw value: `RawValue` serializes as a one-field struct of this name,
/// which serde_json's serializers write as the text it holds. Not public API of serde_json; the
/// tests below fail if it ever changes.
const RAW_VALUE_TOKEN: &str = "$serde_json::private::RawValue";

/// As serde_json's `RawValue` serializes (a one-field struct under its marker name), so that
/// serde_json writes the text as it is. Without parsing it first, as going through a `RawValue`
/// would (that parse was ~1% of the server's instructions per request): the text is serde_json's
/// own output, valid by construction.
impl Serialize for JsonText {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        Trusted(self.as_str()).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for JsonText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Value::deserialize(deserializer).map(|value| JsonText::from_value(&value))
    }
}

/// JSON text the caller vouches for, serialized as it is (like [`JsonText`]).
struct Trusted<'a>(&'a str);

impl Serialize for Trusted<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut raw = serializer.serialize_struct(RAW_VALUE_TOKEN, 1)?;
        raw.serialize_field(RAW_VALUE_TOKEN, self.0)?;
        raw.end()
    }
}

/// `text` as serde_json's `RawValue` without parsing it again, as `RawValue::from_string` would:
/// for JSON this crate has just written itself (the hand-written writers of `item_json.rs`).
pub(crate) fn trusted_raw_value(text: &str) -> Box<serde_json::value::RawValue> {
    serde_json::value::to_raw_value(&Trusted(text)).expect("writing a str cannot fail")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_is_the_same_json_in_and_out() {
        let value = serde_json::json!({"b": [1, 2.5, null], "a": {"z": "ü"}});
        let text = JsonText::from_value(&value);
        assert_eq!(text.to_value(), value);
        assert_eq!(text, value);
        assert_eq!(
            serde_json::to_value(&text).unwrap(),
            value,
            "serializes as JSON, not a string"
        );
        assert_eq!(
            serde_json::to_string(&serde_json::json!({"held": &text, "after": 1})).unwrap(),
            r#"{"after":1,"held":{"a":{"z":"ü"},"b":[1,2.5,null]}}"#,
            "written as the text it holds, by serde_json's own raw-value path"
        );
        let back: JsonText = serde_json::from_str(text.as_str()).unwrap();
        assert_eq!(back, text);
        assert_eq!(text.as_str(), r#"{"a":{"z":"ü"},"b":[1,2.5,null]}"#);
    }
}
