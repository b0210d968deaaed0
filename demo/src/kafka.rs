//! An in-process Kafka-protocol cluster: librdkafka's mock cluster, listening on local sockets.

use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;

/// A running cluster; stops when dropped.
pub struct EmbeddedKafka {
    cluster: MockCluster<'static, DefaultProducerContext>,
}

impl EmbeddedKafka {
    /// Starts one broker with `topics` created (one partition each).
    pub fn start(topics: &[&str]) -> Result<Self, String> {
        let cluster = MockCluster::new(1).map_err(|e| format!("mock Kafka cluster: {e}"))?;
        for topic in topics {
            cluster
                .create_topic(topic, 1, 1)
                .map_err(|e| format!("mock Kafka topic {topic}: {e}"))?;
        }
        Ok(EmbeddedKafka { cluster })
    }

    /// `host:port` of the brokers, as `bootstrap.servers` wants it.
    pub fn brokers(&self) -> String {
        self.cluster.bootstrap_servers()
    }
}
