//! `sluice-mock-kafka TOPIC:PARTITIONS...`: librdkafka's mock cluster (one broker, real sockets)
//! with those topics, for the benchmarks: prints its bootstrap address on the first line of
//! stdout, then serves until its stdin closes.

use std::io::{Read, Write};

fn main() -> std::process::ExitCode {
    let cluster = match rdkafka::mocking::MockCluster::new(1) {
        Ok(cluster) => cluster,
        Err(err) => {
            eprintln!("sluice-mock-kafka: {err}");
            return std::process::ExitCode::FAILURE;
        }
    };
    for arg in std::env::args().skip(1) {
        let (topic, partitions) = match arg.split_once(':') {
            Some((topic, n)) => (topic.to_string(), n.parse().unwrap_or(0)),
            None => (arg.clone(), 1),
        };
        if partitions < 1 {
            eprintln!("sluice-mock-kafka: {arg}: expected TOPIC[:PARTITIONS], PARTITIONS >= 1");
            return std::process::ExitCode::FAILURE;
        }
        if let Err(err) = cluster.create_topic(&topic, partitions, 1) {
            eprintln!("sluice-mock-kafka: topic {topic}: {err}");
            return std::process::ExitCode::FAILURE;
        }
    }
    println!("{}", cluster.bootstrap_servers());
    let _ = std::io::stdout().flush();
    // Serve until the parent closes our stdin (or exits).
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    std::process::ExitCode::SUCCESS
}
