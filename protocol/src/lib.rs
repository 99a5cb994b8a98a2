//! # conclave-protocol
//!
//! Conclave's wire format, handshakes, keys and frame crypto, shared by the
//! relay, the apps and the portal. Pure, deterministic logic: no sockets, no
//! async runtime, no clock (time is an argument) and no ambient randomness
//! (a `CryptoRngCore` is an argument), so that every exchange can be driven
//! in memory, replayed and fuzzed.
//!
//! ## Map
//!
//! | module | what it holds |
//! |---|---|
//! | [`frame`] | the cleartext routing header the relay reads; frame classes; byte layout |
//! | [`sframe`] | end-to-end frame encryption in RFC 9605 layout (AES-256-GCM), replay window, key generations |
//! | [`codec`] | version byte + postcard for every other message; bounded, canonical decoding |
//! | [`bounded`] | length-bounded strings, byte strings and lists for decoded fields |
//! | [`sign`] | domain-separated Ed25519 signatures, `Signed<T>`, key fingerprints |
//! | [`artefact`] | license, build config (relays, policy profile, branding), revocation list |
//! | [`stage1`] | client ↔ relay: Hello / Welcome / Refused, the relay's admission checks, session control |
//! | [`stage2`] | master ↔ participants through the relay: announce, PAKE join, epochs, roster, rights, engines |
//! | [`input`] | remote input events (R22), carried under pairwise keys only |
//! | [`recording`] | signed, hash-chained session recordings (R25): writer, verifying reader |
//! | [`app`] | what the apps tell each other (pairwise): who presents, remote-control consent and its end, keyframe requests, recording notices |
//! | [`files`] | file transfer messages (R23): offer, accept, chunks, receipt; resumable and bounded |
//! | [`shared`] | shared files in a meeting (R24): relay requests and replies, per-file keys, sealed parts |
//! | [`time`] | the two kinds of time the caller passes in |
//!
//! ## Dependencies, and why
//!
//! - **ring** for AES-256-GCM: in this project's benchmark (`cargo bench -p
//!   conclave-benches --bench aead`) ring seals 4–7× faster than RustCrypto's
//!   `aes-gcm` on the same buffers, and the TLS and QUIC layers link it anyway.
//! - **ed25519-dalek 2 / x25519-dalek 2** (curve25519-dalek 4): constant-time,
//!   audited lineage; `verify_strict` for signatures. The 2.x line is the one
//!   `spake2` 0.4 (its only stable release) builds on, so the tree holds one
//!   copy of curve25519-dalek.
//! - **spake2** (RustCrypto) for the password-authenticated key exchange.
//! - **hkdf, hmac, sha2** (RustCrypto) for key derivation and confirmation;
//!   **subtle** for constant-time comparison; **zeroize** for key material.
//! - **serde + postcard**: a specified, stable, compact format (not bincode,
//!   unmaintained since RUSTSEC-2025-0141).
//!
//! ring's expanded AES key schedules are not zeroized by ring; every secret
//! this crate holds itself (base keys, epoch secrets, pairwise secrets,
//! signing keys) is.
#![forbid(unsafe_code)]

pub mod app;
pub mod artefact;
pub mod bounded;
pub mod codec;
pub mod files;
pub mod frame;
pub mod input;
pub mod recording;
pub mod sframe;
pub mod shared;
pub mod sign;
pub mod stage1;
pub mod stage2;
pub mod time;
pub mod trailer;

#[cfg(any(test, feature = "test-fixtures"))]
pub mod fixtures;
