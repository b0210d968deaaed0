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
