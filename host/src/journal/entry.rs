//! One journal entry: a received message as it came from the broker (topic, user properties,
//! payload) and when it arrived, so a replayed entry goes through the same decoding as a fresh
//! one; and a record's message as a sink buffer keeps it. Encoded as a version byte, the time, then length-prefixed fields (lengths as
//! little-endian u32), the payload last.

/// The format written; an entry of another version is refused with a clear error.
const VERSION: u8 = 1;

/// The format of a record kept in a sink's buffer ([`encode_message`]).
const MESSAGE_VERSION: u8 = 2;

/// A record's message as a sink buffer keeps it: key, headers, time and value.
pub fn encode_message(msg: &crate::message::Message) -> Vec<u8> {
    let mut out = Vec::with_capacity(msg.value.len() + 64);
    out.push(MESSAGE_VERSION);
    out.extend_from_slice(&msg.timestamp_ms.unwrap_or(i64::MIN).to_le_bytes());
    put_key(&mut out, msg.key.as_deref());
    put_len(&mut out, msg.headers.len());
    for (name, value) in &msg.headers {
        put(&mut out, name.as_bytes());
        put(&mut out, value);
    }
    out.extend_from_slice(&msg.value);
    out
}

/// Reads what [`encode_message`] wrote.
pub fn decode_message(bytes: &[u8]) -> Result<crate::message::Message, String> {
    let mut reader = Reader(bytes);
    let version = reader.take(1)?[0];
    if version != MESSAGE_VERSION {
        return Err(format!(
            "buffered record of format {version}, this sluice reads format {MESSAGE_VERSION}"
        ));
    }
    let timestamp = i64::from_le_bytes(
        reader
            .take(8)?
            .try_into()
            .map_err(|_| "truncated time".to_string())?,
    );
    let key = reader.key()?;
    let count = reader.len()?;
    let mut headers = Vec::with_capacity(count.min(1024));
    for _ in 0..count {
        let name = String::from_utf8(reader.field()?.to_vec())
            .map_err(|_| "a header name is not UTF-8".to_string())?;
        headers.push((name, reader.field()?.to_vec()));
    }
    Ok(crate::message::Message {
        key,
        value: reader.0.to_vec(),
        headers,
        timestamp_ms: (timestamp != i64::MIN).then_some(timestamp),
    })
}

/// A message as a source received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalEntry {
    /// Milliseconds since the Unix epoch when it arrived.
    pub received_ms: Option<i64>,
    /// The topic it came on.
    pub topic: Vec<u8>,
    /// The key (Kafka).
    pub key: Option<Vec<u8>>,
    /// MQTT 5 user properties, or Kafka headers.
    pub properties: Vec<(String, Vec<u8>)>,
    /// The payload, as sent.
    pub payload: Vec<u8>,
}

impl JournalEntry {
    /// The bytes stored.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            self.payload.len()
                + self.topic.len()
                + 32
                + self
                    .properties
                    .iter()
                    .map(|(k, v)| k.len() + v.len() + 8)
                    .sum::<usize>(),
        );
        out.push(VERSION);
        out.extend_from_slice(&self.received_ms.unwrap_or(i64::MIN).to_le_bytes());
        put(&mut out, &self.topic);
        put_key(&mut out, self.key.as_deref());
        put_len(&mut out, self.properties.len());
        for (key, value) in &self.properties {
            put(&mut out, key.as_bytes());
            put(&mut out, value);
        }
        out.extend_from_slice(&self.payload);
        out
    }

    /// Reads what [`JournalEntry::encode`] wrote.
    pub fn decode(bytes: &[u8]) -> Result<JournalEntry, String> {
        let mut reader = Reader(bytes);
        let version = reader.take(1)?[0];
        if version != VERSION {
            return Err(format!(
                "journal entry of format {version}, this sluice reads format {VERSION}"
            ));
        }
        let received = i64::from_le_bytes(
            reader
                .take(8)?
                .try_into()
                .map_err(|_| "truncated time".to_string())?,
        );
        let topic = reader.field()?.to_vec();
        let key = reader.key()?;
        let count = reader.len()?;
        let mut properties = Vec::with_capacity(count.min(1024));
        for _ in 0..count {
            let key = String::from_utf8(reader.field()?.to_vec())
                .map_err(|_| "a property name is not UTF-8".to_string())?;
            properties.push((key, reader.field()?.to_vec()));
        }
        Ok(JournalEntry {
            received_ms: (received != i64::MIN).then_some(received),
            topic,
            key,
            properties,
            payload: reader.0.to_vec(),
        })
    }
}

