//! Wiring one pipeline: a bounded channel per transform and sink, fan-out to everything naming
//! a component as input, the dead-letter route, and every component built into a task.
//! A pipeline builds whole or not at all.

use super::BuildError;
use crate::flow::{ComponentContext, ComponentTask, DeadLetters, Outputs, Probe, Record};
use crate::flow::{DeadLetterFile, DeadLetterRoute, SinkBuffer};
use crate::flow::{RunContext, CHANNEL_CAPACITY};
use crate::metrics::{ComponentMetrics, Connection, Role};
use crate::pipeline::{PipelineSpec, SinkConfig, SourceConfig, TransformConfig};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::{mpsc, watch};

/// Fresh probes (counters, taps) for every component of `spec`: sources, transforms, sinks.
pub fn probes_for(spec: &PipelineSpec) -> Vec<Arc<Probe>> {
    let pipeline: Arc<str> = spec.name.as_str().into();
    let probe = |name: &str, role, kind, client: bool| {
        let metrics = ComponentMetrics::new(pipeline.clone(), name.into(), role, kind);
        if client {
            metrics.set_connection(Connection::Down); // until it connects
        }
        Arc::new(Probe::new(metrics))
    };
    spec.sources
        .iter()
        .map(|c| probe(&c.name, Role::Source, c.config.kind(), c.config.is_client()))
        .chain(spec.transforms.iter().map(|c| {
            probe(
                &c.name,
                Role::Transform,
                c.config.kind(),
                c.config.is_client(),
            )
        }))
        .chain(
            spec.sinks
                .iter()
                .map(|c| probe(&c.name, Role::Sink, c.config.kind(), c.config.is_client())),
        )
        .collect()
}

/// [`build_pipeline`] on a blocking thread: building runs UDF `init`, and a guest's WASI calls
/// (printing, waiting) block, which must never happen on an async worker thread.
pub async fn build_pipeline_blocking(
    spec: Arc<PipelineSpec>,
    context: RunContext,
    probes: Vec<Arc<Probe>>,
    shutdown: watch::Receiver<bool>,
) -> Result<Vec<ComponentTask>, BuildError> {
    let name = spec.name.clone();
    tokio::task::spawn_blocking(move || build_pipeline(&spec, &context, &probes, &shutdown))
        .await
        .unwrap_or_else(|err| {
            Err(BuildError {
                pipeline: name,
                component: "-".into(),
                reason: format!("building panicked: {err}"),
            })
        })
}

