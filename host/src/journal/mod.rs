//! The source journal: what a source received, on disk before the source acknowledges it to its
//! broker, and there until every sink accepted everything derived from it. After a crash the
//! journal is replayed before anything new is read; the broker's in-flight window no longer
//! waits on the sinks.
//!
//! One journal per pipeline (`STATE_DIR/journal/PIPELINE/`, a fjall database), one keyspace per
//! source in it, keyed by a sequence number, and one per sink for what the sink could not take
//! yet (its buffer, `flow::SinkBuffer`), so a slow or absent sink never holds up the others. Appends go to one writer thread per journal, which
//! commits everything queued meanwhile as one batch made durable by one fsync (group commit),
//! then runs each append's callback (the source's PUBACK). Removals are written to the OS
//! without an fsync of their own (the next append's fsync covers them): a process crash keeps
//! them, a power loss may undo some, which means a record is delivered again, never lost.
//!
//! Size-bounded: a source waits for room ([`JournalLog::wait_for_room`]) before it appends, so a
//! full journal stops acknowledgements (the broker holds back) and drops nothing.

mod entry;

pub use entry::{decode_message, encode_message, JournalEntry};

use crate::metrics::ComponentMetrics;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, Weak};

/// Most operations one writer batch takes.
const MAX_BATCH: usize = 4096;

/// The keyspace of the logs' next sequence numbers (by log name).
const MARKS: &str = "next-seq";

/// A journal that cannot be opened, read or written.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// Another process has this journal open.
    #[error(
        "journal {0} is in use by another process (give each `sluice` process its own --state-dir)"
    )]
    Locked(PathBuf),
    /// The storage engine failed.
    #[error("journal {path}: {message}")]
    Storage {
        /// The journal's directory.
        path: PathBuf,
        /// What failed.
        message: String,
    },
    /// The journal's writer thread is gone (the journal is closing).
    #[error("journal {0} is closed")]
    Closed(PathBuf),
}

/// Called on the writer thread once an append is durable (`Ok`) or failed.
pub type Durable = Box<dyn FnOnce(Result<(), String>) + Send>;

enum Op {
    Append {
        keyspace: fjall::Keyspace,
        /// The log's name, under which the writer keeps its next sequence number.
        log: Arc<str>,
        seq: u64,
        bytes: Vec<u8>,
        durable: Durable,
        metrics: Arc<ComponentMetrics>,
    },
    Remove {
        keyspace: fjall::Keyspace,
        seq: u64,
        /// The log's removals not applied yet: `seq` leaves it once its removal is committed.
        pending: Arc<Mutex<std::collections::HashSet<u64>>>,
    },
}

/// The journals of one host, by pipeline: a pipeline that restarts or is replaced gets the
/// journal its previous run left (the storage engine allows one opening per process).
pub struct JournalSet {
    dir: PathBuf,
    open: Mutex<HashMap<String, Weak<Journal>>>,
}

impl JournalSet {
    /// Journals under `dir` (`STATE_DIR/journal`).
    pub fn new(dir: PathBuf) -> Self {
        JournalSet {
            dir,
            open: Mutex::new(HashMap::new()),
        }
    }

    /// Where the journals are.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The journal of `pipeline`, opened (and recovered) if it is not open yet.
    pub fn open(&self, pipeline: &str, max_bytes: u64) -> Result<Arc<Journal>, JournalError> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(journal) = open.get(pipeline).and_then(Weak::upgrade) {
            journal.max_bytes.store(max_bytes, Ordering::Relaxed);
            return Ok(journal);
        }
        // A journal just closed (its last user gone) may still be releasing its lock.
        let path = self.dir.join(pipeline);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let journal = loop {
            match Journal::open(&path, max_bytes) {
                Err(JournalError::Locked(_)) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                other => break Arc::new(other?),
            }
        };
        open.insert(pipeline.to_string(), Arc::downgrade(&journal));
        Ok(journal)
    }
}

