//! Sinks: where records go. One file per kind; each has a config struct and the running component.

pub mod console;
pub mod elasticsearch;
pub mod kafka;
pub mod mqtt;

use crate::codec::EncodingConfig;
use crate::flow::{ComponentContext, Record};

/// The record's value in the sink's wire `encoding`, or `None` when it cannot be encoded: then the
/// record has gone to the dead letters with the reason, and the sink goes on with the next one.
pub(crate) async fn encode_or_dead_letter(
    encoding: &EncodingConfig,
    record: Record,
    ctx: &ComponentContext,
) -> Option<(Record, Vec<u8>)> {
    match encoding.encode(&record.msg.value) {
        Ok(payload) => Some((record, payload)),
        Err(reason) => {
            ctx.dead_letters
                .send(record, &ctx.metrics, &format!("encode: {reason}"))
                .await;
            None
        }
    }
}
