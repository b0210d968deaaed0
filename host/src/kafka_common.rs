//! What the Kafka source and sink share: the librdkafka client settings built from a pipeline's
//! `brokers` and `options`.

use std::collections::BTreeMap;

/// librdkafka settings shared by the Kafka source and sink: the pass-through `options` first,
/// then what Sluice sets itself (so options cannot override the bootstrap servers or client id).
pub(crate) fn client_config(
    brokers: &str,
    options: &BTreeMap<String, String>,
    ctx: &crate::flow::ComponentContext,
) -> rdkafka::ClientConfig {
    let mut client = rdkafka::ClientConfig::new();
    for (key, value) in options {
        client.set(key, value);
    }
    client
        .set("bootstrap.servers", brokers)
        .set("client.id", ctx.default_client_id());
    client
}

/// librdkafka properties a pipeline deployed on a host (`sluice serve`) may set: tuning,
/// consumer-group behaviour, and SASL and TLS given inline. Anything else could load native code
/// (`plugin.library.paths`, `ssl.engine.location`), run a command (`sasl.kerberos.kinit.cmd`),
/// read host files or weaken TLS, so it is refused with the key named.
pub const DEPLOYABLE_OPTIONS: &[&str] = &[
    // Producer tuning and delivery.
    "acks",
    "batch.num.messages",
    "batch.size",
    "compression.codec",
    "compression.level",
    "compression.type",
    "delivery.timeout.ms",
    "enable.idempotence",
    "linger.ms",
    "max.in.flight",
    "max.in.flight.requests.per.connection",
    "message.max.bytes",
    "message.send.max.retries",
    "message.timeout.ms",
    "queue.buffering.max.kbytes",
    "queue.buffering.max.messages",
    "queue.buffering.max.ms",
    "request.timeout.ms",
    "retries",
    "retry.backoff.max.ms",
    "retry.backoff.ms",
    // Consumer tuning and group behaviour.
    "auto.commit.interval.ms",
    "check.crcs",
    "client.rack",
    "fetch.max.bytes",
    "fetch.message.max.bytes",
    "fetch.min.bytes",
    "fetch.wait.max.ms",
    "group.instance.id",
    "heartbeat.interval.ms",
    "isolation.level",
    "max.partition.fetch.bytes",
    "max.poll.interval.ms",
    "partition.assignment.strategy",
    "queued.max.messages.kbytes",
    "queued.min.messages",
    "session.timeout.ms",
    // Connections.
    "allow.auto.create.topics",
    "api.version.request",
    "broker.address.family",
    "connections.max.idle.ms",
    "metadata.max.age.ms",
    "reconnect.backoff.max.ms",
    "reconnect.backoff.ms",
    "socket.connection.setup.timeout.ms",
    "socket.keepalive.enable",
    "socket.timeout.ms",
    "topic.metadata.refresh.interval.ms",
    // SASL, and TLS material inline (PEM).
    "sasl.mechanism",
    "sasl.mechanisms",
    "sasl.password",
    "sasl.username",
    "security.protocol",
    "ssl.ca.pem",
    "ssl.certificate.pem",
    "ssl.cipher.suites",
    "ssl.curves.list",
    "ssl.key.password",
    "ssl.key.pem",
    "ssl.sigalgs.list",
];

/// File locations a deployed pipeline may set, each only to a file under a directory the
/// operator allows (`sluice serve --allow-path DIR`).
pub const DEPLOYABLE_FILE_OPTIONS: &[&str] = &[
    "ssl.ca.location",
    "ssl.certificate.location",
    "ssl.crl.location",
    "ssl.key.location",
    "ssl.keystore.location",
];

/// What is wrong with `options` in a pipeline deployed on a host, as `(key, message)`: a key
/// outside [`DEPLOYABLE_OPTIONS`], a file outside `allowed_dirs`, or TLS verification switched
/// off. Values are never repeated (they may be secrets or host paths).
pub fn deployable_option_problems(
    options: &BTreeMap<String, String>,
    allowed_dirs: &[std::path::PathBuf],
) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    for (key, value) in options {
        let key_str = key.as_str();
        let refused = |why: &str| (key.clone(), why.to_string());
        if DEPLOYABLE_FILE_OPTIONS.contains(&key_str) {
            if !under_allowed_dir(value, allowed_dirs) {
                problems.push(refused(
                    "a file location must be under a directory the host allows \
                     (`sluice serve --allow-path DIR`), or give the PEM inline (`*.pem`)",
                ));
            }
            continue;
        }
        match key_str {
            "enable.ssl.certificate.verification" if value == "true" => {}
            "ssl.endpoint.identification.algorithm" if value == "https" => {}
            "enable.ssl.certificate.verification" | "ssl.endpoint.identification.algorithm" => {
                problems.push(refused(
                    "TLS certificate and host name verification cannot be switched off in a \
                     pipeline deployed on a host",
                ))
            }
            _ if DEPLOYABLE_OPTIONS.contains(&key_str) => {}
            _ => problems.push(refused(
                "not allowed in a pipeline deployed on a host (it could load code, run a \
                 command, read host files or weaken TLS); see README, Security, for the \
                 properties that are",
            )),
        }
    }
    problems
}

