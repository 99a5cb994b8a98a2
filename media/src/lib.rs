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
//! | [`codec`] | the tile codec: changed 64×64 tiles as zstd of XOR deltas or copies, a region that changes every frame as H.264, bounded update messages, a decoder that refuses malformed input and recovers from lost messages with a keyframe |
//! | [`video`] | the video region: finding it, its H.264 streams (OpenH264), colour conversion, the target bitrate |
//!
//! ## Dependencies, and why
//!
//! - **zstd** (the C library, built from the source bundled with `zstd-sys`):
//!   fast enough for a changed 1080p screen on one core, and its one-shot
//!   decompression writes into a buffer we size, so a hostile tile can never
//!   make the viewer decompress more than the tile holds. Default features
//!   off: no decoders for legacy formats.
//! - **openh264** (Cisco's OpenH264, C/C++ and x86 assembly, built from the
//!   source bundled with `openh264-sys2` by its build script with `cc`,
//!   and with `nasm` for the assembly when `nasm` is on the `PATH`; without
//!   it the build silently falls back to plain C++, which is slower):
//!   H.264 for the region of a screen that changes every frame (a video
//!   costs the lossless codec about 370 KB a frame at 1920×1080; H.264
//!   about 9 KB at 4 Mbit/s and 60 frames a second). Chosen because it
//!   builds offline from a registry crate with no system library, no
//!   pkg-config and no bindgen; it both encodes and decodes (the encoder
//!   decodes its own output to keep its reference equal to the viewer's);
//!   its safe Rust API needs no `unsafe` here; licence BSD-2-Clause (crate
//!   and OpenH264). Pinned to 0.9.9, whose bundled OpenH264 is 2.7.0,
//!   past 2.6.0, which fixed the decoder heap overflow CVE-2025-27091.
//!   A cold build of `openh264-sys2` took 24 s in release (38 s of CPU)
//!   and 13 s in debug with `-j2` on the 2-core development machine; in
//!   debug builds OpenH264's C++ is compiled without optimisation.
//!   **Patents:** H.264 is covered by patents. Cisco pays the royalties
//!   only for the OpenH264 *binaries Cisco itself builds and distributes*;
//!   that licence does not cover OpenH264 built from source, as here. A
//!   product that ships this build ships an H.264 codec without Cisco's
//!   patent licence, and whoever distributes it must settle the H.264
//!   patent question (e.g. with the patent pool) for the places where they
//!   distribute it. Turning video regions off
//!   ([`codec::ScreenEncoder::set_video_bitrate`]) stops the encoding, not
//!   the shipping of the code.
//! - **thiserror** for the error enums.
#![forbid(unsafe_code)]

pub mod codec;
pub mod frame;
pub mod stream;
pub mod synthetic;
pub mod video;

pub use codec::{Applied, EncodedFrame, ScreenDecoder, ScreenEncoder, UpdateError};
pub use frame::{Frame, FrameError, Rect, ScreenSize};
pub use synthetic::{SyntheticScreen, Workload};
