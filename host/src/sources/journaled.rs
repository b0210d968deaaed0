//! What journaling sources share: the task that emits a source's journal, in order, at the
//! pipeline's pace, and the sending of one record (or its dead letter).

use crate::flow::{Ack, ComponentContext, Outputs, Record};
use crate::journal::{JournalEntry, JournalLog};
use crate::message::Message;
use std::sync::Arc;

/// How a source turns a journal entry into a record: the message, and why it must be
/// dead-lettered instead, if it must.
pub trait ReadEntry:
    Fn(&JournalEntry) -> (Message, Option<String>) + Send + Sync + 'static
{
}

impl<F> ReadEntry for F where
    F: Fn(&JournalEntry) -> (Message, Option<String>) + Send + Sync + 'static
{
}

/// Sends `msg` downstream with `ack`, or to dead letters with `failure`.
pub async fn send(
    msg: Message,
    failure: Option<String>,
    ack: Ack,
    outputs: &Outputs,
    ctx: &ComponentContext,
) {
    let record = Record { msg, ack };
    match failure {
        None => outputs.send(record).await,
        Some(reason) => {
            ctx.metrics.record_in();
            ctx.dead_letters.send(record, &ctx.metrics, &reason).await;
        }
    }
}

/// Emits the journal's entries in order, from the first it holds (what an earlier run left),
/// each removed once delivered; waits for the log's next durable append for more. Stops at shutdown, between
/// records. An entry that cannot be read goes to dead letters with the reason.
pub async fn emit_from_journal(
    log: Arc<JournalLog>,
    read: impl ReadEntry,
    outputs: Outputs,
    ctx: ComponentContext,
) {
    let mut shutdown = ctx.shutdown.clone();
    let held = log.held();
    if held > 0 {
        tracing::info!(component = %ctx.component, records = held, "delivering what the journal kept from an earlier run");
    }
    let mut from = 0;
    loop {
        if *shutdown.borrow() {
            return;
        }
        let entries = match log.read_from(from, 256) {
            Ok(entries) => entries,
            Err(err) => {
                tracing::error!(component = %ctx.component, "{err}");
                ctx.metrics.report_error(&err.to_string());
                return;
            }
        };
        let Some((last, _)) = entries.last() else {
            tokio::select! {
                _ = shutdown.wait_for(|stop| *stop) => return,
                () = log.appended() => continue,
            }
        };
        from = last + 1;
        for (seq, bytes) in entries {
            if *shutdown.borrow() {
                return;
            }
            let len = bytes.len() as u64;
            let ack = {
                let log = log.clone();
                Ack::tracked(&ctx.metrics, move || log.remove(seq, len))
            };
            let (msg, failure) = match JournalEntry::decode(&bytes) {
                Ok(entry) => read(&entry),
                Err(reason) => (
                    Message::from_value(bytes),
                    Some(format!("journal entry {seq}: {reason}")),
                ),
            };
            send(msg, failure, ack, &outputs, &ctx).await;
        }
    }
}