fn put_len(out: &mut Vec<u8>, len: usize) {
    // Fields come from broker packets, which are far below 4 GiB.
    out.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_le_bytes());
}

/// A flag byte, then the key when there is one.
fn put_key(out: &mut Vec<u8>, key: Option<&[u8]>) {
    match key {
        Some(key) => {
            out.push(1);
            put(out, key);
        }
        None => out.push(0),
    }
}

fn put(out: &mut Vec<u8>, field: &[u8]) {
    put_len(out, field.len());
    out.extend_from_slice(field);
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err(format!(
                "truncated journal entry: {n} more bytes expected, {} left",
                self.0.len()
            ));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn len(&mut self) -> Result<usize, String> {
        let bytes: [u8; 4] = self
            .take(4)?
            .try_into()
            .map_err(|_| "truncated length".to_string())?;
        Ok(u32::from_le_bytes(bytes) as usize)
    }

    fn key(&mut self) -> Result<Option<Vec<u8>>, String> {
        Ok(match self.take(1)?[0] {
            0 => None,
            _ => Some(self.field()?.to_vec()),
        })
    }

    fn field(&mut self) -> Result<&'a [u8], String> {
        let len = self.len()?;
        self.take(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip() {
        let entry = JournalEntry {
            received_ms: Some(1_700_000_000_123),
            topic: b"electric-temperature".to_vec(),
            key: Some(b"sensor-7".to_vec()),
            properties: vec![("trace".into(), b"abc".to_vec()), ("e".into(), vec![])],
            payload: b"106, 9.88# 9.13".to_vec(),
        };
        assert_eq!(JournalEntry::decode(&entry.encode()), Ok(entry.clone()));
        let bare = JournalEntry {
            received_ms: None,
            topic: vec![],
            key: None,
            properties: vec![],
            payload: vec![],
        };
        assert_eq!(JournalEntry::decode(&bare.encode()), Ok(bare));
    }

    #[test]
    fn buffered_messages_round_trip() {
        let msg = crate::message::Message {
            key: Some(b"k".to_vec()),
            value: br#"{"eventid":106}"#.to_vec(),
            headers: vec![("sluice-udf".into(), b"anomaly@12345678".to_vec())],
            timestamp_ms: Some(42),
        };
        assert_eq!(decode_message(&encode_message(&msg)), Ok(msg));
        let bare = crate::message::Message::from_value("");
        assert_eq!(decode_message(&encode_message(&bare)), Ok(bare));
        assert!(decode_message(&[1, 0]).unwrap_err().contains("format 1"));
    }

    #[test]
    fn damaged_entries_are_refused_with_a_reason() {
        let entry = JournalEntry {
            received_ms: Some(1),
            topic: b"t".to_vec(),
            key: None,
            properties: vec![("k".into(), b"v".to_vec())],
            payload: b"p".to_vec(),
        };
        let bytes = entry.encode();
        for cut in 0..bytes.len() - 1 {
            // Every cut before the payload loses a field; none may panic.
            let _ = JournalEntry::decode(&bytes[..cut]);
        }
        assert!(JournalEntry::decode(&bytes[..5])
            .unwrap_err()
            .contains("truncated"));
        let mut other = bytes.clone();
        other[0] = 9;
        assert!(JournalEntry::decode(&other)
            .unwrap_err()
            .contains("format 9"));
    }
}
