//! Every message codec: the first byte picks the type, the rest is decoded.
//! Whatever decodes must encode back to exactly the input (canonical encodings).
#![no_main]

use conclave_protocol::app::AppMessage;
use conclave_protocol::codec::Message;
use conclave_protocol::input::InputEvent;
use conclave_protocol::stage1::{FromRelay, ToRelay};
use conclave_protocol::stage2::{Announce, Control, Handshake, Rekey, RightsGrant, Roster};
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

fuzz_target!(|data: &[u8]| {
    let Some((&which, bytes)) = data.split_first() else {
        return;
    };
    match which % 10 {
        0 => round_trip::<ToRelay>(bytes),
        1 => round_trip::<FromRelay>(bytes),
        2 => round_trip::<Handshake>(bytes),
        3 => round_trip::<Control>(bytes),
        4 => round_trip::<Rekey>(bytes),
        5 => round_trip::<Roster>(bytes),
        6 => round_trip::<RightsGrant>(bytes),
        7 => round_trip::<InputEvent>(bytes),
        8 => round_trip::<AppMessage>(bytes),
        _ => round_trip::<Announce>(bytes),
    }
});
