//! Encodings at the edges of a pipeline: `raw` (bytes untouched), `json`, and `delimited`
//! (an ordered field list, as KSQL's DELIMITED format).
//!
//! Sources decode what they receive into the value that flows (raw bytes, or a JSON document);
//! sinks encode the flowing value for the wire. `delimited` on a sink turns the JSON score
//! `{"eventid":106,"anomaly_val":2.2}` into `106,2.2`; on a source it turns `106,2.2` into that
//! JSON object.

use serde::Deserialize;

/// The codec name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    /// Bytes untouched.
    #[default]
    Raw,
    /// A JSON document (checked on decode, passed through on encode).
    Json,
    /// Ordered fields joined by a delimiter.
    Delimited,
}

/// `encoding = { codec = "delimited", fields = ["eventid", "anomaly_val"] }`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncodingConfig {
    /// `raw` (default), `json` or `delimited`.
    #[serde(default)]
    pub codec: Codec,
    /// For `delimited`: the JSON fields, in wire order.
    #[serde(default)]
    pub fields: Vec<String>,
    /// For `delimited`: the separator (default `,`).
    pub delimiter: Option<String>,
}

impl EncodingConfig {
    /// Problems as `(field, message)`, relative to the encoding table.
    pub fn validate(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        match self.codec {
            Codec::Delimited if self.fields.is_empty() => problems.push((
                "fields",
                "the delimited codec needs a non-empty field list".into(),
            )),
            Codec::Raw | Codec::Json if !self.fields.is_empty() => problems.push((
                "fields",
                "only the delimited codec takes a field list".into(),
            )),
            Codec::Raw | Codec::Json if self.delimiter.is_some() => problems.push((
                "delimiter",
                "only the delimited codec takes a delimiter".into(),
            )),
            _ => {}
        }
        if self.delimiter.as_deref() == Some("") {
            problems.push(("delimiter", "the delimiter cannot be empty".into()));
        }
        problems
    }

    fn delimiter(&self) -> &str {
        self.delimiter.as_deref().unwrap_or(",")
    }

    /// Source side: wire bytes into the flowing value.
    pub fn decode(&self, wire: &[u8]) -> Result<Vec<u8>, String> {
        match self.codec {
            Codec::Raw => Ok(wire.to_vec()),
            Codec::Json => serde_json::from_slice::<serde_json::Value>(wire)
                .map(|_| wire.to_vec())
                .map_err(|e| format!("not valid JSON: {e}")),
            Codec::Delimited => {
                let text = std::str::from_utf8(wire).map_err(|e| format!("not UTF-8 text: {e}"))?;
                let parts: Vec<&str> = text.split(self.delimiter()).collect();
                if parts.len() != self.fields.len() {
                    return Err(format!(
                        "expected {} delimited fields ({}), found {}",
                        self.fields.len(),
                        self.fields.join(", "),
                        parts.len()
                    ));
                }
                let mut object = serde_json::Map::new();
                for (name, part) in self.fields.iter().zip(parts) {
                    let part = part.trim();
                    let value = serde_json::from_str::<serde_json::Value>(part)
                        .ok()
                        .filter(|v| v.is_number() || v.is_boolean())
                        .unwrap_or_else(|| serde_json::Value::String(part.to_string()));
                    object.insert(name.clone(), value);
                }
                serde_json::to_vec(&object).map_err(|e| e.to_string())
            }
        }
    }

    /// Sink side: the flowing value into wire bytes.
    pub fn encode(&self, value: &[u8]) -> Result<Vec<u8>, String> {
        match self.codec {
            Codec::Raw => Ok(value.to_vec()),
            Codec::Json => serde_json::from_slice::<serde_json::Value>(value)
                .map(|_| value.to_vec())
                .map_err(|e| format!("value is not valid JSON: {e}")),
            Codec::Delimited => {
                let doc: serde_json::Value = serde_json::from_slice(value)
                    .map_err(|e| format!("value is not valid JSON: {e}"))?;
                let mut out = Vec::new();
                for (i, name) in self.fields.iter().enumerate() {
                    if i > 0 {
                        out.extend_from_slice(self.delimiter().as_bytes());
                    }
                    match doc.get(name) {
                        Some(serde_json::Value::String(s)) => out.extend_from_slice(s.as_bytes()),
                        Some(serde_json::Value::Null) | None => {
                            return Err(format!("field `{name}` is missing from the value"))
                        }
                        Some(other) => out.extend_from_slice(other.to_string().as_bytes()),
                    }
                }
                Ok(out)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delimited() -> EncodingConfig {
        EncodingConfig {
            codec: Codec::Delimited,
            fields: vec!["eventid".into(), "anomaly_val".into()],
            delimiter: None,
        }
    }

    #[test]
    fn delimited_keeps_float_digits_exactly() {
        let json = br#"{"eventid":106,"anomaly_val":2.2022320685879437}"#;
        assert_eq!(delimited().encode(json).unwrap(), b"106,2.2022320685879437");
        let back = delimited().decode(b"106,2.95063202211463").unwrap();
        assert_eq!(back, br#"{"eventid":106,"anomaly_val":2.95063202211463}"#);
    }

    #[test]
    fn errors_say_what_is_missing() {
        let err = delimited().encode(br#"{"eventid":1}"#).unwrap_err();
        assert_eq!(err, "field `anomaly_val` is missing from the value");
        assert!(delimited()
            .decode(b"1,2,3")
            .unwrap_err()
            .contains("expected 2"));
        let json = EncodingConfig {
            codec: Codec::Json,
            ..Default::default()
        };
        assert!(json
            .decode(b"{oops")
            .unwrap_err()
            .starts_with("not valid JSON"));
    }

    #[test]
    fn validation() {
        let bad = EncodingConfig {
            codec: Codec::Delimited,
            ..Default::default()
        };
        assert_eq!(bad.validate()[0].0, "fields");
        assert!(delimited().validate().is_empty());
    }
}
