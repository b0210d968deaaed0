//! MQTT 5 and TLS against a real Mosquitto:
//! - MQTT 5 end to end: user properties arrive as headers and leave as user properties again;
//! - TLS (rustls) with a private CA: source and sink both over `mqtts://`, and a broker whose
//!   certificate the configured CA did not sign is refused.

use sluice_harness::tls::TestCerts;
use sluice_harness::{free_port, Mosquitto, PipelineFile, SluiceRun, WAIT};
use std::sync::mpsc;

#[test]
fn mqtt5_carries_payloads_and_user_properties_through() {
    let broker = Mosquitto::start();
    let pipeline = PipelineFile::new(
        "v5.toml",
        &format!(
            r#"
[sources.input]
type = "mqtt"
broker = {{ url = "{url}", protocol = "5" }}
topics = ["v5/in"]

[sinks.output]
type = "mqtt"
inputs = ["input"]
broker = {{ url = "{url}", protocol = "5" }}
topic = "v5/out"
"#,
            url = broker.url()
        ),
    );
    let received = subscribe_v5(broker.port, "v5/out");
    let mut sluice = SluiceRun::start(&pipeline.path);
    sluice.wait_ready();

    let payloads: Vec<String> = (0..20).map(|i| format!("reading {i}")).collect();
    publish_v5(broker.port, "v5/in", &payloads, ("trace-id", "abc-123"));
    for expected in &payloads {
        let (payload, properties) = received.recv_timeout(WAIT).expect("a message at v5/out");
        assert_eq!(&payload, expected, "payloads arrive unchanged and in order");
        assert!(
            properties.contains(&("trace-id".to_string(), "abc-123".to_string())),
            "the user property came through: {properties:?}"
        );
        assert!(
            properties.contains(&("mqtt-topic".to_string(), "v5/in".to_string())),
            "the source topic header goes out as a user property: {properties:?}"
        );
    }
    assert!(sluice.stop().success());
}

#[test]
fn mqtt_over_tls_with_a_private_ca() {
    let certs = TestCerts::generate();
    let (plain, secure) = (free_port(), free_port());
    let broker = Mosquitto::start_with(
        plain,
        &format!(
            "listener {secure} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\n",
            certs.ca.display(),
            certs.cert.display(),
            certs.key.display()
        ),
        &[secure],
    );
    let pipeline = |ca: &std::path::Path| {
        PipelineFile::new(
            "tls.toml",
            &format!(
                r#"
[sources.input]
type = "mqtt"
broker = {{ url = "mqtts://localhost:{secure}", tls = {{ ca_file = "{ca}" }} }}
topics = ["tls/in"]

[sinks.output]
type = "mqtt"
inputs = ["input"]
broker = {{ url = "mqtts://localhost:{secure}", tls = {{ ca_file = "{ca}" }} }}
topic = "tls/out"
"#,
                ca = ca.display()
            ),
        )
    };

    // The right CA: both ends connect over TLS and records flow.
    let trusted = pipeline(&certs.ca);
    let collector = sluice_harness::Collector::subscribe(broker.port, &["tls/out"]);
    let mut sluice = SluiceRun::start(&trusted.path);
    sluice.wait_ready();
    let payloads: Vec<Vec<u8>> = (0..10)
        .map(|i| format!("secret {i}").into_bytes())
        .collect();
    sluice_harness::publish_all(broker.port, "tls/in", &payloads);
    let got: Vec<Vec<u8>> = collector
        .take(payloads.len())
        .into_iter()
        .map(|(_, p)| p)
        .collect();
    assert_eq!(got, payloads);
    assert!(sluice.stop().success());

    // A CA that did not sign the broker's certificate: the connection is refused.
    let stranger = TestCerts::generate();
    let untrusted = pipeline(&stranger.ca);
    let sluice = SluiceRun::start(&untrusted.path);
    let line = sluice.wait_for_log("mqtt connection:");
    assert!(
        line.to_lowercase().contains("certificate"),
        "the refusal names the certificate problem: {line}"
    );
    assert!(sluice.stop().success());
}

/// Publishes at QoS 1 with MQTT 5 and one user property; returns when all are acknowledged.
fn publish_v5(port: u16, topic: &str, payloads: &[String], property: (&str, &str)) {
    use rumqttc::v5::mqttbytes::{v5::PublishProperties, QoS};
    use rumqttc::v5::{Client, Event, MqttOptions};
    let options = MqttOptions::new(format!("v5-publisher-{}", free_port()), "127.0.0.1", port);
    let (client, mut connection) = Client::new(options, 100);
    for payload in payloads {
        let properties = PublishProperties {
            user_properties: vec![(property.0.to_string(), property.1.to_string())],
            ..Default::default()
        };
        client
            .publish_with_properties(topic, QoS::AtLeastOnce, false, payload.clone(), properties)
            .expect("publish");
    }
    let mut acked = 0;
    for event in connection.iter() {
        if let Event::Incoming(rumqttc::v5::mqttbytes::v5::Packet::PubAck(_)) =
            event.expect("MQTT 5 publisher connection")
        {
            acked += 1;
            if acked == payloads.len() {
                break;
            }
        }
    }
}

/// Subscribes with MQTT 5; each message arrives as (payload, user properties).
fn subscribe_v5(port: u16, topic: &str) -> mpsc::Receiver<(String, Vec<(String, String)>)> {
    use rumqttc::v5::mqttbytes::{v5::Packet, QoS};
    use rumqttc::v5::{Client, Event, MqttOptions};
    let options = MqttOptions::new(format!("v5-collector-{}", free_port()), "127.0.0.1", port);
    let (client, mut connection) = Client::new(options, 100);
    client
        .subscribe(topic, QoS::AtLeastOnce)
        .expect("subscribe");
    let (tx, rx) = mpsc::channel();
    let (ready_tx, ready_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _client = client;
        for event in connection.iter() {
            match event {
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    let _ = ready_tx.send(());
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let properties = p
                        .properties
                        .map(|props| props.user_properties)
                        .unwrap_or_default();
                    let payload = String::from_utf8_lossy(&p.payload).into_owned();
                    if tx.send((payload, properties)).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
    });
    ready_rx
        .recv_timeout(WAIT)
        .expect("the broker confirms the subscription");
    rx
}
