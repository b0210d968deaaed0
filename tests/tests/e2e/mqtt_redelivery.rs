//! MQTT QoS 1: the source acknowledges a publish only after every sink accepted what came of
//! it. With the receiver broker down, `sluice` receives every message (the console sink prints
//! them) but cannot deliver them to the receiver, so it must not acknowledge them. Kill it
//! (SIGKILL), start the receiver, start `sluice` again with the same persistent session: the
//! sensors broker redelivers every message and the receiver gets all of them. Nothing is
//! published twice by the test, so every message at the receiver is a redelivery.

use sluice_harness::{free_port, Collector, Mosquitto, SluiceRun};
use std::collections::HashSet;

/// Fewer than Mosquitto's in-flight window (20 unacknowledged QoS 1 messages per client): past
/// it, the broker itself waits for acknowledgements that `sluice` rightly withholds.
const MESSAGES: usize = 10;

#[test]
fn unaccepted_publishes_are_redelivered_after_a_crash() {
    let sensors = Mosquitto::start();
    let receiver_port = free_port(); // reserved; nothing listens yet
    let pipeline = sluice_harness::PipelineFile::new(
        "relay.toml",
        &format!(
            r#"
[sources.sensors]
type = "mqtt"
broker = {{ url = "{sensors}", client_id = "sluice-redelivery-test", clean_session = false }}
topics = ["in"]
qos = 1

[sinks.seen]
type = "console"
inputs = ["sensors"]

[sinks.receiver]
type = "mqtt"
inputs = ["sensors"]
broker.url = "mqtt://127.0.0.1:{receiver_port}"
topic = "out"
"#,
            sensors = sensors.url()
        ),
    );

    let mut first = SluiceRun::start(&pipeline.path);
    first.wait_ready();
    let payloads: Vec<Vec<u8>> = (0..MESSAGES)
        .map(|i| format!("m-{i}").into_bytes())
        .collect();
    sluice_harness::publish_all(sensors.port, "in", &payloads);
    assert_eq!(
        first.stdout_lines(MESSAGES).len(),
        MESSAGES,
        "sluice received everything"
    );
    first.kill();

    let receiver = Mosquitto::start_on(receiver_port);
    let out = Collector::subscribe(receiver.port, &["out"]);
    let second = SluiceRun::start(&pipeline.path);
    let got: HashSet<Vec<u8>> = out.take(MESSAGES).into_iter().map(|(_, p)| p).collect();
    assert_eq!(
        got,
        payloads.into_iter().collect::<HashSet<_>>(),
        "every publish was redelivered"
    );
    assert!(second.stop().success());
}
