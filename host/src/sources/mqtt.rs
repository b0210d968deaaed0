//! The MQTT source: subscribes to topic filters (wildcards, `$share/GROUP/...` shared
//! subscriptions for scale-out) and emits each publish as a record.

use crate::codec::EncodingConfig;
use crate::flow::Backoff;
use crate::journal::JournalEntry;
use crate::mqtt_common::{
    validate_qos, ClientRole, IncomingPublish, MqttClient, MqttConnection, MqttEvent, MqttEventLoop,
};
use serde::Deserialize;
use std::collections::VecDeque;
use std::sync::Arc;

/// `[sources.NAME] type = "mqtt"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttSourceConfig {
    /// Broker connection (`broker.url = "mqtt://..."`, credentials, TLS, session).
    pub broker: MqttConnection,
    /// Topic filters to subscribe to; `+`/`#` wildcards and `$share/GROUP/filter` allowed.
    pub topics: Vec<String>,
    /// Subscription QoS: 0, 1 (default) or 2. With QoS >= 1 a publish is acknowledged once it
    /// is in the pipeline's journal (`[journal]`, on by default), or without a journal only
    /// after every sink downstream accepted what was derived from it.
    #[serde(default = "qos_one")]
    pub qos: u8,
    /// How payloads are decoded (default raw).
    #[serde(default)]
    pub decoding: EncodingConfig,
    /// Messages larger than this many bytes go to dead letters, with their size, instead of
    /// downstream (default 16 MiB).
    #[serde(default = "max_message_bytes")]
    pub max_message_bytes: usize,
}

fn qos_one() -> u8 {
    1
}

fn max_message_bytes() -> usize {
    16 << 20
}

impl MqttSourceConfig {
    /// The session this source asks for: persistent at QoS >= 1 unless `clean_session` says
    /// otherwise (a clean session loses what was in flight at a crash or broker restart).
    pub fn clean_session(&self) -> bool {
        self.broker.clean_session.unwrap_or(self.qos == 0)
    }

    /// What is allowed but probably not meant, as `(field, message)`.
    pub fn warnings(&self) -> Vec<(&'static str, String)> {
        let mut warnings = Vec::new();
        if self.qos >= 1 && self.broker.clean_session == Some(true) {
            warnings.push((
                "broker.clean_session",
                format!(
                    "QoS {} with a clean session: messages in flight when Sluice or the broker \
                     stops are lost (the broker forgets them); leave clean_session out for a \
                     persistent session",
                    self.qos
                ),
            ));
        }
        warnings
    }

