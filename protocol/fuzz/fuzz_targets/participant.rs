//! The participant's session engine, driven by a sequence of records (frames
//! from the relay, timer steps and commands; see the fuzz crate's docs).
#![no_main]

use conclave_protocol_fuzz::{records, ParticipantDriver};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut p = ParticipantDriver::new();
    p.drain();
    for r in records(data) {
        p.step(r);
    }
});
