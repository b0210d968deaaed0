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

mod config;
mod message;

pub use config::Config;

/// The generated bindings of the `sluice:udf` world (one `generate!` for every UDF).
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "sluice:udf/udf",
        pub_export_macro: true,
        export_macro_name: "export",
        default_bindings_module: "sluice_udf::bindings",
    });
}

pub use bindings::sluice::udf::host::Level;
pub use bindings::sluice::udf::types::{Message, UdfError};

/// A user-defined function: built once per instance by `init`, then fed messages.
pub trait Udf: Sized + 'static {
    /// Builds the UDF from the pipeline's `config` table. An error refuses the module.
    fn init(config: &Config) -> Result<Self, UdfError>;

    /// Turns one message into zero (filter), one (map) or several (flat-map) messages,
    /// or an error for this message alone.
    fn process(&mut self, message: Message) -> Result<Vec<Message>, UdfError>;
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

    $crate::bindings::export!(SluiceUdfExport with_types_in $crate::bindings);
        };
    };
}

/// Glue used by [`export_udf!`]; not part of the API.
#[doc(hidden)]
pub mod __private {
    use super::{Config, Message, Udf, UdfError};
    use std::any::Any;
    use std::cell::RefCell;

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
        INSTANCE.with(|slot| {
            let mut slot = slot.borrow_mut();
            match slot.as_mut().and_then(|udf| udf.downcast_mut::<T>()) {
                Some(udf) => batch.into_iter().map(|msg| udf.process(msg)).collect(),
                None => batch
                    .iter()
                    .map(|_| Err(UdfError::failed("process called before a successful init")))
                    .collect(),
            }
        })
    }
}
