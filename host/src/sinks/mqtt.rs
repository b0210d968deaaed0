//! The MQTT sink: publishes each record's encoded value to a topic.
//!
//! Delivery: a record is acknowledged upstream only when the broker acknowledged *that* record
//! (PUBACK/PUBCOMP for its packet id). Each connection is a fresh client with a clean session;
//! when it drops, everything the broker had not acknowledged is published again on the next
//! one, in the original order. So nothing is lost, and a record can arrive twice only when a
//! connection dropped after the broker took it and before its acknowledgement came back (at
//! most one in-flight window, [`SINK_WINDOW`], per reconnect). rumqttc's own retransmission is
//! not relied on: on a reconnect without a resumed session it discards what was pending, and
//! its packet ids start over (see ARCHITECTURE.md).

use crate::codec::EncodingConfig;
use crate::flow::{Backoff, Record};
use crate::metrics::Connection;
use crate::mqtt_common::{
    validate_qos, ClientRole, MqttClient, MqttConnection, MqttEvent, MqttEventLoop, MAX_PACKET,
    SINK_WINDOW,
};
use crate::sources::mqtt::AbortOnDrop;
use serde::Deserialize;
use std::collections::{HashMap, VecDeque};

/// `[sinks.NAME] type = "mqtt"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttSinkConfig {
    /// Broker connection (`broker.url = "mqtt://..."`, credentials, TLS, session).
    pub broker: MqttConnection,
    /// Topic to publish to (no wildcards).
    pub topic: String,
    /// Publish QoS: 0, 1 (default) or 2. A record counts as accepted when the broker acknowledged it.
    #[serde(default = "qos_one")]
    pub qos: u8,
    /// Set the retain flag.
    #[serde(default)]
    pub retain: bool,
    /// How values are encoded (default raw: bytes untouched).
    #[serde(default)]
    pub encoding: EncodingConfig,
}

fn qos_one() -> u8 {
    1
}

impl MqttSinkConfig {
    /// Problems as `(field, message)`.
    pub fn validate(&self) -> Vec<(&'static str, String)> {
        let mut problems = self.broker.validate();
        if self.topic.is_empty() || self.topic.contains(['+', '#']) {
            problems.push((
                "topic",
                format!("{:?} is not a topic name (no wildcards)", self.topic),
            ));
        }
        problems.extend(validate_qos(self.qos).map(|e| ("qos", e)));
        problems.extend(
            self.encoding
                .validate()
                .into_iter()
                .map(|(_, e)| ("encoding", e)),
        );
        problems
    }
}

/// The running MQTT sink.
pub struct MqttSink {
    config: MqttSinkConfig,
    client_id: String,
}

/// A record handed to the client, kept until the broker acknowledges it.
struct Pending {
    /// Arrival order, so records sent again keep their order.
    seq: u64,
    record: Record,
    payload: Vec<u8>,
}

/// What the sink knows of its records: handed to the current client but not yet written
/// (`unassigned`, in order: the client writes them in that order and names each packet id as
/// it goes), written and waiting for the broker (`by_packet`), and to send on the next
/// connection (`resend`).
#[derive(Default)]
struct Outstanding {
    unassigned: VecDeque<Pending>,
    by_packet: HashMap<u16, Pending>,
    resend: VecDeque<Pending>,
}

impl Outstanding {
    fn len(&self) -> usize {
        self.unassigned.len() + self.by_packet.len() + self.resend.len()
    }

    /// The connection dropped: nothing it carried is acknowledged, so all of it is sent again,
    /// in arrival order.
    fn connection_lost(&mut self) {
        let mut all: Vec<Pending> = self
            .resend
            .drain(..)
            .chain(self.by_packet.drain().map(|(_, p)| p))
            .chain(self.unassigned.drain(..))
            .collect();
        all.sort_by_key(|p| p.seq);
        self.resend = all.into();
    }
}

/// What the poll task of one connection reports.
enum SinkEvent {
    Connected,
    /// The client wrote a publish with this packet id (0 at QoS 0).
    Sent(u16),
    /// The broker finished (or refused) the publish with this packet id.
    Done {
        pkid: u16,
        refused: Option<String>,
    },
    /// The connection dropped (or never came up); this client is finished.
    Lost(String),
    /// Our DISCONNECT went out and the broker closed the connection.
    Closed,
}

/// One connection: a fresh client and the task polling it.
struct Link {
    client: MqttClient,
    events: tokio::sync::mpsc::UnboundedReceiver<SinkEvent>,
    _poller: AbortOnDrop<()>,
    up: bool,
}

