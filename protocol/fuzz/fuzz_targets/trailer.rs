//! The build trailer of a branded executable: splitting and verifying any
//! file never panics, and nothing but a correctly signed, matching build
//! verifies.
#![no_main]

use conclave_protocol::artefact::Role;
use conclave_protocol::trailer;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((exe, t)) = trailer::split(data) {
        assert!(exe.len() + trailer::FOOTER_LEN <= data.len());
        // Re-branding the executable with the same trailer gives the same file.
        if let Ok(again) = trailer::brand(exe, &t) {
            assert_eq!(again, data, "split and brand disagree");
        }
    }
    for role in [Role::Participant, Role::Master] {
        if let Ok(v) = trailer::verify(data, role, conclave_protocol::fixtures::NOW) {
            assert_eq!(v.config.role, role);
        }
    }
});
