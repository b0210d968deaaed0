//! A module of the `sluice:udf@0.1.0` world, built from a copy of that WIT (`wit/`, as it was
//! before 0.1.1 added scalar functions): it must keep loading and running on today's host,
//! which tells it has no scalar export. Upper-cases each message value.

wit_bindgen::generate!({
    path: "wit",
    world: "sluice:udf/udf",
});

struct Plain;

impl Guest for Plain {
    fn init(_config: Vec<(String, String)>) -> Result<(), UdfError> {
        Ok(())
    }

    fn process(batch: Vec<Message>) -> Vec<Result<Vec<Message>, UdfError>> {
        batch
            .into_iter()
            .map(|mut message| {
                message.value = message.value.to_ascii_uppercase();
                Ok(vec![message])
            })
            .collect()
    }
}

export!(Plain);
