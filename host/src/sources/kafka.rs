//! The Kafka source: a consumer-group member whose offsets are committed only after every sink
//! downstream accepted the records derived from them.

use crate::codec::EncodingConfig;
use crate::journal::JournalEntry;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// `[sources.NAME] type = "kafka"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSourceConfig {
    /// Bootstrap servers, `host:port[,host:port...]`.
    pub brokers: String,
    /// Topics to consume.
    pub topics: Vec<String>,
    /// Consumer group id; processes sharing it share the partitions.
    pub group_id: String,
    /// Where a new group starts: `earliest` (default) or `latest`.
    #[serde(default = "earliest")]
    pub auto_offset_reset: String,
    /// How values are decoded (default raw).
    #[serde(default)]
    pub decoding: EncodingConfig,
    /// librdkafka options passed through (SASL, TLS...), e.g. `"security.protocol" = "SASL_SSL"`.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// Journal records before storing their offsets (default false: Kafka keeps the data, and
    /// an offset is stored only once every sink accepted what came of it). With it, an offset is
    /// stored once the record is durable in the pipeline's journal (`[journal]`), so a slow sink
    /// never holds the consumer back, and the pipeline's sinks get buffers.
    #[serde(default)]
    pub journal: bool,
    /// How long the group waits for a member that stopped heartbeating (a crash, a cut link)
    /// before giving its partitions to the others, in milliseconds: the pause a crashed member
    /// causes on its partitions (default 45000, librdkafka's; 6000..=300000 on most brokers).
    /// Same as `options."session.timeout.ms"`; give one or the other.
    #[serde(default)]
    pub session_timeout_ms: Option<u64>,
    /// How often stored offsets are committed, in milliseconds (default 1000). A member killed
    /// without a chance to commit leaves at most this long of records to be read again.
    /// Same as `options."auto.commit.interval.ms"`; give one or the other.
    #[serde(default)]
    pub commit_interval_ms: Option<u64>,
    /// Records whose value is larger than this many bytes go to dead letters, with their
    /// size, instead of downstream (default 16 MiB).
    #[serde(default = "max_message_bytes")]
    pub max_message_bytes: usize,
}

fn max_message_bytes() -> usize {
    16 << 20
}

/// `session_timeout_ms` when neither it nor the librdkafka option is given.
const SESSION_TIMEOUT_MS: u64 = 45_000;
/// `commit_interval_ms` when neither it nor the librdkafka option is given.
const COMMIT_INTERVAL_MS: u64 = 1_000;

fn earliest() -> String {
    "earliest".into()
}

impl KafkaSourceConfig {
    /// Why a record value of this size is not passed on, if it is over `max_message_bytes`.
    fn within_size(&self, payload: &[u8]) -> Result<(), String> {
        if payload.len() > self.max_message_bytes {
            return Err(format!(
                "record of {} bytes is over max_message_bytes ({})",
                payload.len(),
                self.max_message_bytes
            ));
        }
        Ok(())
    }

    /// Problems as `(field, message)`.
    pub fn validate(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        if self.brokers.trim().is_empty() {
            problems.push(("brokers", "name at least one bootstrap server".into()));
        }
        if self.topics.is_empty() || self.topics.iter().any(|t| t.trim().is_empty()) {
            problems.push(("topics", "name at least one topic, none empty".into()));
        }
        if self.group_id.trim().is_empty() {
            problems.push(("group_id", "the consumer group id cannot be empty".into()));
        }
        if !matches!(self.auto_offset_reset.as_str(), "earliest" | "latest") {
            problems.push((
                "auto_offset_reset",
                format!(
                    "expected `earliest` or `latest`, found {:?}",
                    self.auto_offset_reset
                ),
            ));
        }
        if self.max_message_bytes == 0 {
            problems.push(("max_message_bytes", "must be at least 1".into()));
        }
        let fields = [
            (
                "session_timeout_ms",
                self.session_timeout_ms,
                "session.timeout.ms",
                1_000..=3_600_000,
            ),
            (
                "commit_interval_ms",
                self.commit_interval_ms,
                "auto.commit.interval.ms",
                10..=600_000,
            ),
        ];
        for (field, value, option, range) in fields {
            let Some(value) = value else { continue };
            if !range.contains(&value) {
                problems.push((
                    field,
                    format!(
                        "must be {}..={} ms, not {value}",
                        range.start(),
                        range.end()
                    ),
                ));
            }
            if self.options.contains_key(option) {
                problems.push((
                    field,
                    format!("given twice: here and as options.\"{option}\"; keep one"),
                ));
            }
        }
        problems.extend(
            self.decoding
                .validate()
                .into_iter()
                .map(|(_, e)| ("decoding", e)),
        );
        problems
    }
}

