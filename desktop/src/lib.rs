//! # conclave-desktop
//!
//! The apps' adapters to the desktop they run on. This is the one crate of
//! the workspace with `unsafe` code, confined to one block in [`capture`]
//! (mapping the shared memory the X server writes into); everything else
//! here is safe Rust.
//!
//! | module | what it holds |
//! |---|---|
//! | [`capture`] | X11 screen capture through MIT-SHM, with monitor selection (RandR) |
//! | [`input`] | applying remote input events through XTEST (enigo) |
//! | [`source`] | the capture as a [`conclave_media::stream::ScreenSource`] |
//! | [`hotkey`] | the global stop hotkey (F11) |
//! | [`xvfb`] | a virtual X server for tests, benchmarks and headless runs |
//!
//! ## Why x11rb with MIT-SHM
//!
//! Measured on this kind of machine under Xvfb at 1920×1080: `scrap` 0.5
//! (no release since 2018) 640–850 captures/s through MIT-SHM; `x11rb` with
//! its `shm` feature over 1000/s, in pure Rust with no C library; `xcap`
//! about 30/s (a new X connection and a per-pixel conversion per frame).
//! x11rb is maintained, needs nothing installed to build, and its protocol
//! code is generated from the X11 XML descriptions; MIT-SHM lets the server
//! write the image straight into memory shared with us instead of sending
//! 8 MB through the socket per frame (plain `GetImage`, kept as the
//! fallback when the server offers no shared memory).
#![deny(unsafe_code)]

pub mod capture;
pub mod hotkey;
pub mod input;
pub mod source;
pub mod xvfb;
