//! The Elasticsearch sink: batches records into `_bulk` NDJSON requests; document `_id` from a
//! field makes retries idempotent; 429/5xx items are retried with backoff, others dead-lettered.

use serde::Deserialize;

/// `[sinks.NAME] type = "elasticsearch"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ElasticsearchSinkConfig {
    /// Cluster URL, e.g. `http://127.0.0.1:9200`.
    pub url: String,
    /// Index name; `%Y`, `%m`, `%d` are replaced by the record's UTC date.
    pub index: String,
    /// JSON field whose value becomes the document `_id` (idempotent retries).
    pub id_field: Option<String>,
    /// Flush after this many records.
    #[serde(default = "max_records")]
    pub batch_max_records: usize,
    /// Flush after this many bytes of NDJSON.
    #[serde(default = "max_bytes")]
    pub batch_max_bytes: usize,
    /// Flush at least this often, in milliseconds.
    #[serde(default = "timeout_ms")]
    pub batch_timeout_ms: u64,
    /// Basic auth user.
    pub username: Option<String>,
    /// Basic auth password.
    pub password: Option<String>,
    /// API key (`Authorization: ApiKey ...`), instead of basic auth.
    pub api_key: Option<String>,
    /// Extra CA certificate (PEM) to trust for `https://`.
    pub ca_file: Option<String>,
}

fn max_records() -> usize {
    500
}

fn max_bytes() -> usize {
    5 << 20
}

fn timeout_ms() -> u64 {
    1000
}

impl ElasticsearchSinkConfig {
    /// Problems as `(field, message)`.
    pub fn validate(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
            problems.push((
                "url",
                format!("{:?} is not an http:// or https:// URL", self.url),
            ));
        }
        // Check the name as it will be on a given day: `%Y`, `%m`, `%d` become digits.
        let dated = self
            .index
            .replace("%Y", "2026")
            .replace("%m", "01")
            .replace("%d", "01");
        if dated.is_empty()
            || dated
                .chars()
                .any(|c| c.is_ascii_uppercase() || " \"*\\<|,>/?%".contains(c))
        {
            problems.push((
                "index",
                format!(
                    "{:?} is not a valid index name (lowercase, no spaces or \\/*?\"<>|,)",
                    self.index
                ),
            ));
        }
        if self.batch_max_records == 0 {
            problems.push(("batch_max_records", "must be at least 1".into()));
        }
        if self.password.is_some() && self.username.is_none() {
            problems.push(("password", "a password needs a username".into()));
        }
        if self.api_key.is_some() && self.username.is_some() {
            problems.push((
                "api_key",
                "use either basic auth or an API key, not both".into(),
            ));
        }
        problems
    }
}

/// The running Elasticsearch sink.
pub struct ElasticsearchSink {
    config: ElasticsearchSinkConfig,
    client: reqwest::Client,
    bulk_url: String,
    auth: Option<String>,
}

/// One document waiting for `_bulk`, with the record it came from.
struct Pending {
    record: crate::flow::Record,
    action: Vec<u8>,
    source: Vec<u8>,
}

/// Why a whole `_bulk` request failed.
enum RequestFailure {
    /// Connection errors, 429, 5xx: send again later.
    Retry(String),
    /// Any other HTTP error (bad auth, bad request): the documents are dead-lettered.
    Reject(String),
}

/// What `_bulk` said about one item.
enum ItemOutcome {
    Accepted,
    Retry(String),
    Reject(String),
}

