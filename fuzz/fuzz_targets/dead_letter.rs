//! The dead-letter record: any message (binary key, value and headers) written as JSON keeps
//! every byte, in order, and reads back to the same message.
#![no_main]

use arbitrary::Arbitrary;
use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use sluice::Message;

#[derive(Debug, Arbitrary)]
struct Input {
    key: Option<Vec<u8>>,
    value: Vec<u8>,
    headers: Vec<(String, Vec<u8>)>,
    timestamp_ms: Option<i64>,
}

fn bytes(object: &serde_json::Value, name: &str) -> Option<Vec<u8>> {
    if let Some(text) = object.get(name) {
        return Some(text.as_str().expect("text field").as_bytes().to_vec());
    }
    object.get(format!("{name}_base64")).map(|b64| {
        base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().expect("base64 field"))
            .expect("valid base64")
    })
}

fuzz_target!(|input: Input| {
    let msg = Message {
        key: input.key,
        value: input.value,
        headers: input.headers,
        timestamp_ms: input.timestamp_ms,
    };
    let json = sluice::flow::dead_letter_file::message_json(&msg);
    // Through text, as the file and the dead-letter topics carry it.
    let text = serde_json::to_string(&json).expect("serialises");
    let json: serde_json::Value = serde_json::from_str(&text).expect("reads back");
    let read = Message {
        key: bytes(&json, "key"),
        value: bytes(&json, "value").expect("a value"),
        headers: json["headers"]
            .as_array()
            .expect("headers")
            .iter()
            .map(|h| {
                (
                    h["name"].as_str().expect("header name").to_string(),
                    bytes(h, "value").expect("header value"),
                )
            })
            .collect(),
        timestamp_ms: json
            .get("timestamp_ms")
            .map(|t| t.as_i64().expect("an integer")),
    };
    assert_eq!(read, msg);
});