/// Offsets handed downstream and not yet stored, per partition; an offset is stored (and so
/// committed by librdkafka's auto-commit) only when it and every offset before it is done.
#[derive(Default)]
struct OffsetTracker {
    partitions: std::collections::HashMap<(String, i32), std::collections::BTreeMap<i64, bool>>,
}

impl OffsetTracker {
    fn start(&mut self, topic: &str, partition: i32, offset: i64) {
        self.partitions
            .entry((topic.to_string(), partition))
            .or_default()
            .insert(offset, false);
    }

    /// Marks `offset` done; returns the highest offset now safe to store, if any moved.
    fn finish(&mut self, topic: &str, partition: i32, offset: i64) -> Option<i64> {
        let pending = self.partitions.get_mut(&(topic.to_string(), partition))?;
        if let Some(done) = pending.get_mut(&offset) {
            *done = true;
        }
        let mut safe = None;
        while let Some((&first, &done)) = pending.first_key_value() {
            if !done {
                break;
            }
            pending.remove(&first);
            safe = Some(first);
        }
        safe
    }

    fn in_flight(&self) -> usize {
        self.partitions.values().map(|p| p.len()).sum()
    }

    /// Records in flight from the partitions in `which`.
    fn in_flight_of(&self, which: &[(String, i32)]) -> usize {
        which
            .iter()
            .filter_map(|tp| self.partitions.get(tp))
            .map(|p| p.len())
            .sum()
    }

    /// Forgets the partitions in `which` (given up in a rebalance): whatever of them is still
    /// in flight is read again by their next owner, and its late acknowledgement stores nothing.
    fn forget(&mut self, which: &[(String, i32)]) {
        for tp in which {
            self.partitions.remove(tp);
        }
    }
}

/// How long a member giving up partitions in a rebalance waits for their in-flight records to
/// be delivered before it commits and lets them go (what is still in flight after it is read
/// again by the next owner). Well below librdkafka's `max.poll.interval.ms` (300 s).
const REBALANCE_DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

/// The consumer's context: on a rebalance that takes partitions away, it waits (bounded) until
/// their in-flight records are delivered and commits their offsets before giving them up, so
/// the next owner starts exactly after what was delivered; it publishes what this member owns.
pub(crate) struct GroupContext {
    tracker: SharedTracker,
    metrics: Arc<crate::metrics::ComponentMetrics>,
    component: Arc<str>,
    host_id: Arc<str>,
}

impl rdkafka::ClientContext for GroupContext {}

impl rdkafka::consumer::ConsumerContext for GroupContext {
    fn pre_rebalance(
        &self,
        consumer: &rdkafka::consumer::BaseConsumer<Self>,
        rebalance: &rdkafka::consumer::Rebalance<'_>,
    ) {
        use rdkafka::consumer::{CommitMode, Consumer, Rebalance};
        let Rebalance::Revoke(partitions) = rebalance else {
            return;
        };
        let revoked = partition_list(partitions);
        let waited = std::time::Instant::now();
        // Called on the thread polling the consumer (a runtime worker): let the runtime move
        // its other tasks (the sinks that acknowledge) elsewhere while this one waits.
        let drained = match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
            Ok(tokio::runtime::RuntimeFlavor::MultiThread) => {
                tokio::task::block_in_place(|| self.wait_delivered(&revoked))
            }
            // One thread: nothing else runs while this waits, so do not.
            _ => lock(&self.tracker).in_flight_of(&revoked) == 0,
        };
        let left = lock(&self.tracker).in_flight_of(&revoked);
        match consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(())
            | Err(rdkafka::error::KafkaError::ConsumerCommit(
                rdkafka::types::RDKafkaErrorCode::NoOffset,
            )) => {}
            Err(err) => tracing::warn!(
                component = %self.component, error = %err,
                "kafka: commit before giving up partitions failed; their records after the last commit will be read again"
            ),
        }
        lock(&self.tracker).forget(&revoked);
        tracing::info!(
            component = %self.component, host_id = %self.host_id,
            partitions = %describe(&revoked), drained, in_flight_left = left,
            waited_ms = waited.elapsed().as_millis() as u64,
            "kafka: giving up partitions; what was delivered of them is committed"
        );
    }

    fn post_rebalance(
        &self,
        consumer: &rdkafka::consumer::BaseConsumer<Self>,
        rebalance: &rdkafka::consumer::Rebalance<'_>,
    ) {
        use rdkafka::consumer::{Consumer, Rebalance};
        let owned = consumer
            .assignment()
            .map(|list| describe(&partition_list(&list)))
            .unwrap_or_default();
        match rebalance {
            Rebalance::Assign(added) => tracing::info!(
                component = %self.component, host_id = %self.host_id,
                added = %describe(&partition_list(added)), %owned,
                "kafka: partitions assigned"
            ),
            Rebalance::Revoke(revoked) => tracing::info!(
                component = %self.component, host_id = %self.host_id,
                revoked = %describe(&partition_list(revoked)), %owned,
                "kafka: partitions revoked"
            ),
            Rebalance::Error(err) => tracing::warn!(
                component = %self.component, host_id = %self.host_id, error = %err,
                "kafka: rebalance failed"
            ),
        }
        self.metrics.set_owned(Some(owned));
    }
}

