//! The embedded default: servers that run inside one process so the ECG demo needs nothing
//! installed. Each speaks its real wire protocol on a real local socket, so `sluice run` talks to
//! them exactly as it talks to production servers.
//!
//! - [`mqtt::EmbeddedMqttBroker`]: an MQTT 3.1.1 broker (rumqttd);
//! - [`kafka::EmbeddedKafka`]: a Kafka-protocol cluster (librdkafka's mock cluster);
//! - [`elasticsearch::FakeElasticsearch`]: Elasticsearch's `_bulk` and `_doc` API (also used by the
//!   end-to-end tests).

pub mod elasticsearch;
pub mod kafka;
pub mod mqtt;

/// A free TCP port on 127.0.0.1 (for servers that cannot report the port they bound).
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Waits until something accepts connections on `port`, for at most `timeout`.
pub fn wait_for_port(port: u16, timeout: std::time::Duration) -> std::io::Result<()> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        match std::net::TcpStream::connect(("127.0.0.1", port)) {
            Ok(_) => return Ok(()),
            Err(err) if std::time::Instant::now() >= deadline => return Err(err),
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
        }
    }
}
