//! The shadow side of a `udf` transform: every live batch, once done, is handed (cloned) to the
//! shadow's own instances on blocking threads; they run it, compare record by record and add to
//! the shadow's figures. Handing over never waits: a shadow more than `max_lag` records behind is
//! dropped instead. Nothing the shadow does reaches the live outputs.

use crate::message::Message;
use crate::udf_registry::UdfRegistry;
use crate::udf_runtime::{RecordResult, UdfWorker};
use crate::udf_shadow::compare::{compare, Judge, Verdict};
use crate::udf_shadow::report::ShadowSample;
use crate::udf_shadow::stats::BatchComparison;
use crate::udf_shadow::{now_unix, RuleAction, Shadow};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Differing records rendered per batch (the shadow keeps the latest 20).
const SAMPLES_PER_BATCH: usize = 2;
/// Bytes of each value shown in a sample.
const SAMPLE_BYTES: usize = 1024;

/// Where a transform's shadow runs and whom it tells.
pub struct ShadowContext {
    /// The registry (to promote or drop the shadow when a rule fires or it falls behind).
    pub registry: Arc<UdfRegistry>,
    /// The UDF name.
    pub name: String,
    /// The pipeline.
    pub pipeline: String,
    /// The transform, `PIPELINE/TRANSFORM`.
    pub component: String,
    /// The filter downstream and its score field.
    pub judge: Judge,
}

/// A live batch for the shadow.
struct Job {
    messages: Vec<Message>,
    live: Vec<RecordResult>,
    live_elapsed: Duration,
}

/// A shadow running in one transform; dropping it stops its threads after their current batch.
pub struct ShadowRun {
    shadow: Arc<Shadow>,
    jobs: mpsc::Sender<Job>,
    cancelled: Arc<AtomicBool>,
    context: Arc<ShadowContext>,
}

impl ShadowRun {
    /// Starts one thread per instance in `workers`.
    pub fn start(
        shadow: Arc<Shadow>,
        workers: Vec<UdfWorker>,
        context: Arc<ShadowContext>,
    ) -> Self {
        let (jobs, receiver) = mpsc::channel::<Job>();
        let receiver = Arc::new(Mutex::new(receiver));
        let cancelled = Arc::new(AtomicBool::new(false));
        if let Some(filter) = &context.judge.name {
            shadow.stats.decided_by(filter);
        }
        for worker in workers {
            let (shadow, receiver, cancelled, context) = (
                shadow.clone(),
                receiver.clone(),
                cancelled.clone(),
                context.clone(),
            );
            tokio::task::spawn_blocking(move || {
                work(worker, &receiver, &shadow, &cancelled, &context)
            });
        }
        tracing::info!(component = %context.component, shadow = %shadow.version(), "shadow running beside the live version");
        ShadowRun {
            shadow,
            jobs,
            cancelled,
            context,
        }
    }

    /// Hands a finished live batch to the shadow without waiting; `false` when the shadow is
    /// gone (it ended, or it was too far behind and is dropped now).
    pub fn offer(&self, messages: &[Message], live: &[RecordResult], elapsed: Duration) -> bool {
        if self.shadow.has_ended() {
            return false;
        }
        let n = messages.len() as u64;
        let max = self.shadow.options.max_lag;
        let behind = self.shadow.lag().fetch_add(n, Ordering::Relaxed) + n;
        if behind > max {
            self.shadow.lag().fetch_sub(n, Ordering::Relaxed);
            let reason = format!("fell behind the live version by more than {max} records");
            self.context.registry.drop_shadow_if(
                &self.context.name,
                &self.shadow.version(),
                &reason,
            );
            return false;
        }
        let job = Job {
            messages: messages.to_vec(),
            live: live.to_vec(),
            live_elapsed: elapsed,
        };
        if self.jobs.send(job).is_err() {
            self.shadow.lag().fetch_sub(n, Ordering::Relaxed);
            return false;
        }
        true
    }
}

impl Drop for ShadowRun {
    fn drop(&mut self) {
        self.cancelled.store(true, Ordering::Relaxed);
    }
}

/// One shadow instance: takes jobs until the run is dropped.
fn work(
    mut worker: UdfWorker,
    receiver: &Mutex<mpsc::Receiver<Job>>,
    shadow: &Shadow,
    cancelled: &AtomicBool,
    context: &ShadowContext,
) {
    loop {
        let job = {
            let receiver = receiver.lock().unwrap_or_else(|p| p.into_inner());
            match receiver.recv() {
                Ok(job) => job,
                Err(_) => return,
            }
        };
        let n = job.messages.len() as u64;
        if cancelled.load(Ordering::Relaxed) || shadow.has_ended() {
            shadow.lag().fetch_sub(n, Ordering::Relaxed);
            continue;
        }
        let started = Instant::now();
        let results = worker.process(&job.messages);
        let shadow_elapsed = started.elapsed();
        let batch = comparison(&job, &results, shadow_elapsed, context);
        shadow.stats.add(batch, now_unix());
        shadow.lag().fetch_sub(n, Ordering::Relaxed);
        match shadow.check_rules() {
            Some(RuleAction::Promote(reason)) => {
                context
                    .registry
                    .promote_shadow_if(&context.name, &shadow.version(), &reason)
            }
            Some(RuleAction::Drop(reason)) => {
                context
                    .registry
                    .drop_shadow_if(&context.name, &shadow.version(), &reason);
            }
            None => {}
        }
    }
}

fn comparison(
    job: &Job,
    results: &[RecordResult],
    shadow_elapsed: Duration,
    context: &ShadowContext,
) -> BatchComparison {
    let n = job.messages.len().max(1) as f64;
    let mut samples = Vec::new();
    let records = job
        .messages
        .iter()
        .zip(&job.live)
        .zip(results)
        .map(|((input, live), shadow)| {
            let c = compare(input, live, shadow, &context.judge);
            if c.verdict != Verdict::Identical && samples.len() < SAMPLES_PER_BATCH {
                samples.push(ShadowSample {
                    at_ms: now_unix().saturating_mul(1000),
                    id: c.id.clone(),
                    input: text(&input.value),
                    live: rendered(live),
                    shadow: rendered(shadow),
                });
            }
            c
        })
        .collect();
    BatchComparison {
        pipeline: context.pipeline.clone(),
        records,
        samples,
        live_us_per_record: job.live_elapsed.as_secs_f64() * 1e6 / n,
        shadow_us_per_record: shadow_elapsed.as_secs_f64() * 1e6 / n,
    }
}

/// Output values (one per line) or the error.
fn rendered(result: &RecordResult) -> String {
    match result {
        Ok(outputs) => outputs
            .iter()
            .map(|m| text(&m.value))
            .collect::<Vec<_>>()
            .join("\n"),
        Err(err) => format!("error ({}): {err}", err.kind()),
    }
}

fn text(bytes: &[u8]) -> String {
    let cut = &bytes[..bytes.len().min(SAMPLE_BYTES)];
    let mut text = String::from_utf8_lossy(cut).into_owned();
    if bytes.len() > SAMPLE_BYTES {
        text.push('…');
    }
    text
}
