//! A sink's buffer in the pipeline's journal: when a sink's input channel is full (the sink is
//! slow, or its destination is down), what comes for it is written to its buffer instead of
//! waiting, and the record's acknowledgement is done once that write is durable. So one sink
//! never holds up the others, or the source: each drains at its own pace, from its own
//! position. A feeder task between the channel and the sink hands the sink, in order, what was
//! in the channel, then what is buffered; once the buffer is empty, records go through the
//! channel again. What a buffer holds at a crash is delivered by the next run first.

use super::{Ack, Record};
use crate::journal::{decode_message, encode_message, JournalLog};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// One sink's buffer.
pub struct SinkBuffer {
    log: Arc<JournalLog>,
    state: Mutex<State>,
    /// Woken when a buffered record is durable (readable).
    written: tokio::sync::Notify,
}

struct State {
    /// Records go to the buffer, not the channel (from the first full channel until the feeder
    /// has read back everything buffered).
    buffering: bool,
    /// Records on their way into the buffer (counted before they are written, so the feeder
    /// cannot switch back to the channel while one is not readable yet).
    writing: u64,
}

impl SinkBuffer {
    /// A buffer over `log`; what it holds from an earlier run goes to the sink first.
    pub fn new(log: Arc<JournalLog>) -> Arc<Self> {
        let held = log.held();
        Arc::new(SinkBuffer {
            log,
            state: Mutex::new(State {
                buffering: held > 0,
                writing: 0,
            }),
            written: tokio::sync::Notify::new(),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Gives `record` to the sink through `channel`, or, when the channel is full or records
    /// are being buffered, to the buffer (waiting for room in the journal, which is how a full
    /// journal holds the pipeline back).
    pub async fn offer(self: &Arc<Self>, channel: &mpsc::Sender<Record>, record: Record) {
        let record = {
            let mut state = self.state();
            let record = if state.buffering {
                record
            } else {
                match channel.try_send(record) {
                    Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => return,
                    Err(mpsc::error::TrySendError::Full(record)) => record,
                }
            };
            state.buffering = true;
            state.writing += 1;
            record
        };
        let bytes = encode_message(&record.msg);
        self.log.wait_for_room(bytes.len() as u64).await;
        let (ack, buffer) = (record.ack, self.clone());
        let appended = self.log.append(
            bytes,
            Box::new(move |written| {
                if written.is_ok() {
                    ack.done(); // durable here: upstream may let go of it
                }
                // A failed write leaves `ack` undone: upstream keeps the record and delivers
                // it again after a restart.
                buffer.state().writing -= 1;
                buffer.written.notify_one();
            }),
        );
        if let Err(err) = appended {
            self.state().writing -= 1;
            tracing::error!("sink buffer: {err}; the record stays with its source");
        }
    }

    /// The feeder: forwards what arrives on `input` to the sink's `output`, and once the channel
    /// is empty, what the buffer holds, in order, each record removed from the buffer once the
    /// sink accepted it. Ends when `input` closed and the buffer is empty.
    pub async fn feed(
        self: Arc<Self>,
        mut input: mpsc::Receiver<Record>,
        output: mpsc::Sender<Record>,
    ) {
        let mut from = 0;
        let mut input_open = true;
        if self.log.held() > 0 {
            // Left by an earlier run (or by the version this one replaces): it goes first.
            self.state().buffering = true;
        }
        loop {
            // The channel holds what came before buffering started: it goes first.
            while let Ok(record) = input.try_recv() {
                if output.send(record).await.is_err() {
                    return;
                }
            }
            // The journal is read only while buffering: records passing through the channel
            // cost no read (a write wakes `written` once buffering starts).
            let buffering = self.state().buffering;
            let entries = match buffering.then(|| self.log.read_from(from, 256)) {
                None => Vec::new(),
                Some(Ok(entries)) => entries,
                Some(Err(err)) => {
                    tracing::error!("sink buffer: {err}");
                    return;
                }
            };
            if let Some((last, _)) = entries.last() {
                from = last + 1;
                for (seq, bytes) in entries {
                    let len = bytes.len() as u64;
                    let log = self.log.clone();
                    let ack = Ack::new(move || log.remove(seq, len));
                    let msg = match decode_message(&bytes) {
                        Ok(msg) => msg,
                        Err(reason) => {
                            // Not ours to read (a newer format): kept, not delivered garbled.
                            tracing::error!(
                                "sink buffer entry {seq}: {reason}; left in the journal"
                            );
                            drop(ack); // not done: the entry stays
                            continue;
                        }
                    };
                    if output.send(Record { msg, ack }).await.is_err() {
                        return;
                    }
                }
                continue;
            }
            {
                let mut state = self.state();
                // Caught up: nothing on its way in, nothing readable past `from` (checked under
                // the lock, so no record can start its way in meanwhile).
                if state.buffering && state.writing == 0 {
                    match self.log.read_from(from, 1) {
                        Ok(rest) if rest.is_empty() => state.buffering = false,
                        Ok(_) => continue,
                        Err(err) => {
                            tracing::error!("sink buffer: {err}");
                            return;
                        }
                    }
                }
                if !input_open && !state.buffering {
                    return;
                }
            }
            tokio::select! {
                record = input.recv(), if input_open => match record {
                    Some(record) => {
                        if output.send(record).await.is_err() {
                            return;
                        }
                    }
                    None => input_open = false,
                },
                () = self.written.notified() => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::JournalSet;
    use crate::message::Message;
    use crate::metrics::{ComponentMetrics, Role};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    fn buffer(dir: &std::path::Path) -> Arc<SinkBuffer> {
        let journal = JournalSet::new(dir.to_path_buf())
            .open("p", 1 << 20)
            .expect("journal");
        let metrics = Arc::new(ComponentMetrics::new(
            "p".into(),
            "out".into(),
            Role::Sink,
            "console",
        ));
        SinkBuffer::new(journal.sink("out", metrics).expect("sink log"))
    }

    #[tokio::test]
    async fn a_stalled_sink_gets_everything_in_order_and_upstream_is_released() {
        let dir = tempfile::tempdir().expect("tempdir");
        let buffer = buffer(dir.path());
        let (tx, rx) = mpsc::channel(2);
        let (to_sink, mut sink) = mpsc::channel(1);
        let feeder = tokio::spawn(buffer.clone().feed(rx, to_sink));
        let acked = Arc::new(AtomicUsize::new(0));
        // The sink takes nothing yet: after the two channels fill, the rest is buffered, and
        // each buffered record's upstream acknowledgement is done once it is durable.
        for i in 0..50 {
            let acked = acked.clone();
            let record = Record {
                msg: Message::from_value(format!("r{i}")),
                ack: Ack::new(move || {
                    acked.fetch_add(1, Ordering::SeqCst);
                }),
            };
            tokio::time::timeout(Duration::from_secs(10), buffer.offer(&tx, record))
                .await
                .expect("offer never waits on the sink");
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while acked.load(Ordering::SeqCst) < 40 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "buffered records acknowledged upstream"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Now the sink reads: everything, in order.
        let mut got = Vec::new();
        for _ in 0..50 {
            let record = tokio::time::timeout(Duration::from_secs(10), sink.recv())
                .await
                .expect("in time")
                .expect("a record");
            got.push(String::from_utf8(record.msg.value.clone()).expect("utf-8"));
            record.ack.done();
        }
        let want: Vec<String> = (0..50).map(|i| format!("r{i}")).collect();
        assert_eq!(got, want);
        drop(tx);
        tokio::time::timeout(Duration::from_secs(10), feeder)
            .await
            .expect("the feeder ends when its input closed and the buffer is empty")
            .expect("task");
        assert_eq!(buffer.log.held(), 0, "delivered records leave the buffer");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_upstreams_into_one_stalled_sink_lose_nothing_and_keep_their_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let buffer = buffer(dir.path());
        let (tx, rx) = mpsc::channel(1);
        let (to_sink, mut sink) = mpsc::channel(1);
        let feeder = tokio::spawn(buffer.clone().feed(rx, to_sink));
        let upstream = |name: &'static str| {
            let (buffer, tx) = (buffer.clone(), tx.clone());
            tokio::spawn(async move {
                for i in 0..200 {
                    let record = Record {
                        msg: Message::from_value(format!("{name}{i:03}")),
                        ack: Ack::none(),
                    };
                    buffer.offer(&tx, record).await;
                }
            })
        };
        let (a, b) = (upstream("a"), upstream("b"));
        a.await.expect("a");
        b.await.expect("b");
        drop(tx);
        let mut got = Vec::new();
        while let Some(record) = tokio::time::timeout(Duration::from_secs(10), sink.recv())
            .await
            .expect("no record is skipped or stuck")
        {
            got.push(String::from_utf8(record.msg.value.clone()).expect("utf-8"));
            record.ack.done();
        }
        assert_eq!(got.len(), 400);
        for name in ["a", "b"] {
            let mine: Vec<&String> = got.iter().filter(|v| v.starts_with(name)).collect();
            let want: Vec<String> = (0..200).map(|i| format!("{name}{i:03}")).collect();
            assert_eq!(mine, want.iter().collect::<Vec<_>>(), "{name} in order");
        }
        feeder.await.expect("feeder");
    }
}
