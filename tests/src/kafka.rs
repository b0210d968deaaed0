//! Kafka helpers: a plain producer and a consumer that collects a topic, for tests against tansu
//! or librdkafka's mock cluster (both real Kafka-protocol brokers on real sockets).

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Message};
use std::time::{Duration, Instant};

/// Produces `payloads` to `topic` and waits until the broker acknowledged all of them.
pub fn produce_all(brokers: &str, topic: &str, payloads: &[Vec<u8>]) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("acks", "all")
        .create()
        .expect("producer");
    for payload in payloads {
        loop {
            match producer.send(BaseRecord::<(), _>::to(topic).payload(payload)) {
                Ok(()) => break,
                Err((err, _)) => {
                    // Queue full: let deliveries complete, then try again.
                    producer.poll(Duration::from_millis(50));
                    assert!(
                        !matches!(err, rdkafka::error::KafkaError::MessageProduction(c) if c != rdkafka::types::RDKafkaErrorCode::QueueFull),
                        "{err}"
                    );
                }
            }
        }
    }
    producer
        .flush(crate::WAIT)
        .expect("every message acknowledged");
}

/// Reads a topic from the beginning.
pub struct TopicReader {
    consumer: BaseConsumer,
}

impl TopicReader {
    /// A reader in its own consumer group, starting at the earliest offset.
    pub fn new(brokers: &str, topic: &str) -> Self {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("group.id", format!("reader-{topic}-{}", crate::free_port()))
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .create()
            .expect("consumer");
        consumer.subscribe(&[topic]).expect("subscribe");
        TopicReader { consumer }
    }

    /// Messages (key, value, headers) until `done` says enough, or the wait runs out (test fails).
    pub fn read_until(
        &self,
        mut done: impl FnMut(&[(Option<Vec<u8>>, Vec<u8>, Vec<(String, Vec<u8>)>)]) -> bool,
    ) -> Vec<(Option<Vec<u8>>, Vec<u8>, Vec<(String, Vec<u8>)>)> {
        use rdkafka::message::Headers;
        let deadline = Instant::now() + crate::WAIT;
        let mut seen = Vec::new();
        while !done(&seen) {
            assert!(
                Instant::now() < deadline,
                "gave up after {} messages",
                seen.len()
            );
            if let Some(Ok(message)) = self.consumer.poll(Duration::from_millis(100)) {
                let headers = message
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec()))
                            .collect()
                    })
                    .unwrap_or_default();
                seen.push((
                    message.key().map(<[u8]>::to_vec),
                    message.payload().unwrap_or_default().to_vec(),
                    headers,
                ));
            }
        }
        seen
    }
}