    /// Problems as `(field, message)`.
    pub fn validate(&self) -> Vec<(&'static str, String)> {
        let mut problems = self.broker.validate();
        if self.topics.is_empty() {
            problems.push(("topics", "subscribe to at least one topic filter".into()));
        }
        for topic in &self.topics {
            if let Some(err) = check_filter(topic) {
                problems.push(("topics", err));
            }
        }
        problems.extend(validate_qos(self.qos).map(|e| ("qos", e)));
        if self.max_message_bytes == 0 {
            problems.push(("max_message_bytes", "must be at least 1".into()));
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

/// MQTT topic filter rules: `#` only last and alone in its level, `+` alone in its level.
fn check_filter(filter: &str) -> Option<String> {
    if filter.is_empty() {
        return Some("a topic filter cannot be empty".into());
    }
    let levels: Vec<&str> = filter.split('/').collect();
    for (i, level) in levels.iter().enumerate() {
        if level.contains('#') && (*level != "#" || i != levels.len() - 1) {
            return Some(format!("{filter:?}: `#` must be a whole last level"));
        }
        if level.contains('+') && *level != "+" {
            return Some(format!("{filter:?}: `+` must be a whole level"));
        }
    }
    None
}

/// The running MQTT source.
pub struct MqttSource {
    config: MqttSourceConfig,
    client: MqttClient,
    events: MqttEventLoop,
    journal: Option<Arc<crate::journal::JournalLog>>,
}

/// A publish from the poll task, with its place in the connection's acknowledgement order.
struct Received {
    publish: IncomingPublish,
    /// Its [`PubAcks`] ticket, when it needs an acknowledgement.
    ticket: Option<(u64, u64)>,
}

/// The PUBACKs of one connection, sent in the order the publishes arrived, as MQTT requires of a
/// client (3.1.1 section 4.6; rumqttd closes the connection otherwise): a publish whose records
/// are all accepted waits for the ones before it.
///
/// A PUBACK is sent only on the connection its publish came on: packet ids start again on a new
/// session, so a late PUBACK could acknowledge a different message there. Skipped, the message
/// is delivered again (the broker resends what was not acknowledged when the session resumes).
#[derive(Default)]
struct PubAcks {
    /// Counts connections (CONNACKs).
    generation: u64,
    /// The ticket of `waiting[0]`.
    first: u64,
    /// Publishes not acknowledged yet, in arrival order, with whether they may be.
    waiting: VecDeque<(IncomingPublish, bool)>,
}

impl PubAcks {
    /// A new connection: what the old one had waiting is the broker's to send again.
    fn connected(&mut self) {
        self.generation += 1;
        self.first += self.waiting.len() as u64;
        self.waiting.clear();
    }

    /// Registers an arrived publish; returns its ticket `(generation, position)`.
    fn arrived(&mut self, publish: IncomingPublish) -> (u64, u64) {
        let position = self.first + self.waiting.len() as u64;
        self.waiting.push_back((publish, false));
        (self.generation, position)
    }

    /// The publish of `ticket` may be acknowledged; returns the publishes to acknowledge now,
    /// in order (none when an earlier one still waits, or the ticket is of another connection).
    fn done(&mut self, (generation, position): (u64, u64)) -> Vec<IncomingPublish> {
        if generation != self.generation {
            return Vec::new();
        }
        let Some(index) = position.checked_sub(self.first) else {
            return Vec::new();
        };
        if let Some(entry) = self.waiting.get_mut(index as usize) {
            entry.1 = true;
        }
        let mut ready = Vec::new();
        while self.waiting.front().is_some_and(|(_, done)| *done) {
            if let Some((publish, _)) = self.waiting.pop_front() {
                ready.push(publish);
                self.first += 1;
            }
        }
        ready
    }
}

type SharedPubAcks = Arc<std::sync::Mutex<PubAcks>>;

fn lock(acks: &SharedPubAcks) -> std::sync::MutexGuard<'_, PubAcks> {
    acks.lock().unwrap_or_else(|p| p.into_inner())
}

impl MqttSource {
    /// Prepares the client (no connection yet). A publish is acknowledged manually, only after
    /// everything derived from it was accepted.
    ///
    /// With `journal`, publishes are acknowledged once they are durable in it, and what an
    /// earlier run left there is replayed first. It is used only at QoS 1 or 2 (a QoS 0
    /// publish is never acknowledged, so there is nothing to hold back).
    pub fn build(
        config: MqttSourceConfig,
        ctx: &crate::flow::ComponentContext,
        journal: Option<Arc<crate::journal::JournalLog>>,
    ) -> Result<Self, String> {
        let (client, events) = config.broker.client(
            &ctx.default_client_id(),
            config.clean_session(),
            ClientRole::Source,
        )?;
        Ok(MqttSource {
            config,
            client,
            events,
            journal,
        })
    }

    /// Receives publishes until shutdown, then waits until what it emitted is acknowledged
    /// (the host's drain deadline bounds that wait) and disconnects. The connection is polled
    /// on a task of its own, so keep-alives and acknowledgements flow while downstream is slow.
    pub fn run(
        self,
        outputs: crate::flow::Outputs,
        ctx: crate::flow::ComponentContext,
    ) -> crate::flow::ComponentTask {
        use crate::flow::Ack;

        Box::pin(async move {
            let MqttSource {
                config,
                client,
                events,
                journal,
            } = self;
            let config = Arc::new(config);
            let pubacks = SharedPubAcks::default();
            let _unacked = ctx.metrics.unacked_scope();
            let (tx, mut received) = tokio::sync::mpsc::unbounded_channel();
            let mut poller = AbortOnDrop(tokio::spawn(poll(
                events,
                client.clone(),
                config.clone(),
                pubacks.clone(),
                tx,
                ctx.clone(),
            )));
            let mut shutdown = ctx.shutdown.clone();
            // With a journal, this loop only journals and acknowledges; a task of its own emits
            // from the journal at the pipeline's pace (what an earlier run left first), so a
            // slow or absent sink fills the journal, not the broker's queue.
            let emitter = journal.as_ref().map(|log| {
                let config = config.clone();
                AbortOnDrop(tokio::spawn(super::journaled::emit_from_journal(
                    log.clone(),
                    move |entry: &JournalEntry| read_entry(entry, &config),
                    outputs.clone(),
                    ctx.clone(),
                )))
            });
            loop {
                let next = tokio::select! {
                    biased;
                    _ = shutdown.wait_for(|stop| *stop) => break,
                    next = received.recv() => next,
                };
                // The poll task ends only on a fatal error (a refused subscription); the
                // supervisor restarts the pipeline.
                let Some(Received { publish, ticket }) = next else {
                    return;
                };
                let entry = JournalEntry {
                    received_ms: now_ms(),
                    topic: publish.topic().into_bytes(),
                    key: None,
                    properties: publish.user_properties(),
                    payload: publish.payload().to_vec(),
                };
                let (Some(log), Some(ticket)) = (&journal, ticket) else {
                    // No journal (or QoS 0): emit now, acknowledge once delivered.
                    let ack = match ticket {
                        Some(ticket) => puback_ack(ticket, &client, &pubacks, &ctx),
                        None => Ack::none(),
                    };
                    let (msg, failure) = read_entry(&entry, &config);
                    super::journaled::send(msg, failure, ack, &outputs, &ctx).await;
                    continue;
                };
                let bytes = entry.encode();
                // A full journal holds this publish (and, by the broker's window, the ones after
                // it) unacknowledged until sinks catch up.
                tokio::select! {
                    biased;
                    _ = shutdown.wait_for(|stop| *stop) => break,
                    () = log.wait_for_room(bytes.len() as u64) => {}
                }
                let on_disk = puback_when_durable(ticket, &client, &pubacks, &ctx);
                if let Err(err) = log.append(bytes, on_disk) {
                    tracing::error!(component = %ctx.component, "{err}");
                    ctx.metrics.report_error(&err.to_string());
                    return;
                }
            }
            // Stop feeding downstream; the poll task keeps the connection up until what was
            // emitted is acknowledged, so the acknowledgements reach the broker.
            if let Some(mut emitter) = emitter {
                // It stops at the next record; what it has not emitted stays journaled.
                let _ = (&mut emitter.0).await;
            }
            drop(outputs);
            drop(received); // publishes still arriving are not taken: redelivered later
            drain_and_disconnect(&client, &mut poller, &ctx).await;
        })
    }
}

fn now_ms() -> Option<i64> {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_millis()).ok())
}

