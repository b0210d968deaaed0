//! Hot reload of UDF modules in a running `sluice run`, through a real Mosquitto:
//! - under continuous load, the module file is replaced by a version that tags its output
//!   differently: every input comes out exactly once and in order, tagged by exactly one
//!   version, and once the new tag appears the old one never does again;
//! - broken versions (not Wasm, the wrong world, a trap in `init`) are refused and the old
//!   version keeps serving without losing a record; a good version after them still goes live;
//! - with `workers = 3` the same swap keeps order, and batches that finish out of order still
//!   leave in input order.

use sluice_harness::{fixture_dir, replace_file, Collector, Mosquitto, PipelineFile, SluiceRun};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

fn relay_pipeline(broker: &Mosquitto, udf_config: &str, transform_extra: &str) -> PipelineFile {
    PipelineFile::new(
        "relay.toml",
        &format!(
            r#"
[sources.input]
type = "mqtt"
broker.url = "{url}"
topics = ["reload/in"]

[transforms.tag]
type = "udf"
inputs = ["input"]
module = "tagger"
config = {{ {udf_config} }}
{transform_extra}

[sinks.output]
type = "mqtt"
inputs = ["tag"]
broker.url = "{url}"
topic = "reload/out"
"#,
            url = broker.url()
        ),
    )
}

fn udf_dir_with_tagger_a() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::copy(
        fixture_dir().join("tagger.wasm"),
        dir.path().join("tagger.wasm"),
    )
    .expect("copy tagger.wasm (run `cargo xtask test`)");
    dir
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(fixture_dir().join(name)).expect("fixture module")
}

/// `value|tag` → (value, tag).
fn split(payload: &[u8]) -> (String, String) {
    let text = String::from_utf8_lossy(payload);
    let (value, tag) = text.rsplit_once('|').expect("a tagged value");
    (value.to_string(), tag.to_string())
}

#[test]
fn swapping_a_module_under_load_loses_and_duplicates_nothing() {
    swap_under_load("");
}

/// The same with three instances working on small batches in parallel: outputs still leave in
/// input order, and the swap still happens between batches (none after a new-version batch
/// comes from the old version).
#[test]
fn swapping_a_module_with_parallel_workers_keeps_order() {
    swap_under_load("workers = 3\nbatch_size = 4");
}

fn swap_under_load(transform_extra: &str) {
    let broker = Mosquitto::start();
    let udfs = udf_dir_with_tagger_a();
    let pipeline = relay_pipeline(&broker, "", transform_extra);
    let collector = Collector::subscribe(broker.port, &["reload/out"]);
    let mut sluice = SluiceRun::start_with_udf_dir(&pipeline.path, udfs.path());
    sluice.wait_ready();

    let stop = Arc::new(AtomicBool::new(false));
    let publisher = {
        let (stop, port) = (stop.clone(), broker.port);
        std::thread::spawn(move || publish_until(port, "reload/in", &stop))
    };
    let mut outputs: Vec<(String, String)> = Vec::new();
    let take = |n: usize, outputs: &mut Vec<(String, String)>| {
        outputs.extend(collector.take(n).iter().map(|(_, p)| split(p)));
    };
    take(2_000, &mut outputs);
    replace_file(udfs.path(), "tagger.wasm", &read("tagger-b.wasm"));
    sluice.wait_for_log("udf swapped between batches");
    // Keep the load on until the new version has served plenty.
    while outputs.iter().filter(|(_, tag)| tag == "b").count() < 2_000 {
        take(500, &mut outputs);
    }
    stop.store(true, Ordering::Release);
    let published = publisher.join().expect("publisher");
    let remaining = published - outputs.len();
    take(remaining, &mut outputs);

    let values: Vec<&str> = outputs.iter().map(|(v, _)| v.as_str()).collect();
    let expected: Vec<String> = (0..published).map(|i| format!("r{i}")).collect();
    assert_eq!(
        values, expected,
        "every input exactly once, in order ({published} published)"
    );
    let first_b = outputs
        .iter()
        .position(|(_, tag)| tag == "b")
        .expect("the new version served");
    assert!(first_b > 0, "the old version served first");
    assert!(
        outputs[..first_b].iter().all(|(_, tag)| tag == "a"),
        "before the swap: only the old version"
    );
    assert!(
        outputs[first_b..].iter().all(|(_, tag)| tag == "b"),
        "after the swap: only the new version"
    );
    assert!(sluice.stop().success());
}

