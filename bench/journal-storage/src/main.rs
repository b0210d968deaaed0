//! Compares storage crates for Sluice's source journal on its workload: ECG records of about
//! 1.3 KB appended in groups, each group made durable with one fsync (group commit), and deleted
//! once delivered, about `IN_FLIGHT` records behind the newest; then recovery (reopen and read
//! everything left) after a large backlog.
//!
//! Candidates: fjall 3 (LSM tree, one journal), redb 4 (copy-on-write B+ tree). The baseline is a
//! plain file written and `fdatasync`ed per group: what the disk allows, not a candidate.
//!
//! Run: `cargo run --release -- [RECORDS]` in this directory (not a workspace member).

use std::io::Write;
use std::time::{Duration, Instant};

/// Records delivered this far behind the newest are deleted.
const IN_FLIGHT: usize = 1000;
/// The backlog for the recovery measurement.
const BACKLOG: usize = 100_000;

fn main() {
    let records: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(20_000);
    let payloads = ecg_payloads();
    println!("{records} records of ~{} bytes, deleted {IN_FLIGHT} behind", payloads[0].len());
    println!("{:<10} {:>6} {:>12} {:>14}", "store", "group", "records/s", "fsyncs/s");
    for group in [1usize, 20, 100] {
        let n = if group == 1 { records / 10 } else { records };
        for (name, run) in [
            ("file", run_file as fn(&[Vec<u8>], usize, usize) -> Duration),
            ("fjall", run_fjall),
            ("redb", run_redb),
        ] {
            let took = run(&payloads, n, group);
            let rate = n as f64 / took.as_secs_f64();
            println!(
                "{name:<10} {group:>6} {rate:>12.0} {:>14.0}",
                rate / group as f64
            );
        }
    }
    println!("\nrecovery of a {BACKLOG}-record backlog (write without deletes, reopen, read all):");
    for (name, run) in [
        ("fjall", recover_fjall as fn(&[Vec<u8>]) -> (Duration, u64)),
        ("redb", recover_redb),
    ] {
        let (took, bytes) = run(&payloads);
        println!(
            "{name:<10} reopen+read {:>8.0} ms, {:>6.1} MB on disk",
            took.as_secs_f64() * 1000.0,
            bytes as f64 / 1e6
        );
    }
}

/// The 23 reference ECG payloads, as the sensors send them (about 1.3 KB each).
fn ecg_payloads() -> Vec<Vec<u8>> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/data/ecg_discord_test.msgs");
    let text = std::fs::read_to_string(path).expect("tests/data/ecg_discord_test.msgs");
    text.lines().map(|l| l.as_bytes().to_vec()).collect()
}

fn payload(payloads: &[Vec<u8>], i: usize) -> &[u8] {
    &payloads[i % payloads.len()]
}

fn dir_size(dir: &std::path::Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        total += if path.is_dir() {
            dir_size(&path)
        } else {
            entry.metadata().map(|m| m.len()).unwrap_or(0)
        };
    }
    total
}

fn run_file(payloads: &[Vec<u8>], n: usize, group: usize) -> Duration {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut file = std::fs::File::create(dir.path().join("log")).expect("create");
    let started = Instant::now();
    let mut i = 0;
    while i < n {
        for _ in 0..group.min(n - i) {
            let p = payload(payloads, i);
            file.write_all(&(p.len() as u32).to_le_bytes()).expect("write");
            file.write_all(p).expect("write");
            i += 1;
        }
        file.sync_data().expect("fdatasync");
    }
    started.elapsed()
}

fn run_fjall(payloads: &[Vec<u8>], n: usize, group: usize) -> Duration {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = fjall::Database::builder(dir.path())
        .manual_journal_persist(true)
        .open()
        .expect("open");
    let records = db
        .keyspace("records", fjall::KeyspaceCreateOptions::default)
        .expect("keyspace");
    let started = Instant::now();
    let mut i = 0;
    while i < n {
        let mut batch = db.batch();
        for _ in 0..group.min(n - i) {
            batch.insert(&records, (i as u64).to_be_bytes(), payload(payloads, i));
            if i >= IN_FLIGHT {
                batch.remove(&records, ((i - IN_FLIGHT) as u64).to_be_bytes());
            }
            i += 1;
        }
        batch.commit().expect("commit");
        db.persist(fjall::PersistMode::SyncData).expect("persist");
    }
    started.elapsed()
}

const TABLE: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("records");

fn run_redb(payloads: &[Vec<u8>], n: usize, group: usize) -> Duration {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = redb::Database::create(dir.path().join("journal.redb")).expect("create");
    let started = Instant::now();
    let mut i = 0;
    while i < n {
        let txn = db.begin_write().expect("begin");
        {
            let mut table = txn.open_table(TABLE).expect("table");
            for _ in 0..group.min(n - i) {
                table.insert(i as u64, payload(payloads, i)).expect("insert");
                if i >= IN_FLIGHT {
                    table.remove((i - IN_FLIGHT) as u64).expect("remove");
                }
                i += 1;
            }
        }
        txn.commit().expect("commit"); // Durability::Immediate: fsync
    }
    started.elapsed()
}

fn recover_fjall(payloads: &[Vec<u8>]) -> (Duration, u64) {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let db = fjall::Database::builder(dir.path())
            .manual_journal_persist(true)
            .open()
            .expect("open");
        let records = db
            .keyspace("records", fjall::KeyspaceCreateOptions::default)
            .expect("keyspace");
        for chunk in 0..BACKLOG / 100 {
            let mut batch = db.batch();
            for i in chunk * 100..(chunk + 1) * 100 {
                batch.insert(&records, (i as u64).to_be_bytes(), payload(payloads, i));
            }
            batch.commit().expect("commit");
            db.persist(fjall::PersistMode::SyncData).expect("persist");
        }
    }
    let bytes = dir_size(dir.path());
    let started = Instant::now();
    let db = fjall::Database::builder(dir.path()).open().expect("reopen");
    let records = db
        .keyspace("records", fjall::KeyspaceCreateOptions::default)
        .expect("keyspace");
    let mut count = 0;
    for kv in records.iter() {
        let (_, v) = kv.into_inner().expect("read");
        count += usize::from(!v.is_empty());
    }
    assert_eq!(count, BACKLOG);
    (started.elapsed(), bytes)
}

fn recover_redb(payloads: &[Vec<u8>]) -> (Duration, u64) {
    use redb::{ReadableDatabase, ReadableTable};
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("journal.redb");
    {
        let db = redb::Database::create(&path).expect("create");
        for chunk in 0..BACKLOG / 100 {
            let txn = db.begin_write().expect("begin");
            {
                let mut table = txn.open_table(TABLE).expect("table");
                for i in chunk * 100..(chunk + 1) * 100 {
                    table.insert(i as u64, payload(payloads, i)).expect("insert");
                }
            }
            txn.commit().expect("commit");
        }
    }
    let bytes = dir_size(dir.path());
    let started = Instant::now();
    let db = redb::Database::create(&path).expect("reopen");
    let txn = db.begin_read().expect("read");
    let table = txn.open_table(TABLE).expect("table");
    let mut count = 0;
    for kv in table.iter().expect("iter") {
        let (_, v) = kv.expect("read");
        count += usize::from(!v.value().is_empty());
    }
    assert_eq!(count, BACKLOG);
    (started.elapsed(), bytes)
}
