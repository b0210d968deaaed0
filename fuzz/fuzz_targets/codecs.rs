//! The codecs at a pipeline's edges (raw, json, delimited, kafka, with or without a typed schema) on
//! arbitrary wire bytes and configurations: a valid configuration decodes or refuses with a reason, never panics; raw
//! keeps every byte; what json accepts is valid JSON; a delimited decode is a JSON object whose
//! keys are the configured fields, and encodes back.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use sluice::codec::{Codec, EncodingConfig, FieldType};

#[derive(Debug, Arbitrary)]
struct Input {
    codec: u8,
    fields: Vec<String>,
    delimiter: Option<String>,
    types: Vec<u8>,
    wire: Vec<u8>,
}

fuzz_target!(|input: Input| {
    let config = EncodingConfig {
        codec: match input.codec % 4 {
            0 => Codec::Raw,
            1 => Codec::Json,
            2 => Codec::Kafka,
            _ => Codec::Delimited,
        },
        fields: input.fields,
        delimiter: input.delimiter,
        types: input
            .types
            .iter()
            .map(|t| match t % 6 {
                0 => FieldType::Any,
                1 => FieldType::String,
                2 => FieldType::Integer,
                3 => FieldType::Bigint,
                4 => FieldType::Double,
                _ => FieldType::Boolean,
            })
            .collect(),
    };
    if !config.validate().is_empty() {
        return;
    }
    let Ok(value) = config.decode(&input.wire) else {
        return;
    };
    match config.codec {
        Codec::Raw => assert_eq!(value, input.wire),
        Codec::Json => {
            serde_json::from_slice::<serde_json::Value>(&value).expect("json decode gives JSON");
            let _ = config.encode(&value);
        }
        Codec::Kafka => {
            let object: serde_json::Map<String, serde_json::Value> =
                serde_json::from_slice(&value).expect("kafka decode gives an object");
            assert_eq!(object.len(), 1);
            // What was read is written back as the same bytes.
            assert_eq!(config.encode(&value).expect("encodes back"), input.wire);
        }
        Codec::Delimited => {
            let object: serde_json::Map<String, serde_json::Value> =
                serde_json::from_slice(&value).expect("delimited decode gives an object");
            assert!(object.keys().all(|k| config.fields.contains(k)));
            let _ = config.encode(&value);
        }
    }
    // Encoding whatever flows never panics either.
    let _ = config.encode(&input.wire);
});