#[test]
fn broken_versions_are_refused_and_the_old_one_keeps_serving() {
    let broker = Mosquitto::start();
    let udfs = udf_dir_with_tagger_a();
    // The tagger ignores this key; the hostile fixture traps in `init` when it sees it.
    let pipeline = relay_pipeline(&broker, r#"init = "trap""#, "");
    let collector = Collector::subscribe(broker.port, &["reload/out"]);
    let mut sluice = SluiceRun::start_with_udf_dir(&pipeline.path, udfs.path());
    sluice.wait_ready();

    let mut round = 0;
    let mut check_served_by = |tag: &str| {
        let payloads: Vec<Vec<u8>> = (0..10)
            .map(|i| format!("round{round}-{i}").into_bytes())
            .collect();
        sluice_harness::publish_all(broker.port, "reload/in", &payloads);
        let got: Vec<(String, String)> = collector
            .take(payloads.len())
            .iter()
            .map(|(_, p)| split(p))
            .collect();
        let want: Vec<(String, String)> = payloads
            .iter()
            .map(|p| (String::from_utf8_lossy(p).into_owned(), tag.to_string()))
            .collect();
        assert_eq!(
            got, want,
            "round {round}: every record, served by version {tag}"
        );
        round += 1;
    };
    check_served_by("a");

    let broken: [(&str, Vec<u8>, &str); 3] = [
        (
            "not Wasm",
            b"this is not a wasm module".to_vec(),
            "not a valid WebAssembly component",
        ),
        // A valid but empty component: it exports nothing of the sluice:udf world.
        (
            "the wrong world",
            b"\0asm\x0d\0\x01\0".to_vec(),
            "does not fit the sluice:udf",
        ),
        ("a trap in init", read("hostile.wasm"), "failed to start"),
    ];
    for (what, bytes, reason) in broken {
        replace_file(udfs.path(), "tagger.wasm", &bytes);
        let line = sluice.wait_for_log("new version refused");
        assert!(
            line.contains(reason),
            "{what}: refused because {reason:?}: {line}"
        );
        check_served_by("a");
    }

    replace_file(udfs.path(), "tagger.wasm", &read("tagger-b.wasm"));
    sluice.wait_for_log("udf swapped between batches");
    check_served_by("b");
    assert!(sluice.stop().success());
}

/// Publishes `r0`, `r1`, ... at QoS 1 until `stop`, then waits for every acknowledgement and
/// returns how many were published.
fn publish_until(port: u16, topic: &str, stop: &AtomicBool) -> usize {
    let options = rumqttc::MqttOptions::new(
        format!("load-{}", sluice_harness::free_port()),
        "127.0.0.1",
        port,
    );
    let (client, mut connection) = rumqttc::Client::new(options, 100);
    let (acks_tx, acks) = std::sync::mpsc::channel();
    let events = std::thread::spawn(move || {
        for event in connection.iter() {
            match event {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_))) => {
                    if acks_tx.send(()).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(err) => panic!("load publisher: {err}"),
            }
        }
    });
    let mut published = 0;
    while !stop.load(Ordering::Acquire) {
        client
            .publish(
                topic,
                rumqttc::QoS::AtLeastOnce,
                false,
                format!("r{published}"),
            )
            .expect("publish");
        published += 1;
    }
    for _ in 0..published {
        acks.recv_timeout(sluice_harness::WAIT)
            .expect("the broker acknowledges every publish");
    }
    let _ = client.disconnect();
    drop(acks);
    let _ = events.join();
    published
}

/// Three instances on batches of four, where some batches are slow (the hostile guest naps 1 ms
/// on a `nap` record) so later batches can finish before earlier ones: the outputs still leave
/// in input order, each exactly once.
#[test]
fn parallel_workers_deliver_in_input_order_when_batches_finish_out_of_order() {
    const RECORDS: usize = 3_000;
    let broker = Mosquitto::start();
    let pipeline = PipelineFile::new(
        "order.toml",
        &format!(
            r#"
[sources.input]
type = "mqtt"
broker.url = "{url}"
topics = ["order/in"]

[transforms.work]
type = "udf"
inputs = ["input"]
module = "{module}"
workers = 3
batch_size = 4

[sinks.output]
type = "mqtt"
inputs = ["work"]
broker.url = "{url}"
topic = "order/out"
"#,
            url = broker.url(),
            module = fixture_dir().join("hostile.wasm").display()
        ),
    );
    let collector = Collector::subscribe(broker.port, &["order/out"]);
    let mut sluice = SluiceRun::start(&pipeline.path);
    sluice.wait_ready();
    // Every 5th record naps: one slow record in most batches, none in others.
    let payloads: Vec<Vec<u8>> = (0..RECORDS)
        .map(|i| {
            if i % 5 == 0 {
                b"nap".to_vec()
            } else {
                format!("r{i}").into_bytes()
            }
        })
        .collect();
    sluice_harness::publish_all(broker.port, "order/in", &payloads);
    let outputs: Vec<Vec<u8>> = collector
        .take(RECORDS)
        .into_iter()
        .map(|(_, p)| p)
        .collect();
    assert_eq!(outputs, payloads, "every record once, in input order");
    assert!(sluice.stop().success());
}