/// What runs once a journaled publish is durable: the PUBACKs now
/// due go to the broker (in arrival order, see [`PubAcks`]). A failed write sends none: the broker delivers again.
fn puback_when_durable(
    ticket: (u64, u64),
    client: &MqttClient,
    pubacks: &SharedPubAcks,
    ctx: &crate::flow::ComponentContext,
) -> crate::journal::Durable {
    let (client, pubacks, metrics) = (client.clone(), pubacks.clone(), ctx.metrics.clone());
    // Counted as unacknowledged until the PUBACK is sent, so a drain keeps the connection up
    // for it: journaled but never acknowledged, the broker would deliver it a second time.
    let waiting = metrics.unacked.add();
    Box::new(move |written| {
        match written {
            Ok(()) => {
                for publish in lock(&pubacks).done(ticket) {
                    if let Err(err) = client.try_ack(&publish) {
                        tracing::warn!(
                            "cannot acknowledge a publish (the broker will redeliver it): {err}"
                        );
                    }
                }
            }
            Err(err) => metrics.report_error(&format!("journal write failed: {err}")),
        }
        metrics.unacked.remove(waiting);
    })
}

/// The acknowledgement of one received publish: once everything derived from it is accepted,
/// the PUBACKs now due (in arrival order, see [`PubAcks`]) go to the broker.
fn puback_ack(
    ticket: (u64, u64),
    client: &MqttClient,
    pubacks: &SharedPubAcks,
    ctx: &crate::flow::ComponentContext,
) -> crate::flow::Ack {
    let (client, pubacks) = (client.clone(), pubacks.clone());
    crate::flow::Ack::tracked(&ctx.metrics, move || {
        for publish in lock(&pubacks).done(ticket) {
            if let Err(err) = client.try_ack(&publish) {
                tracing::warn!(
                    "cannot acknowledge a publish (the broker will redeliver it): {err}"
                );
            }
        }
    })
}

