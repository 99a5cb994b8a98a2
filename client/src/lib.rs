//! # conclave-client
//!
//! What the master and participant apps share: their own build, the way to
//! a relay, and the session runtime over the protocol's engines.
//!
//! | module | what it holds |
//! |---|---|
//! | [`build`] | reading and checking the app's own branded build at start (R10), and describing it |
//! | [`connect`] | QUIC → TLS/TCP → WebSocket with bounded attempts (R19), stage 1, measuring relays (R18) |
//! | [`relays`] | the session's relay and failover order from its ID (R18); drawing IDs and passwords (R11) |
//! | [`session`] | the runtime: relay liveness, failover, tamper abort, the engines behind one task |
//! | [`screen`] | the screen pipeline's threads: presenter (capture, encode, latest frame wins) and viewer (decode, figures) |
//! | [`collab`] | presenting, viewing and remote control over a session (R21, R22) |
//! | [`files`] | file transfer (R23): offers, consent, resumable chunks checked by SHA-256, names that cannot leave the chosen folder |
//! | [`events`] | the typed events and commands both apps are thin over (JSON lines, R27) |
//! | [`cli`] | the headless command line: events out as text or JSON lines, commands in |
//!
//! Dependencies beyond the protocol and transport crates, all already in
//! the tree for the relay: `tokio`, `futures-util` and `bytes`; `serde` and
//! `serde_json` for the events' JSON; `sha2` for the relay order;
//! `rand_core`'s `OsRng` for IDs, passwords and the engines; `zeroize` for
//! passwords; `tracing` and `tracing-subscriber` for logs on standard error;
//! `conclave-media` (the screen codec) and `conclave-desktop` (X11 capture,
//! input, the stop hotkey) for the screen pipeline.
#![forbid(unsafe_code)]

pub mod build;
pub mod cli;
pub mod collab;
pub mod connect;
pub mod events;
pub mod files;
pub mod relays;
pub mod screen;
pub mod session;