impl MqttSink {
    /// Checks that a client can be made (URL, TLS files); connects only when it runs.
    pub fn build(
        config: MqttSinkConfig,
        ctx: &crate::flow::ComponentContext,
    ) -> Result<Self, String> {
        let client_id = ctx.default_client_id();
        config.broker.client(&client_id, true, ClientRole::Sink)?;
        Ok(MqttSink { config, client_id })
    }

    /// A new client with a clean session, polled on its own task.
    fn connect(&self) -> Result<Link, String> {
        let (client, events) =
            self.config
                .broker
                .client(&self.client_id, true, ClientRole::Sink)?;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let poller = AbortOnDrop(tokio::spawn(poll(events, tx)));
        Ok(Link {
            client,
            events: rx,
            _poller: poller,
            up: false,
        })
    }

    /// Publishes records until the input closes and everything is acknowledged (the host's
    /// drain deadline bounds that wait when the broker is away).
    pub fn run(
        self,
        mut input: tokio::sync::mpsc::Receiver<Record>,
        ctx: crate::flow::ComponentContext,
    ) -> crate::flow::ComponentTask {
        Box::pin(async move {
            let mut run = SinkRun {
                sink: &self,
                ctx: &ctx,
                out: Outstanding::default(),
                backoff: Backoff::default(),
                seq: 0,
            };
            let mut input_open = true;
            let mut link: Option<Link> = None;
            while input_open || run.out.len() > 0 {
                let current = match &mut link {
                    Some(current) => current,
                    None => match self.connect() {
                        Ok(new) => link.insert(new),
                        Err(err) => {
                            // The configuration was checked at build: a TLS file went away.
                            tracing::error!(component = %ctx.component, "mqtt sink cannot make a client: {err}");
                            ctx.metrics.report_error(&err);
                            tokio::time::sleep(run.backoff.next_delay()).await;
                            continue;
                        }
                    },
                };
                // Records are taken while the connection is down too (they wait in `resend`),
                // so a stop with nothing in flight ends at once whatever the broker does.
                let can_take = input_open && run.out.len() < usize::from(SINK_WINDOW);
                let step = tokio::select! {
                    event = current.events.recv() => Step::Event(event),
                    record = input.recv(), if can_take => Step::Input(record),
                };
                match step {
                    Step::Event(event) => run.on_event(event, &mut link).await,
                    Step::Input(None) => input_open = false,
                    Step::Input(Some(record)) => run.on_record(record, link.as_ref()).await,
                }
            }
            if let Some(link) = link {
                goodbye(link).await; // everything acknowledged
            }
        })
    }
}

/// What the sink's loop woke up for.
enum Step {
    /// Something happened on the connection (`None`: its poll task ended).
    Event(Option<SinkEvent>),
    /// A record came in (`None`: the input closed).
    Input(Option<Record>),
}

/// The state of one run of the sink: what is outstanding, the reconnect backoff, the sequence.
struct SinkRun<'a> {
    sink: &'a MqttSink,
    ctx: &'a crate::flow::ComponentContext,
    out: Outstanding,
    backoff: Backoff,
    seq: u64,
}