/// One pipeline's journal.
pub struct Journal {
    path: PathBuf,
    db: fjall::Database,
    /// To the writer thread; taken on drop, which ends the thread.
    ops: Mutex<Option<mpsc::Sender<Op>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    max_bytes: AtomicU64,
    /// Bytes held by every source of this journal.
    bytes: Arc<AtomicU64>,
    /// Woken when bytes are removed.
    room: Arc<tokio::sync::Notify>,
    /// The live logs, by keyspace: a pipeline being replaced builds its new version while the
    /// old one still runs, and both must share one log (one sequence, one count).
    logs: Mutex<HashMap<String, Weak<JournalLog>>>,
    /// Each log's next sequence number, written with every batch that appends to it.
    marks: fjall::Keyspace,
}

impl Journal {
    fn open(path: &Path, max_bytes: u64) -> Result<Journal, JournalError> {
        std::fs::create_dir_all(path).map_err(|e| storage(path, e))?;
        let db = fjall::Database::builder(path)
            .manual_journal_persist(true)
            .worker_threads(1)
            .open()
            .map_err(|e| match e {
                fjall::Error::Locked => JournalError::Locked(path.to_path_buf()),
                other => storage(path, other),
            })?;
        let marks = db
            .keyspace(MARKS, fjall::KeyspaceCreateOptions::default)
            .map_err(|e| storage(path, e))?;
        let (tx, rx) = mpsc::channel();
        let writer_db = db.clone();
        let writer_path = path.to_path_buf();
        let writer_marks = marks.clone();
        let writer = std::thread::Builder::new()
            .name("sluice-journal".into())
            .spawn(move || write_loop(&writer_db, &writer_marks, &writer_path, &rx))
            .map_err(|e| storage(path, e))?;
        Ok(Journal {
            path: path.to_path_buf(),
            db,
            ops: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
            max_bytes: AtomicU64::new(max_bytes),
            bytes: Arc::new(AtomicU64::new(0)),
            room: Arc::new(tokio::sync::Notify::new()),
            logs: Mutex::new(HashMap::new()),
            marks,
        })
    }

    /// The journal's directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The log of source `component`, with what it holds from earlier runs counted.
    pub fn source(
        self: &Arc<Self>,
        component: &str,
        metrics: Arc<ComponentMetrics>,
    ) -> Result<Arc<JournalLog>, JournalError> {
        self.log(&format!("source-{component}"), metrics)
    }

    /// The buffer of sink `component`: records it could not take yet, in order.
    pub fn sink(
        self: &Arc<Self>,
        component: &str,
        metrics: Arc<ComponentMetrics>,
    ) -> Result<Arc<JournalLog>, JournalError> {
        self.log(&format!("sink-{component}"), metrics)
    }

    fn log(
        self: &Arc<Self>,
        name: &str,
        metrics: Arc<ComponentMetrics>,
    ) -> Result<Arc<JournalLog>, JournalError> {
        let mut logs = self.logs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(log) = logs.get(name).and_then(Weak::upgrade) {
            // Still used by the version being replaced: shared, its gauges now on `metrics`.
            *log.metrics.lock().unwrap_or_else(|p| p.into_inner()) = metrics;
            log.publish();
            return Ok(log);
        }
        let keyspace = self
            .db
            .keyspace(name, fjall::KeyspaceCreateOptions::default)
            .map_err(|e| storage(&self.path, e))?;
        // Sequence numbers are never used twice, even once every entry was removed: the
        // storage engine's range scans were seen to skip live entries whose key an earlier
        // run had written and removed (found by `admin_api`'s undeploy-and-deploy-again test).
        let mut next_seq = self
            .marks
            .get(name)
            .map_err(|e| storage(&self.path, e))?
            .and_then(|mark| seq_of(&mark))
            .unwrap_or(0);
        let (mut records, mut bytes) = (0u64, 0u64);
        for item in keyspace.iter() {
            let (key, value) = item.into_inner().map_err(|e| storage(&self.path, e))?;
            records += 1;
            bytes += value.len() as u64;
            next_seq = seq_of(&key).map_or(next_seq, |seq| next_seq.max(seq + 1));
        }
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        let log = Arc::new(JournalLog {
            journal: self.clone(),
            name: name.into(),
            keyspace,
            next_seq: AtomicU64::new(next_seq),
            records: AtomicU64::new(records),
            bytes: AtomicU64::new(bytes),
            metrics: Mutex::new(metrics),
            appended: tokio::sync::Notify::new(),
            removing: Arc::default(),
        });
        log.publish();
        logs.insert(name.to_string(), Arc::downgrade(&log));
        Ok(log)
    }

