//! Session recordings (R25): verifying or replaying any bytes never panics,
//! the reader and `verify` agree, and the reader yields verified entries in
//! order, before any unverified ones.
#![no_main]

use conclave_protocol::recording::{self, RecordingReader};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let verified = recording::verify(data);
    let mut reader = match RecordingReader::new(data) {
        Ok(r) => r,
        Err(_) => {
            assert!(verified.is_err(), "verify accepts what the reader refuses");
            return;
        }
    };
    let (mut index, mut verified_entries, mut unverified_entries) = (0u64, 0u64, 0u64);
    let mut last_at = 0;
    loop {
        match reader.next_entry() {
            Ok(Some(e)) => {
                assert_eq!(e.index, index, "entries are yielded in order");
                assert!(e.at_ms >= last_at, "entry times never go backwards");
                if e.verified {
                    assert_eq!(
                        unverified_entries, 0,
                        "a verified entry after an unverified one"
                    );
                    verified_entries += 1;
                } else {
                    unverified_entries += 1;
                }
                index += 1;
                last_at = e.at_ms;
            }
            Ok(None) => {
                let report = reader.report();
                assert_eq!(report.verified_entries, verified_entries);
                assert_eq!(report.unverified_entries, unverified_entries);
                assert!(!report.finished || unverified_entries == 0);
                assert_eq!(
                    verified.ok(),
                    Some(report),
                    "verify and the reader disagree"
                );
                return;
            }
            Err(_) => {
                assert!(verified.is_err(), "verify accepts what the reader refuses");
                assert!(
                    reader.next_entry().is_err(),
                    "the reader resumes after an error"
                );
                return;
            }
        }
    }
});
