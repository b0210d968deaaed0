//! What the hostile-guest tests share (`udf_sandbox.rs` for Rust, `udf_sandbox_python.rs` for
//! Python): batches of text records, reading echoes, a poison record between two good ones,
//! and a bound on a test's time.

use sluice::udf_runtime::{RecordError, UdfWorker};
use sluice::Message;
use std::time::Duration;

/// Records with these values.
pub fn batch(values: &[&str]) -> Vec<Message> {
    values
        .iter()
        .map(|v| Message::from_value(v.as_bytes()))
        .collect()
}

/// The values a record came out as; panics on an error.
pub fn echoed(result: &Result<Vec<Message>, RecordError>) -> String {
    match result {
        Ok(messages) => messages
            .iter()
            .map(|m| String::from_utf8_lossy(&m.value).into_owned())
            .collect(),
        Err(err) => panic!("expected an echo, got {err}"),
    }
}

/// Runs `attack` between two good records on `worker` and checks the poison is isolated and
/// the worker recovers for the next batch; answers the poison's error.
pub fn poison(worker: &mut UdfWorker, attack: &str) -> RecordError {
    let results = worker.process(&batch(&["before", attack, "after"]));
    assert_eq!(results.len(), 3, "one result per record");
    assert_eq!(echoed(&results[0]), "before");
    assert_eq!(echoed(&results[2]), "after");
    let err = results[1].clone().expect_err("the attack must fail");
    let next = worker.process(&batch(&["next", "batch"]));
    assert_eq!(
        next.iter().map(echoed).collect::<Vec<_>>(),
        ["next", "batch"]
    );
    err
}

/// Runs `f` on a thread and fails the test if it takes longer than `limit` (a guest's long
/// waits would otherwise only show as a slow test).
pub fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit)
        .expect("the UDF deadline did not end the guest's wait")
}