impl GroupContext {
    /// Waits until nothing from `revoked` is in flight, at most [`REBALANCE_DRAIN_TIMEOUT`];
    /// whether it got there.
    fn wait_delivered(&self, revoked: &[(String, i32)]) -> bool {
        let deadline = std::time::Instant::now() + REBALANCE_DRAIN_TIMEOUT;
        loop {
            if lock(&self.tracker).in_flight_of(revoked) == 0 {
                return true;
            }
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
}

/// `(topic, partition)` of each element.
fn partition_list(list: &rdkafka::TopicPartitionList) -> Vec<(String, i32)> {
    list.elements()
        .iter()
        .map(|e| (e.topic().to_string(), e.partition()))
        .collect()
}

/// `topic[0,3] other[1]`, sorted: what a member owns, as status shows it.
fn describe(partitions: &[(String, i32)]) -> String {
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (topic, partition) in partitions {
        by_topic.entry(topic).or_default().push(*partition);
    }
    by_topic
        .into_iter()
        .map(|(topic, mut ps)| {
            ps.sort_unstable();
            let ps: Vec<String> = ps.iter().map(i32::to_string).collect();
            format!("{topic}[{}]", ps.join(","))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The consumer type of the source.
type GroupConsumer = rdkafka::consumer::StreamConsumer<GroupContext>;

/// How long a stopping source waits for the acknowledgements of what it already emitted.
const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// The running Kafka source: a consumer-group member that stores offsets only after downstream
/// acceptance (`enable.auto.offset.store=false`), committed by librdkafka's auto-commit.
pub struct KafkaSource {
    config: KafkaSourceConfig,
    consumer: std::sync::Arc<GroupConsumer>,
    tracker: SharedTracker,
    journal: Option<Arc<crate::journal::JournalLog>>,
}

impl KafkaSource {
    /// Creates the consumer, subscribed to nothing yet. It joins the group only when it runs:
    /// a pipeline being replaced builds its new version while the old one still drains, and a
    /// member that joined then would take partitions before the old one committed its last
    /// offsets (and read those records again).
    /// With `journal` (`journal = true`), records are journaled and emitted from the journal.
    pub fn build(
        config: KafkaSourceConfig,
        ctx: &crate::flow::ComponentContext,
        journal: Option<Arc<crate::journal::JournalLog>>,
    ) -> Result<Self, String> {
        let mut client = crate::kafka_common::client_config(&config.brokers, &config.options, ctx);
        // Cooperative rebalancing unless the pipeline chose otherwise: a member joining or
        // leaving moves only the partitions that change owner, the others keep flowing, and a
        // member gives a partition up (and commits it) while the group is stable, which every
        // broker accepts (an eager rebalance commits mid-rebalance, which some refuse).
        if !config.options.contains_key("partition.assignment.strategy") {
            client.set("partition.assignment.strategy", "cooperative-sticky");
        }
        client
            .set("group.id", &config.group_id)
            .set("auto.offset.reset", &config.auto_offset_reset)
            .set("enable.auto.commit", "true")
            .set("enable.auto.offset.store", "false");
        // The dedicated fields, unless `options` gave the same settings (validation refuses both).
        if !config.options.contains_key("auto.commit.interval.ms") {
            let interval = config.commit_interval_ms.unwrap_or(COMMIT_INTERVAL_MS);
            client.set("auto.commit.interval.ms", interval.to_string());
        }
        let given = config
            .options
            .get("session.timeout.ms")
            .and_then(|ms| ms.parse::<u64>().ok());
        let session = match given {
            Some(ms) => ms,
            None => {
                let ms = config.session_timeout_ms.unwrap_or(SESSION_TIMEOUT_MS);
                client.set("session.timeout.ms", ms.to_string());
                ms
            }
        };
        if !config.options.contains_key("heartbeat.interval.ms") {
            // A third of the session, as Kafka advises, and never more than librdkafka's 3 s.
            client.set(
                "heartbeat.interval.ms",
                (session / 3).min(3_000).to_string(),
            );
        }
        let tracker: SharedTracker = Arc::default();
        let context = GroupContext {
            tracker: tracker.clone(),
            metrics: ctx.metrics.clone(),
            component: ctx.component.clone(),
            host_id: ctx.host_id.clone(),
        };
        let consumer: GroupConsumer = client
            .create_with_context(context)
            .map_err(|e| format!("cannot create the Kafka consumer: {e}"))?;
        Ok(KafkaSource {
            config,
            consumer: std::sync::Arc::new(consumer),
            tracker,
            journal,
        })
    }

    /// Joins the group and consumes until shutdown, then waits for in-flight records, commits
    /// what they allow and leaves the group.
    pub fn run(
        self,
        outputs: crate::flow::Outputs,
        ctx: crate::flow::ComponentContext,
    ) -> crate::flow::ComponentTask {
        use rdkafka::consumer::Consumer;

        Box::pin(async move {
            let KafkaSource {
                config,
                consumer,
                tracker,
                journal,
            } = self;
            let config = Arc::new(config);
            let _unacked = ctx.metrics.unacked_scope();
            let mut shutdown = ctx.shutdown.clone();
            let component = ctx.component.clone();
            let topics: Vec<&str> = config.topics.iter().map(String::as_str).collect();
            if let Err(err) = consumer.subscribe(&topics) {
                let reason = format!("kafka: cannot subscribe to {topics:?}: {err}");
                tracing::error!(%component, "{reason}");
                ctx.metrics.report_error(&reason);
                return; // the supervisor restarts the pipeline with backoff
            }
            ctx.metrics.set_ready();
            let mut announced = false;
            let lag_watch = tokio::spawn(watch_lag(consumer.clone(), ctx.metrics.clone()));
            // With a journal, a task of its own emits from it at the pipeline's pace.
            let emitter = journal.as_ref().map(|log| {
                let config = config.clone();
                tokio::spawn(super::journaled::emit_from_journal(
                    log.clone(),
                    move |entry: &JournalEntry| read_entry(entry, &config),
                    outputs.clone(),
                    ctx.clone(),
                ))
            });
            loop {
                let received = tokio::select! {
                    biased;
                    _ = shutdown.wait_for(|stop| *stop) => break,
                    received = consumer.recv() => received,
                };
                let message = match received {
                    Ok(message) => message,
                    Err(err) => {
                        tracing::warn!(%component, "kafka: {err}");
                        ctx.metrics.set_connection(crate::metrics::Connection::Down);
                        ctx.metrics.report_error(&format!("kafka: {err}"));
                        continue;
                    }
                };
                ctx.metrics.set_connection(crate::metrics::Connection::Up);
                if !announced {
                    tracing::info!(%component, topics = ?config.topics, "kafka source receiving");
                    announced = true;
                }
                let ack = offset_ack(&tracker, &consumer, &ctx, &message);
                if let Some(log) = &journal {
                    if let Some(entry) = journal_entry(&message) {
                        drop(message);
                        let bytes = entry.encode();
                        tokio::select! {
                            biased;
                            _ = shutdown.wait_for(|stop| *stop) => break,
                            () = log.wait_for_room(bytes.len() as u64) => {}
                        }
                        let on_disk: crate::journal::Durable = Box::new(move |written| {
                            if written.is_ok() {
                                ack.done(); // the offset may be stored
                            }
                        });
                        if let Err(err) = log.append(bytes, on_disk) {
                            tracing::error!(%component, "{err}");
                            ctx.metrics.report_error(&err.to_string());
                            break;
                        }
                        continue;
                    }
                }
                let (msg, failure) = read_message(&message, &config);
                drop(message);
                super::journaled::send(msg, failure, ack, &outputs, &ctx).await;
            }
            if let Some(emitter) = emitter {
                // It stops at the next record; what it has not emitted stays journaled.
                let _ = emitter.await;
            }
            drop(outputs);
            wait_for_in_flight(&tracker, &component).await;
            commit_final(&consumer, &component);
            lag_watch.abort();
            consumer.unsubscribe();
        })
    }
}

type SharedTracker = Arc<Mutex<OffsetTracker>>;

fn lock(tracker: &SharedTracker) -> std::sync::MutexGuard<'_, OffsetTracker> {
    tracker.lock().unwrap_or_else(|p| p.into_inner())
}

/// Marks `message`'s offset in flight and returns the acknowledgement that finishes it: once
/// every record derived from it is accepted, the highest offset below which nothing is in
/// flight any more is stored for the next commit.
fn offset_ack(
    tracker: &SharedTracker,
    consumer: &Arc<GroupConsumer>,
    ctx: &crate::flow::ComponentContext,
    message: &rdkafka::message::BorrowedMessage<'_>,
) -> crate::flow::Ack {
    use rdkafka::consumer::Consumer;
    use rdkafka::message::Message as _;
    let (topic, partition, offset) = (
        message.topic().to_string(),
        message.partition(),
        message.offset(),
    );
    lock(tracker).start(&topic, partition, offset);
    let (tracker, consumer) = (tracker.clone(), consumer.clone());
    crate::flow::Ack::tracked(&ctx.metrics, move || {
        if let Some(safe) = lock(&tracker).finish(&topic, partition, offset) {
            // Stores safe+1: the next offset to read after a restart.
            if let Err(err) = consumer.store_offset(&topic, partition, safe) {
                tracing::warn!("kafka: cannot store offset {safe} of {topic}/{partition}: {err}");
            }
        }
    })
}

/// The record a Kafka message becomes (headers `kafka-topic` and the message's own, key,
/// timestamp, decoded value), and why it must be dead-lettered instead, if it must (a header
/// key that is not UTF-8, a value that does not decode: then the value is the raw payload).
fn read_message(
    message: &rdkafka::message::BorrowedMessage<'_>,
    config: &KafkaSourceConfig,
) -> (crate::message::Message, Option<String>) {
    use rdkafka::message::Message as _;
    let (topic, partition, offset) = (message.topic(), message.partition(), message.offset());
    let mut headers = vec![("kafka-topic".to_string(), topic.as_bytes().to_vec())];
    let mut bad_header = None;
    if let Some(kafka_headers) = message.headers() {
        let (read, problem) = read_headers(kafka_headers);
        headers.extend(read);
        bad_header = problem;
    }
    let payload = message.payload().unwrap_or_default();
    let decoded = config.within_size(payload).and_then(|()| match bad_header {
        None => decode(config, payload),
        Some(problem) => Err(problem),
    });
    let (value, failure) = match decoded {
        Ok(value) => (value, None),
        Err(reason) => (
            payload.to_vec(),
            Some(format!("{reason} (offset {offset} of {topic}/{partition})")),
        ),
    };
    let msg = crate::message::Message {
        key: message.key().map(<[u8]>::to_vec),
        value,
        headers,
        timestamp_ms: message.timestamp().to_millis(),
    };
    (msg, failure)
}

/// The value `payload` decodes to, or why not (`decode: ...`, as the MQTT source says it).
fn decode(config: &KafkaSourceConfig, payload: &[u8]) -> Result<Vec<u8>, String> {
    config
        .decoding
        .decode(payload)
        .map_err(|reason| format!("decode: {reason}"))
}

/// `message` as the journal keeps it; `None` when a header key is not UTF-8 (such a record goes
/// to dead letters at once, as without a journal).
fn journal_entry(message: &rdkafka::message::BorrowedMessage<'_>) -> Option<JournalEntry> {
    use rdkafka::message::Message as _;
    let mut properties = Vec::new();
    if let Some(headers) = message.headers() {
        let (read, problem) = read_headers(headers);
        if problem.is_some() {
            return None;
        }
        properties = read;
    }
    Some(JournalEntry {
        received_ms: message.timestamp().to_millis(),
        topic: message.topic().as_bytes().to_vec(),
        key: message.key().map(<[u8]>::to_vec),
        properties,
        payload: message.payload().unwrap_or_default().to_vec(),
    })
}

/// The record a journaled Kafka message becomes (as [`read_message`] makes it), and why it must
/// be dead-lettered instead, if it must.
fn read_entry(
    entry: &JournalEntry,
    config: &KafkaSourceConfig,
) -> (crate::message::Message, Option<String>) {
    let mut headers = vec![("kafka-topic".to_string(), entry.topic.clone())];
    headers.extend(entry.properties.iter().cloned());
    let decoded = config
        .within_size(&entry.payload)
        .and_then(|()| decode(config, &entry.payload));
    let (value, failure) = match decoded {
        Ok(value) => (value, None),
        Err(reason) => (
            entry.payload.clone(),
            Some(format!(
                "{reason} (topic {})",
                String::from_utf8_lossy(&entry.topic)
            )),
        ),
    };
    let msg = crate::message::Message {
        key: entry.key.clone(),
        value,
        headers,
        timestamp_ms: entry.received_ms,
    };
    (msg, failure)
}

/// Waits (at most [`DRAIN_TIMEOUT`]) until no record of this source is in flight downstream.
async fn wait_for_in_flight(tracker: &SharedTracker, component: &str) {
    let deadline = tokio::time::Instant::now() + DRAIN_TIMEOUT;
    while lock(tracker).in_flight() > 0 {
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(%component, "stopping with unacknowledged records; they will be consumed again");
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Commits the stored offsets before leaving the group.
fn commit_final(consumer: &GroupConsumer, component: &str) {
    use rdkafka::consumer::{CommitMode, Consumer};
    match consumer.commit_consumer_state(CommitMode::Sync) {
        Ok(()) => {}
        // Nothing stored since the last commit.
        Err(rdkafka::error::KafkaError::ConsumerCommit(
            rdkafka::types::RDKafkaErrorCode::NoOffset,
        )) => {}
        Err(err) => tracing::warn!(
            %component,
            "final commit failed ({err}); the records after the last commit will be consumed again"
        ),
    }
}

/// Every 5 s, sets the source's consumer lag: for each assigned partition, the high watermark
/// minus the consumer's position (partitions without a position yet are left out).
async fn watch_lag(
    consumer: std::sync::Arc<GroupConsumer>,
    metrics: std::sync::Arc<crate::metrics::ComponentMetrics>,
) {
    use rdkafka::consumer::Consumer;
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
    loop {
        tick.tick().await;
        let consumer = consumer.clone();
        // librdkafka's watermark query blocks: keep it off the async threads.
        let lag = tokio::task::spawn_blocking(move || {
            let positions = consumer.position().ok()?;
            let mut lag = 0i64;
            for tp in positions.elements() {
                let rdkafka::Offset::Offset(position) = tp.offset() else {
                    continue;
                };
                let (_, high) = consumer
                    .fetch_watermarks(
                        tp.topic(),
                        tp.partition(),
                        std::time::Duration::from_secs(2),
                    )
                    .ok()?;
                lag += (high - position).max(0);
            }
            Some(lag)
        })
        .await;
        if let Ok(Some(lag)) = lag {
            metrics.set_lag(lag);
        }
    }
}

/// A record's headers, read without rdkafka's header accessors (they panic on a key that is not
/// UTF-8). Such a key is kept as lossy text, and the second value says which header was bad, so
/// the record goes to dead letters instead of crashing the source on every redelivery.
fn read_headers(
    headers: &rdkafka::message::BorrowedHeaders,
) -> (Vec<(String, Vec<u8>)>, Option<String>) {
    use rdkafka::bindings as rd;
    // A `&BorrowedHeaders` is rdkafka's pointer to the native header list (see rdkafka's
    // `BorrowedHeaders::from_native_ptr`).
    let native =
        headers as *const rdkafka::message::BorrowedHeaders as *const rd::rd_kafka_headers_t;
    let mut read = Vec::new();
    let mut problem = None;
    for idx in 0.. {
        let mut name: *const std::ffi::c_char = std::ptr::null();
        let mut value: *const std::ffi::c_void = std::ptr::null();
        let mut size = 0usize;
        // SAFETY: `native` is valid while `headers` is borrowed; librdkafka answers an error
        // (and writes nothing) past the last header.
        let err =
            unsafe { rd::rd_kafka_header_get_all(native, idx, &mut name, &mut value, &mut size) };
        if err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || name.is_null() {
            break;
        }
        // SAFETY: librdkafka gives a NUL-terminated name and `size` bytes of value (or null),
        // both owned by the message, which outlives this function's borrow.
        let (key, value) = unsafe {
            (
                std::ffi::CStr::from_ptr(name).to_bytes(),
                if value.is_null() {
                    &[][..]
                } else {
                    std::slice::from_raw_parts(value.cast::<u8>(), size)
                },
            )
        };
        let key = match std::str::from_utf8(key) {
            Ok(key) => key.to_string(),
            Err(_) => {
                let lossy = String::from_utf8_lossy(key).into_owned();
                problem.get_or_insert_with(|| {
                    format!("header {} has a key that is not UTF-8: {lossy:?}", idx + 1)
                });
                lossy
            }
        };
        read.push((key, value.to_vec()));
    }
    (read, problem)
}

#[cfg(test)]
mod tests {
    use super::{KafkaSource, KafkaSourceConfig, OffsetTracker};
    use crate::flow::{ComponentContext, DeadLetterFile, DeadLetterRoute, DeadLetters};
    use crate::metrics::{ComponentMetrics, Role};
    use std::sync::Arc;

    /// A valid source of topic `in`, group `g`, everything else by default.
    fn config() -> KafkaSourceConfig {
        KafkaSourceConfig {
            brokers: "k:9092".into(),
            topics: vec!["in".into()],
            group_id: "g".into(),
            auto_offset_reset: "earliest".into(),
            decoding: Default::default(),
            options: Default::default(),
            journal: false,
            session_timeout_ms: None,
            commit_interval_ms: None,
            max_message_bytes: 16 << 20,
        }
    }

    /// A replacement is built while the old version still drains: building must not join the
    /// consumer group, or the new member takes partitions before the old one's final commit.
    #[tokio::test]
    async fn building_does_not_join_the_group() {
        use rdkafka::consumer::Consumer;
        let dir = tempfile::tempdir().unwrap();
        let file = Arc::new(DeadLetterFile::new(dir.path(), "p"));
        let ctx = ComponentContext {
            pipeline: "p".into(),
            component: "input".into(),
            dead_letters: DeadLetters::new("p".into(), DeadLetterRoute::File(file)),
            shutdown: tokio::sync::watch::channel(false).1,
            metrics: Arc::new(ComponentMetrics::new(
                "p".into(),
                "input".into(),
                Role::Source,
                "kafka",
            )),
            host_id: "h".into(),
        };
        let config = KafkaSourceConfig {
            brokers: "127.0.0.1:9".into(), // nothing listens there: building needs no broker
            ..config()
        };
        let source = KafkaSource::build(config, &ctx, None).expect("build");
        let subscription = source.consumer.subscription().expect("subscription");
        assert_eq!(subscription.count(), 0, "subscribed at build time");
    }

    #[test]
    fn group_settings_are_checked_and_never_given_twice() {
        let base = KafkaSourceConfig {
            session_timeout_ms: Some(6_000),
            commit_interval_ms: Some(200),
            ..config()
        };
        assert!(base.validate().is_empty(), "{:?}", base.validate());
        let short = KafkaSourceConfig {
            session_timeout_ms: Some(10),
            ..base.clone()
        };
        assert_eq!(short.validate()[0].0, "session_timeout_ms");
        let mut twice = base.clone();
        twice
            .options
            .insert("auto.commit.interval.ms".into(), "50".into());
        let problems = twice.validate();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].0, "commit_interval_ms");
        assert!(problems[0].1.contains("given twice"), "{problems:?}");
        // The option alone is fine (pipelines written before the field existed).
        twice.commit_interval_ms = None;
        assert!(twice.validate().is_empty());
    }

    #[test]
    fn stores_only_contiguous_finished_offsets() {
        let mut t = OffsetTracker::default();
        for offset in 10..14 {
            t.start("t", 0, offset);
        }
        assert_eq!(t.finish("t", 0, 11), None, "10 is still in flight");
        assert_eq!(t.finish("t", 0, 12), None);
        assert_eq!(t.finish("t", 0, 10), Some(12), "10, 11, 12 are all done");
        assert_eq!(t.in_flight(), 1);
        assert_eq!(t.finish("t", 0, 13), Some(13));
        assert_eq!(t.in_flight(), 0);
        assert_eq!(t.finish("t", 1, 5), None, "unknown partitions are ignored");
    }
}