impl ElasticsearchSink {
    /// Builds the HTTP client (no request yet).
    pub fn build(config: ElasticsearchSinkConfig) -> Result<Self, String> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = reqwest::Client::builder().timeout(std::time::Duration::from_secs(30));
        if let Some(ca) = &config.ca_file {
            let pem = std::fs::read(ca).map_err(|e| format!("ca_file: cannot read {ca}: {e}"))?;
            let cert =
                reqwest::Certificate::from_pem(&pem).map_err(|e| format!("ca_file {ca}: {e}"))?;
            builder = builder.add_root_certificate(cert);
        }
        let client = builder
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        let auth = match (&config.username, &config.api_key) {
            (Some(user), _) => {
                use base64::Engine as _;
                let pair = format!("{user}:{}", config.password.clone().unwrap_or_default());
                Some(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(pair)
                ))
            }
            (None, Some(key)) => Some(format!("ApiKey {key}")),
            (None, None) => None,
        };
        let bulk_url = format!("{}/_bulk", config.url.trim_end_matches('/'));
        Ok(ElasticsearchSink {
            config,
            client,
            bulk_url,
            auth,
        })
    }

    /// Indexes records until the input closes: batches by count, bytes or time, retries 429/5xx
    /// (whole requests and single items) with backoff, dead-letters what Elasticsearch rejects.
    pub fn run(
        self,
        mut input: tokio::sync::mpsc::Receiver<crate::flow::Record>,
        ctx: crate::flow::ComponentContext,
    ) -> crate::flow::ComponentTask {
        Box::pin(async move {
            let timeout = std::time::Duration::from_millis(self.config.batch_timeout_ms);
            let mut open = true;
            while open {
                let mut batch: Vec<Pending> = Vec::new();
                let mut bytes = 0usize;
                let mut deadline = None;
                while batch.len() < self.config.batch_max_records
                    && bytes < self.config.batch_max_bytes
                {
                    let next = match deadline {
                        None => input.recv().await,
                        Some(at) => match tokio::time::timeout_at(at, input.recv()).await {
                            Ok(next) => next,
                            Err(_) => break, // batch timeout
                        },
                    };
                    let Some(record) = next else {
                        open = false;
                        break;
                    };
                    deadline.get_or_insert_with(|| tokio::time::Instant::now() + timeout);
                    match self.document(record) {
                        Ok(doc) => {
                            bytes += doc.action.len() + doc.source.len() + 2;
                            batch.push(doc);
                        }
                        Err((record, reason)) => {
                            ctx.dead_letters.send(record, &ctx.metrics, &reason).await
                        }
                    }
                }
                if !batch.is_empty() {
                    self.deliver(batch, &ctx).await;
                }
            }
        })
    }

    /// The bulk action and source lines for a record, or why it cannot be indexed.
    fn document(
        &self,
        record: crate::flow::Record,
    ) -> Result<Pending, (crate::flow::Record, String)> {
        let doc: serde_json::Value = match serde_json::from_slice(&record.msg.value) {
            Ok(serde_json::Value::Object(doc)) => serde_json::Value::Object(doc),
            Ok(_) => {
                return Err((
                    record,
                    "elasticsearch: the value is JSON but not an object".into(),
                ))
            }
            Err(e) => return Err((record, format!("elasticsearch: the value is not JSON: {e}"))),
        };
        let index = index_name(&self.config.index, record.msg.timestamp_ms);
        let mut meta = serde_json::Map::new();
        meta.insert("_index".into(), index.into());
        if let Some(field) = &self.config.id_field {
            match doc.get(field) {
                Some(serde_json::Value::String(id)) => {
                    meta.insert("_id".into(), id.clone().into());
                }
                Some(id @ serde_json::Value::Number(_)) => {
                    meta.insert("_id".into(), id.to_string().into());
                }
                _ => {
                    let reason = format!(
                        "elasticsearch: id field `{field}` is missing or not a string/number"
                    );
                    return Err((record, reason));
                }
            }
        }
        let action = serde_json::json!({ "index": meta })
            .to_string()
            .into_bytes();
        // The record's own bytes, unless they span lines (NDJSON needs one line per document).
        let source = if record.msg.value.contains(&b'\n') {
            doc.to_string().into_bytes()
        } else {
            record.msg.value.clone()
        };
        Ok(Pending {
            record,
            action,
            source,
        })
    }

    /// Sends a batch until every item is accepted or rejected.
    async fn deliver(&self, mut batch: Vec<Pending>, ctx: &crate::flow::ComponentContext) {
        let mut backoff = crate::flow::Backoff::default();
        while !batch.is_empty() {
            let mut body = Vec::new();
            for doc in &batch {
                body.extend_from_slice(&doc.action);
                body.push(b'\n');
                body.extend_from_slice(&doc.source);
                body.push(b'\n');
            }
            let answer = self.bulk(body).await.and_then(|outcomes| {
                if outcomes.len() == batch.len() {
                    Ok(outcomes)
                } else {
                    // Ids make a resend idempotent: retry the whole batch.
                    Err(RequestFailure::Retry(format!(
                        "_bulk answered {} items for {} documents",
                        outcomes.len(),
                        batch.len()
                    )))
                }
            });
            let outcomes = match answer {
                Ok(outcomes) => outcomes,
                Err(RequestFailure::Reject(reason)) => {
                    for doc in batch {
                        ctx.dead_letters
                            .send(doc.record, &ctx.metrics, &reason)
                            .await;
                    }
                    return;
                }
                Err(RequestFailure::Retry(reason)) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(component = %ctx.component, "elasticsearch: {reason}; retrying in {delay:?}");
                    ctx.metrics.set_connection(crate::metrics::Connection::Down);
                    ctx.metrics
                        .report_error(&format!("elasticsearch: {reason}"));
                    tokio::time::sleep(delay).await;
                    continue;
                }
            };
            ctx.metrics.set_connection(crate::metrics::Connection::Up);
            let mut retry = Vec::new();
            let mut retry_reason = String::new();
            for (doc, outcome) in batch.into_iter().zip(outcomes) {
                match outcome {
                    ItemOutcome::Accepted => {
                        ctx.metrics.record_out();
                        doc.record.ack.done()
                    }
                    ItemOutcome::Retry(reason) => {
                        retry_reason = reason;
                        retry.push(doc);
                    }
                    ItemOutcome::Reject(reason) => {
                        ctx.dead_letters
                            .send(doc.record, &ctx.metrics, &reason)
                            .await
                    }
                }
            }
            batch = retry;
            if !batch.is_empty() {
                let delay = backoff.next_delay();
                tracing::warn!(
                    component = %ctx.component,
                    items = batch.len(),
                    "elasticsearch asked to retry ({retry_reason}); retrying in {delay:?}"
                );
                tokio::time::sleep(delay).await;
            }
        }
    }

    /// One `_bulk` request: per-item outcomes, or the whole request's outcome as `Err`.
    async fn bulk(&self, body: Vec<u8>) -> Result<Vec<ItemOutcome>, RequestFailure> {
        let mut request = self
            .client
            .post(&self.bulk_url)
            .header("content-type", "application/x-ndjson")
            .body(body);
        if let Some(auth) = &self.auth {
            request = request.header("authorization", auth);
        }
        let response = request
            .send()
            .await
            .map_err(|e| RequestFailure::Retry(format!("POST {}: {e}", self.bulk_url)))?;
        let status = response.status().as_u16();
        let text = response
            .text()
            .await
            .map_err(|e| RequestFailure::Retry(format!("reading the _bulk response: {e}")))?;
        match status {
            200..=299 => {}
            429 | 500..=599 => return Err(RequestFailure::Retry(format!("HTTP {status}"))),
            _ => {
                let preview: String = text.chars().take(300).collect();
                return Err(RequestFailure::Reject(format!(
                    "elasticsearch: HTTP {status}: {preview}"
                )));
            }
        }
        let parsed: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| RequestFailure::Retry(format!("the _bulk response is not JSON: {e}")))?;
        let items = parsed
            .get("items")
            .and_then(|i| i.as_array())
            .ok_or_else(|| RequestFailure::Retry("the _bulk response has no items".into()))?;
        Ok(items.iter().map(item_outcome).collect())
    }
}