/// The record a received message becomes (header `mqtt-topic` and its user properties, the
/// time it was received, the decoded value), and why it must be dead-lettered instead, if it
/// must (over `max_message_bytes`, or not decodable: then the value is the raw payload).
fn read_entry(
    entry: &JournalEntry,
    config: &MqttSourceConfig,
) -> (crate::message::Message, Option<String>) {
    let mut headers = vec![("mqtt-topic".to_string(), entry.topic.clone())];
    headers.extend(entry.properties.iter().cloned());
    let size = entry.payload.len();
    let (value, failure) = if size > config.max_message_bytes {
        (
            entry.payload.clone(),
            Some(format!(
                "message of {size} bytes is over max_message_bytes ({})",
                config.max_message_bytes
            )),
        )
    } else {
        match config.decoding.decode(&entry.payload) {
            Ok(value) => (value, None),
            Err(reason) => (entry.payload.clone(), Some(format!("decode: {reason}"))),
        }
    };
    let msg = crate::message::Message {
        key: None,
        value,
        headers,
        timestamp_ms: entry.received_ms,
    };
    (msg, failure)
}

/// Waits until everything emitted is acknowledged (the host's drain deadline bounds the wait),
/// then disconnects and lets the poll task send the DISCONNECT.
async fn drain_and_disconnect(
    client: &MqttClient,
    poller: &mut AbortOnDrop<()>,
    ctx: &crate::flow::ComponentContext,
) {
    let component = &ctx.component;
    tracing::debug!(%component, unacked = ctx.metrics.unacked.count(), "mqtt source draining");
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(10));
    while ctx.metrics.unacked.count() > 0 {
        tick.tick().await;
    }
    tracing::debug!(%component, "mqtt source acknowledged everything; disconnecting");
    // Queued behind the last acknowledgements, so they go out first.
    let _ = client.try_disconnect();
    if tokio::time::timeout(std::time::Duration::from_secs(5), &mut poller.0)
        .await
        .is_err()
    {
        tracing::warn!(%component, "no DISCONNECT sent within 5 s");
    }
}

