//! The relay's audit-log verifier (`conclave-relay audit verify`, R17): any
//! bytes as a log. Nothing panics, and a log that verifies has no more
//! records than it has lines.
#![no_main]

use conclave_relay::audit::AuditLog;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(summary) = AuditLog::verify(data) {
        let lines = data.iter().filter(|b| **b == b'\n').count() as u64 + 1;
        assert!(summary.records <= lines, "more records than lines");
    }
});