impl SinkRun<'_> {
    /// Publishes `payload` on the current connection (its request queue holds more than the
    /// window, so this never waits long).
    async fn publish(&self, link: &Link, payload: Vec<u8>, headers: &[(String, Vec<u8>)]) {
        let config = &self.sink.config;
        if let Err(err) = link
            .client
            .publish(&config.topic, config.qos, config.retain, payload, headers)
            .await
        {
            tracing::warn!(component = %self.ctx.component, "mqtt client stopped: {err}");
        }
    }

    /// Handles a connection event: on a new connection, sends again what waits in `resend`;
    /// pairs written publishes with packet ids; finishes acknowledged records (or dead-letters
    /// refused ones); on a lost connection, puts every unacknowledged record back to `resend`
    /// and waits the backoff.
    async fn on_event(&mut self, event: Option<SinkEvent>, link: &mut Option<Link>) {
        let (ctx, component) = (self.ctx, &self.ctx.component);
        match event {
            Some(SinkEvent::Connected) => {
                self.backoff.reset();
                let Some(current) = link else { return };
                current.up = true;
                tracing::info!(%component, resend = self.out.resend.len(), "mqtt sink connected");
                ctx.metrics.set_connection(Connection::Up);
                while let Some(pending) = self.out.resend.pop_front() {
                    let headers = pending.record.msg.headers.clone();
                    let payload = pending.payload.clone();
                    self.out.unassigned.push_back(pending);
                    self.publish(current, payload, &headers).await;
                }
            }
            Some(SinkEvent::Sent(pkid)) => {
                if let Some(pending) = self.out.unassigned.pop_front() {
                    if pkid == 0 {
                        ctx.metrics.record_out();
                        pending.record.ack.done(); // QoS 0: written is all there is
                    } else {
                        self.out.by_packet.insert(pkid, pending);
                    }
                }
            }
            Some(SinkEvent::Done { pkid, refused }) => {
                match (self.out.by_packet.remove(&pkid), refused) {
                    (Some(pending), None) => {
                        ctx.metrics.record_out();
                        pending.record.ack.done();
                    }
                    (Some(pending), Some(reason)) => {
                        let reason = format!("mqtt topic {}: {reason}", self.sink.config.topic);
                        ctx.dead_letters
                            .send(pending.record, &ctx.metrics, &reason)
                            .await;
                    }
                    (None, _) => {}
                }
            }
            Some(SinkEvent::Lost(err)) => {
                self.out.connection_lost();
                *link = None;
                let delay = self.backoff.next_delay();
                tracing::warn!(%component, error = %err, unacknowledged = self.out.len(), "mqtt connection: {err}; sending the unacknowledged records again after reconnecting in {delay:?}");
                ctx.metrics.set_connection(Connection::Down);
                ctx.metrics.report_error(&format!("mqtt connection: {err}"));
                tokio::time::sleep(delay).await;
            }
            Some(SinkEvent::Closed) | None => {
                self.out.connection_lost();
                *link = None;
            }
        }
    }

    /// Encodes a record and publishes it, or keeps it for after the reconnect when the
    /// connection is down; records that cannot be encoded or are over the packet limit go to
    /// dead letters.
    async fn on_record(&mut self, record: Record, link: Option<&Link>) {
        let ctx = self.ctx;
        let Some((record, payload)) =
            super::encode_or_dead_letter(&self.sink.config.encoding, record, ctx).await
        else {
            return;
        };
        let size = payload.len() + self.sink.config.topic.len();
        if size + 64 > MAX_PACKET {
            let reason = format!(
                "message of {size} bytes is over the MQTT sink's packet limit ({MAX_PACKET} bytes)"
            );
            ctx.dead_letters.send(record, &ctx.metrics, &reason).await;
            return;
        }
        self.seq += 1;
        let seq = self.seq;
        let Some(link) = link.filter(|link| link.up) else {
            self.out.resend.push_back(Pending {
                seq,
                record,
                payload,
            });
            return;
        };
        let headers = record.msg.headers.clone();
        self.out.unassigned.push_back(Pending {
            seq,
            record,
            payload: payload.clone(),
        });
        self.publish(link, payload, &headers).await;
    }
}

/// Disconnects and waits (at most 2 s) for the DISCONNECT to go out.
async fn goodbye(mut link: Link) {
    let _ = link.client.try_disconnect();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), async {
        while let Some(event) = link.events.recv().await {
            if matches!(event, SinkEvent::Closed | SinkEvent::Lost(_)) {
                break;
            }
        }
    })
    .await;
}

/// Polls one connection and reports what happens, until it drops or is closed.
async fn poll(mut events: MqttEventLoop, tx: tokio::sync::mpsc::UnboundedSender<SinkEvent>) {
    loop {
        let event = match events.poll().await {
            Ok(MqttEvent::Connected { .. }) => SinkEvent::Connected,
            Ok(MqttEvent::PublishSent(pkid)) => SinkEvent::Sent(pkid),
            Ok(MqttEvent::PublishDone { pkid, refused }) => SinkEvent::Done { pkid, refused },
            Ok(MqttEvent::DisconnectSent) => {
                events.wait_closed(std::time::Duration::from_secs(2)).await;
                let _ = tx.send(SinkEvent::Closed);
                return;
            }
            Ok(_) => continue,
            Err(err) => {
                let _ = tx.send(SinkEvent::Lost(err));
                return;
            }
        };
        if tx.send(event).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(seq: u64) -> Pending {
        Pending {
            seq,
            record: Record {
                msg: crate::message::Message::from_value(seq.to_string()),
                ack: crate::flow::Ack::none(),
            },
            payload: Vec::new(),
        }
    }

    #[test]
    fn a_lost_connection_sends_everything_unacknowledged_again_in_order() {
        let mut out = Outstanding::default();
        out.resend.push_back(pending(1));
        out.by_packet.insert(7, pending(3));
        out.by_packet.insert(2, pending(2));
        out.unassigned.push_back(pending(4));
        out.connection_lost();
        let order: Vec<u64> = out.resend.iter().map(|p| p.seq).collect();
        assert_eq!(order, [1, 2, 3, 4]);
        assert!(out.by_packet.is_empty() && out.unassigned.is_empty());
        assert_eq!(out.len(), 4);
    }
}
