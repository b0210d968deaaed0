//! `sluice-demo`: the original Kafka + KSQL deep-learning demo, on the embedded default.
//!
//! Starts two MQTT brokers (sensors, receiver), a Kafka cluster and an Elasticsearch stand-in in
//! this process, runs the shipped pipelines (ingest and detect) with `sluice run` pointed at them, replays the ECG test
//! set as the original sensors published it, prints results live as they arrive on the output
//! topics, then stops `sluice` (it drains), checks every destination and prints the final table.
//! Exit status 0 when every destination holds what it should, 1 otherwise.

use clap::Parser;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use sluice_harness::elasticsearch::{FakeElasticsearch, Faults};
use sluice_harness::kafka::EmbeddedKafka;
use sluice_harness::mqtt::{try_publish_all, EmbeddedMqttBroker, Subscription};
use sluice_harness::process::{try_terminate, try_wait_ready};
use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

const SOURCE_TOPIC: &str = "electric-temperature";
const SCORES_TOPIC: &str = "TEMPERATURE_ANOMALY_DETECTION";
const ALERTS_TOPIC: &str = "ANOMALYDETECTIONWITHFILTER";
const DEAD_LETTER_TOPIC: &str = "sluice-dead-letters";
/// Every topic the pipeline writes (one partition each).
const TOPICS: [&str; 4] = [SOURCE_TOPIC, SCORES_TOPIC, ALERTS_TOPIC, DEAD_LETTER_TOPIC];
const ES_INDEX: &str = "temperature-anomaly";
/// A message the pipeline cannot score: it must land in the dead-letter topic, and the
/// messages after it must still flow.
const MALFORMED: &str = "1000, not an ecg reading";
/// How long the whole run may take before the demo gives up.
const TIMEOUT: Duration = Duration::from_secs(120);

/// Runs the ECG anomaly demo on in-process servers.
#[derive(Parser)]
#[command(name = "sluice-demo", about)]
struct Args {
    /// The `sluice` binary [default: the one next to this binary].
    #[arg(long)]
    sluice: Option<PathBuf>,
    /// The pipelines to run (repeat the flag for several): by default the demo's two halves,
    /// ingest (MQTT to Kafka and the receiver) and detect (Kafka to the anomaly UDF and on), with
    /// Kafka between them as in the original; `pipelines/ecg-anomaly.toml` is the same flow in
    /// one pipeline.
    #[arg(
        long = "pipeline",
        default_values = ["pipelines/ecg-ingest.toml", "pipelines/ecg-detect.toml"]
    )]
    pipelines: Vec<PathBuf>,
    /// Where the pipeline's UDF modules are.
    #[arg(long, default_value = "target/udfs")]
    udf_dir: PathBuf,
    /// ECG events, one `EVENTID,v1#...#v210` per line.
    #[arg(long, default_value = "tests/data/ecg_discord_test.msgs")]
    data: PathBuf,
    /// Where `sluice`'s log goes.
    #[arg(long, default_value = "target/demo/sluice.log")]
    log: PathBuf,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(err) => {
            eprintln!("sluice-demo: {err}");
            ExitCode::from(1)
        }
    }
}

