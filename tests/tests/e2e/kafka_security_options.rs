//! librdkafka options pass through a pipeline's `options` table, and this build of librdkafka
//! has TLS and SASL: a source configured for `SASL_SSL` with SCRAM starts (a build without
//! OpenSSL refuses these settings when the client is created), and against a plaintext
//! broker (librdkafka's mock cluster) it really attempts a TLS handshake, which fails.
//! `sluice run` holds options to the allowlist unless `--allow-any-kafka-option` is given.

use rdkafka::mocking::MockCluster;
use sluice_harness::{PipelineFile, SluiceRun};

#[test]
fn sasl_ssl_options_reach_librdkafka() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster.create_topic("in", 1, 1).expect("topic");
    let pipeline = PipelineFile::new(
        "secure.toml",
        &format!(
            r#"
[sources.input]
type = "kafka"
brokers = "{brokers}"
topics = ["in"]
group_id = "secure"
options = {{ "security.protocol" = "SASL_SSL", "sasl.mechanism" = "SCRAM-SHA-256", "sasl.username" = "sluice", "sasl.password" = "secret", "enable.ssl.certificate.verification" = "false" }}

[sinks.output]
type = "console"
inputs = ["input"]
"#,
            brokers = cluster.bootstrap_servers()
        ),
    );
    // Verification switched off is outside the allowlist: refused by default, naming the key.
    let refused = std::process::Command::new(sluice_harness::sluice_bin())
        .arg("run")
        .arg(&pipeline.path)
        .output()
        .expect("run sluice");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(r#"sources.input.options."enable.ssl.certificate.verification""#)
            && stderr.contains("--allow-any-kafka-option"),
        "{stderr}"
    );
    // The operator's explicit flag passes everything through.
    let sluice = SluiceRun::start_with_args(
        &pipeline.path,
        &[std::ffi::OsStr::new("--allow-any-kafka-option")],
    );
    sluice.wait_for_log("running");
    let line = sluice.wait_for_log("SSL");
    // librdkafka words it several ways: "SSL handshake failed", "... in state SSL_HANDSHAKE",
    // "SSL_read: ...", "connecting to a SSL listener?".
    let lower = line.to_ascii_lowercase();
    assert!(
        lower.contains("handshake")
            || lower.contains("ssl_read")
            || lower.contains("connecting to a ssl listener"),
        "a TLS handshake was attempted against the plaintext broker: {line}"
    );
    assert!(sluice.stop().success());
}
