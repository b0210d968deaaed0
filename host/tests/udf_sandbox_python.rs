//! The sandbox against a deliberately hostile Python guest (`guest-udfs/test-fixtures/hostile-py`,
//! built by componentize-py): the same attacks as the Rust guest's, through CPython. Each
//! poison record fails alone with a reason, the host stays up, the others are processed and
//! the next batch works; a failing `init` refuses the module.

use sluice::udf_runtime::{
    GuestLanguage, LoadError, RecordError, RuntimeOptions, UdfLimits, UdfModule, UdfRuntime,
    UdfWorker,
};
mod sandbox_common;

use sandbox_common::{batch, echoed, poison, within};
use std::sync::OnceLock;
use std::time::Duration;

const DEADLINE: Duration = Duration::from_millis(500);

fn limits() -> UdfLimits {
    UdfLimits {
        memory_bytes: None,
        deadline: DEADLINE,
        fuel: None,
    }
}

/// The hostile module, compiled once for every test here (18 MB of CPython: seconds).
fn module() -> &'static UdfModule {
    static MODULE: OnceLock<(UdfRuntime, UdfModule)> = OnceLock::new();
    &MODULE
        .get_or_init(|| {
            let runtime = UdfRuntime::new(RuntimeOptions::default()).expect("runtime");
            let module = runtime
                .load_file(&sluice_harness::fixture("hostile-py"), None)
                .expect("the hostile Python module compiles");
            assert_eq!(module.language(), GuestLanguage::Python);
            (runtime, module)
        })
        .1
}

fn hostile(config: &[(&str, &str)]) -> Result<UdfWorker, LoadError> {
    let module = module();
    let config = config
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    module.instantiate(config, limits())
}

/// Runs `attack` between two good records, checks the poison is isolated and the worker
/// recovers; answers the poison's error.
fn isolated(attack: &'static str) -> RecordError {
    within(Duration::from_secs(60), move || {
        let mut worker = hostile(&[]).expect("starts");
        poison(&mut worker, attack)
    })
}

#[test]
fn an_infinite_python_loop_times_out() {
    assert_eq!(
        isolated("loop"),
        RecordError::Timeout { deadline: DEADLINE }
    );
}

#[test]
fn sleeping_past_the_deadline_is_a_timeout() {
    assert_eq!(
        isolated("sleep"),
        RecordError::Timeout { deadline: DEADLINE }
    );
}

/// CPython turns the refused growth into a MemoryError, which fails that record alone; the cap
/// (the Python default, 128 MiB) held, and the instance carries on.
#[test]
fn a_huge_allocation_stops_at_the_cap_as_a_memory_error() {
    match isolated("alloc") {
        RecordError::Failed(reason) => {
            assert!(reason.starts_with("MemoryError"), "{reason}");
            assert!(reason.contains("memory cap"), "{reason}");
        }
        other => panic!("expected a MemoryError, got {other}"),
    }
    assert_eq!(
        GuestLanguage::Python.default_memory_bytes(),
        128 << 20,
        "the cap this test ran under"
    );
}

#[test]
fn exceptions_fail_their_record_with_type_and_text() {
    assert_eq!(
        isolated("raise"),
        RecordError::Failed("KeyError: 'hostile guest raised on purpose'".into())
    );
    match isolated("recurse") {
        RecordError::Failed(reason) => assert!(reason.starts_with("RecursionError"), "{reason}"),
        other => panic!("expected a RecursionError, got {other}"),
    }
}

#[test]
fn a_failing_init_refuses_the_module_with_its_reason() {
    match hostile(&[("init", "fail")]).err() {
        Some(LoadError::Init {
            error: RecordError::InvalidInput(reason),
            ..
        }) => assert_eq!(reason, "hostile init refused on purpose"),
        other => panic!("expected invalid input from init, got {other:?}"),
    }
    match hostile(&[("init", "raise")]).err() {
        Some(LoadError::Init {
            error: RecordError::Failed(reason),
            ..
        }) => assert_eq!(reason, "ZeroDivisionError: division by zero"),
        other => panic!("expected an exception from init, got {other:?}"),
    }
}

#[test]
fn init_obeys_the_deadline_and_may_print() {
    let err = within(Duration::from_secs(60), || {
        hostile(&[("init", "loop")]).err()
    });
    match err {
        Some(LoadError::Init { error, .. }) => assert_eq!(error.kind(), "timeout", "{error}"),
        other => panic!("expected init to time out, got {other:?}"),
    }
    let mut worker = hostile(&[("init", "print")]).expect("printing in init is fine");
    assert_eq!(echoed(&worker.process(&batch(&["x"]))[0]), "x");
}

/// The memory a pipeline sets is the cap, whatever the language's default.
#[test]
fn a_set_memory_cap_overrides_the_language_default() {
    let tight = UdfLimits {
        memory_bytes: Some(8 << 20),
        ..limits()
    };
    match module().instantiate(Vec::new(), tight).err() {
        Some(LoadError::Init {
            error: RecordError::MemoryLimit { limit_bytes },
            ..
        }) => assert_eq!(limit_bytes, 8 << 20),
        other => panic!("expected the 8 MiB cap to refuse CPython, got {other:?}"),
    }
}
