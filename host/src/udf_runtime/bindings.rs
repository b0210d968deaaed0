//! The `bindgen!` of the `sluice:udf` package; nothing outside `udf_runtime` sees these types.
//!
//! Two worlds, one contract: `udf` (`init`, `process`) is what every module exports, and
//! `scalar-udf` adds the `scalar` interface that SQL calls. Only the `scalar` export of the
//! second is used (its indices are looked up per module, so a 0.1.0 module without it still
//! loads); its shared interfaces are the first's, through `with`.
//!
//! Borrowing: the messages and config the host passes in are lowered straight from the host's
//! own data (`WitMessageIn` borrows it), so no record is copied just to cross the boundary.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "sluice:udf/udf",
    ownership: Borrowing { duplicate_if_necessary: true },
});

/// The `scalar-udf` world: only its `scalar` export is used.
pub(crate) mod scalar_world {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "sluice:udf/scalar-udf",
        ownership: Borrowing { duplicate_if_necessary: true },
        with: {
            "sluice:udf/types": super::sluice::udf::types,
            "sluice:udf/host": super::sluice::udf::host,
        },
    });
}

pub(crate) use scalar_world::exports::sluice::udf::scalar::{
    Guest as ScalarGuest, GuestIndices as ScalarIndices, ValueParam as WitValueIn,
    ValueResult as WitValue,
};
pub(crate) use sluice::udf::host::Level;
pub(crate) use sluice::udf::types::{
    MessageParam as WitMessageIn, MessageResult as WitMessage, UdfError as WitUdfError,
};
