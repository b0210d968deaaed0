//! Kafka for tests and the demo: an in-process cluster (librdkafka's mock cluster, the demo's),
//! tansu (the tests'), a plain producer and a consumer that collects a topic; all real
//! Kafka-protocol brokers on real sockets.

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Message};
use std::time::{Duration, Instant};

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

/// Produces one record to `topic` whose only header has the raw `key` (bytes that need not be
/// UTF-8, which rdkafka's own header API cannot express), and waits for the broker.
pub fn produce_with_raw_header_key(brokers: &str, topic: &str, key: &[u8], payload: &[u8]) {
    use rdkafka::bindings as rd;
    use rdkafka::message::OwnedHeaders;
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("acks", "all")
        .create()
        .expect("producer");
    let headers = OwnedHeaders::new_with_capacity(1);
    // A `&BorrowedHeaders` is rdkafka's pointer to the native header list.
    let native = headers.as_borrowed() as *const rdkafka::message::BorrowedHeaders
        as *mut rd::rd_kafka_headers_t;
    // SAFETY: `native` is the live list `headers` owns; librdkafka copies name and value.
    let err = unsafe {
        rd::rd_kafka_header_add(
            native,
            key.as_ptr().cast(),
            key.len() as isize,
            b"v".as_ptr().cast(),
            1,
        )
    };
    assert_eq!(err, rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR);
    producer
        .send(
            BaseRecord::<(), _>::to(topic)
                .payload(payload)
                .headers(headers),
        )
        .map_err(|(err, _)| err)
        .expect("enqueue");
    producer.flush(crate::WAIT).expect("acknowledged");
}

/// One consumed record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaRecord {
    /// The key, if any.
    pub key: Option<Vec<u8>>,
    /// The value.
    pub value: Vec<u8>,
    /// The headers, in order.
    pub headers: Vec<(String, Vec<u8>)>,
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

    /// Records until `done` says enough, or the wait runs out (test fails).
    pub fn read_until(&self, done: impl FnMut(&[KafkaRecord]) -> bool) -> Vec<KafkaRecord> {
        let (seen, complete) = self.try_read_until(done);
        assert!(complete, "gave up after {} messages", seen.len());
        seen
    }

    /// Records until `done` says enough (`true`), or the wait runs out (`false`): for a test
    /// that reports what is missing itself.
    pub fn try_read_until(
        &self,
        mut done: impl FnMut(&[KafkaRecord]) -> bool,
    ) -> (Vec<KafkaRecord>, bool) {
        use rdkafka::message::Headers;
        let deadline = Instant::now() + crate::WAIT;
        let mut seen = Vec::new();
        while !done(&seen) {
            if Instant::now() >= deadline {
                return (seen, false);
            }
            if let Some(Ok(message)) = self.consumer.poll(Duration::from_millis(100)) {
                let headers = message
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec()))
                            .collect()
                    })
                    .unwrap_or_default();
                seen.push(KafkaRecord {
                    key: message.key().map(<[u8]>::to_vec),
                    value: message.payload().unwrap_or_default().to_vec(),
                    headers,
                });
            }
        }
        (seen, true)
    }
}

/// A tansu broker (a Kafka-protocol broker in Rust, in-memory storage) on a free port, stopped
/// on drop. `cargo xtask test` installs it into `target/tools/bin/tansu`.
pub struct Tansu {
    child: std::process::Child,
    /// `127.0.0.1:PORT`.
    pub brokers: String,
    binary: std::path::PathBuf,
}

impl Tansu {
    /// Starts the broker and waits until it accepts connections.
    pub fn start() -> Self {
        let binary = std::env::var_os("SLUICE_TEST_TANSU")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| crate::root().join("target/tools/bin/tansu"));
        assert!(
            binary.is_file(),
            "{} is missing: `cargo xtask test` installs it",
            binary.display()
        );
        let port = crate::free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let child = std::process::Command::new(&binary)
            .args(TANSU_ARGS)
            .args(["--listener-url", &url, "--advertised-listener-url", &url])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        crate::wait_for_port(port);
        Tansu {
            child,
            brokers: format!("127.0.0.1:{port}"),
            binary,
        }
    }

    /// Creates a topic (tansu does not create topics on first use, as real clusters often don't).
    pub fn create_topic(&self, name: &str, partitions: u32) {
        let status = std::process::Command::new(&self.binary)
            .args([
                "topic",
                "create",
                name,
                "--partitions",
                &partitions.to_string(),
                "--broker",
            ])
            .arg(format!("tcp://{}", self.brokers))
            .stdout(std::process::Stdio::null())
            .status()
            .expect("tansu topic create");
        assert!(status.success(), "creating topic {name}");
    }
}

/// `tansu broker` with in-memory storage.
const TANSU_ARGS: &[&str] = &["broker", "--storage-engine", "memory://tansu/"];

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Produces `count` records, value `i` (decimal) to partition `i % partitions`, at a steady
/// rate on a thread of its own; idempotent, so record `i` is at offset `i / partitions` of its
/// partition (a test can tell which offset a value came from).
pub struct PacedProducer {
    sent: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl PacedProducer {
    /// Starts producing to a fresh, empty `topic` of `partitions` partitions.
    pub fn start(
        brokers: &str,
        topic: &str,
        partitions: i32,
        count: usize,
        per_second: u32,
    ) -> Self {
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("enable.idempotence", "true")
            .set("linger.ms", "5")
            .create()
            .expect("producer");
        let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (counter, topic) = (sent.clone(), topic.to_string());
        let thread = std::thread::spawn(move || {
            let started = Instant::now();
            for i in 0..count {
                let due = started + Duration::from_secs_f64(i as f64 / f64::from(per_second));
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    producer.poll(wait);
                }
                let value = i.to_string();
                let mut record = BaseRecord::<(), _>::to(&topic)
                    .payload(&value)
                    .partition(i as i32 % partitions);
                loop {
                    match producer.send(record) {
                        Ok(()) => break,
                        Err((_, back)) => {
                            record = back;
                            producer.poll(Duration::from_millis(20));
                        }
                    }
                }
                counter.store(i + 1, std::sync::atomic::Ordering::Release);
            }
            producer
                .flush(crate::WAIT)
                .expect("every record acknowledged");
        });
        PacedProducer {
            sent,
            thread: Some(thread),
        }
    }

    /// Records handed to the producer so far.
    pub fn sent(&self) -> usize {
        self.sent.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Waits until at least `n` records were handed over (fails the test past [`crate::WAIT`]).
    pub fn wait_sent(&self, n: usize) {
        let deadline = Instant::now() + crate::WAIT;
        while self.sent() < n {
            assert!(
                Instant::now() < deadline,
                "only {} of {n} produced",
                self.sent()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits until every record is produced and acknowledged by the broker.
    pub fn finish(mut self) {
        if let Some(thread) = self.thread.take() {
            thread.join().expect("the producer thread");
        }
    }
}

/// The committed offsets of `group` for `partitions` of `topic` (`None`: nothing committed).
pub fn committed_offsets(
    brokers: &str,
    group: &str,
    topic: &str,
    partitions: &[i32],
) -> Vec<(i32, Option<i64>)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut list = rdkafka::TopicPartitionList::new();
    for p in partitions {
        list.add_partition(topic, *p);
    }
    let committed = consumer
        .committed_offsets(list, crate::WAIT)
        .expect("committed offsets");
    committed
        .elements()
        .iter()
        .map(|e| {
            let offset = match e.offset() {
                rdkafka::Offset::Offset(o) => Some(o),
                _ => None,
            };
            (e.partition(), offset)
        })
        .collect()
}
