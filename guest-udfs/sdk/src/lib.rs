//! The Sluice UDF SDK: write a WebAssembly UDF as one trait impl plus one export macro.
//!
//! A UDF is a type implementing [`Udf`]; [`export_udf!`] wires it to the `sluice:udf`
//! world (the contract in the repository's `wit/` folder). The host calls `init` once
//! per instance with the pipeline's `config` table, then `process` with batches; the
//! SDK calls your `process` once per message, in order.
//!
//! ```no_run
//! use sluice_udf::{export_udf, Config, Message, Udf, UdfError};
//!
//! struct Shout;
//!
//! impl Udf for Shout {
//!     fn init(_config: &Config) -> Result<Self, UdfError> {
//!         Ok(Shout)
//!     }
//!     fn process(&mut self, msg: Message) -> Result<Vec<Message>, UdfError> {
//!         let text = msg.value_str()?.to_uppercase();
//!         Ok(vec![msg.with_value(text)])
//!     }
//! }
//!
//! export_udf!(Shout);
//! ```
//!
//! A UDF can also offer **scalar functions** to SQL (`SELECT ANOMALY(SENSORINPUT) ...`):
//! implement [`Udf::call`], which gets the function's name (upper-cased) and one row of
//! argument [`Value`]s. Every module built with this SDK exports the `scalar-udf` world; one
//! that does not implement `call` answers every SQL call with "no scalar function".

mod config;
mod message;

pub use config::Config;

/// The generated bindings of the `sluice:udf` world (one `generate!` for every UDF).
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "sluice:udf/scalar-udf",
        pub_export_macro: true,
        export_macro_name: "export",
        default_bindings_module: "sluice_udf::bindings",
        additional_derives: [PartialEq],
    });
}

pub use bindings::exports::sluice::udf::scalar::Value;
pub use bindings::sluice::udf::host::Level;
pub use bindings::sluice::udf::types::{Message, UdfError};

/// A user-defined function: built once per instance by `init`, then fed messages.
pub trait Udf: Sized + 'static {
    /// Builds the UDF from the pipeline's `config` table. An error refuses the module.
    fn init(config: &Config) -> Result<Self, UdfError>;

    /// Turns one message into zero (filter), one (map) or several (flat-map) messages,
    /// or an error for this message alone.
    fn process(&mut self, message: Message) -> Result<Vec<Message>, UdfError>;

    /// The scalar function `function` (upper-cased, as SQL writes identifiers: `ANOMALY`)
    /// on one row of arguments: a value, or an error for this row alone. The default offers
    /// no functions.
    fn call(&mut self, function: &str, args: Vec<Value>) -> Result<Value, UdfError> {
        let _ = args;
        Err(UdfError::invalid_input(format!(
            "no scalar function {function} in this UDF"
        )))
    }
}

impl Value {
    /// The SQL type name of this value (`VARCHAR`, `DOUBLE`...), for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "NULL",
            Value::Boolean(_) => "BOOLEAN",
            Value::Integer(_) => "BIGINT",
            Value::Double(_) => "DOUBLE",
            Value::Text(_) => "VARCHAR",
        }
    }
}

impl UdfError {
    /// The message (or config) is malformed; retrying will not help.
    pub fn invalid_input(reason: impl std::fmt::Display) -> Self {
        UdfError::InvalidInput(reason.to_string())
    }

    /// Anything else went wrong.
    pub fn failed(reason: impl std::fmt::Display) -> Self {
        UdfError::Failed(reason.to_string())
    }

    /// The human-readable reason, whatever the kind.
    pub fn reason(&self) -> &str {
        match self {
            UdfError::InvalidInput(reason) | UdfError::Failed(reason) => reason,
        }
    }
}

/// Logs through the host's `tracing`, tagged with this UDF's name.
pub fn log(level: Level, message: &str) {
    bindings::sluice::udf::host::log(level, message);
}

