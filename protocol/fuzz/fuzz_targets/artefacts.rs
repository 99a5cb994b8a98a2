//! Signed artefacts: the first byte picks License, BuildConfig or
//! RevocationList, plain (decode and round-trip) or as `Signed<_>` in postcard
//! (decode, then verify against the fixtures' portal key).
#![no_main]

use conclave_protocol::artefact::{BuildConfig, License, RevocationList};
use conclave_protocol::codec::Message;
use conclave_protocol::sign::{Artefact, Signed};
use conclave_protocol_fuzz::portal_keys;
use libfuzzer_sys::fuzz_target;

fn round_trip<T: Message>(bytes: &[u8]) {
    if let Ok(msg) = T::decode(bytes) {
        assert_eq!(
            msg.encode(),
            bytes,
            "{} does not re-encode to its input",
            T::NAME
        );
    }
}

fn signed<T: Artefact>(bytes: &[u8]) {
    if let Ok(s) = postcard::from_bytes::<Signed<T>>(bytes) {
        let _ = (s.signer(), s.digest());
        if let Ok(body) = s.verify(portal_keys()) {
            assert_eq!(
                body.encode(),
                s.body(),
                "verified {} is not its signed body",
                T::NAME
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, bytes)) = data.split_first() else {
        return;
    };
    match which % 6 {
        0 => round_trip::<License>(bytes),
        1 => round_trip::<BuildConfig>(bytes),
        2 => round_trip::<RevocationList>(bytes),
        3 => signed::<License>(bytes),
        4 => signed::<BuildConfig>(bytes),
        _ => signed::<RevocationList>(bytes),
    }
});
