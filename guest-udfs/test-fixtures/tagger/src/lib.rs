//! Hot-reload test fixture: echoes each message value with `|a` appended, or `|b` when built with
//! the `variant-b` feature, so a test can tell which version produced each output.

use sluice_udf::{export_udf, Config, Message, Udf, UdfError};

const TAG: &[u8] = if cfg!(feature = "variant-b") {
    b"|b"
} else {
    b"|a"
};

struct Tagger;

impl Udf for Tagger {
    fn init(_config: &Config) -> Result<Self, UdfError> {
        Ok(Tagger)
    }

    fn process(&mut self, msg: Message) -> Result<Vec<Message>, UdfError> {
        let mut value = msg.value.clone();
        value.extend_from_slice(TAG);
        Ok(vec![msg.with_value(value)])
    }
}

export_udf!(Tagger);
