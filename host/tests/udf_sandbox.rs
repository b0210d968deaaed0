//! The sandbox against a deliberately hostile guest (`guest-udfs/test-fixtures/hostile`):
//! each attack gets the right typed error for the poison record alone, the host stays up,
//! every other record in the batch is processed, and the next batch works.

use sluice::udf_runtime::{
    LoadError, RecordError, RuntimeOptions, UdfLimits, UdfRuntime, UdfWorker,
};
mod sandbox_common;

use sandbox_common::{batch, echoed, poison, within};
use std::time::Duration;

fn limits() -> UdfLimits {
    UdfLimits {
        memory_bytes: Some(32 << 20),
        deadline: Duration::from_millis(200),
        fuel: None,
    }
}

fn hostile(
    runtime: &UdfRuntime,
    config: &[(&str, &str)],
    limits: UdfLimits,
) -> Result<UdfWorker, LoadError> {
    let module = runtime
        .load_file(&sluice_harness::fixture("hostile"), None)
        .expect("hostile module compiles");
    let config = config
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    module.instantiate(config, limits)
}

/// Runs `attack` between two good records and checks the poison is isolated and the worker recovers.
fn isolated(attack: &str, limits: UdfLimits) -> RecordError {
    let runtime = UdfRuntime::new(RuntimeOptions::default()).expect("runtime");
    let mut worker = hostile(&runtime, &[], limits).expect("starts");
    poison(&mut worker, attack)
}

#[test]
fn infinite_loop_times_out() {
    let err = isolated("loop", limits());
    assert_eq!(
        err,
        RecordError::Timeout {
            deadline: Duration::from_millis(200)
        }
    );
    assert_eq!(err.kind(), "timeout");
}

#[test]
fn allocation_past_the_cap_is_a_memory_limit_error() {
    let err = isolated("alloc", limits());
    assert_eq!(
        err,
        RecordError::MemoryLimit {
            limit_bytes: 32 << 20
        }
    );
}

#[test]
fn panic_is_a_trap_that_quotes_the_guest() {
    let err = isolated("panic", limits());
    match err {
        RecordError::Trap { reason } => {
            assert!(reason.contains("unreachable"), "{reason}");
            assert!(
                reason.contains("hostile guest panicked on purpose"),
                "{reason}"
            );
        }
        other => panic!("expected a trap, got {other}"),
    }
}

#[test]
fn wrong_number_of_results_is_bad_output() {
    let err = isolated("wrong-count", limits());
    assert_eq!(
        err,
        RecordError::BadOutput {
            reason: "process returned 2 results for 1 messages".into()
        }
    );
}

#[test]
fn guest_errors_are_per_record_and_keep_the_instance() {
    let runtime = UdfRuntime::new(RuntimeOptions::default()).expect("runtime");
    let mut worker = hostile(&runtime, &[], limits()).expect("starts");
    let results = worker.process(&batch(&["a", "fail", "b"]));
    assert_eq!(
        results[1],
        Err(RecordError::Failed(
            "hostile guest failed on purpose".into()
        ))
    );
    assert_eq!(echoed(&results[2]), "b");
    assert_eq!(
        worker.restarts(),
        0,
        "a guest-reported error needs no restart"
    );
    worker.process(&batch(&["panic"]));
    assert_eq!(worker.restarts(), 0, "the store is discarded lazily");
    assert_eq!(echoed(&worker.process(&batch(&["c"]))[0]), "c");
    assert_eq!(worker.restarts(), 1, "a trap discards the instance once");
}

#[test]
fn fuel_runs_out_when_metered() {
    let runtime = UdfRuntime::new(RuntimeOptions {
        fuel_metering: true,
        ..Default::default()
    })
    .expect("runtime");
    let limits = UdfLimits {
        fuel: Some(50_000_000),
        deadline: Duration::from_secs(30),
        ..limits()
    };
    let mut worker = hostile(&runtime, &[], limits).expect("starts");
    let results = worker.process(&batch(&["x", "loop"]));
    assert_eq!(echoed(&results[0]), "x");
    assert_eq!(
        results[1],
        Err(RecordError::FuelExhausted { fuel: 50_000_000 })
    );
}

#[test]
fn fuel_limit_without_metering_is_refused() {
    let runtime = UdfRuntime::new(RuntimeOptions::default()).expect("runtime");
    let err = hostile(
        &runtime,
        &[],
        UdfLimits {
            fuel: Some(1),
            ..limits()
        },
    )
    .err()
    .expect("refused");
    assert!(matches!(err, LoadError::Limits { .. }), "{err}");
}

