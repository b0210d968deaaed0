//! The one `bindgen!` of the `sluice:udf` world; nothing outside `udf_runtime` sees these types.
//!
//! Borrowing: the messages and config the host passes in are lowered straight from the host's
//! own data (`WitMessageIn` borrows it), so no record is copied just to cross the boundary.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "sluice:udf/udf",
    ownership: Borrowing { duplicate_if_necessary: true },
});

pub(crate) use sluice::udf::host::Level;
pub(crate) use sluice::udf::types::{
    MessageParam as WitMessageIn, MessageResult as WitMessage, UdfError as WitUdfError,
};