/// Builds every component of `spec` into a task (not yet spawned). `probes` come from
/// [`probes_for`] on the same spec; `shutdown` stops the sources.
pub fn build_pipeline(
    spec: &PipelineSpec,
    context: &RunContext,
    probes: &[Arc<Probe>],
    shutdown: &watch::Receiver<bool>,
) -> Result<Vec<ComponentTask>, BuildError> {
    let pipeline: Arc<str> = spec.name.as_str().into();
    let fail = |component: &str, reason: String| BuildError {
        pipeline: spec.name.clone(),
        component: component.to_string(),
        reason,
    };
    let probe_of: HashMap<&str, Arc<Probe>> = probes
        .iter()
        .map(|p| (&*p.metrics.component, p.clone()))
        .collect();
    let probe = |name: &str| {
        probe_of
            .get(name)
            .cloned()
            .ok_or_else(|| fail(name, "no probe for this component".into()))
    };

    // One input channel per transform and sink.
    let mut senders: HashMap<String, mpsc::Sender<Record>> = HashMap::new();
    let mut receivers: HashMap<String, mpsc::Receiver<Record>> = HashMap::new();
    let consumers = spec
        .transforms
        .iter()
        .map(|t| t.name.clone())
        .chain(spec.sinks.iter().map(|s| s.name.clone()));
    for name in consumers {
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        senders.insert(name.clone(), tx);
        receivers.insert(name, rx);
    }
    let file = Arc::new(
        DeadLetterFile::new(&context.dead_letter_dir, &spec.name)
            .with_max_bytes(context.dead_letter_max_bytes),
    );
    let dead_letter_sink = spec
        .dead_letter
        .as_ref()
        .and_then(|name| senders.get(name).map(|tx| (name, tx)));
    let route = match dead_letter_sink {
        Some((name, tx)) => DeadLetterRoute::Sink(tx.clone(), probe(name)?, file.clone()),
        None => {
            tracing::info!(pipeline = %spec.name, "no dead-letter sink: failed records go to {}", file.path().display());
            DeadLetterRoute::File(file.clone())
        }
    };
    let dead_letters = DeadLetters::new(pipeline.clone(), route);
    // One journal for the pipeline's sources that acknowledge (MQTT at QoS 1 or 2) and Kafka
    // sources that ask for it.
    let journaled = spec.sources.iter().any(|s| match &s.config {
        SourceConfig::Mqtt(m) => m.qos >= 1,
        SourceConfig::Kafka(k) => k.journal,
    });
    let journal = match (&context.journals, spec.journal.enabled && journaled) {
        (Some(journals), true) => Some(
            journals
                .open(&spec.name, spec.journal.max_bytes)
                .map_err(|err| fail("journal", err.to_string()))?,
        ),
        _ => None,
    };
    // With a journal, every sink but the dead-letter one has a buffer in it: what it cannot
    // take yet waits there instead of holding up the other sinks.
    let mut buffers: HashMap<&str, Arc<SinkBuffer>> = HashMap::new();
    if let Some(journal) = &journal {
        for sink in &spec.sinks {
            if spec.dead_letter.as_deref() == Some(sink.name.as_str()) {
                continue;
            }
            let log = journal
                .sink(&sink.name, probe(&sink.name)?.metrics.clone())
                .map_err(|err| fail(&sink.name, err.to_string()))?;
            buffers.insert(&sink.name, SinkBuffer::new(log));
        }
    }
    // Outputs of each source/transform: the channels of everything naming it as an input.
    let mut outputs: HashMap<&str, Outputs> = HashMap::new();
    for (consumer, inputs) in spec
        .transforms
        .iter()
        .map(|t| (&t.name, &t.inputs))
        .chain(spec.sinks.iter().map(|s| (&s.name, &s.inputs)))
    {
        for input in inputs {
            if let Some(tx) = senders.get(consumer) {
                let entry = match outputs.entry(input.as_str()) {
                    std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                    std::collections::hash_map::Entry::Vacant(e) => {
                        e.insert(Outputs::new(probe(input)?))
                    }
                };
                entry.add_target(
                    tx.clone(),
                    probe(consumer)?,
                    buffers.get(consumer.as_str()).cloned(),
                );
            }
        }
    }
    drop(senders); // channels close when their producers finish
    let ctx = |component: &str| -> Result<ComponentContext, BuildError> {
        Ok(ComponentContext {
            pipeline: pipeline.clone(),
            component: component.into(),
            dead_letters: if spec.dead_letter.as_deref() == Some(component) {
                // The dead-letter sink must not feed itself, or its channel would never close:
                // what it cannot deliver goes to the file.
                DeadLetters::new(pipeline.clone(), DeadLetterRoute::File(file.clone()))
            } else {
                dead_letters.clone()
            },
            shutdown: shutdown.clone(),
            metrics: probe(component)?.metrics.clone(),
            host_id: context.host_id.clone(),
        })
    };
    let outputs_of = |outputs: &mut HashMap<&str, Outputs>, name: &str| {
        Ok::<_, BuildError>(match outputs.remove(name) {
            Some(out) => out,
            None => Outputs::new(probe(name)?),
        })
    };

    let mut tasks: Vec<ComponentTask> = Vec::new();
    for sink in &spec.sinks {
        let mut input = receivers
            .remove(&sink.name)
            .ok_or_else(|| fail(&sink.name, "no input channel".into()))?;
        if let Some(buffer) = buffers.get(sink.name.as_str()) {
            // channel -> feeder (channel first, then the buffer) -> the sink
            let (to_sink, sink_input) = mpsc::channel(CHANNEL_CAPACITY);
            tasks.push(Box::pin(buffer.clone().feed(input, to_sink)));
            input = sink_input;
        }
        let c = ctx(&sink.name)?;
        let task = match &sink.config {
            SinkConfig::Console(config) => {
                crate::sinks::console::ConsoleSink::new(config.clone()).run(input, c)
            }
            SinkConfig::Mqtt(config) => crate::sinks::mqtt::MqttSink::build(config.clone(), &c)
                .map_err(|reason| fail(&sink.name, reason))?
                .run(input, c),
            SinkConfig::Kafka(config) => crate::sinks::kafka::KafkaSink::build(config.clone(), &c)
                .map_err(|reason| fail(&sink.name, reason))?
                .run(input, c),
            SinkConfig::Elasticsearch(config) => {
                crate::sinks::elasticsearch::ElasticsearchSink::build(config.clone())
                    .map_err(|reason| fail(&sink.name, reason))?
                    .run(input, c)
            }
        };
        tasks.push(task);
    }
    for transform in &spec.transforms {
        let input = receivers
            .remove(&transform.name)
            .ok_or_else(|| fail(&transform.name, "no input channel".into()))?;
        let out = outputs_of(&mut outputs, &transform.name)?;
        let c = ctx(&transform.name)?;
        let task = match &transform.config {
            TransformConfig::Udf(config) => crate::transforms::udf::UdfTransform::build(
                config,
                context,
                shadow_judge(spec, &transform.name),
                &spec.name,
                &format!("{}/{}", spec.name, transform.name),
            )
            .map_err(|reason| fail(&transform.name, reason))?
            .run(input, out, c),
            TransformConfig::Filter(config) => crate::transforms::filter::Filter::build(config)
                .map_err(|reason| fail(&transform.name, reason))?
                .run(input, out, c),
            TransformConfig::Select(config) => crate::transforms::select::Select::build(config)
                .map_err(|reason| fail(&transform.name, reason))?
                .run(input, out, c),
        };
        tasks.push(task);
    }
    for source in &spec.sources {
        let out = outputs_of(&mut outputs, &source.name)?;
        let c = ctx(&source.name)?;
        let task = match &source.config {
            SourceConfig::Mqtt(config) => {
                let log = match (&journal, config.qos) {
                    (Some(journal), 1..) => Some(
                        journal
                            .source(&source.name, c.metrics.clone())
                            .map_err(|err| fail(&source.name, err.to_string()))?,
                    ),
                    _ => None,
                };
                crate::sources::mqtt::MqttSource::build(config.clone(), &c, log)
                    .map_err(|reason| fail(&source.name, reason))?
                    .run(out, c)
            }
            SourceConfig::Kafka(config) => {
                let log = match (&journal, config.journal) {
                    (Some(journal), true) => Some(
                        journal
                            .source(&source.name, c.metrics.clone())
                            .map_err(|err| fail(&source.name, err.to_string()))?,
                    ),
                    _ => None,
                };
                crate::sources::kafka::KafkaSource::build(config.clone(), &c, log)
                    .map_err(|reason| fail(&source.name, reason))?
                    .run(out, c)
            }
        };
        tasks.push(task);
    }
    Ok(tasks)
}

/// What a shadow of the UDF transform `name` is judged by: the first filter reading only its
/// output (its decision is the alert), and the field it thresholds, if it is `FIELD > NUMBER`.
fn shadow_judge(spec: &PipelineSpec, name: &str) -> crate::udf_shadow::compare::Judge {
    let found = spec.transforms.iter().find_map(|t| match &t.config {
        TransformConfig::Filter(filter) if t.inputs.len() == 1 && t.inputs[0] == name => {
            Some((t, filter))
        }
        _ => None,
    });
    let Some((transform, filter)) = found else {
        return crate::udf_shadow::compare::Judge::default();
    };
    crate::udf_shadow::compare::Judge {
        name: Some(format!(
            "{}/{}: {}",
            spec.name, transform.name, filter.condition
        )),
        filter: crate::transforms::filter::Filter::build(filter).ok(),
        score_field: crate::pipeline::threshold(&filter.condition).map(|(field, _)| field),
    }
}
