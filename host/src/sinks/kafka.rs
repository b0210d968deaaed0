//! The Kafka sink: an idempotent producer with `acks=all`; key and headers carried.

use crate::codec::EncodingConfig;
use serde::Deserialize;
use std::collections::BTreeMap;

/// `[sinks.NAME] type = "kafka"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSinkConfig {
    /// Bootstrap servers, `host:port[,host:port...]`.
    pub brokers: String,
    /// Topic to produce to.
    pub topic: String,
    /// How values are encoded (default raw: bytes untouched).
    #[serde(default)]
    pub encoding: EncodingConfig,
    /// librdkafka options passed through (SASL, TLS...), e.g. `"security.protocol" = "SASL_SSL"`.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

impl KafkaSinkConfig {
    /// Problems as `(field, message)`.
    pub fn validate(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        if self.brokers.trim().is_empty() {
            problems.push(("brokers", "name at least one bootstrap server".into()));
        }
        if self.topic.trim().is_empty() {
            problems.push(("topic", "the topic cannot be empty".into()));
        }
        for fixed in ["acks", "enable.idempotence"] {
            if self.options.contains_key(fixed) {
                problems.push((
                    "options",
                    format!("`{fixed}` is fixed by Sluice (acks=all, idempotence on)"),
                ));
            }
        }
        problems.extend(
            self.encoding
                .validate()
                .into_iter()
                .map(|(_, e)| ("encoding", e)),
        );
        problems
    }
}

/// Deliveries in flight per Kafka sink (backpressure beyond this).
const MAX_IN_FLIGHT: usize = 1024;

/// The running Kafka sink: an idempotent producer (`acks=all`).
pub struct KafkaSink {
    config: KafkaSinkConfig,
    producer: rdkafka::producer::FutureProducer,
}

impl KafkaSink {
    /// Creates the producer. Nothing is produced until the sink runs; an idempotent producer
    /// may already connect, to obtain its producer id.
    pub fn build(
        config: KafkaSinkConfig,
        ctx: &crate::flow::ComponentContext,
    ) -> Result<Self, String> {
        let mut client = crate::kafka_common::client_config(&config.brokers, &config.options, ctx);
        client.set("acks", "all").set("enable.idempotence", "true");
        let producer = client
            .create()
            .map_err(|e| format!("cannot create the Kafka producer: {e}"))?;
        Ok(KafkaSink { config, producer })
    }

    /// Produces records until the input closes; a record is accepted when Kafka acknowledged it.
    pub fn run(
        self,
        mut input: tokio::sync::mpsc::Receiver<crate::flow::Record>,
        ctx: crate::flow::ComponentContext,
    ) -> crate::flow::ComponentTask {
        use std::sync::Arc;

        Box::pin(async move {
            let KafkaSink { config, producer } = self;
            let slots = Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT));
            while let Some(record) = input.recv().await {
                let Some((record, payload)) =
                    super::encode_or_dead_letter(&config.encoding, record, &ctx).await
                else {
                    continue;
                };
                let Ok(slot) = slots.clone().acquire_owned().await else {
                    break;
                };
                // Enqueue here, in input order: librdkafka keeps a partition's records in
                // enqueue order, and idempotence keeps its own retries in order too. Only the
                // wait for the broker's acknowledgement runs concurrently.
                let first = enqueue(&producer, &config.topic, &record.msg, &payload).await;
                let (producer, topic, ctx) = (producer.clone(), config.topic.clone(), ctx.clone());
                tokio::spawn(async move {
                    let mut outcome = match first {
                        Ok(delivery) => match delivery.await {
                            Ok(Ok(_)) => Ok(()),
                            Ok(Err((err, _))) => Err(err),
                            Err(_canceled) => Err(rdkafka::error::KafkaError::Canceled),
                        },
                        Err(err) => Err(err),
                    };
                    let mut backoff = crate::flow::Backoff::default();
                    loop {
                        match outcome {
                            Ok(()) => {
                                ctx.metrics.record_out();
                                ctx.metrics.set_connection(crate::metrics::Connection::Up);
                                record.ack.done();
                                break;
                            }
                            Err(err) if is_permanent(&err) => {
                                let reason = format!("kafka topic {topic}: {err}");
                                ctx.dead_letters.send(record, &ctx.metrics, &reason).await;
                                break;
                            }
                            Err(err) => {
                                // librdkafka gave up (message.timeout.ms): send again. Only
                                // this rare path can reorder.
                                let delay = backoff.next_delay();
                                tracing::warn!(component = %ctx.component, "kafka delivery failed ({err}); retrying in {delay:?}");
                                ctx.metrics.set_connection(crate::metrics::Connection::Down);
                                ctx.metrics
                                    .report_error(&format!("kafka delivery failed: {err}"));
                                tokio::time::sleep(delay).await;
                                let again = future_record(&topic, &record.msg, &payload);
                                outcome = producer
                                    .send(again, std::time::Duration::from_secs(5))
                                    .await
                                    .map(|_| ())
                                    .map_err(|(err, _)| err);
                            }
                        }
                    }
                    drop(slot);
                });
            }
            // Input closed: wait for every delivery to finish.
            let _ = slots.acquire_many(MAX_IN_FLIGHT as u32).await;
        })
    }
}

/// The Kafka record for `msg`: its key, headers and timestamp carried over.
fn future_record<'a>(
    topic: &'a str,
    msg: &'a crate::message::Message,
    payload: &'a [u8],
) -> rdkafka::producer::FutureRecord<'a, [u8], [u8]> {
    use rdkafka::message::{Header, OwnedHeaders};
    let mut headers = OwnedHeaders::new_with_capacity(msg.headers.len());
    for (key, value) in &msg.headers {
        headers = headers.insert(Header {
            key,
            value: Some(value),
        });
    }
    let mut out = rdkafka::producer::FutureRecord::to(topic)
        .payload(payload)
        .headers(headers);
    if let Some(key) = &msg.key {
        out = out.key(key.as_slice());
    }
    if let Some(ts) = msg.timestamp_ms {
        out = out.timestamp(ts);
    }
    out
}

/// Puts the record in librdkafka's queue, waiting while the queue is full.
async fn enqueue(
    producer: &rdkafka::producer::FutureProducer,
    topic: &str,
    msg: &crate::message::Message,
    payload: &[u8],
) -> Result<rdkafka::producer::DeliveryFuture, rdkafka::error::KafkaError> {
    use rdkafka::error::KafkaError;
    use rdkafka::types::RDKafkaErrorCode;
    loop {
        match producer.send_result(future_record(topic, msg, payload)) {
            Ok(delivery) => return Ok(delivery),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                // librdkafka's background thread is draining the queue; back off briefly.
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            Err((err, _)) => return Err(err),
        }
    }
}

/// Errors retrying cannot fix: the record goes to the dead-letter sink.
fn is_permanent(err: &rdkafka::error::KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode as Code;
    matches!(
        err.rdkafka_error_code(),
        Some(
            Code::MessageSizeTooLarge
                | Code::InvalidMessageSize
                | Code::InvalidMessage
                | Code::TopicAuthorizationFailed
                | Code::InvalidRecord
                | Code::UnknownTopic
        )
    )
}
