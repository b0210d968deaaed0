//! MQTT QoS 1: a publish is acknowledged only once it cannot be lost. With the receiver broker
//! down, `sluice` receives every message (the console sink prints them) but cannot deliver them
//! to the receiver. Kill it (SIGKILL), start the receiver, start `sluice` again on the same
//! state directory and persistent session: with the journal (the default) the new run delivers
//! what the journal kept; without it, the sensors broker redelivers what was never
//! acknowledged. Either way the receiver gets every message. Nothing is published twice by the
//! test, so every message at the receiver was kept through the crash.

use sluice_harness::{free_port, Collector, Mosquitto, SluiceRun};
use std::collections::HashSet;
use std::ffi::OsStr;

/// Fewer than Mosquitto's in-flight window (20 unacknowledged QoS 1 messages per client): past
/// it, the broker itself waits for acknowledgements that `sluice` rightly withholds.
const MESSAGES: usize = 10;

#[test]
fn undelivered_publishes_survive_a_crash_in_the_journal() {
    survive_a_crash("");
}

#[test]
fn unaccepted_publishes_are_redelivered_after_a_crash_without_a_journal() {
    survive_a_crash("[journal]\nenabled = false\n");
}

fn survive_a_crash(journal: &str) {
    let sensors = Mosquitto::start();
    let receiver_port = free_port(); // reserved; nothing listens yet
    let pipeline = sluice_harness::PipelineFile::new(
        "relay.toml",
        &format!(
            r#"
{journal}
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

    let state = tempfile::tempdir().expect("state dir");
    let udfs = sluice_harness::udf_dir();
    let args = [
        OsStr::new("--udf-dir"),
        udfs.as_os_str(),
        OsStr::new("--state-dir"),
        state.path().as_os_str(),
    ];
    let mut first = SluiceRun::start_with_args(&pipeline.path, &args);
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
    let second = SluiceRun::start_with_args(&pipeline.path, &args);
    let got: HashSet<Vec<u8>> = out.take(MESSAGES).into_iter().map(|(_, p)| p).collect();
    assert_eq!(
        got,
        payloads.into_iter().collect::<HashSet<_>>(),
        "every publish was redelivered"
    );
    assert!(second.stop().success());
}
