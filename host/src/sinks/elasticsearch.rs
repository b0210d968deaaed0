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