    fn send(&self, op: Op) -> Result<(), JournalError> {
        let ops = self.ops.lock().unwrap_or_else(|p| p.into_inner());
        match ops.as_ref().map(|tx| tx.send(op)) {
            Some(Ok(())) => Ok(()),
            _ => Err(JournalError::Closed(self.path.clone())),
        }
    }
}

impl Drop for Journal {
    /// Lets the writer finish what is queued, and waits for it, so the journal is closed (and
    /// can be opened again) when this returns.
    fn drop(&mut self) {
        drop(self.ops.lock().unwrap_or_else(|p| p.into_inner()).take());
        let writer = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take();
        // The last user can be a callback running on the writer thread itself (a sink buffer's
        // acknowledgement): that thread ends on its own once this returns.
        if let Some(writer) = writer.filter(|w| w.thread().id() != std::thread::current().id()) {
            let _ = writer.join();
        }
    }
}

/// One source's (or one sink buffer's) part of a journal.
pub struct JournalLog {
    journal: Arc<Journal>,
    /// Its keyspace's name.
    name: Arc<str>,
    keyspace: fjall::Keyspace,
    next_seq: AtomicU64,
    /// Entries held (those of earlier runs included).
    records: AtomicU64,
    /// Their bytes.
    bytes: AtomicU64,
    /// Whose gauges show `records` and `bytes` (the newest version's component).
    metrics: Mutex<Arc<ComponentMetrics>>,
    /// Woken when an append is durable (readable). The log's, not a run's: entries a replaced
    /// version appended last must wake the reader of the version that replaced it.
    appended: tokio::sync::Notify,
    /// Entries removed whose removal the writer has not committed yet: readers skip them (a
    /// version replacing another reads the log at once, while the removals of what the old one
    /// delivered may still be queued).
    removing: Arc<Mutex<std::collections::HashSet<u64>>>,
}

impl JournalLog {
    /// Waits until `len` more bytes fit under the journal's `max_bytes` (at once when the
    /// journal is empty, so a record larger than the bound still passes alone).
    pub async fn wait_for_room(&self, len: u64) {
        loop {
            // Registered before the check, so a removal in between is not missed.
            let notified = self.journal.room.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            let held = self.journal.bytes.load(Ordering::Relaxed);
            if held == 0 || held + len <= self.journal.max_bytes.load(Ordering::Relaxed) {
                return;
            }
            notified.await;
        }
    }

    /// Appends `bytes`; returns its sequence number. `durable` runs on the writer thread once
    /// the entry is on disk (or could not be written).
    ///
    /// Safe to call from several tasks: sequence numbers reach the writer in order, so what is
    /// readable is always a prefix (a reader never skips an entry still on its way).
    pub fn append(self: &Arc<Self>, bytes: Vec<u8>, durable: Durable) -> Result<u64, JournalError> {
        let log = self.clone();
        let durable: Durable = Box::new(move |written| {
            durable(written);
            log.appended.notify_one();
        });
        let len = bytes.len() as u64;
        let guard = self.journal.ops.lock().unwrap_or_else(|p| p.into_inner());
        let Some(ops) = guard.as_ref() else {
            return Err(JournalError::Closed(self.journal.path.clone()));
        };
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        let op = Op::Append {
            keyspace: self.keyspace.clone(),
            log: self.name.clone(),
            seq,
            bytes,
            durable,
            metrics: self.metrics(),
        };
        // Counted before the writer can see it: its removal may follow at once.
        self.journal.bytes.fetch_add(len, Ordering::Relaxed);
        self.records.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(len, Ordering::Relaxed);
        if ops.send(op).is_err() {
            self.journal.bytes.fetch_sub(len, Ordering::Relaxed);
            self.records.fetch_sub(1, Ordering::Relaxed);
            self.bytes.fetch_sub(len, Ordering::Relaxed);
            return Err(JournalError::Closed(self.journal.path.clone()));
        }
        drop(guard);
        self.publish();
        Ok(seq)
    }