/// The librdkafka options of `spec`'s Kafka sources and sinks that a pipeline held to the
/// allowlist may not set ([`deployable_option_problems`]), as errors naming each key and
/// pointing into `toml` (the text of `file`).
pub fn pipeline_option_problems(
    spec: &crate::pipeline::PipelineSpec,
    file: &std::path::Path,
    toml: &str,
    allowed_dirs: &[std::path::PathBuf],
) -> Vec<crate::pipeline::ConfigError> {
    use crate::pipeline::{SinkConfig, SourceConfig};
    let sources = spec.sources.iter().filter_map(|c| match &c.config {
        SourceConfig::Kafka(k) => Some(("sources", &c.name, &k.options)),
        _ => None,
    });
    let sinks = spec.sinks.iter().filter_map(|c| match &c.config {
        SinkConfig::Kafka(k) => Some(("sinks", &c.name, &k.options)),
        _ => None,
    });
    let mut errors = Vec::new();
    for (section, name, options) in sources.chain(sinks) {
        let table = format!("{section}.{name}.options");
        for (key, message) in deployable_option_problems(options, allowed_dirs) {
            let mut err = crate::pipeline::error_at(file, toml, &table, message);
            err.path = format!("{table}.\"{key}\"");
            errors.push(err);
        }
    }
    errors
}

/// Whether `path` names an existing file inside one of `dirs` (both resolved, so `..` and
/// symbolic links cannot lead out).
fn under_allowed_dir(path: &str, dirs: &[std::path::PathBuf]) -> bool {
    let Ok(file) = std::fs::canonicalize(path) else {
        return false;
    };
    dirs.iter()
        .filter_map(|dir| std::fs::canonicalize(dir).ok())
        .any(|dir| file.starts_with(dir) && file.is_file())
}

#[cfg(test)]
mod tests {
    use super::deployable_option_problems;
    use std::collections::BTreeMap;

    fn problems(pairs: &[(&str, &str)], dirs: &[std::path::PathBuf]) -> Vec<String> {
        let options: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        deployable_option_problems(&options, dirs)
            .into_iter()
            .map(|(k, _)| k)
            .collect()
    }

    #[test]
    fn deployed_pipelines_get_tuning_sasl_and_inline_tls_only() {
        let ok = [
            ("linger.ms", "5"),
            ("security.protocol", "SASL_SSL"),
            ("sasl.password", "x"),
            ("ssl.ca.pem", "-----BEGIN CERTIFICATE-----"),
            ("enable.ssl.certificate.verification", "true"),
        ];
        assert!(problems(&ok, &[]).is_empty());
        let bad = [
            ("plugin.library.paths", "/tmp/evil.so"),
            ("ssl.engine.location", "/tmp/evil.so"),
            ("sasl.kerberos.kinit.cmd", "touch /tmp/pwned"),
            ("enable.ssl.certificate.verification", "false"),
            ("ssl.endpoint.identification.algorithm", "none"),
            ("ssl.ca.location", "/etc/shadow"),
        ];
        assert_eq!(problems(&bad, &[]).len(), bad.len());
    }

    #[test]
    fn file_locations_only_under_allowed_directories() {
        let allowed = tempfile::tempdir().unwrap();
        let ca = allowed.path().join("ca.pem");
        std::fs::write(&ca, "pem").unwrap();
        let dirs = [allowed.path().to_path_buf()];
        let inside = ca.display().to_string();
        assert!(problems(&[("ssl.ca.location", &inside)], &dirs).is_empty());
        let escape = format!("{}/../../etc/passwd", allowed.path().display());
        assert_eq!(problems(&[("ssl.ca.location", &escape)], &dirs).len(), 1);
        assert_eq!(
            problems(&[("ssl.ca.location", "/etc/hostname")], &dirs).len(),
            1
        );
        let missing = allowed.path().join("nope.pem").display().to_string();
        assert_eq!(problems(&[("ssl.ca.location", &missing)], &dirs).len(), 1);
    }
}
