//! Stage 1: the relay's check of a client's Hello, and the client's handling
//! of the relay's first answer.
#![no_main]

use std::sync::OnceLock;

use conclave_protocol::artefact::{RevocationList, Version};
use conclave_protocol::codec::Message;
use conclave_protocol::fixtures;
use conclave_protocol::stage1::{self, AdmissionPolicy, Hello, ToRelay};
use conclave_protocol_fuzz::{portal_keys, CHANNEL_BINDING};
use libfuzzer_sys::fuzz_target;

struct Fixed {
    policy: AdmissionPolicy,
    revocations: RevocationList,
    hello: Hello,
}

fn fixed() -> &'static Fixed {
    static FIXED: OnceLock<Fixed> = OnceLock::new();
    FIXED.get_or_init(|| Fixed {
        policy: AdmissionPolicy {
            portal_keys: portal_keys().to_vec(),
            min_version: Version::new(1, 0, 0),
        },
        revocations: RevocationList::empty(),
        hello: fixtures::participant_hello(&fixtures::identity(1)),
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixed();
    if let Ok(ToRelay::Hello(h)) = ToRelay::decode(data) {
        let _ = stage1::check_hello(
            &h,
            &f.policy,
            &f.revocations,
            &CHANNEL_BINDING,
            fixtures::NOW,
        );
    }
    let _ = stage1::AwaitingWelcome::start(f.hello.clone())
        .0
        .receive(data);
});
