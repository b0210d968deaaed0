//! The one `bindgen!` of the `sluice:udf` world; nothing outside `udf_runtime` sees these types.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "sluice:udf/udf",
});

pub(crate) use sluice::udf::host::Level;
pub(crate) use sluice::udf::types::{Message as WitMessage, UdfError as WitUdfError};
