//! The routing header, the SFrame header, sealed-frame parsing and opening.
//!
//! Never panics on any input; a frame that parses re-encodes to the same
//! header bytes; an SFrame header round-trips through its minimal encoding;
//! a frame that opens under the fixed key does not open a second time (replay);
//! the stream decoder, fed the input in chunks whose sizes the input's first
//! byte picks, yields frames that each parse, and never holds more than the
//! input.
#![no_main]

use conclave_protocol::frame::{FrameDecoder, FrameRef, RoutingHeader, HEADER_LEN};
use conclave_protocol::sframe::{
    FrameOpener, KeyScope, SealedFrame, SframeHeader, MAX_SFRAME_HEADER_LEN,
};
use conclave_protocol_fuzz::frame_fixture::{BASE_KEY, EPOCH, SENDER};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some((&chunk, stream)) = data.split_first() {
        let mut decoder = FrameDecoder::new(1 << 16);
        let mut seen = 0usize;
        'feed: for piece in stream.chunks(usize::from(chunk).max(1)) {
            decoder.push(piece);
            loop {
                match decoder.next_frame() {
                    Ok(Some(f)) => {
                        assert!(
                            FrameRef::parse(&f).is_ok(),
                            "decoder yielded an unparsable frame"
                        );
                        seen += f.len();
                    }
                    Ok(None) => break,
                    Err(_) => break 'feed,
                }
            }
            assert!(seen + decoder.pending() <= stream.len());
        }
    }
    if let Ok(h) = RoutingHeader::decode(data) {
        assert_eq!(
            h.encode()[..],
            data[..HEADER_LEN],
            "header re-encodes differently"
        );
    }
    if let Ok(f) = FrameRef::parse(data) {
        assert_eq!(
            f.header.encode()[..],
            data[..HEADER_LEN],
            "frame header re-encodes differently"
        );
        assert_eq!(f.payload.len(), f.header.payload_len as usize);
    }
    if let Ok((h, len)) = SframeHeader::decode(data) {
        assert!(len <= MAX_SFRAME_HEADER_LEN && len <= data.len());
        let mut buf = [0u8; MAX_SFRAME_HEADER_LEN];
        let n = h.encode(&mut buf);
        assert_eq!(n, h.encoded_len());
        assert_eq!(
            SframeHeader::decode(&buf[..n]),
            Ok((h, n)),
            "SFrame header does not round-trip"
        );
    }
    if let Ok(sealed) = SealedFrame::parse(data) {
        let mut opener = FrameOpener::new(&BASE_KEY, KeyScope::Group { epoch: EPOCH }, SENDER);
        let mut frame = data.to_vec();
        if let Ok(opened) = opener.open_in_place(&sealed, &mut frame) {
            assert!(opened.plaintext.end <= frame.len());
            assert_eq!(opened.header, sealed.header);
            assert_eq!(opened.header.sender, SENDER);
            let mut again = data.to_vec();
            assert!(
                opener.open_in_place(&sealed, &mut again).is_err(),
                "a frame opened twice (replay accepted)"
            );
        }
    }
});
