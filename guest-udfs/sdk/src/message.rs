//! Builders and accessors for [`Message`], plus JSON helpers with clear errors.

use crate::{Message, UdfError};
use serde::de::DeserializeOwned;
use serde::Serialize;

impl Message {
    /// A message with this value and no key, headers or timestamp.
    pub fn new(value: impl Into<Vec<u8>>) -> Self {
        Message {
            key: None,
            value: value.into(),
            headers: Vec::new(),
            timestamp_ms: None,
        }
    }

    /// A message whose value is `value` serialised as JSON.
    pub fn from_json<T: Serialize + ?Sized>(value: &T) -> Result<Self, UdfError> {
        serde_json::to_vec(value)
            .map(Message::new)
            .map_err(|err| UdfError::failed(format!("cannot encode JSON: {err}")))
    }

    /// This message with its value replaced (key, headers and timestamp kept).
    pub fn with_value(mut self, value: impl Into<Vec<u8>>) -> Self {
        self.value = value.into();
        self
    }

    /// This message with its value replaced by `value` as JSON.
    pub fn with_json<T: Serialize + ?Sized>(self, value: &T) -> Result<Self, UdfError> {
        let encoded = Message::from_json(value)?.value;
        Ok(self.with_value(encoded))
    }

    /// This message with its key set.
    pub fn with_key(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// This message with one more header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The value of the first header called `name`.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }

    /// The value as UTF-8 text, or an `invalid-input` error.
    pub fn value_str(&self) -> Result<&str, UdfError> {
        std::str::from_utf8(&self.value)
            .map_err(|err| UdfError::invalid_input(format!("value is not UTF-8 text: {err}")))
    }

    /// The value parsed as JSON into `T`, or an `invalid-input` error with serde's reason.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, UdfError> {
        serde_json::from_slice(&self.value).map_err(|err| {
            UdfError::invalid_input(format!("value is not the expected JSON: {err}"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builders_keep_what_they_do_not_touch() {
        let msg = Message::new("a")
            .with_key("k")
            .with_header("h", "1")
            .with_value("b");
        assert_eq!(msg.value, b"b");
        assert_eq!(msg.key.as_deref(), Some(&b"k"[..]));
        assert_eq!(msg.header("h"), Some(&b"1"[..]));
        assert_eq!(msg.header("nope"), None);
    }

    #[test]
    fn json_round_trip_and_errors() {
        let msg = Message::new("x")
            .with_json(&serde_json::json!({"a": 1.5}))
            .unwrap();
        let back: serde_json::Value = msg.json().unwrap();
        assert_eq!(back["a"], 1.5);
        let err = Message::new("{oops")
            .json::<serde_json::Value>()
            .unwrap_err();
        assert!(
            matches!(err, UdfError::InvalidInput(ref r) if r.contains("JSON")),
            "{err}"
        );
        assert!(Message::new(vec![0xff]).value_str().is_err());
    }
}