#[test]
fn init_failures_refuse_the_module() {
    let runtime = UdfRuntime::new(RuntimeOptions::default()).expect("runtime");
    match hostile(&runtime, &[("init", "fail")], limits()) {
        Err(LoadError::Init {
            name,
            error: RecordError::Failed(reason),
        }) => {
            assert_eq!(name, "hostile");
            assert_eq!(reason, "hostile init refused on purpose");
        }
        other => panic!("expected a failed init, got {:?}", other.err()),
    }
    match hostile(&runtime, &[("init", "trap")], limits()) {
        Err(LoadError::Init {
            error: RecordError::Trap { reason },
            ..
        }) => {
            assert!(
                reason.contains("hostile init panicked on purpose"),
                "{reason}"
            )
        }
        other => panic!("expected a trapping init, got {:?}", other.err()),
    }
}

#[test]
fn sleeping_past_the_deadline_is_a_timeout() {
    // 30 s asked for, 200 ms allowed: the wait ends at the deadline, the call as a timeout.
    let err = within(Duration::from_secs(15), || isolated("sleep", limits()));
    assert_eq!(err.kind(), "timeout", "{err}");
}

#[test]
fn polling_a_timer_past_the_deadline_is_a_timeout() {
    let err = within(Duration::from_secs(15), || isolated("poll", limits()));
    assert_eq!(err.kind(), "timeout", "{err}");
}

#[test]
fn a_short_sleep_within_the_deadline_is_fine() {
    let runtime = UdfRuntime::new(RuntimeOptions::default()).expect("runtime");
    let mut worker = hostile(&runtime, &[], limits()).expect("starts");
    let results = worker.process(&batch(&["nap", "nap"]));
    assert_eq!(
        results.iter().map(echoed).collect::<Vec<_>>(),
        ["nap", "nap"]
    );
}

#[test]
fn init_obeys_the_deadline_and_may_print() {
    let err = within(Duration::from_secs(15), || {
        let runtime = UdfRuntime::new(RuntimeOptions::default()).expect("runtime");
        hostile(&runtime, &[("init", "sleep")], limits()).err()
    });
    match err {
        Some(LoadError::Init { error, .. }) => assert_eq!(error.kind(), "timeout", "{error}"),
        other => panic!("expected init to time out, got {other:?}"),
    }
    let runtime = UdfRuntime::new(RuntimeOptions::default()).expect("runtime");
    let mut worker = hostile(&runtime, &[("init", "print")], limits()).expect("printing is fine");
    assert_eq!(echoed(&worker.process(&batch(&["x"]))[0]), "x");
}

/// Inside a tokio runtime's blocking pool (where the host runs UDFs), printing and waiting work
/// too: WASI's blocking calls must not try to start a runtime within the runtime.
#[test]
fn printing_and_sleeping_work_on_the_hosts_blocking_threads() {
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let results = tokio.block_on(async {
        tokio::task::spawn_blocking(|| {
            let runtime = UdfRuntime::new(RuntimeOptions::default()).expect("runtime");
            let mut worker = hostile(&runtime, &[("init", "print")], limits()).expect("starts");
            worker.process(&batch(&["log", "nap", "sleep"]))
        })
        .await
        .expect("no panic")
    });
    assert_eq!(echoed(&results[0]), "log");
    assert_eq!(echoed(&results[1]), "nap");
    assert_eq!(results[2].clone().expect_err("timeout").kind(), "timeout");
}

#[test]
fn guests_see_no_environment_files_or_network() {
    std::env::set_var("SLUICE_SECRET_FOR_TEST", "leak");
    let runtime = UdfRuntime::new(RuntimeOptions::default()).expect("runtime");
    let mut worker = hostile(&runtime, &[], limits()).expect("starts");
    let seen = echoed(&worker.process(&batch(&["env"]))[0]);
    let (fixed, tcp) = seen.split_once(" tcp=").expect("env report");
    assert_eq!(fixed, "vars=0 root=false");
    assert_ne!(tcp, "connected");
    assert_ne!(
        tcp, "ConnectionRefused",
        "a refused connection means the guest reached the network"
    );
}

#[test]
fn guest_output_and_host_log_do_not_disturb_processing() {
    let runtime = UdfRuntime::new(RuntimeOptions::default()).expect("runtime");
    let mut worker = hostile(&runtime, &[], limits()).expect("starts");
    let results = worker.process(&batch(&["log", "log"]));
    assert_eq!(
        results.iter().map(echoed).collect::<Vec<_>>(),
        ["log", "log"]
    );
}

#[test]
fn not_a_component_and_wrong_world_are_refused_with_reasons() {
    let runtime = UdfRuntime::new(RuntimeOptions::default()).expect("runtime");
    let err = runtime
        .load("junk", b"not wasm at all")
        .err()
        .expect("refused");
    assert!(
        matches!(err, LoadError::Compile { ref name, .. } if name == "junk"),
        "{err}"
    );

    let empty = wat::parse_str("(component)").expect("wat");
    let err = runtime.load("empty", &empty).err().expect("refused");
    assert!(matches!(err, LoadError::World { .. }), "{err}");
    assert!(
        err.to_string().contains("init"),
        "names the missing export: {err}"
    );

    let needs = wat::parse_str(
        r#"(component (import "wasi:sockets/evil@9.9.9" (instance (export "connect" (func)))))"#,
    )
    .expect("wat");
    let err = runtime.load("greedy", &needs).err().expect("refused");
    assert!(matches!(err, LoadError::World { .. }), "{err}");
    assert!(
        err.to_string().contains("evil"),
        "names the import the host does not grant: {err}"
    );
}

