//! Encodings at the edges of a pipeline: `raw` (bytes untouched), `json`, `delimited` (an
//! ordered field list, as KSQL's DELIMITED format) and `kafka` (one field as Kafka's standard
//! serializers write it, as KSQL's KAFKA format).
//!
//! Sources decode what they receive into the value that flows (raw bytes, or a JSON document);
//! sinks encode the flowing value for the wire. `delimited` on a sink turns the JSON score
//! `{"eventid":106,"anomaly_val":2.2}` into `106,2.2`; on a source it turns `106,2.2` into that
//! JSON object.
//!
//! A schema (`fields` with `types`, as SQL's `CREATE STREAM ... (col type, ...)` compiles to)
//! makes a source decode strictly: `delimited` converts each column to its type, and `json`
//! picks the declared fields out of the document, matching names case-insensitively as ksqlDB
//! does. A value that does not fit names the field and what was found.

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
    /// One field, as Kafka's standard serializers write it: `integer` 4 bytes and `bigint` 8
    /// bytes big-endian, `double` 8 bytes IEEE 754 big-endian, `string` UTF-8.
    Kafka,
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
    /// On a source, the type of each of `fields`, in the same order: `string`, `integer`,
    /// `double`, `boolean` or `any` (default: `any` for all, numbers and booleans recognised).
    /// With `json`, `fields` and `types` select the declared fields, case-insensitively.
    #[serde(default)]
    pub types: Vec<FieldType>,
}

/// The type of a decoded field.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    /// Numbers and booleans recognised, anything else text.
    #[default]
    Any,
    /// Text, kept as it is.
    String,
    /// An integer (SQL INTEGER; 32 bits in the `kafka` codec, 64 elsewhere).
    Integer,
    /// A 64-bit integer (SQL BIGINT).
    Bigint,
    /// A double.
    Double,
    /// `true` or `false`.
    Boolean,
}

impl FieldType {
    /// `text` (one delimited column, trimmed) as this type.
    fn parse_text(self, text: &str) -> Result<serde_json::Value, String> {
        use serde_json::Value;
        let trimmed = text.trim();
        match self {
            FieldType::Any => Ok(serde_json::from_str::<Value>(trimmed)
                .ok()
                .filter(|v| v.is_number() || v.is_boolean())
                .unwrap_or_else(|| Value::String(trimmed.to_string()))),
            FieldType::String => Ok(Value::String(text.to_string())),
            FieldType::Integer | FieldType::Bigint => trimmed
                .parse::<i64>()
                .map(Value::from)
                .map_err(|_| format!("expected an integer, found {trimmed:?}")),
            FieldType::Double => trimmed
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map(Value::Number)
                .ok_or_else(|| format!("expected a double, found {trimmed:?}")),
            FieldType::Boolean => match trimmed.to_ascii_lowercase().as_str() {
                "true" => Ok(Value::Bool(true)),
                "false" => Ok(Value::Bool(false)),
                _ => Err(format!("expected true or false, found {trimmed:?}")),
            },
        }
    }

