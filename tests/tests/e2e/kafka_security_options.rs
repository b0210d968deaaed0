//! librdkafka options pass through a pipeline's `options` table, and this build of librdkafka
//! has TLS and SASL: a source configured for `SASL_SSL` with SCRAM starts (a build without
//! OpenSSL refuses these settings when the client is created), and against a plaintext
//! broker (librdkafka's mock cluster) it really attempts a TLS handshake, which fails.

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
    let sluice = SluiceRun::start(&pipeline.path);
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