    /// Resolves once an append made since the last call is durable (a permit is kept when
    /// nobody waits, so an append between a read and this wait is not missed).
    pub async fn appended(&self) {
        self.appended.notified().await;
    }

    /// Entries held now (counting those of earlier runs).
    pub fn held(&self) -> u64 {
        self.records.load(Ordering::Relaxed)
    }

    fn metrics(&self) -> Arc<ComponentMetrics> {
        self.metrics
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Shows the counts on the gauges of the component that uses the log now.
    fn publish(&self) {
        let metrics = self.metrics();
        let journal = &metrics.journal;
        journal.enabled.store(true, Ordering::Relaxed);
        journal
            .records
            .store(self.records.load(Ordering::Relaxed), Ordering::Relaxed);
        journal
            .bytes
            .store(self.bytes.load(Ordering::Relaxed), Ordering::Relaxed);
    }

    /// Removes entry `seq` of `len` bytes: everything derived from it was delivered.
    pub fn remove(&self, seq: u64, len: u64) {
        self.removing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(seq);
        let _ = self.journal.send(Op::Remove {
            keyspace: self.keyspace.clone(),
            seq,
            pending: self.removing.clone(),
        });
        self.journal.bytes.fetch_sub(len, Ordering::Relaxed);
        self.records.fetch_sub(1, Ordering::Relaxed);
        self.bytes.fetch_sub(len, Ordering::Relaxed);
        self.publish();
        self.journal.room.notify_waiters();
    }

    /// Up to `limit` entries with a sequence number of `from` or more, in order: what a new run
    /// replays before it reads anything new.
    pub fn read_from(&self, from: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, JournalError> {
        // Copied before the scan: a removal committed after the copy is gone from the scan too
        // (the writer commits, then forgets it here), so nothing removed is read back.
        let removing = self
            .removing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut entries = Vec::new();
        let live = self
            .keyspace
            .range(from.to_be_bytes()..)
            .map(|item| {
                let (key, value) = item
                    .into_inner()
                    .map_err(|e| storage(&self.journal.path, e))?;
                Ok((seq_of(&key), value))
            })
            .filter(|item| !matches!(item, Ok((Some(seq), _)) if removing.contains(seq)));
        for item in live.take(limit) {
            let (seq, value): (Option<u64>, _) = item?;
            if let Some(seq) = seq {
                entries.push((seq, value.to_vec()));
            }
        }
        Ok(entries)
    }
}

fn seq_of(key: &[u8]) -> Option<u64> {
    key.try_into().ok().map(u64::from_be_bytes)
}

fn storage(path: &Path, err: impl std::fmt::Display) -> JournalError {
    JournalError::Storage {
        path: path.to_path_buf(),
        message: err.to_string(),
    }
}

/// The writer thread: takes whatever is queued (up to [`MAX_BATCH`]), commits it as one batch,
/// makes appends durable with one fsync, then runs their callbacks in order. Ends when every
/// sender is gone.
fn write_loop(
    db: &fjall::Database,
    marks: &fjall::Keyspace,
    path: &Path,
    ops: &mpsc::Receiver<Op>,
) {
    while let Ok(first) = ops.recv() {
        let mut batch = db.batch();
        let mut next_seqs: HashMap<Arc<str>, u64> = HashMap::new();
        let mut appended: Vec<(Durable, Arc<ComponentMetrics>)> = Vec::new();
        let mut removed: Vec<(u64, Arc<Mutex<std::collections::HashSet<u64>>>)> = Vec::new();
        let mut next = Some(first);
        let mut taken = 0;
        while let Some(op) = next.take() {
            match op {
                Op::Append {
                    keyspace,
                    log,
                    seq,
                    bytes,
                    durable,
                    metrics,
                } => {
                    batch.insert(&keyspace, seq.to_be_bytes(), bytes);
                    let next = next_seqs.entry(log).or_default();
                    *next = (*next).max(seq + 1);
                    appended.push((durable, metrics));
                }
                Op::Remove {
                    keyspace,
                    seq,
                    pending,
                } => {
                    batch.remove(&keyspace, seq.to_be_bytes());
                    removed.push((seq, pending));
                }
            }
            taken += 1;
            if taken < MAX_BATCH {
                next = ops.try_recv().ok();
            }
        }
        for (log, next) in next_seqs {
            batch.insert(marks, &*log, next.to_be_bytes());
        }
        let mut result = batch.commit().map_err(|e| e.to_string());
        if result.is_ok() {
            // Appends: on disk before the PUBACK. Removals alone: handed to the OS, which keeps
            // them through a crash of this process (only a power loss can undo them, and then
            // a record is delivered again, not lost).
            let mode = if appended.is_empty() {
                fjall::PersistMode::Buffer
            } else {
                fjall::PersistMode::SyncData
            };
            result = db.persist(mode).map_err(|e| e.to_string());
        }
        if let Err(err) = &result {
            tracing::error!(journal = %path.display(), error = %err, "journal write failed; the records are not acknowledged and will be delivered again");
        }
        // Committed (or failed: then readers see the entries again, and deliver them again
        // rather than lose them).
        for (seq, pending) in removed {
            pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&seq);
        }
        let mut counted: Vec<*const ComponentMetrics> = Vec::new();
        for (durable, metrics) in appended {
            if !counted.contains(&Arc::as_ptr(&metrics)) {
                counted.push(Arc::as_ptr(&metrics));
                metrics.journal.fsyncs.fetch_add(1, Ordering::Relaxed);
            }
            durable(result.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Role;
    use std::time::Duration;

    fn metrics() -> Arc<ComponentMetrics> {
        Arc::new(ComponentMetrics::new(
            "p".into(),
            "in".into(),
            Role::Source,
            "mqtt",
        ))
    }

    fn append(log: &Arc<JournalLog>, bytes: &[u8]) -> (u64, mpsc::Receiver<Result<(), String>>) {
        let (tx, rx) = mpsc::channel();
        let seq = log
            .append(
                bytes.to_vec(),
                Box::new(move |r| {
                    let _ = tx.send(r);
                }),
            )
            .expect("append");
        (seq, rx)
    }

    #[test]
    fn appends_are_durable_then_replayed_until_removed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let set = JournalSet::new(dir.path().to_path_buf());
        {
            let journal = set.open("p", 1 << 20).expect("open");
            let log = journal.source("in", metrics()).expect("source");
            let (first, durable) = append(&log, b"one");
            durable
                .recv_timeout(Duration::from_secs(10))
                .expect("callback")
                .expect("durable");
            let (second, durable) = append(&log, b"two");
            durable
                .recv_timeout(Duration::from_secs(10))
                .expect("callback")
                .expect("durable");
            assert_eq!((first, second), (0, 1));
            log.remove(first, 3);
            // The removal rides with the next batch: append and wait once more.
            let (_, durable) = append(&log, b"three");
            durable
                .recv_timeout(Duration::from_secs(10))
                .expect("callback")
                .expect("durable");
        }
        // Reopened (as after a restart): what was not removed comes back, in order.
        let set = JournalSet::new(dir.path().to_path_buf());
        let journal = set.open("p", 1 << 20).expect("reopen");
        let m = metrics();
        let log = journal.source("in", m.clone()).expect("source");
        let entries = log.read_from(0, 10).expect("read");
        assert_eq!(entries, vec![(1, b"two".to_vec()), (2, b"three".to_vec())]);
        assert_eq!(m.journal.records.load(Ordering::Relaxed), 2);
        assert_eq!(m.journal.bytes.load(Ordering::Relaxed), 8);
        let (next, _) = append(&log, b"four");
        assert_eq!(next, 3, "sequence numbers continue after the replayed ones");
    }

    /// A reader right after a removal (a replacing version starting while the old one's last
    /// removals are still queued for the writer) never reads the removed entries back.
    #[test]
    fn removed_entries_are_not_read_back_before_the_writer_commits() {
        let dir = tempfile::tempdir().expect("tempdir");
        let set = JournalSet::new(dir.path().to_path_buf());
        let journal = set.open("p", 1 << 20).expect("open");
        let log = journal.source("in", metrics()).expect("source");
        for round in 0..50u64 {
            let mut seqs = Vec::new();
            for _ in 0..20 {
                let (seq, durable) = append(&log, b"entry");
                durable
                    .recv_timeout(Duration::from_secs(10))
                    .expect("callback")
                    .expect("durable");
                seqs.push(seq);
            }
            for seq in &seqs {
                log.remove(*seq, 5);
            }
            let read = log.read_from(0, 100).expect("read");
            assert!(read.is_empty(), "round {round}: read back {read:?}");
        }
    }

    /// Emptied, closed and opened again (a pipeline undeployed and deployed again): the
    /// sequence goes on where it was, so no key is written twice, and range reads see every
    /// entry (the storage engine's scans skipped live entries on reused keys).
    #[test]
    fn the_sequence_goes_on_after_an_emptied_journal_reopens() {
        let dir = tempfile::tempdir().expect("tempdir");
        let set = JournalSet::new(dir.path().to_path_buf());
        let mut next = 0;
        for run in 0..3u64 {
            let journal = set.open("p", 1 << 30).expect("open");
            let log = journal.source("in", metrics()).expect("source");
            let mut from = 0;
            let mut read = 0;
            for chunk in 0..6 {
                let mut pending = Vec::new();
                for _ in 0..300 {
                    pending.push(append(&log, b"entry"));
                }
                for (seq, durable) in pending {
                    assert_eq!(seq, next, "run {run}: a sequence number used again");
                    next += 1;
                    durable
                        .recv_timeout(Duration::from_secs(10))
                        .expect("callback")
                        .expect("durable");
                }
                loop {
                    let entries = log.read_from(from, 256).expect("read");
                    let Some((last, _)) = entries.last() else {
                        break;
                    };
                    assert_eq!(
                        last - entries[0].0 + 1,
                        entries.len() as u64,
                        "run {run} chunk {chunk}: a gap"
                    );
                    from = last + 1;
                    read += entries.len();
                    for (seq, bytes) in entries {
                        log.remove(seq, bytes.len() as u64);
                    }
                }
                if chunk % 3 == 2 {
                    log.keyspace.rotate_memtable_and_wait().expect("flush");
                }
            }
            assert_eq!(read, 1800, "run {run}");
            assert_eq!(log.held(), 0);
        }
    }

    #[tokio::test]
    async fn a_full_journal_waits_for_room() {
        let dir = tempfile::tempdir().expect("tempdir");
        let set = JournalSet::new(dir.path().to_path_buf());
        let journal = set.open("p", 10).expect("open");
        let log = journal.source("in", metrics()).expect("source");
        log.wait_for_room(8).await; // empty: room
        let (seq, _) = append(&log, b"12345678");
        let waiting = {
            let log = log.clone();
            tokio::spawn(async move { log.wait_for_room(8).await })
        };
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "8 + 8 bytes do not fit in 10");
        log.remove(seq, 8);
        tokio::time::timeout(Duration::from_secs(10), waiting)
            .await
            .expect("room after the removal")
            .expect("task");
    }

    #[test]
    fn the_same_pipeline_gets_the_open_journal_and_the_live_logs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let set = JournalSet::new(dir.path().to_path_buf());
        let a = set.open("p", 100).expect("open");
        let b = set.open("p", 100).expect("open again");
        assert!(Arc::ptr_eq(&a, &b));
        // A replacement built while the old version runs shares its log (one sequence), and
        // its gauges take over the counts.
        let old = a.source("in", metrics()).expect("old");
        let (first, _) = append(&old, b"one");
        let newer = metrics();
        let new = b.source("in", newer.clone()).expect("new");
        assert!(Arc::ptr_eq(&old, &new));
        let (second, _) = append(&new, b"two");
        assert_eq!((first, second), (0, 1));
        assert_eq!(newer.journal.records.load(Ordering::Relaxed), 2);
    }
}
