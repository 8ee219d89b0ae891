//! JSON held as text: what an AI output or its context is, from the request that submitted it
//! to the events, the read models and every answer.
//!
//! An output is evidence: the text a reviewer approves, the text whose SHA-256 is its output hash
//! and the text a workflow receives must be the text the agent sent. So a client's JSON is never
//! parsed into a tree and written again (a `serde_json::Value` turns `123456789012345678901234567890`
//! into `1.2345678901234568e29` and `1e-400` into `0.0`): [`JsonText::from_client`] keeps every
//! token (strings with their escapes, numbers as spelled, keys in the order sent) byte for byte and
//! drops only the whitespace between tokens, which RFC 8259 makes insignificant. It refuses what
//! readers disagree on: an object with the same key twice (one reader takes the first value,
//! another the last, so a reviewer could approve one amount and the workflow act on another), an
//! escaped lone surrogate (`"\ud800"`, no Unicode text), and nesting deeper than
//! [`MAXIMUM_JSON_DEPTH`]. See `docs/adr/0008-byte-exact-outputs.md`.
//!
//! Read models keep this text rather than a `Value` tree, which also keeps them small: a `Value`
//! object costs ~770 bytes even with one key (its map node), and an item holds several; at a
//! million items that was most of the board's memory (BENCHMARKS.md). It serializes as the JSON
//! it holds, not as a string. Clones share the text (an `Arc<str>`), so the current output, the
//! revision it came from and a decision's final output are one allocation.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use serde_json::value::RawValue;
use std::collections::BTreeSet;
use std::sync::Arc;

/// The deepest nesting of arrays and objects a client's JSON may have. serde_json, and so most
/// receivers written in Rust, refuse documents nested deeper than 128 by default; a callback body
/// carries the final output three levels down, so an output within this limit always reaches them.
pub const MAXIMUM_JSON_DEPTH: usize = 100;

/// A JSON value as compact text.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct JsonText(Arc<str>);

/// Why a client's JSON text is refused as an output or context.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonTextError {
    /// An object holds the same key twice (compared after unescaping).
    #[error(
        "the key {key:?} appears twice in one object; readers disagree on which value counts, so it is refused"
    )]
    DuplicateKey { key: String },
    /// A string holds a `\uD800`–`\uDFFF` escape that is not half of a surrogate pair.
    #[error("a string holds the lone surrogate escape {escape}, which is no Unicode character")]
    LoneSurrogate { escape: String },
    /// Arrays and objects nest deeper than [`MAXIMUM_JSON_DEPTH`].
    #[error("arrays and objects nest deeper than {MAXIMUM_JSON_DEPTH} levels")]
    TooDeep,
}

impl JsonText {
    /// A client's JSON text as it will be stored: every token byte for byte, without the
    /// whitespace between tokens; refused if an object repeats a key, a string holds a lone
    /// surrogate escape, or it nests deeper than [`MAXIMUM_JSON_DEPTH`]. `raw` is valid JSON (a
    /// `RawValue` is only made by parsing), so this needs no parser of its own, only a scan.
    pub fn from_client(raw: &RawValue) -> Result<JsonText, JsonTextError> {
        compact_client_text(raw.get()).map(|text| JsonText(text.into()))
    }

    /// A `Value` as serde_json writes it compactly (object keys sorted): for values this program
    /// makes itself (tests, benchmarks), never for a client's text, whose numbers a `Value` may
    /// have changed already.
    pub fn from_value(value: &Value) -> JsonText {
        JsonText(
            serde_json::to_string(value)
                .expect("a Value always serializes")
                .into(),
        )
    }

