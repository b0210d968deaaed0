//! The record that flows through Sluice: key, value, headers and timestamp, as in `wit/udf.wit`.

/// One record. Mirrors the WIT `message` so a record crosses into a UDF and back unchanged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    /// The record key (Kafka key; for MQTT, none unless a UDF sets one).
    pub key: Option<Vec<u8>>,
    /// The payload, untouched bytes.
    pub value: Vec<u8>,
    /// Headers (Kafka headers, MQTT 5 user properties), in order.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Milliseconds since the Unix epoch, when the source knows it.
    pub timestamp_ms: Option<i64>,
}

impl Message {
    /// A record with this value and nothing else.
    pub fn from_value(value: impl Into<Vec<u8>>) -> Self {
        Message {
            value: value.into(),
            ..Message::default()
        }
    }

    /// The value of the first header called `name`.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }
}

/// A record's id for people: the JSON document's `eventid`, `id` or `event_id` field (in any
/// case: SQL's `EVENTID` too), else the
/// message key (as text).
pub fn event_id(doc: Option<&serde_json::Value>, message: Option<&Message>) -> Option<String> {
    doc.and_then(serde_json::Value::as_object)
        .and_then(event_id_in)
        .or_else(|| {
            message?
                .key
                .as_ref()
                .map(|k| String::from_utf8_lossy(k).into_owned())
        })
}

/// The `eventid`, `id` or `event_id` field of a JSON object (in any case), as text.
pub fn event_id_in(fields: &serde_json::Map<String, serde_json::Value>) -> Option<String> {
    ["eventid", "id", "event_id"]
        .iter()
        .find_map(|k| {
            fields
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(k))
                .map(|(_, v)| v)
        })
        .map(|v| match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        })
}
