//! The UDF registry: new versions go live for every subscriber, refused versions change
//! nothing, rollback restores the previous version's output, and `NAME@SHA8` pins an archived
//! version after the file moved on.

use sluice::message::Message;
use sluice::udf_registry::{RegistryError, UdfRegistry};
use sluice::udf_runtime::{RuntimeOptions, UdfLimits, UdfModule, UdfRuntime};
use std::sync::Arc;

fn registry_with_tagger_a() -> (tempfile::TempDir, Arc<UdfRegistry>) {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::copy(
        sluice_harness::fixture("tagger"),
        dir.path().join("tagger.wasm"),
    )
    .expect("copy");
    let runtime = UdfRuntime::new(RuntimeOptions {
        cache_dir: None,
        fuel_metering: false,
        compile_timeout: None,
        compiler: None,
    })
    .expect("runtime");
    let registry = UdfRegistry::new(Arc::new(runtime), dir.path().to_path_buf());
    (dir, registry)
}

/// What `module` makes of the value `x`.
fn output_of(module: &UdfModule) -> String {
    let mut worker = module
        .instantiate(Vec::new(), UdfLimits::default())
        .expect("instantiate");
    let results = worker.process(&[Message {
        key: None,
        value: b"x".to_vec(),
        headers: Vec::new(),
        timestamp_ms: None,
    }]);
    let out = results
        .into_iter()
        .next()
        .expect("one result")
        .expect("success");
    String::from_utf8(out[0].value.clone()).expect("UTF-8")
}

#[test]
fn deploy_refuse_and_roll_back() {
    let (_dir, registry) = registry_with_tagger_a();
    let mut live = registry
        .subscribe("tagger", Vec::new(), UdfLimits::default())
        .expect("subscribe");
    let a = live.borrow_and_update().clone();
    assert_eq!(output_of(&a), "x|a");

    let b_bytes = std::fs::read(sluice_harness::fixture("tagger-b")).expect("tagger-b");
    let b_version = registry
        .deploy("tagger", &b_bytes)
        .expect("deploy b")
        .expect("b is new");
    assert!(live.has_changed().expect("open"), "subscribers hear of b");
    let b = live.borrow_and_update().clone();
    assert_eq!(b.version(), b_version);
    assert_eq!(output_of(&b), "x|b");
    assert_eq!(
        registry.deploy("tagger", &b_bytes).expect("same bytes"),
        None,
        "deploying the live bytes again changes nothing"
    );

    let refused = registry.deploy("tagger", b"garbage");
    assert!(
        matches!(refused, Err(RegistryError::Load(_))),
        "{refused:?}"
    );
    assert!(
        !live.has_changed().expect("open"),
        "a refused version is never published"
    );
    let status = &registry.status()[0];
    assert_eq!(status.version, b_version);
    assert!(
        status
            .last_refusal
            .as_deref()
            .is_some_and(|r| r.contains("not a valid WebAssembly component")),
        "{status:?}"
    );

    let back = registry.rollback("tagger").expect("rollback");
    assert_eq!(back, a.version());
    assert_eq!(
        output_of(&live.borrow_and_update()),
        "x|a",
        "rollback restores a's output"
    );
    assert!(
        matches!(registry.rollback("tagger"), Err(RegistryError::Rollback(_))),
        "nothing before a"
    );
}

#[test]
fn init_failure_with_a_subscribers_config_refuses_the_version() {
    let (_dir, registry) = registry_with_tagger_a();
    let config = vec![("init".to_string(), "fail".to_string())];
    let live = registry
        .subscribe("tagger", config, UdfLimits::default())
        .expect("the tagger ignores the key");
    let hostile = std::fs::read(sluice_harness::fixture("hostile")).expect("hostile");
    let refused = registry.deploy("tagger", &hostile).expect_err("init fails");
    assert!(refused.to_string().contains("failed to start"), "{refused}");
    assert!(!live.has_changed().expect("open"));
}

#[test]
fn a_stopped_transforms_config_no_longer_decides() {
    let (_dir, registry) = registry_with_tagger_a();
    let failing = vec![("init".to_string(), "fail".to_string())];
    let stopped = registry
        .subscribe("tagger", failing, UdfLimits::default())
        .expect("the tagger ignores the key");
    let running = registry
        .subscribe("tagger", Vec::new(), UdfLimits::default())
        .expect("subscribe");
    let hostile = std::fs::read(sluice_harness::fixture("hostile")).expect("hostile");
    assert!(
        registry.deploy("tagger", &hostile).is_err(),
        "refused while both run"
    );
    drop(stopped); // its pipeline was undeployed
    let live = registry
        .deploy("tagger", &hostile)
        .expect("only the running transform's config is tried");
    assert!(live.is_some());
    assert!(running.has_changed().expect("open"));
}

#[test]
fn a_pinned_version_is_found_after_the_file_moved_on() {
    let (dir, registry) = registry_with_tagger_a();
    let a = registry
        .subscribe("tagger", Vec::new(), UdfLimits::default())
        .expect("subscribe")
        .borrow()
        .clone();
    let sha8 = a.sha256()[..8].to_string();
    std::fs::copy(
        sluice_harness::fixture("tagger-b"),
        dir.path().join("tagger.wasm"),
    )
    .expect("copy b");
    let pinned = registry.pinned("tagger", &sha8).expect("archived a");
    assert_eq!(pinned.version(), a.version());
    assert_eq!(output_of(&pinned), "x|a");
    assert!(matches!(
        registry.pinned("tagger", "00000000"),
        Err(RegistryError::NoSuchVersion { .. })
    ));
}
