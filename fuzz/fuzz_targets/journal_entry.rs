//! Journal and sink-buffer entries as read back from disk (a damaged or foreign file): decoded
//! or refused with a reason, never a panic; what decodes encodes back to the same entry.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::journal::{decode_message, encode_message, JournalEntry};

fuzz_target!(|bytes: &[u8]| {
    if let Ok(entry) = JournalEntry::decode(bytes) {
        let again = JournalEntry::decode(&entry.encode()).expect("an encoded entry decodes");
        assert_eq!(again, entry);
    }
    if let Ok(msg) = decode_message(bytes) {
        let again = decode_message(&encode_message(&msg)).expect("an encoded message decodes");
        assert_eq!(again, msg);
    }
});
