//! Where failed records go when a pipeline names no dead-letter sink (and where the dead-letter
//! sink's own failures go): one JSON-lines file per pipeline, `<dir>/<pipeline>.jsonl`, so that a
//! record that cannot be processed is kept, with the reason in its headers, instead of dropped.
//!
//! One line per record: `key`, `value` and header values as text when they are UTF-8, else
//! base64 under `key_base64`, `value_base64` or a header's `value_base64`; headers in order.

use crate::message::Message;
use crate::state_dir::is_name_char;
use base64::Engine as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

/// The default size cap of a dead-letter file (`--dead-letter-max-bytes`): 1 GiB.
pub const DEFAULT_MAX_BYTES: u64 = 1 << 30;

/// A pipeline's dead-letter file, created (with its directory) on the first record. It grows up
/// to a size cap; past it a record is refused like a failed write (the caller leaves it
/// unacknowledged, so its broker delivers it again: nothing is lost, and the error says to move
/// the file away, after which writing resumes in a fresh one).
#[derive(Debug)]
pub struct DeadLetterFile {
    path: PathBuf,
    max_bytes: u64,
    /// The open file and its size.
    file: Mutex<Option<(std::fs::File, u64)>>,
}

impl DeadLetterFile {
    /// The file for `pipeline` in `dir`. Characters a file name should not have become `_`.
    pub fn new(dir: &Path, pipeline: &str) -> Self {
        let stem: String = pipeline
            .chars()
            .map(|c| if is_name_char(c) { c } else { '_' })
            .collect();
        let stem = stem.trim_start_matches('.');
        let stem = if stem.is_empty() { "pipeline" } else { stem };
        DeadLetterFile {
            path: dir.join(format!("{stem}.jsonl")),
            max_bytes: DEFAULT_MAX_BYTES,
            file: Mutex::new(None),
        }
    }

    /// The same file, capped at `max_bytes`.
    pub fn with_max_bytes(mut self, max_bytes: u64) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// Where the records go.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `msg` as one JSON line (one `write` call, so lines never interleave); refuses it
    /// when the line would take the file past its cap.
    pub fn append(&self, msg: &Message) -> std::io::Result<()> {
        let mut line = message_json(msg).to_string();
        line.push('\n');
        let len = line.len() as u64;
        let mut opened = self.file.lock().unwrap_or_else(PoisonError::into_inner);
        if opened
            .as_ref()
            .is_some_and(|(_, size)| size + len > self.max_bytes)
        {
            // Full: the operator may have moved it away since; look again.
            *opened = None;
        }
        let (file, size) = match opened.as_mut() {
            Some(open) => open,
            None => opened.insert(self.open()?),
        };
        if *size + len > self.max_bytes {
            return Err(std::io::Error::other(format!(
                "dead-letter file {} is full ({} bytes, cap {}): move it away (writing resumes in \
                 a fresh file) or raise --dead-letter-max-bytes",
                self.path.display(),
                size,
                self.max_bytes
            )));
        }
        file.write_all(line.as_bytes())?;
        *size += len;
        Ok(())
    }

    fn open(&self) -> std::io::Result<(std::fs::File, u64)> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        let size = file.metadata()?.len();
        Ok((file, size))
    }
}

/// `msg` as a JSON object that keeps every byte: text where it is UTF-8, base64 where not.
pub fn message_json(msg: &Message) -> serde_json::Value {
    let mut object = serde_json::Map::new();
    if let Some(key) = &msg.key {
        let (field, value) = bytes_field("key", key);
        object.insert(field, value);
    }
    let (field, value) = bytes_field("value", &msg.value);
    object.insert(field, value);
    let headers = msg
        .headers
        .iter()
        .map(|(name, value)| {
            let (field, value) = bytes_field("value", value);
            serde_json::json!({ "name": name, field: value })
        })
        .collect();
    object.insert("headers".into(), serde_json::Value::Array(headers));
    if let Some(ts) = msg.timestamp_ms {
        object.insert("timestamp_ms".into(), ts.into());
    }
    serde_json::Value::Object(object)
}

fn bytes_field(name: &str, bytes: &[u8]) -> (String, serde_json::Value) {
    match std::str::from_utf8(bytes) {
        Ok(text) => (name.to_string(), text.into()),
        Err(_) => (
            format!("{name}_base64"),
            base64::engine::general_purpose::STANDARD
                .encode(bytes)
                .into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_file_refuses_records_until_it_is_moved_away() {
        let dir = tempfile::tempdir().unwrap();
        let file = DeadLetterFile::new(dir.path(), "p").with_max_bytes(200);
        let msg = Message::from_value(b"0123456789".to_vec());
        let mut kept = 0;
        let err = loop {
            match file.append(&msg) {
                Ok(()) => kept += 1,
                Err(err) => break err,
            }
            assert!(kept < 100, "the cap never applied");
        };
        assert!(kept > 0);
        assert!(err.to_string().contains("is full"), "{err}");
        let size = std::fs::metadata(file.path()).unwrap().len();
        assert!(size <= 200, "{size}");
        // Still full on the next record; moved away, it writes a fresh file.
        assert!(file.append(&msg).is_err());
        std::fs::rename(file.path(), dir.path().join("p.jsonl.1")).unwrap();
        file.append(&msg).expect("a fresh file");
        assert_eq!(
            std::fs::read_to_string(file.path())
                .unwrap()
                .lines()
                .count(),
            1
        );
    }

    #[test]
    fn lines_keep_every_byte() {
        let dir = tempfile::tempdir().unwrap();
        let file = DeadLetterFile::new(dir.path(), "ecg/anomaly");
        assert_eq!(file.path(), dir.path().join("ecg_anomaly.jsonl"));
        let text = Message {
            key: Some(b"106".to_vec()),
            value: b"106, 9.88# x".to_vec(),
            headers: vec![("sluice-error".into(), b"not a number".to_vec())],
            timestamp_ms: Some(7),
        };
        let binary = Message {
            key: None,
            value: vec![0xff, 0x00, 0x80],
            headers: vec![("raw".into(), vec![0xc3])],
            timestamp_ms: None,
        };
        file.append(&text).unwrap();
        file.append(&binary).unwrap();
        let written = std::fs::read_to_string(file.path()).unwrap();
        let lines: Vec<serde_json::Value> = written
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(
            lines[0],
            serde_json::json!({
                "key": "106",
                "value": "106, 9.88# x",
                "headers": [{"name": "sluice-error", "value": "not a number"}],
                "timestamp_ms": 7,
            })
        );
        assert_eq!(
            lines[1],
            serde_json::json!({
                "value_base64": "/wCA",
                "headers": [{"name": "raw", "value_base64": "ww=="}],
            })
        );
        assert_eq!(lines.len(), 2);
    }

    #[test]
    fn an_unwritable_directory_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("not-a-dir");
        std::fs::write(&blocker, "").unwrap();
        let file = DeadLetterFile::new(&blocker, "p");
        assert!(file.append(&Message::from_value(b"v".to_vec())).is_err());
    }
}