    /// A JSON field as this type (null stays null).
    fn convert_json(self, value: serde_json::Value) -> Result<serde_json::Value, String> {
        use serde_json::Value;
        let wrong = |what: &str, value: &Value| Err(format!("expected {what}, found {value}"));
        match (self, value) {
            (_, Value::Null) => Ok(Value::Null),
            (FieldType::Any, value) => Ok(value),
            (FieldType::String, Value::String(s)) => Ok(Value::String(s)),
            (FieldType::String, value) => Ok(Value::String(value.to_string())),
            (FieldType::Integer | FieldType::Bigint, Value::Number(n)) if n.is_i64() => {
                Ok(Value::Number(n))
            }
            (FieldType::Integer | FieldType::Bigint, value) => wrong("an integer", &value),
            (FieldType::Double, Value::Number(n)) => n
                .as_f64()
                .and_then(serde_json::Number::from_f64)
                .map(Value::Number)
                .ok_or_else(|| format!("expected a double, found {n}")),
            (FieldType::Double, value) => wrong("a double", &value),
            (FieldType::Boolean, Value::Bool(b)) => Ok(Value::Bool(b)),
            (FieldType::Boolean, value) => wrong("true or false", &value),
        }
    }
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
            Codec::Raw if !self.fields.is_empty() => problems.push((
                "fields",
                "only the delimited and json codecs take a field list".into(),
            )),
            Codec::Raw | Codec::Json | Codec::Kafka if self.delimiter.is_some() => problems.push((
                "delimiter",
                "only the delimited codec takes a delimiter".into(),
            )),
            Codec::Kafka if self.fields.len() != 1 => {
                problems.push(("fields", "the kafka codec takes exactly one field".into()))
            }
            Codec::Kafka if self.types.contains(&FieldType::Boolean) => problems.push((
                "types",
                "the kafka codec has no boolean (integer, bigint, double or string)".into(),
            )),
            _ => {}
        }
        if !self.types.is_empty() && self.types.len() != self.fields.len() {
            problems.push((
                "types",
                format!(
                    "give one type per field: {} types for {} fields",
                    self.types.len(),
                    self.fields.len()
                ),
            ));
        }
        if self.delimiter.as_deref() == Some("") {
            problems.push(("delimiter", "the delimiter cannot be empty".into()));
        }
        problems
    }

    fn delimiter(&self) -> &str {
        self.delimiter.as_deref().unwrap_or(",")
    }

    /// The type of field `i`.
    fn field_type(&self, i: usize) -> FieldType {
        self.types.get(i).copied().unwrap_or_default()
    }

    /// A JSON object with the declared fields only, found case-insensitively and typed.
    fn pick_fields(&self, wire: &[u8]) -> Result<Vec<u8>, String> {
        let doc: serde_json::Value =
            serde_json::from_slice(wire).map_err(|e| format!("not valid JSON: {e}"))?;
        let serde_json::Value::Object(mut found) = doc else {
            return Err(format!("expected a JSON object, found {doc}"));
        };
        let mut object = serde_json::Map::new();
        for (i, name) in self.fields.iter().enumerate() {
            let key = found
                .keys()
                .find(|key| key.eq_ignore_ascii_case(name))
                .cloned();
            let value = key
                .and_then(|key| found.remove(&key))
                .unwrap_or(serde_json::Value::Null);
            let value = self
                .field_type(i)
                .convert_json(value)
                .map_err(|e| format!("field `{name}`: {e}"))?;
            object.insert(name.clone(), value);
        }
        serde_json::to_vec(&object).map_err(|e| e.to_string())
    }

    /// Source side: wire bytes into the flowing value.
    pub fn decode(&self, wire: &[u8]) -> Result<Vec<u8>, String> {
        match self.codec {
            Codec::Raw => Ok(wire.to_vec()),
            Codec::Kafka => {
                let name = self.fields.first().map(String::as_str).unwrap_or("value");
                let value = kafka_decode(self.field_type(0), wire)
                    .map_err(|e| format!("field `{name}`: {e}"))?;
                let mut object = serde_json::Map::new();
                object.insert(name.to_string(), value);
                serde_json::to_vec(&object).map_err(|e| e.to_string())
            }
            Codec::Json if !self.fields.is_empty() => self.pick_fields(wire),
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
                for (i, (name, part)) in self.fields.iter().zip(parts).enumerate() {
                    let value = self
                        .field_type(i)
                        .parse_text(part)
                        .map_err(|e| format!("field `{name}`: {e}"))?;
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
            Codec::Kafka => {
                let doc: serde_json::Value = serde_json::from_slice(value)
                    .map_err(|e| format!("value is not valid JSON: {e}"))?;
                let name = self.fields.first().map(String::as_str).unwrap_or("value");
                match doc.get(name) {
                    Some(serde_json::Value::Null) | None => {
                        Err(format!("field `{name}` is missing from the value"))
                    }
                    Some(field) => kafka_encode(self.field_type(0), field)
                        .map_err(|e| format!("field `{name}`: {e}")),
                }
            }
            Codec::Json if !self.fields.is_empty() => {
                let doc: serde_json::Value = serde_json::from_slice(value)
                    .map_err(|e| format!("value is not valid JSON: {e}"))?;
                let mut object = serde_json::Map::new();
                for name in &self.fields {
                    let field = doc.get(name).cloned().unwrap_or(serde_json::Value::Null);
                    object.insert(name.clone(), field);
                }
                serde_json::to_vec(&object).map_err(|e| e.to_string())
            }
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

/// One value as Kafka's standard deserializers read it.
fn kafka_decode(ty: FieldType, wire: &[u8]) -> Result<serde_json::Value, String> {
    fn fixed<const N: usize>(wire: &[u8]) -> Result<[u8; N], String> {
        wire.try_into()
            .map_err(|_| format!("expected {N} bytes, found {}", wire.len()))
    }
    match ty {
        FieldType::Integer => Ok(i32::from_be_bytes(fixed(wire)?).into()),
        FieldType::Bigint => Ok(i64::from_be_bytes(fixed(wire)?).into()),
        FieldType::Double => serde_json::Number::from_f64(f64::from_be_bytes(fixed(wire)?))
            .map(serde_json::Value::Number)
            .ok_or_else(|| "not a finite double".to_string()),
        FieldType::Boolean => Err("the kafka codec has no boolean".into()),
        FieldType::String | FieldType::Any => std::str::from_utf8(wire)
            .map(|s| serde_json::Value::String(s.to_string()))
            .map_err(|e| format!("not UTF-8 text: {e}")),
    }
}

/// One value as Kafka's standard serializers write it.
fn kafka_encode(ty: FieldType, value: &serde_json::Value) -> Result<Vec<u8>, String> {
    use serde_json::Value;
    match (ty, value) {
        (FieldType::Integer, Value::Number(n)) => n
            .as_i64()
            .and_then(|i| i32::try_from(i).ok())
            .map(|i| i.to_be_bytes().to_vec())
            .ok_or_else(|| format!("{n} is not a 32-bit INTEGER")),
        (FieldType::Bigint, Value::Number(n)) => n
            .as_i64()
            .map(|i| i.to_be_bytes().to_vec())
            .ok_or_else(|| format!("{n} is not a BIGINT")),
        (FieldType::Double, Value::Number(n)) => n
            .as_f64()
            .map(|d| d.to_be_bytes().to_vec())
            .ok_or_else(|| format!("{n} is not a DOUBLE")),
        (FieldType::Any, Value::Number(n)) => match n.as_i64() {
            Some(i) => Ok(i.to_be_bytes().to_vec()),
            None => n
                .as_f64()
                .map(|d| d.to_be_bytes().to_vec())
                .ok_or_else(|| format!("{n} is not a number Kafka serializes")),
        },
        (FieldType::String | FieldType::Any, Value::String(s)) => Ok(s.as_bytes().to_vec()),
        (FieldType::String, other) => Ok(other.to_string().into_bytes()),
        (ty, other) => Err(format!("{other} does not fit {ty:?} in the kafka codec")),
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
            types: Vec::new(),
        }
    }

    #[test]
    fn a_schema_types_each_column_and_names_the_field_that_does_not_fit() {
        let typed = EncodingConfig {
            fields: vec!["EVENTID".into(), "SENSORINPUT".into()],
            types: vec![FieldType::Integer, FieldType::String],
            ..delimited()
        };
        assert_eq!(
            typed.decode(b"7, 1.5# 2").unwrap(),
            br#"{"EVENTID":7,"SENSORINPUT":" 1.5# 2"}"#
        );
        assert_eq!(
            typed.decode(b"x,1").unwrap_err(),
            r#"field `EVENTID`: expected an integer, found "x""#
        );
        let doubles = EncodingConfig {
            types: vec![FieldType::Integer, FieldType::Double],
            ..delimited()
        };
        assert_eq!(
            doubles.decode(b"1,2").unwrap(),
            br#"{"eventid":1,"anomaly_val":2.0}"#
        );
        let json = EncodingConfig {
            codec: Codec::Json,
            fields: vec!["EVENTID".into(), "NAME".into()],
            types: vec![FieldType::Integer, FieldType::String],
            ..Default::default()
        };
        assert_eq!(
            json.decode(br#"{"eventId":3,"other":1}"#).unwrap(),
            br#"{"EVENTID":3,"NAME":null}"#
        );
        assert_eq!(
            json.decode(br#"{"eventid":"3"}"#).unwrap_err(),
            r#"field `EVENTID`: expected an integer, found "3""#
        );
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
    fn the_kafka_codec_is_one_value_as_kafka_serializes_it() {
        let codec = |ty: FieldType| EncodingConfig {
            codec: Codec::Kafka,
            fields: vec!["V".into()],
            types: vec![ty],
            ..Default::default()
        };
        let int = codec(FieldType::Integer);
        assert_eq!(int.decode(&[0, 0, 1, 2]).unwrap(), br#"{"V":258}"#);
        assert_eq!(int.encode(br#"{"V":258}"#).unwrap(), [0, 0, 1, 2]);
        assert_eq!(
            int.decode(&[1, 2]).unwrap_err(),
            "field `V`: expected 4 bytes, found 2"
        );
        let double = codec(FieldType::Double);
        let wire = 2.5f64.to_be_bytes();
        assert_eq!(double.decode(&wire).unwrap(), br#"{"V":2.5}"#);
        assert_eq!(double.encode(br#"{"V":2.5}"#).unwrap(), wire);
        let bigint = codec(FieldType::Bigint);
        assert_eq!(
            bigint.encode(br#"{"V":-1}"#).unwrap(),
            (-1i64).to_be_bytes()
        );
        let text = codec(FieldType::String);
        assert_eq!(text.decode(b"a,b").unwrap(), br#"{"V":"a,b"}"#);
        assert_eq!(text.encode(br#"{"V":"a,b"}"#).unwrap(), b"a,b");
        let two = EncodingConfig {
            fields: vec!["A".into(), "B".into()],
            ..codec(FieldType::String)
        };
        assert!(two.validate().iter().any(|(f, _)| *f == "fields"));
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
