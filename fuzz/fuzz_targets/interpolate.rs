//! `${VAR}` interpolation: never a panic; text without `$` comes back unchanged, and without
//! escapes or defaults every reference expands (a set variable's value appears, no `${` is left).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let env = |name: &str| match name {
        "SLUICE_VAR_A" => Some("alpha".to_string()),
        "SLUICE_VAR_EMPTY" => Some(String::new()),
        _ => None,
    };
    let result = sluice::pipeline::interpolate(text, &env);
    if !text.contains('$') {
        assert_eq!(result.as_deref(), Ok(text));
    }
    // With no `$$` escape and no default (which may hold anything, `${` included), every `${`
    // is a reference: a set variable's value appears, and nothing of the syntax is left.
    if let (Ok(out), false) = (&result, text.contains("$$") || text.contains(":-")) {
        if text.contains("${SLUICE_VAR_A}") {
            assert!(out.contains("alpha"), "{text:?} became {out:?}");
        }
        assert!(!out.contains("${"), "{text:?} became {out:?}");
    }
});