/// Polls the connection until the DISCONNECT is out: reconnects with backoff, subscribes on
/// every new session, forwards publishes. Ends early only when the broker refuses a
/// subscription (fatal for this run: the pipeline restarts and asks again).
async fn poll(
    mut events: MqttEventLoop,
    client: MqttClient,
    config: Arc<MqttSourceConfig>,
    pubacks: SharedPubAcks,
    tx: tokio::sync::mpsc::UnboundedSender<Received>,
    ctx: crate::flow::ComponentContext,
) {
    let component = ctx.component.clone();
    let mut backoff = Backoff::default();
    loop {
        match events.poll().await {
            Ok(MqttEvent::Connected { session_present }) => {
                backoff.reset();
                lock(&pubacks).connected();
                ctx.metrics.set_connection(crate::metrics::Connection::Up);
                // A resumed session keeps its subscriptions (subscribing again would make the
                // broker resend retained messages); a new one has none.
                if !session_present {
                    if let Err(err) = client.try_subscribe(&config.topics, config.qos) {
                        tracing::error!(%component, "cannot subscribe: {err}");
                    }
                } else {
                    ctx.metrics.set_ready();
                    ctx.metrics.set_owned(shared_subscriptions(&config.topics));
                    tracing::info!(%component, host_id = %ctx.host_id, topics = ?config.topics, "mqtt source subscribed (session resumed)");
                }
            }
            Ok(MqttEvent::Subscribed { refused }) if refused.is_empty() => {
                ctx.metrics.set_ready();
                ctx.metrics.set_owned(shared_subscriptions(&config.topics));
                tracing::info!(%component, host_id = %ctx.host_id, topics = ?config.topics, "mqtt source subscribed");
            }
            Ok(MqttEvent::Subscribed { refused }) => {
                let topics: Vec<&str> = refused
                    .iter()
                    .filter_map(|i| config.topics.get(*i).map(String::as_str))
                    .collect();
                let reason =
                    format!("the broker refused the subscription to {topics:?} (not authorised?)");
                tracing::error!(%component, "{reason}");
                ctx.metrics.report_error(&reason);
                return;
            }
            Ok(MqttEvent::Publish(publish)) => {
                let ticket = publish
                    .needs_ack()
                    .then(|| lock(&pubacks).arrived(publish.clone()));
                // The main loop stopped taking publishes: they stay unacknowledged.
                let _ = tx.send(Received { publish, ticket });
            }
            Ok(MqttEvent::DisconnectSent) => {
                events.wait_closed(std::time::Duration::from_secs(2)).await;
                tracing::debug!(%component, "mqtt source disconnected");
                return;
            }
            Ok(_) => {}
            Err(err) => {
                let delay = backoff.next_delay();
                tracing::warn!(%component, error = %err, "mqtt connection: {err}; retrying in {delay:?}");
                ctx.metrics.set_connection(crate::metrics::Connection::Down);
                ctx.metrics.report_error(&format!("mqtt connection: {err}"));
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// A spawned task that is stopped when its owner is dropped (a pipeline stopped at its drain
/// deadline leaves nothing running).
pub(crate) struct AbortOnDrop<T>(pub(crate) tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The shared subscriptions among `topics` (`$share/GROUP/filter`), space-separated, for status:
/// this host receives a share of each; `None` when there is none.
fn shared_subscriptions(topics: &[String]) -> Option<String> {
    let shared: Vec<&str> = topics
        .iter()
        .map(String::as_str)
        .filter(|t| t.starts_with("$share/"))
        .collect();
    (!shared.is_empty()).then(|| shared.join(" "))
}

#[cfg(test)]
mod tests {
    use super::check_filter;

    #[test]
    fn pubacks_go_out_in_arrival_order_and_only_on_their_connection() {
        use super::{IncomingPublish, PubAcks};
        let publish = |pkid: u16| {
            let mut p = rumqttc::Publish::new("t", rumqttc::QoS::AtLeastOnce, vec![]);
            p.pkid = pkid;
            IncomingPublish::V311(p)
        };
        let pkids = |out: Vec<IncomingPublish>| -> Vec<u16> {
            out.iter()
                .map(|p| match p {
                    IncomingPublish::V311(p) => p.pkid,
                    IncomingPublish::V5(p) => p.pkid,
                })
                .collect()
        };
        let mut acks = PubAcks::default();
        acks.connected();
        let a = acks.arrived(publish(1));
        let b = acks.arrived(publish(2));
        let c = acks.arrived(publish(3));
        assert!(pkids(acks.done(b)).is_empty(), "1 still waits");
        assert_eq!(pkids(acks.done(a)), [1, 2]);
        // A reconnect: 3 belongs to the old connection, and its PUBACK is not sent.
        acks.connected();
        let d = acks.arrived(publish(3));
        assert!(pkids(acks.done(c)).is_empty());
        assert_eq!(pkids(acks.done(d)), [3]);
    }

    #[test]
    fn topic_filters() {
        assert!(check_filter("electric-temperature").is_none());
        assert!(check_filter("sensors/+/temp").is_none());
        assert!(check_filter("$share/sluice/sensors/#").is_none());
        assert!(check_filter("a/#/b").is_some());
        assert!(check_filter("a/b+").is_some());
    }

    #[test]
    fn status_names_the_shared_subscriptions() {
        let topics = |t: &[&str]| t.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(super::shared_subscriptions(&topics(&["a", "b/#"])), None);
        assert_eq!(
            super::shared_subscriptions(&topics(&["a", "$share/g/in", "$share/h/x/#"])),
            Some("$share/g/in $share/h/x/#".to_string())
        );
    }
}
