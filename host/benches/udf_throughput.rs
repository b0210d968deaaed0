//! Records/s of the ECG anomaly UDF in Wasm (through the host runtime, batch sizes 1, 64, 1024)
//! against the same scoring code compiled natively, measured in the same run and printed as a
//! ratio. Run with `cargo xtask bench` (it builds `target/udfs/anomaly.wasm` first).
//!
//! Native and Wasm alternate in short rounds. Each Wasm round is compared with the native round
//! just before it (the two ran under the same machine conditions), and the table shows the
//! median of those ratios with their range, so a noisy neighbour on a small machine skews both
//! sides of a ratio alike and shows up as a wide range. A second table does the same for each
//! stage of the scoring alone (parse, model, `exp`, the boundary), from the anomaly crate's
//! per-stage build `target/test-udfs/anomaly-stages.wasm`.

use anomaly::stages::{self, Stage};
use sluice::udf_runtime::{RuntimeOptions, UdfLimits, UdfRuntime};
use sluice::Message;
use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Rounds per side and batch size.
const ROUNDS: usize = 9;
/// Each round runs at least this long.
const ROUND_TIME: Duration = Duration::from_millis(300);

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let udf_dir = std::env::var_os("SLUICE_TEST_UDF_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/udfs"));
    let payloads: Vec<Vec<u8>> =
        std::fs::read_to_string(root.join("tests/data/ecg_discord_test.msgs"))
            .expect("ECG test data")
            .lines()
            .map(|l| l.as_bytes().to_vec())
            .collect();

    let runtime = UdfRuntime::new(RuntimeOptions::default()).expect("runtime");
    let module = runtime
        .load_file(&udf_dir.join("anomaly.wasm"), None)
        .expect("target/udfs/anomaly.wasm (run `cargo xtask bench`)");
    let mut worker = module
        .instantiate(Vec::new(), UdfLimits::default())
        .expect("init");

    println!(
        "ECG anomaly UDF throughput ({} distinct events, cycled; {ROUNDS} alternating rounds: \
         median rates, median and range of the per-round ratios)",
        payloads.len()
    );
    println!(
        "{:>10}  {:>14}  {:>14}  {:>12}  {:>13}",
        "batch", "native rec/s", "wasm rec/s", "wasm/native", "range"
    );
    for batch_size in [1usize, 64, 1024] {
        let batch: Vec<Message> = payloads
            .iter()
            .cycle()
            .take(batch_size)
            .map(|p| Message::from_value(p.clone()))
            .collect();
        let rounds = alternate(
            batch_size,
            || {
                for msg in &batch {
                    let (key, json) = anomaly::score_payload(black_box(&msg.value)).expect("valid");
                    // The same work the guest does to build its output message.
                    black_box(Message {
                        key: Some(key.into_bytes()),
                        value: json.into_bytes(),
                        headers: msg.headers.clone(),
                        timestamp_ms: msg.timestamp_ms,
                    });
                }
            },
            || process_all_ok(&mut worker, &batch),
        );
        println!(
            "{batch_size:>10}  {:>14.0}  {:>14.0}  {:>12.3}  {:>13}",
            rounds.native,
            rounds.wasm,
            rounds.ratio,
            rounds.range()
        );
    }
    stages(&runtime, &root, &payloads);
}

/// The same comparison for each stage of the scoring alone (batch 64), from the anomaly crate's
/// per-stage build (`target/test-udfs/anomaly-stages.wasm`): where Wasm and native differ.
fn stages(runtime: &UdfRuntime, root: &std::path::Path, payloads: &[Vec<u8>]) {
    let path = std::env::var_os("SLUICE_TEST_FIXTURE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/test-udfs"))
        .join("anomaly-stages.wasm");
    let module = match runtime.load_file(&path, None) {
        Ok(module) => module,
        Err(err) => {
            println!("\n(no per-stage table: {err}; `cargo xtask bench` builds it)");
            return;
        }
    };
    let batch: Vec<Message> = payloads
        .iter()
        .cycle()
        .take(64)
        .map(|p| Message::from_value(p.clone()))
        .collect();
    println!(
        "\nBy stage (batch 64; microseconds per record; {ROUNDS} alternating rounds as above)"
    );
    println!(
        "{:>10}  {:>14}  {:>14}  {:>12}  {:>13}",
        "stage", "native us", "wasm us", "wasm/native", "range"
    );
    for stage in Stage::ALL {
        let config = vec![("stage".to_string(), stage.name().to_string())];
        let mut worker = module
            .instantiate(config, UdfLimits::default())
            .expect("init the stage UDF");
        let rounds = alternate(
            batch.len(),
            || {
                for msg in &batch {
                    let value = stages::run(stage, black_box(&msg.value)).expect("valid");
                    black_box(Message {
                        key: msg.key.clone(),
                        value,
                        headers: msg.headers.clone(),
                        timestamp_ms: msg.timestamp_ms,
                    });
                }
            },
            || process_all_ok(&mut worker, &batch),
        );
        println!(
            "{:>10}  {:>14.2}  {:>14.2}  {:>12.3}  {:>13}",
            stage.name(),
            1e6 / rounds.native,
            1e6 / rounds.wasm,
            rounds.ratio,
            rounds.range()
        );
    }
}

/// What [`alternate`] measured.
struct Rounds {
    /// Median records/s of the native rounds.
    native: f64,
    /// Median records/s of the Wasm rounds.
    wasm: f64,
    /// Median of the per-round ratios (each Wasm round over the native round just before it).
    ratio: f64,
    /// The lowest per-round ratio.
    lowest: f64,
    /// The highest per-round ratio.
    highest: f64,
}

impl Rounds {
    fn range(&self) -> String {
        format!("{:.3}-{:.3}", self.lowest, self.highest)
    }
}

/// Records/s of `native` and of `wasm` (each processing `records` records per call) over
/// [`ROUNDS`] rounds, the two sides alternating.
fn alternate(records: usize, mut native: impl FnMut(), mut wasm: impl FnMut()) -> Rounds {
    let (mut native_rates, mut wasm_rates, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let n = measure(records, &mut native);
        let w = measure(records, &mut wasm);
        native_rates.push(n);
        wasm_rates.push(w);
        ratios.push(w / n);
    }
    Rounds {
        native: median(native_rates),
        wasm: median(wasm_rates),
        lowest: ratios.iter().copied().fold(f64::INFINITY, f64::min),
        highest: ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        ratio: median(ratios),
    }
}

/// One batch through the Wasm UDF; every record must succeed.
fn process_all_ok(worker: &mut sluice::udf_runtime::UdfWorker, batch: &[Message]) {
    let results = worker.process(black_box(batch));
    assert!(results.iter().all(Result::is_ok));
    black_box(results);
}

/// Records per second of `run`, which processes `records` records per call.
fn measure(records: usize, mut run: impl FnMut()) -> f64 {
    run(); // warm up
    let start = Instant::now();
    let mut calls = 0u64;
    while start.elapsed() < ROUND_TIME {
        run();
        calls += 1;
    }
    (calls as f64 * records as f64) / start.elapsed().as_secs_f64()
}

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}
