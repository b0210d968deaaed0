//! What crosses the component boundary: every field of a message goes into the guest and comes
//! back as the guest left it (the tagger fixture changes only the value), batch after batch.

use sluice::udf_runtime::{RuntimeOptions, UdfLimits, UdfRuntime};
use sluice::Message;

#[test]
fn every_field_of_a_message_crosses_both_ways() {
    let runtime = UdfRuntime::new(RuntimeOptions::default()).expect("runtime");
    let module = runtime
        .load_file(&sluice_harness::fixture("tagger"), None)
        .expect("tagger fixture");
    let mut worker = module
        .instantiate(Vec::new(), UdfLimits::default())
        .expect("init");

    let full = Message {
        key: Some(b"sensor-7".to_vec()),
        value: b"reading".to_vec(),
        headers: vec![
            ("origin".into(), b"plant-2".to_vec()),
            ("empty".into(), Vec::new()),
            ("origin".into(), vec![0, 159, 255]),
        ],
        timestamp_ms: Some(-1),
    };
    let bare = Message::from_value(Vec::new());
    for _ in 0..2 {
        let results = worker.process(&[full.clone(), bare.clone()]);
        let out: Vec<Message> = results
            .into_iter()
            .map(|result| {
                let mut messages = result.expect("the tagger maps every record");
                assert_eq!(messages.len(), 1);
                messages.remove(0)
            })
            .collect();
        assert_eq!(
            out[0],
            Message {
                value: b"reading|a".to_vec(),
                ..full.clone()
            }
        );
        assert_eq!(
            out[1],
            Message {
                value: b"|a".to_vec(),
                ..bare.clone()
            }
        );
    }
}
