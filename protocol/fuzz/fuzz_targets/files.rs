//! File-transfer messages (R23): decoding any bytes never panics, and
//! whatever decodes encodes back to exactly the input (canonical encoding),
//! within the bounds of the message type.
#![no_main]

use conclave_protocol::codec::Message;
use conclave_protocol::files::{FileMessage, CHUNK, MAX_MESSAGE, MAX_NAME};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = FileMessage::decode(data) {
        assert!(data.len() <= MAX_MESSAGE);
        match &msg {
            FileMessage::Chunk { data, .. } => assert!(data.len() <= CHUNK),
            FileMessage::Offer(o) => assert!(o.name.len() <= MAX_NAME),
            _ => {}
        }
        assert_eq!(
            msg.encode(),
            data,
            "file message does not re-encode to its input"
        );
    }
});