#[test]
fn compiled_modules_are_cached_on_disk_by_content_hash() {
    let cache = tempfile::tempdir().expect("tempdir");
    let options = RuntimeOptions {
        cache_dir: Some(cache.path().to_path_buf()),
        ..Default::default()
    };
    let wasm = std::fs::read(sluice_harness::fixture("hostile")).expect("read");
    let module = UdfRuntime::new(options.clone())
        .expect("runtime")
        .load("hostile", &wasm)
        .expect("load");
    let files: Vec<_> = std::fs::read_dir(cache.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let file = files[0].to_string_lossy().into_owned();
    assert!(
        file.starts_with(module.sha256()) && file.ends_with(".cwasm"),
        "{file}"
    );

    // A second runtime loads the artifact; a corrupted one is recompiled, never trusted.
    let again = UdfRuntime::new(options.clone())
        .expect("runtime")
        .load("hostile", &wasm)
        .expect("cached load");
    let mut worker = again.instantiate(Vec::new(), limits()).expect("starts");
    assert_eq!(echoed(&worker.process(&batch(&["ok"]))[0]), "ok");
    std::fs::write(cache.path().join(&file), b"garbage").unwrap();
    let rebuilt = UdfRuntime::new(options)
        .expect("runtime")
        .load("hostile", &wasm)
        .expect("recompiled");
    let mut worker = rebuilt.instantiate(Vec::new(), limits()).expect("starts");
    assert_eq!(echoed(&worker.process(&batch(&["ok"]))[0]), "ok");
    assert_eq!(
        rebuilt.version(),
        format!("hostile@{}", &module.sha256()[..8])
    );
}

/// The scalar export (`sluice:udf/scalar`, what SQL calls) under the same rules: a row that
/// panics, loops or fails gets its own typed error, the rows around it their values, and the
/// next call works; a wrong number of results is a contract breach isolated the same way.
#[test]
fn scalar_calls_isolate_the_poison_row() {
    use sluice::udf_runtime::ScalarValue::{self, Text};
    let runtime = UdfRuntime::new(RuntimeOptions::default()).expect("runtime");
    let mut worker = hostile(&runtime, &[], limits()).expect("starts");
    let rows = |commands: &[&str]| -> Vec<Vec<ScalarValue>> {
        commands.iter().map(|c| vec![Text(c.to_string())]).collect()
    };
    for (attack, kind) in [
        ("panic", "trap"),
        ("loop", "timeout"),
        ("fail", "failed"),
        ("wrong-count", "bad-output"),
    ] {
        let results = within(Duration::from_secs(30), {
            let rows = rows(&["a", attack, "b"]);
            let mut worker = hostile(&runtime, &[], limits()).expect("starts");
            move || worker.call_scalar("HOSTILE", &rows)
        });
        assert_eq!(results.len(), 3, "{attack}");
        assert_eq!(results[0], Ok(Text("a".into())), "{attack}");
        assert_eq!(
            results[1].as_ref().map_err(RecordError::kind),
            Err(kind),
            "{attack}"
        );
        assert_eq!(results[2], Ok(Text("b".into())), "{attack}");
    }
    // The worker that saw nothing hostile answers, and a module's own scalar export is used.
    assert_eq!(
        worker.call_scalar("HOSTILE", &rows(&["x"])),
        vec![Ok(Text("x".into()))]
    );
}

/// A module built against sluice:udf@0.1.0 (before scalar functions) still loads and processes
/// on this host; asked for a scalar function, it answers every row with the reason.
#[test]
fn a_module_of_the_0_1_0_world_runs_and_has_no_scalar_functions() {
    let runtime = UdfRuntime::new(RuntimeOptions::default()).expect("runtime");
    let module = runtime
        .load_file(&sluice_harness::fixture("plain-udf-world"), None)
        .expect("a 0.1.0-world module loads");
    assert!(!module.has_scalar());
    let mut worker = module.instantiate(Vec::new(), limits()).expect("starts");
    let processed = worker.process(&batch(&["abc"]));
    assert_eq!(echoed(&processed[0]), "ABC");
    let results = worker.call_scalar("F", &[vec![]]);
    let Err(RecordError::InvalidInput(reason)) = &results[0] else {
        panic!("{results:?}");
    };
    assert!(
        reason.contains("does not export sluice:udf/scalar"),
        "{reason}"
    );
}