/// Runs the demo; `Ok(false)` when a destination did not get what it should.
fn run(args: &Args) -> Result<bool, String> {
    let sluice = match &args.sluice {
        Some(path) => path.clone(),
        None => std::env::current_exe()
            .map_err(|e| format!("cannot find this binary's directory: {e}"))?
            .with_file_name("sluice"),
    };
    let payloads = sensor_payloads(&args.data)?;
    let events = payloads.len() - 1; // all but the malformed one

    let sensors = EmbeddedMqttBroker::start("sensors")?;
    let receiver = EmbeddedMqttBroker::start("receiver")?;
    let kafka = EmbeddedKafka::start(&TOPICS)?;
    let elasticsearch = FakeElasticsearch::start(Faults::default())
        .map_err(|e| format!("Elasticsearch stand-in: {e}"))?;
    let env = [
        ("MQTT_URL", sensors.url.clone()),
        ("MQTT_RECEIVER_URL", receiver.url.clone()),
        ("KAFKA_BROKERS", kafka.brokers()),
        ("ELASTICSEARCH_URL", elasticsearch.url.clone()),
    ];
    println!("Embedded servers (in this process, on local sockets):");
    println!("  MQTT sensors broker   {}   (rumqttd)", sensors.url);
    println!("  MQTT receiver broker  {}   (rumqttd)", receiver.url);
    println!(
        "  Kafka                 {}   (librdkafka mock cluster)",
        kafka.brokers()
    );
    println!(
        "  Elasticsearch         {}   (_bulk stand-in)",
        elasticsearch.url
    );

    let at_receiver = Subscription::start(
        receiver.port,
        "sluice-demo-receiver",
        &[SOURCE_TOPIC],
        Duration::from_secs(10),
    )
    .map_err(|e| format!("the receiver broker: {e}"))?;
    let consumer = kafka_consumer(&kafka.brokers())?;
    let mut host = SluiceProcess::start(&sluice, args, &env)?;
    host.wait_ready()?;
    println!(
        "\n`sluice run {}` is running (log: {}).",
        files(args),
        args.log.display()
    );
    println!(
        "Publishing {} ECG events and one malformed message to MQTT `{SOURCE_TOPIC}`.\n",
        events
    );
    try_publish_all(sensors.port, "sluice-demo-sensors", SOURCE_TOPIC, &payloads)
        .map_err(|e| format!("the sensors broker: {e}"))?;

    println!("Live, as results arrive on the output topics:");
    println!("  {:<30} {:>7}  {:<22}", "TOPIC", "EVENTID", "MSE");
    let mut results = Results::default();
    let deadline = Instant::now() + TIMEOUT;
    while !(results.scores.len() >= events
        && results.raw.len() >= payloads.len()
        && !results.dead_letters.is_empty())
    {
        if Instant::now() > deadline {
            eprintln!("sluice-demo: gave up waiting for results after {TIMEOUT:?}");
            break;
        }
        if let Some(exit) = host.exited() {
            return Err(format!(
                "sluice stopped early ({exit}); see {}",
                args.log.display()
            ));
        }
        results.poll(&consumer, Duration::from_millis(200));
    }

    // Stop sluice the way an operator would; it drains in-flight records before exiting, so
    // everything it accepted is now in Kafka, at the receiver and in Elasticsearch.
    let status = host.stop()?;
    let mut ends = Vec::new();
    for topic in TOPICS {
        let (_, high) = consumer
            .fetch_watermarks(topic, 0, Duration::from_secs(10))
            .map_err(|e| format!("Kafka watermarks of {topic}: {e}"))?;
        ends.push((topic, high));
    }
    while !ends
        .iter()
        .all(|(topic, high)| results.position(topic) >= *high)
        && Instant::now() < deadline
    {
        results.poll(&consumer, Duration::from_millis(200));
    }
    let received = at_receiver.collect(payloads.len(), deadline);

    print_table(&results);
    let documents = elasticsearch.documents(ES_INDEX);
    let sent: Vec<&[u8]> = payloads.iter().map(|p| p.as_bytes()).collect();
    let checks = [
        (
            results.scores.len() == events,
            format!(
                "{} of {events} scores on Kafka `{SCORES_TOPIC}` as EVENTID,MSE",
                results.scores.len()
            ),
        ),
        (
            results
                .raw
                .iter()
                .map(Vec::as_slice)
                .eq(sent.iter().copied()),
            format!(
                "{} of {} messages on Kafka `{SOURCE_TOPIC}`, byte-identical and in order",
                results.raw.len(),
                payloads.len()
            ),
        ),
        (
            received.iter().map(Vec::as_slice).eq(sent.iter().copied()),
            format!(
                "{} of {} messages at the receiver broker, byte-identical and in order",
                received.len(),
                payloads.len()
            ),
        ),
        (
            documents.len() == events,
            format!(
                "{} of {events} score documents in Elasticsearch index `{ES_INDEX}`",
                documents.len()
            ),
        ),
        (
            results.dead_letters.len() == 1,
            match results.dead_letters.first() {
                Some((value, reason)) => {
                    format!("dead-letter topic `{DEAD_LETTER_TOPIC}`: {value:?}, because: {reason}")
                }
                None => format!("nothing in dead-letter topic `{DEAD_LETTER_TOPIC}`"),
            },
        ),
        (
            status.success(),
            format!("sluice drained and exited: {status}"),
        ),
    ];
    println!();
    let mut all_good = true;
    for (ok, what) in &checks {
        println!("  {} {what}", if *ok { "ok  " } else { "FAIL" });
        all_good &= ok;
    }
    print_next_steps(args, &env);
    Ok(all_good)
}