/// `{"index":{"status":201}}` → accepted; 429/5xx → retry; anything else → reject with the reason.
fn item_outcome(item: &serde_json::Value) -> ItemOutcome {
    let Some(result) = item.as_object().and_then(|o| o.values().next()) else {
        return ItemOutcome::Retry("a _bulk item without a result".into());
    };
    let status = result.get("status").and_then(|s| s.as_u64()).unwrap_or(0);
    let error = result
        .get("error")
        .map(|e| {
            let kind = e.get("type").and_then(|t| t.as_str()).unwrap_or("error");
            let reason = e.get("reason").and_then(|r| r.as_str()).unwrap_or("");
            format!("{kind}: {reason}")
        })
        .unwrap_or_default();
    match status {
        200..=299 => ItemOutcome::Accepted,
        429 | 500..=599 => ItemOutcome::Retry(format!("item status {status} {error}")),
        _ => ItemOutcome::Reject(format!(
            "elasticsearch rejected the document (status {status}): {error}"
        )),
    }
}

/// The index name for a record: `%Y`, `%m`, `%d` from its timestamp (UTC), or now.
pub fn index_name(pattern: &str, timestamp_ms: Option<i64>) -> String {
    if !pattern.contains('%') {
        return pattern.to_string();
    }
    let millis = timestamp_ms.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    });
    let (y, m, d) = civil_from_days(millis.div_euclid(86_400_000));
    pattern
        .replace("%Y", &format!("{y:04}"))
        .replace("%m", &format!("{m:02}"))
        .replace("%d", &format!("{d:02}"))
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_names_follow_the_record_date() {
        assert_eq!(index_name("scores", None), "scores");
        // 2026-11-21T12:00:00Z
        assert_eq!(
            index_name("scores-%Y.%m.%d", Some(1_795_262_400_000)),
            "scores-2026.11.21"
        );
        assert_eq!(index_name("x-%Y%m%d", Some(0)), "x-19700101");
        assert_eq!(
            index_name("x-%Y-%m-%d", Some(951_782_400_000)),
            "x-2000-02-29"
        );
    }

    #[test]
    fn bulk_items_are_classified() {
        let ok = serde_json::json!({"index": {"status": 201}});
        assert!(matches!(item_outcome(&ok), ItemOutcome::Accepted));
        let busy = serde_json::json!({"index": {"status": 429, "error": {"type": "es_rejected_execution_exception", "reason": "queue full"}}});
        assert!(matches!(item_outcome(&busy), ItemOutcome::Retry(_)));
        let bad = serde_json::json!({"index": {"status": 400, "error": {"type": "mapper_parsing_exception", "reason": "failed to parse"}}});
        match item_outcome(&bad) {
            ItemOutcome::Reject(reason) => assert!(
                reason.contains("mapper_parsing_exception: failed to parse"),
                "{reason}"
            ),
            _ => panic!("a 400 item is rejected"),
        }
    }
}