/// Exports a [`Udf`] implementation as this component's `sluice:udf` world.
#[macro_export]
macro_rules! export_udf {
    ($ty:ty) => {
        const _: () = {
            struct SluiceUdfExport;

            impl $crate::bindings::Guest for SluiceUdfExport {
                fn init(
                    config: ::std::vec::Vec<(::std::string::String, ::std::string::String)>,
                ) -> ::core::result::Result<(), $crate::UdfError> {
                    $crate::__private::init::<$ty>(config)
                }

                fn process(
                    batch: ::std::vec::Vec<$crate::Message>,
                ) -> ::std::vec::Vec<
                    ::core::result::Result<::std::vec::Vec<$crate::Message>, $crate::UdfError>,
                > {
                    $crate::__private::process::<$ty>(batch)
                }
            }

            impl $crate::bindings::exports::sluice::udf::scalar::Guest for SluiceUdfExport {
                fn call(
                    function: ::std::string::String,
                    rows: ::std::vec::Vec<::std::vec::Vec<$crate::Value>>,
                ) -> ::std::vec::Vec<::core::result::Result<$crate::Value, $crate::UdfError>>
                {
                    $crate::__private::call::<$ty>(&function, rows)
                }
            }

            // Only a Wasm build exports: a native build (a crate's unit tests, the native
            // benchmark) cannot link the interface's `sluice:udf/scalar@...` symbol names.
            #[cfg(target_arch = "wasm32")]
    $crate::bindings::export!(SluiceUdfExport with_types_in $crate::bindings);
        };

        /// Natively the exports are not linked (a crate's unit tests, the native benchmark):
        /// this keeps the UDF's entry points reachable, so its type counts as used.
        #[cfg(not(target_arch = "wasm32"))]
        #[doc(hidden)]
        pub fn __sluice_udf_entry_points() -> $crate::__private::EntryPoints {
            (
                $crate::__private::init::<$ty>,
                $crate::__private::process::<$ty>,
                $crate::__private::call::<$ty>,
            )
        }
    };
}

/// Glue used by [`export_udf!`]; not part of the API.
#[doc(hidden)]
pub mod __private {
    use super::{Config, Message, Udf, UdfError, Value};
    use std::any::Any;
    use std::cell::RefCell;

    /// `init`, `process` and `call` of one UDF type.
    pub type EntryPoints = (
        fn(Vec<(String, String)>) -> Result<(), UdfError>,
        fn(Vec<Message>) -> Vec<Result<Vec<Message>, UdfError>>,
        fn(&str, Vec<Vec<Value>>) -> Vec<Result<Value, UdfError>>,
    );

    thread_local! {
        // One UDF per component instance; the guest is single-threaded.
        static INSTANCE: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
    }

    pub fn init<T: Udf>(config: Vec<(String, String)>) -> Result<(), UdfError> {
        let udf = T::init(&Config::new(config))?;
        INSTANCE.with(|slot| *slot.borrow_mut() = Some(Box::new(udf)));
        Ok(())
    }

    pub fn process<T: Udf>(batch: Vec<Message>) -> Vec<Result<Vec<Message>, UdfError>> {
        each::<T, _, _>(batch, "process", |udf, msg| udf.process(msg))
    }

    pub fn call<T: Udf>(function: &str, rows: Vec<Vec<Value>>) -> Vec<Result<Value, UdfError>> {
        each::<T, _, _>(rows, "call", |udf, row| udf.call(function, row))
    }

    /// `f` on each item with the instance `init` built, or an error per item without one.
    fn each<T: Udf, I, O>(
        items: Vec<I>,
        what: &str,
        mut f: impl FnMut(&mut T, I) -> Result<O, UdfError>,
    ) -> Vec<Result<O, UdfError>> {
        INSTANCE.with(|slot| {
            let mut slot = slot.borrow_mut();
            match slot.as_mut().and_then(|udf| udf.downcast_mut::<T>()) {
                Some(udf) => items.into_iter().map(|item| f(udf, item)).collect(),
                None => items
                    .iter()
                    .map(|_| {
                        Err(UdfError::failed(format!(
                            "{what} called before a successful init"
                        )))
                    })
                    .collect(),
            }
        })
    }
}