/// The data set as the original demo's sensors publish it (`"106, 9.88# 9.13# ..."`), with one
/// malformed message in the middle.
fn sensor_payloads(data: &Path) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(data)
        .map_err(|e| format!("cannot read ECG data {}: {e}", data.display()))?;
    let mut payloads: Vec<String> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(sluice_harness::spaced)
        .collect();
    if payloads.is_empty() {
        return Err(format!("{}: no events", data.display()));
    }
    payloads.insert(payloads.len() / 2, MALFORMED.to_string());
    Ok(payloads)
}

/// What has arrived on the Kafka topics so far.
#[derive(Default)]
struct Results {
    /// `EVENTID → MSE` as printed on the scores topic.
    scores: BTreeMap<u64, String>,
    /// Event ids on the alerts topic.
    alerts: BTreeMap<u64, String>,
    /// Values on the raw topic, in order.
    raw: Vec<Vec<u8>>,
    /// `(value, sluice-error header)` on the dead-letter topic.
    dead_letters: Vec<(String, String)>,
    /// The next offset to read, per topic.
    positions: HashMap<String, i64>,
}

impl Results {
    /// The next offset to read on `topic`.
    fn position(&self, topic: &str) -> i64 {
        self.positions.get(topic).copied().unwrap_or(0)
    }

    /// Takes one message, if one comes within `wait`, and prints it as a live row.
    fn poll(&mut self, consumer: &BaseConsumer, wait: Duration) {
        let message = match consumer.poll(wait) {
            None => return,
            Some(Ok(message)) => message,
            Some(Err(err)) => {
                eprintln!("sluice-demo: Kafka: {err}");
                return;
            }
        };
        self.positions
            .insert(message.topic().to_string(), message.offset() + 1);
        let value = message.payload().unwrap_or_default();
        let text = String::from_utf8_lossy(value);
        match message.topic() {
            SOURCE_TOPIC => self.raw.push(value.to_vec()),
            DEAD_LETTER_TOPIC => {
                let reason = header(&message, "sluice-error").unwrap_or_default();
                println!("  {DEAD_LETTER_TOPIC:<30} {:>7}  {text:?}: {reason}", "-");
                self.dead_letters.push((text.into_owned(), reason));
            }
            topic @ (SCORES_TOPIC | ALERTS_TOPIC) => {
                let Some((id, mse)) = text
                    .split_once(',')
                    .and_then(|(id, mse)| Some((id.trim().parse::<u64>().ok()?, mse.trim())))
                else {
                    eprintln!("sluice-demo: unexpected value on {topic}: {text:?}");
                    return;
                };
                let alert = topic == ALERTS_TOPIC;
                println!(
                    "  {topic:<30} {id:>7}  {mse:<22}{}",
                    if alert { "  ALERT" } else { "" }
                );
                let into = if alert {
                    &mut self.alerts
                } else {
                    &mut self.scores
                };
                into.insert(id, mse.to_string());
            }
            _ => {}
        }
    }
}

