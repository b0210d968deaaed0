//! A faithful stand-in for Elasticsearch's document API, for the embedded demo and for machines
//! where no cluster can be installed: `POST /_bulk` (NDJSON `index` actions, per-item results with
//! `status` and `error` exactly as Elasticsearch writes them) and `GET /{index}/_doc/{id}`
//! (`found` / `_source`). Faults can be injected per document id: a 429 on the first attempt, a
//! 400 `mapper_parsing_exception` every time, or no item in the first answer.
//!
//! The end-to-end tests talk to it over real HTTP; with `SLUICE_TEST_ELASTICSEARCH_URL` set they
//! talk to a real cluster instead (and skip the fault injection, which only this server can do).

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// Faults to inject, by document `_id`.
#[derive(Default, Clone)]
pub struct Faults {
    /// Answer 429 for these ids the first time they are sent.
    pub busy_once: HashSet<String>,
    /// Answer 400 `mapper_parsing_exception` for these ids, always.
    pub reject: HashSet<String>,
    /// Index these ids but leave their items out of the answer the first time they are sent (no
    /// Elasticsearch does this; a broken proxy might), so the answer has fewer items than the
    /// request had documents.
    pub unanswered_once: HashSet<String>,
}

#[derive(Default)]
struct State {
    docs: HashMap<(String, String), serde_json::Value>,
    seen: HashSet<String>,
    bulk_requests: usize,
}

/// The running server; stops with the test process.
pub struct FakeElasticsearch {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    state: Arc<Mutex<State>>,
}

impl FakeElasticsearch {
    /// Starts listening on a free port of 127.0.0.1.
    pub fn start(faults: Faults) -> std::io::Result<Self> {
        Self::start_on(0, faults)
    }

    /// Starts listening on `port` of 127.0.0.1 (0: any free port); a test that starts the
    /// server late reserves the port first, to show a destination that comes up after a while.
    pub fn start_on(port: u16, faults: Faults) -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", port))?;
        let url = format!("http://{}", listener.local_addr()?);
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let (state, faults) = (shared.clone(), faults.clone());
                std::thread::spawn(move || serve(stream, &state, &faults));
            }
        });
        Ok(FakeElasticsearch { url, state })
    }

    /// The documents of `index`, as `(_id, _source)` sorted by id.
    pub fn documents(&self, index: &str) -> Vec<(String, serde_json::Value)> {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut docs: Vec<_> = state
            .docs
            .iter()
            .filter(|((i, _), _)| i == index)
            .map(|((_, id), source)| (id.clone(), source.clone()))
            .collect();
        docs.sort_by(|a, b| a.0.cmp(&b.0));
        docs
    }

    /// How many `_bulk` requests arrived.
    pub fn bulk_requests(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .bulk_requests
    }
}

fn serve(stream: TcpStream, state: &Mutex<State>, faults: &Faults) {
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let mut writer = stream;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut length = 0usize;
        let mut close = false;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
                if name.eq_ignore_ascii_case("connection")
                    && value.trim().eq_ignore_ascii_case("close")
                {
                    close = true;
                }
            }
        }
        let mut body = vec![0u8; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let mut parts = request_line.split_whitespace();
        let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let (status, response) = match (method, path) {
            ("POST", "/_bulk") => bulk(&body, state, faults),
            ("GET", path) => get(path, state),
            _ => (
                404,
                serde_json::json!({"error": "not supported by the fake"}),
            ),
        };
        let text = response.to_string();
        let reply = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{text}",
            text.len()
        );
        if writer.write_all(reply.as_bytes()).is_err() || close {
            return;
        }
    }
}

fn bulk(body: &[u8], state: &Mutex<State>, faults: &Faults) -> (u16, serde_json::Value) {
    let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
    state.bulk_requests += 1;
    let text = String::from_utf8_lossy(body);
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let mut items = Vec::new();
    let mut errors = false;
    while let Some(action) = lines.next() {
        let Ok(action) = serde_json::from_str::<serde_json::Value>(action) else {
            return (
                400,
                serde_json::json!({"error": {"type": "illegal_argument_exception", "reason": "Malformed action/metadata line"}, "status": 400}),
            );
        };
        let meta = &action["index"];
        let index = meta["_index"].as_str().unwrap_or_default().to_string();
        let id = meta["_id"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| format!("auto-{}", state.docs.len()));
        let source = lines
            .next()
            .and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok());
        let first_time = state.seen.insert(id.clone());
        let item = if faults.reject.contains(&id) || source.is_none() {
            errors = true;
            serde_json::json!({"index": {"_index": index, "_id": id, "status": 400, "error": {
                "type": "mapper_parsing_exception", "reason": format!("failed to parse document [{id}]")}}})
        } else if first_time && faults.busy_once.contains(&id) {
            errors = true;
            serde_json::json!({"index": {"_index": index, "_id": id, "status": 429, "error": {
                "type": "es_rejected_execution_exception", "reason": "rejected execution: queue capacity reached"}}})
        } else {
            let created = state
                .docs
                .insert((index.clone(), id.clone()), source.unwrap_or_default())
                .is_none();
            if first_time && faults.unanswered_once.contains(&id) {
                continue;
            }
            serde_json::json!({"index": {"_index": index, "_id": id, "_version": 1,
                "result": if created { "created" } else { "updated" }, "status": if created { 201 } else { 200 }}})
        };
        items.push(item);
    }
    (
        200,
        serde_json::json!({"took": 1, "errors": errors, "items": items}),
    )
}

fn get(path: &str, state: &Mutex<State>) -> (u16, serde_json::Value) {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    if let [index, "_doc", id] = parts.as_slice() {
        let state = state.lock().unwrap_or_else(|p| p.into_inner());
        return match state.docs.get(&(index.to_string(), id.to_string())) {
            Some(source) => (
                200,
                serde_json::json!({"_index": index, "_id": id, "found": true, "_source": source}),
            ),
            None => (
                404,
                serde_json::json!({"_index": index, "_id": id, "found": false}),
            ),
        };
    }
    (
        404,
        serde_json::json!({"error": "not supported by the fake"}),
    )
}

/// `GET {url}/{index}/_doc/{id}` → the `_source`, if found (works on a real cluster too).
pub fn get_document(url: &str, index: &str, id: &str) -> Option<serde_json::Value> {
    let address = url.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = TcpStream::connect(address).ok()?;
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .ok()?;
    let request =
        format!("GET /{index}/_doc/{id} HTTP/1.1\r\nhost: {address}\r\nconnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let body = response.split_once("\r\n\r\n")?.1;
    // A real cluster may answer chunked; take the JSON object in the body.
    let start = body.find('{')?;
    let end = body.rfind('}')?;
    let doc: serde_json::Value = serde_json::from_str(&body[start..=end]).ok()?;
    if doc["found"].as_bool() == Some(true) {
        Some(doc["_source"].clone())
    } else {
        None
    }
}