    /// The value as a `Value` tree, for tests and tools: lossy (numbers become `f64` unless they
    /// fit `i64`/`u64`), and `None` where serde_json refuses the text (a number beyond `f64`, such
    /// as `1e400`, or nesting deeper than 128).
    pub fn to_value(&self) -> Option<Value> {
        serde_json::from_str(&self.0).ok()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is the JSON `null`.
    pub fn is_null(&self) -> bool {
        &*self.0 == "null"
    }
}

/// `text` (valid JSON) without the whitespace between its tokens, checked as
/// [`JsonText::from_client`] says. One pass: strings are copied whole (their escapes checked for
/// lone surrogates), every other byte but whitespace is copied as it is; a string followed by `:`
/// is a key of the innermost open object.
fn compact_client_text(text: &str) -> Result<String, JsonTextError> {
    let bytes = text.as_bytes();
    let mut compact = String::with_capacity(text.len());
    // Per open array (`None`) or object (the keys seen so far in it): a stack, not recursion, so
    // that no input can exhaust the thread's stack.
    let mut open: Vec<Option<BTreeSet<String>>> = Vec::new();
    let mut index = 0;
    while let Some(&byte) = bytes.get(index) {
        match byte {
            b' ' | b'\t' | b'\n' | b'\r' => index += 1,
            b'"' => {
                let end = string_end(text, index)?;
                let token = &text[index..end];
                compact.push_str(token);
                index = end;
                let is_key = bytes[index..]
                    .iter()
                    .find(|byte| !byte.is_ascii_whitespace())
                    == Some(&b':');
                if is_key && let Some(Some(keys)) = open.last_mut() {
                    let key = unescaped(token);
                    if keys.contains(&key) {
                        return Err(JsonTextError::DuplicateKey { key });
                    }
                    keys.insert(key);
                }
            }
            b'[' | b'{' => {
                if open.len() == MAXIMUM_JSON_DEPTH {
                    return Err(JsonTextError::TooDeep);
                }
                open.push((byte == b'{').then(BTreeSet::new));
                compact.push(char::from(byte));
                index += 1;
            }
            b']' | b'}' => {
                open.pop();
                compact.push(char::from(byte));
                index += 1;
            }
            // Punctuation, numbers, literals: ASCII outside strings.
            _ => {
                compact.push(char::from(byte));
                index += 1;
            }
        }
    }
    Ok(compact)
}

/// The index just past the string token that opens at `start` (its `"`), having checked its
/// `\u` escapes: a high surrogate must be followed at once by an escaped low one, and a low one
/// must follow a high one.
fn string_end(text: &str, start: usize) -> Result<usize, JsonTextError> {
    let bytes = text.as_bytes();
    let hex_at = |at: usize| -> Option<u16> {
        let digits = text.get(at..at + 4)?;
        u16::from_str_radix(digits, 16).ok()
    };
    let mut index = start + 1;
    while let Some(&byte) = bytes.get(index) {
        match byte {
            b'"' => return Ok(index + 1),
            b'\\' if bytes.get(index + 1) == Some(&b'u') => {
                let unit = hex_at(index + 2).unwrap_or(0);
                let lone = || JsonTextError::LoneSurrogate {
                    escape: text.get(index..index + 6).unwrap_or_default().to_owned(),
                };
                match unit {
                    0xD800..=0xDBFF => {
                        let low_follows = bytes.get(index + 6..index + 8) == Some(b"\\u")
                            && hex_at(index + 8)
                                .is_some_and(|low| (0xDC00..=0xDFFF).contains(&low));
                        if !low_follows {
                            return Err(lone());
                        }
                        index += 12;
                    }
                    0xDC00..=0xDFFF => return Err(lone()),
                    _ => index += 6,
                }
            }
            b'\\' => index += 2,
            _ => index += 1,
        }
    }
    Ok(bytes.len())
}

/// A string token's text, its escapes resolved (keys are compared as text, so `"a"` and
/// `"\u0061"` are the same key).
fn unescaped(token: &str) -> String {
    if token.contains('\\') {
        serde_json::from_str(token).unwrap_or_else(|_| token.to_owned())
    } else {
        token[1..token.len() - 1].to_owned()
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

impl From<Value> for JsonText {
    fn from(value: Value) -> Self {
        JsonText::from_value(&value)
    }
}

/// Whether the text, read as a `Value`, is `other` (for tests; false where it does not read).
impl PartialEq<Value> for JsonText {
    fn eq(&self, other: &Value) -> bool {
        self.to_value().as_ref() == Some(other)
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
/// would (that parse was ~1% of the server's instructions per request): the text is valid JSON
/// by construction (a client's checked text, or serde_json's own output).
impl Serialize for JsonText {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        Trusted(self.as_str()).serialize(serializer)
    }
}

/// The stored text exactly as it is: an event's output is the text its output hash covers, so it
/// is neither parsed into a tree nor compacted again. (Events written before outputs were kept
/// as sent hold serde_json's compact text with sorted keys, which is what they hashed.)
///
/// Read as serde_json reads a `Box<RawValue>` (the value's exact text, under serde_json's
/// private token), but straight into the `Arc<str>`: through a `Box<RawValue>` every output and
/// context read from the log was allocated and copied twice.
impl<'de> Deserialize<'de> for JsonText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
        struct Raw;
        impl<'de> Visitor<'de> for Raw {
            type Value = JsonText;
            fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
                formatter.write_str("any valid JSON value")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<JsonText, M::Error> {
                if map.next_key::<IgnoredAny>()?.is_none() {
                    return Err(de::Error::invalid_type(de::Unexpected::Map, &self));
                }
                map.next_value_seed(Text)
            }
        }
        struct Text;
        impl<'de> DeserializeSeed<'de> for Text {
            type Value = JsonText;
            fn deserialize<D: Deserializer<'de>>(
                self,
                deserializer: D,
            ) -> Result<JsonText, D::Error> {
                deserializer.deserialize_str(self)
            }
        }
        impl<'de> Visitor<'de> for Text {
            type Value = JsonText;
            fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
                formatter.write_str("the text of a JSON value")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<JsonText, E> {
                Ok(JsonText(text.into()))
            }
        }
        deserializer.deserialize_newtype_struct(RAW_VALUE_TOKEN, Raw)
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

    fn client(text: &str) -> Result<JsonText, JsonTextError> {
        let raw: Box<RawValue> = serde_json::from_str(text).expect("the test's text is JSON");
        JsonText::from_client(&raw)
    }

    #[test]
    fn it_is_the_same_json_in_and_out() {
        let value = serde_json::json!({"b": [1, 2.5, null], "a": {"z": "ü"}});
        let text = JsonText::from_value(&value);
        assert_eq!(text.to_value(), Some(value.clone()));
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
        // Read back as the exact text, inside a document, from text, from a reader and from a
        // `Value`; and refused where the document has no value.
        #[derive(Deserialize)]
        struct Held {
            held: JsonText,
        }
        let document = r#"{"held": {"b":[1, 2.50],"a":"\u00fc"}}"#;
        let held: Held = serde_json::from_str(document).unwrap();
        assert_eq!(held.held.as_str(), r#"{"b":[1, 2.50],"a":"\u00fc"}"#);
        let held: Held = serde_json::from_reader(document.as_bytes()).unwrap();
        assert_eq!(held.held.as_str(), r#"{"b":[1, 2.50],"a":"\u00fc"}"#);
        let held: Held = serde_json::from_value(serde_json::json!({"held": value})).unwrap();
        assert_eq!(held.held, text);
        assert!(serde_json::from_str::<Held>(r#"{"held": }"#).is_err());
    }

    #[test]
    fn a_clients_tokens_are_kept_byte_for_byte_and_only_whitespace_between_them_goes() {
        let sent = "{ \"b\" : [ 123456789012345678901234567890 , 1e-400 , 1.0 , -0 , 1E+2 ] ,\n\t\"a\" : \"two  spaces\\n\\u00e9\\/é\" , \"c\":{ } }";
        let kept = client(sent).unwrap();
        assert_eq!(
            kept.as_str(),
            r#"{"b":[123456789012345678901234567890,1e-400,1.0,-0,1E+2],"a":"two  spaces\n\u00e9\/é","c":{}}"#
        );
        // Stored and read back, it stays that text.
        // (Not through `json!`, which would make a `Value` of it.)
        let stored =
            serde_json::to_string(&std::collections::BTreeMap::from([("output", &kept)])).unwrap();
        assert_eq!(stored, format!(r#"{{"output":{}}}"#, kept.as_str()));
        let read: std::collections::BTreeMap<String, JsonText> =
            serde_json::from_str(&stored).unwrap();
        assert_eq!(read["output"], kept);
        for scalar in [
            "1e400",
            "-0.0",
            "\"\"",
            "true",
            "null",
            "0.1000000000000000000001",
        ] {
            assert_eq!(client(scalar).unwrap().as_str(), scalar);
        }
        assert!(client("null").unwrap().is_null());
        assert_eq!(client("1e400").unwrap().to_value(), None, "beyond f64");
    }

    #[test]
    fn a_key_twice_in_one_object_is_refused_also_when_spelled_differently() {
        assert_eq!(
            client(r#"{"amount": 10, "note": "x", "amount": 10000}"#),
            Err(JsonTextError::DuplicateKey {
                key: "amount".into()
            })
        );
        assert_eq!(
            client(r#"{"a": 1, "\u0061": 2}"#),
            Err(JsonTextError::DuplicateKey { key: "a".into() })
        );
        assert_eq!(
            client(r#"[{"a": {"a": 1}}, {"a": [{"a": 2, "b": {"a": 3}}]}]"#)
                .unwrap()
                .as_str(),
            r#"[{"a":{"a":1}},{"a":[{"a":2,"b":{"a":3}}]}]"#,
            "the same key in different objects is fine"
        );
        assert!(
            client(r#"{"x": ["a", "a"], "y": {"x": 1}}"#).is_ok(),
            "values are not keys"
        );
    }

    #[test]
    fn a_lone_surrogate_escape_is_refused_and_a_pair_is_kept() {
        for (text, escape) in [
            (r#""\ud800""#, r"\ud800"),
            (r#""x\uDBFFy""#, r"\uDBFF"),
            (r#""\udc00""#, r"\udc00"),
            (r#"{"\ud800": 1}"#, r"\ud800"),
            (r#""\ud800\u0041""#, r"\ud800"),
            (r#""\ud800\ud800""#, r"\ud800"),
        ] {
            assert_eq!(
                client(text),
                Err(JsonTextError::LoneSurrogate {
                    escape: escape.into()
                }),
                "{text}"
            );
        }
        assert_eq!(
            client(r#"["\ud83d\ude00", "\\ud800", "😀"]"#)
                .unwrap()
                .as_str(),
            r#"["\ud83d\ude00","\\ud800","😀"]"#,
            "a pair, an escaped backslash before ud800, and the character itself"
        );
    }

    #[test]
    fn nesting_is_bounded() {
        let deep = |levels: usize| format!("{}{}", "[".repeat(levels), "]".repeat(levels));
        assert!(client(&deep(MAXIMUM_JSON_DEPTH)).is_ok());
        assert_eq!(
            client(&deep(MAXIMUM_JSON_DEPTH + 1)),
            Err(JsonTextError::TooDeep)
        );
        let objects = format!(
            "{}1{}",
            r#"{"a":"#.repeat(MAXIMUM_JSON_DEPTH + 1),
            "}".repeat(MAXIMUM_JSON_DEPTH + 1)
        );
        assert_eq!(client(&objects), Err(JsonTextError::TooDeep));
    }
}
