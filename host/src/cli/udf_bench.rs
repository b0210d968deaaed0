//! `sluice udf bench MODULE --input FILE`: how fast a UDF runs on sample input, inside the same
//! sandbox a pipeline gives it.
//!
//! The input lines (one message value each) are cycled in batches until `--records` records
//! have been measured, after a warm-up. It prints throughput in records/s and latency
//! percentiles: per `process` call (one batch) and per record (a call's time divided by the
//! records in it). `--json` prints the same numbers as one JSON object.
//! Exit status: 0 measured, 1 some records failed (they are counted, and the first few
//! reasons printed), 2 the module or input could not be loaded.

use super::udf_test::UdfModuleArgs;
use sluice::udf_runtime::UdfWorker;
use sluice::Message;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Arguments of `sluice udf bench`.
#[derive(clap::Args)]
pub struct UdfBenchArgs {
    #[command(flatten)]
    udf: UdfModuleArgs,
    /// Sample input: one message value per line, cycled as often as needed.
    #[arg(long, value_name = "FILE")]
    input: PathBuf,
    /// Records to measure.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    records: u64,
    /// Records to run before measuring (instantiation, caches, branch predictors).
    #[arg(long, default_value_t = 1_000)]
    warmup: u64,
    /// Print the results as one JSON object.
    #[arg(long)]
    json: bool,
}

/// What a run measured.
struct Measurements {
    records: u64,
    failed: u64,
    elapsed: Duration,
    /// One entry per `process` call: (records in the call, time it took).
    calls: Vec<(usize, Duration)>,
}

/// Runs the command; the exit status follows the contract in the module docs.
pub fn run(args: UdfBenchArgs) -> ExitCode {
    let lines = match std::fs::read(&args.input) {
        Ok(bytes) => split_lines(&bytes),
        Err(err) => {
            eprintln!("error: cannot read input {}: {err}", args.input.display());
            return ExitCode::from(2);
        }
    };
    if lines.is_empty() {
        eprintln!(
            "error: input {} has no lines to benchmark with",
            args.input.display()
        );
        return ExitCode::from(2);
    }
    let mut worker = match args.udf.load() {
        Ok(worker) => worker,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let batch_size = args.udf.batch_size as usize;
    let mut feed = lines.iter().cycle();
    let mut next_batch = |n: usize| -> Vec<Message> {
        feed.by_ref()
            .take(n)
            .map(|value| Message::from_value(value.as_slice()))
            .collect()
    };
    let mut warmed = 0;
    while warmed < args.warmup {
        let n = batch_size.min((args.warmup - warmed) as usize);
        let _ = worker.process(&next_batch(n));
        warmed += n as u64;
    }
    let measured = measure(&mut worker, args.records, batch_size, &mut next_batch);
    if args.json {
        println!("{}", report_json(&args, &measured));
    } else {
        print!("{}", report_text(&args, &measured));
    }
    if measured.failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn split_lines(bytes: &[u8]) -> Vec<Vec<u8>> {
    bytes
        .split(|&b| b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line).to_vec())
        .filter(|line| !line.is_empty())
        .collect()
}

fn measure(
    worker: &mut UdfWorker,
    records: u64,
    batch_size: usize,
    next_batch: &mut impl FnMut(usize) -> Vec<Message>,
) -> Measurements {
    let mut done = 0u64;
    let mut failed = 0u64;
    let mut calls = Vec::new();
    let start = Instant::now();
    while done < records {
        let batch = next_batch(batch_size.min((records - done) as usize));
        let call = Instant::now();
        let results = worker.process(&batch);
        calls.push((batch.len(), call.elapsed()));
        for result in results {
            if let Err(err) = result {
                failed += 1;
                if failed <= 3 {
                    eprintln!("record failed: {err}");
                }
            }
        }
        done += batch.len() as u64;
    }
    Measurements {
        records: done,
        failed,
        elapsed: start.elapsed(),
        calls,
    }
}

/// Nearest-rank percentiles of `values` (sorted here), in microseconds: p50, p90, p99, max.
fn percentiles(mut values: Vec<f64>) -> [f64; 4] {
    values.sort_by(f64::total_cmp);
    let rank = |p: f64| -> f64 {
        let i = ((p / 100.0) * values.len() as f64).ceil() as usize;
        values[i.clamp(1, values.len()) - 1]
    };
    if values.is_empty() {
        return [0.0; 4];
    }
    [rank(50.0), rank(90.0), rank(99.0), rank(100.0)]
}

fn per_call(m: &Measurements) -> [f64; 4] {
    percentiles(m.calls.iter().map(|(_, t)| t.as_secs_f64() * 1e6).collect())
}

fn per_record(m: &Measurements) -> [f64; 4] {
    percentiles(
        m.calls
            .iter()
            .map(|(n, t)| t.as_secs_f64() * 1e6 / (*n).max(1) as f64)
            .collect(),
    )
}

fn records_per_second(m: &Measurements) -> f64 {
    m.records as f64 / m.elapsed.as_secs_f64().max(f64::MIN_POSITIVE)
}

fn report_text(args: &UdfBenchArgs, m: &Measurements) -> String {
    let row = |[p50, p90, p99, max]: [f64; 4]| {
        format!("p50 {p50:>10.1} µs   p90 {p90:>10.1} µs   p99 {p99:>10.1} µs   max {max:>10.1} µs")
    };
    format!(
        "udf bench: {} — {} records in {} calls of up to {}, {} failed, after {} warm-up records\n\
         throughput:  {:.0} records/s\n\
         per record:  {}\n\
         per call:    {}\n",
        args.udf.module,
        m.records,
        m.calls.len(),
        args.udf.batch_size,
        m.failed,
        args.warmup,
        records_per_second(m),
        row(per_record(m)),
        row(per_call(m)),
    )
}

fn report_json(args: &UdfBenchArgs, m: &Measurements) -> serde_json::Value {
    let latency = |[p50, p90, p99, max]: [f64; 4]| serde_json::json!({ "p50_us": p50, "p90_us": p90, "p99_us": p99, "max_us": max });
    serde_json::json!({
        "module": args.udf.module,
        "batch_size": args.udf.batch_size,
        "warmup_records": args.warmup,
        "records": m.records,
        "failed": m.failed,
        "calls": m.calls.len(),
        "seconds": m.elapsed.as_secs_f64(),
        "records_per_second": records_per_second(m),
        "per_record": latency(per_record(m)),
        "per_call": latency(per_call(m)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentiles(values), [50.0, 90.0, 99.0, 100.0]);
        assert_eq!(percentiles(vec![7.0]), [7.0; 4]);
        assert_eq!(percentiles(vec![]), [0.0; 4]);
    }

    #[test]
    fn lines_without_blank_ones_or_carriage_returns() {
        assert_eq!(
            split_lines(b"a\r\n\nb\n"),
            vec![b"a".to_vec(), b"b".to_vec()]
        );
    }
}
