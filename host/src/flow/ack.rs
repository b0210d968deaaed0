//! Acknowledgements that travel with records: a source's message is acknowledged (MQTT PUBACK,
//! Kafka offset commit) only after every record derived from it was accepted by a sink, filtered
//! out on purpose, or accepted by the dead-letter sink.
//!
//! An [`Ack`] is forked once per derived record and completed with [`Ack::done`]; the source's
//! callback runs when the last fork completes. Dropping an `Ack` without `done` (a crash, a
//! shutdown mid-flight) never acknowledges: the broker redelivers.

use crate::metrics::ComponentMetrics;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

type Callback = Box<dyn FnOnce() + Send>;

struct Shared {
    pending: AtomicUsize,
    on_done: Mutex<Option<Callback>>,
    /// The source's count of unacknowledged records, and this record's ticket in it.
    tracked: Option<(Arc<ComponentMetrics>, u64)>,
}

/// One outstanding share of a source message's acknowledgement.
pub struct Ack(Option<Arc<Shared>>);

impl Ack {
    /// An acknowledgement that runs `on_done` when this ack and all its forks are done.
    pub fn new(on_done: impl FnOnce() + Send + 'static) -> Self {
        Ack(Some(Arc::new(Shared {
            pending: AtomicUsize::new(1),
            on_done: Mutex::new(Some(Box::new(on_done))),
            tracked: None,
        })))
    }

    /// Like [`Ack::new`], and counted in the source's unacknowledged records (`metrics.unacked`)
    /// until it is done. A share dropped without `done` keeps it counted: the broker still waits
    /// for that acknowledgement (a stuck in-flight slot, frozen Kafka commits), and the count and
    /// age show it until the source's run ends (see `Unacked::clear`).
    pub fn tracked(
        metrics: &Arc<ComponentMetrics>,
        on_done: impl FnOnce() + Send + 'static,
    ) -> Self {
        let ticket = metrics.unacked.add();
        Ack(Some(Arc::new(Shared {
            pending: AtomicUsize::new(1),
            on_done: Mutex::new(Some(Box::new(on_done))),
            tracked: Some((metrics.clone(), ticket)),
        })))
    }

    /// Nothing to acknowledge (QoS 0, tests).
    pub fn none() -> Self {
        Ack(None)
    }

    /// Another share, for a record derived from the same source message.
    pub fn fork(&self) -> Ack {
        if let Some(shared) = &self.0 {
            shared.pending.fetch_add(1, Ordering::AcqRel);
        }
        Ack(self.0.clone())
    }

    /// This share is finished; the last one runs the callback.
    pub fn done(mut self) {
        if let Some(shared) = self.0.take() {
            if shared.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
                let callback = shared
                    .on_done
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .take();
                if let Some(callback) = callback {
                    callback();
                }
                if let Some((metrics, ticket)) = &shared.tracked {
                    metrics.unacked.remove(*ticket);
                }
            }
        }
    }
}

impl std::fmt::Debug for Ack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Some(shared) => write!(f, "Ack(pending={})", shared.pending.load(Ordering::Relaxed)),
            None => write!(f, "Ack(none)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    #[test]
    fn fires_once_after_every_fork_is_done() {
        let fired = Arc::new(AtomicUsize::new(0));
        let counter = fired.clone();
        let ack = Ack::new(move || {
            counter.fetch_add(1, Ordering::SeqCst);
        });
        let a = ack.fork();
        let b = ack.fork();
        ack.done();
        a.done();
        assert_eq!(fired.load(Ordering::SeqCst), 0, "b is still pending");
        b.done();
        assert_eq!(fired.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn dropping_without_done_never_acknowledges() {
        let fired = Arc::new(AtomicBool::new(false));
        let flag = fired.clone();
        let ack = Ack::new(move || flag.store(true, Ordering::SeqCst));
        let fork = ack.fork();
        ack.done();
        drop(fork);
        assert!(!fired.load(Ordering::SeqCst));
    }

    #[test]
    fn a_tracked_ack_is_counted_until_done_even_when_dropped() {
        let metrics = Arc::new(ComponentMetrics::new(
            "p".into(),
            "in".into(),
            crate::metrics::Role::Source,
            "mqtt",
        ));
        let done = Ack::tracked(&metrics, || {});
        let dropped = Ack::tracked(&metrics, || {});
        let fork = done.fork();
        assert_eq!(metrics.unacked.count(), 2);
        done.done();
        assert_eq!(metrics.unacked.count(), 2, "a fork is still out");
        fork.done();
        assert_eq!(metrics.unacked.count(), 1);
        drop(dropped);
        assert_eq!(
            metrics.unacked.count(),
            1,
            "dropped, not acknowledged: still waiting"
        );
        metrics.unacked.clear();
        assert_eq!(metrics.unacked.count(), 0);
    }
}
