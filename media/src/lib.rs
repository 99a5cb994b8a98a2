//! # conclave-media
//!
//! The screen pipeline's pure parts: no I/O, no clock, no threads. Capture
//! adapters and the session runtime live elsewhere and hand frames in and
//! messages out.
//!
//! ## Map
//!
//! | module | what it holds |
//! |---|---|
//! | [`frame`] | a captured screen: BGRA pixels, bounded size, rectangles |
//! | [`synthetic`] | a deterministic synthetic screen (typing, scrolling, a dragged window, video) with a frame-counter marker, for tests and benchmarks |
//! | [`stream`] | where frames come from ([`stream::ScreenSource`]) and what a session's screen frames carry: packets of the tile codec or of the whole-frame zstd baseline, with the capture time |
//! | [`codec`] | the lossless tile codec: changed 64×64 tiles as zstd of XOR deltas or copies, bounded update messages, a decoder that refuses malformed input and recovers from lost messages with a keyframe |
//!
//! ## Dependencies, and why
//!
//! - **zstd** (the C library, built from the source bundled with `zstd-sys`):
//!   fast enough for a changed 1080p screen on one core, and its one-shot
//!   decompression writes into a buffer we size, so a hostile tile can never
//!   make the viewer decompress more than the tile holds. Default features
//!   off: no decoders for legacy formats.
//! - **thiserror** for the error enums.
#![forbid(unsafe_code)]

pub mod codec;
pub mod frame;
pub mod stream;
pub mod synthetic;

pub use codec::{Applied, EncodedFrame, ScreenDecoder, ScreenEncoder, UpdateError};
pub use frame::{Frame, FrameError, Rect, ScreenSize};
pub use synthetic::{SyntheticScreen, Workload};