fn header(message: &rdkafka::message::BorrowedMessage<'_>, name: &str) -> Option<String> {
    use rdkafka::message::Headers;
    let headers = message.headers()?;
    headers
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

/// Every score, with ALERT where the event also reached the alerts topic.
fn print_table(results: &Results) {
    println!("\nAll scores (ALERT: the event is on `{ALERTS_TOPIC}`, the pipeline's `anomaly_val > 1.5` filter):");
    println!("  {:>7}  {:<22}  ALERT", "EVENTID", "MSE");
    for (id, mse) in &results.scores {
        let alert = if results.alerts.contains_key(id) {
            "ALERT"
        } else {
            ""
        };
        println!("  {id:>7}  {mse:<22}  {alert}");
    }
    let ids: Vec<String> = results.alerts.keys().map(u64::to_string).collect();
    println!("\n{} alerts: events {}", ids.len(), ids.join(", "));
}

fn print_next_steps(args: &Args, env: &[(&str, String)]) {
    println!("\nThe same pipelines run unchanged against real servers; set where they are:");
    let vars: Vec<String> = env
        .iter()
        .map(|(name, _)| {
            let example = match *name {
                "MQTT_URL" => "mqtt://sensors.example:1883",
                "MQTT_RECEIVER_URL" => "mqtt://receiver.example:1883",
                "KAFKA_BROKERS" => "kafka.example:9092",
                _ => "http://elasticsearch.example:9200",
            };
            format!("  {name}={example} \\")
        })
        .collect();
    println!("{}", vars.join("\n"));
    println!(
        "  target/release/sluice run {} --udf-dir {}",
        files(args),
        args.udf_dir.display()
    );
    println!("(unset, each defaults to localhost: see the top of the pipeline files; docker/compose.yaml starts them all.)");
}

/// The pipeline files, as a command line names them.
fn files(args: &Args) -> String {
    let names: Vec<String> = args
        .pipelines
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    names.join(" ")
}

/// A consumer reading every output topic from the beginning.
fn kafka_consumer(brokers: &str) -> Result<BaseConsumer, String> {
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "sluice-demo")
        .set("enable.auto.commit", "false")
        .create()
        .map_err(|e| format!("Kafka consumer: {e}"))?;
    let mut topics = TopicPartitionList::new();
    for topic in TOPICS {
        topics
            .add_partition_offset(topic, 0, Offset::Beginning)
            .map_err(|e| format!("Kafka assignment: {e}"))?;
    }
    consumer
        .assign(&topics)
        .map_err(|e| format!("Kafka assignment: {e}"))?;
    Ok(consumer)
}

/// `sluice run` as a child process, its log copied to a file.
struct SluiceProcess {
    child: Child,
    log: PathBuf,
    /// The run's `--ready-file`, next to the log.
    ready_file: PathBuf,
}

impl SluiceProcess {
    fn start(sluice: &Path, args: &Args, env: &[(&str, String)]) -> Result<Self, String> {
        if let Some(dir) = args.log.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        let mut log =
            std::fs::File::create(&args.log).map_err(|e| format!("{}: {e}", args.log.display()))?;
        let ready_file = args.log.with_extension("ready");
        // A state directory of the demo's own, fresh each run: a journal left by an interrupted
        // earlier run must not be replayed into this run's brokers.
        let state_dir = args.log.with_extension("state");
        match std::fs::remove_dir_all(&state_dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("{}: {e}", state_dir.display())),
        }
        match std::fs::remove_file(&ready_file) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("{}: {e}", ready_file.display())),
        }
        let mut command = Command::new(sluice);
        command
            .arg("run")
            .args(&args.pipelines)
            .arg("--udf-dir")
            .arg(&args.udf_dir)
            .arg("--ready-file")
            .arg(&ready_file)
            .arg("--state-dir")
            .arg(&state_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (name, value) in env {
            command.env(name, value);
        }
        if std::env::var_os("SLUICE_LOG").is_none() {
            command.env("SLUICE_LOG", "info");
        }
        let mut child = command
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", sluice.display()))?;
        let stderr = child
            .stderr
            .take()
            .ok_or_else(|| "no stderr pipe".to_string())?;
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = writeln!(log, "{line}");
            }
        });
        Ok(SluiceProcess {
            child,
            log: args.log.clone(),
            ready_file,
        })
    }

    /// Waits until every source is subscribed (the run's `--ready-file`); fails if `sluice`
    /// exits first.
    fn wait_ready(&mut self) -> Result<(), String> {
        try_wait_ready(&mut self.child, &self.ready_file, TIMEOUT).map_err(|err| {
            let _ = self.child.kill();
            format!(
                "{err}; its log is {}:\n{}",
                self.log.display(),
                std::fs::read_to_string(&self.log).unwrap_or_default()
            )
        })
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// SIGTERM, then waits for the drain to finish (at most the drain timeout and a margin).
    fn stop(&mut self) -> Result<std::process::ExitStatus, String> {
        try_terminate(&mut self.child, Duration::from_secs(60))
            .map_err(|e| format!("stopping sluice: {e}"))
    }
}
