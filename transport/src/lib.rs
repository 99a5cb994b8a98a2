//! # conclave-transport
//!
//! The part of I/O that the relay and the apps share, so that both ends of a
//! connection are built from the same pieces:
//!
//! | module | what it holds |
//! |---|---|
//! | [`tls`] | the relay's identity (Ed25519 key, self-signed certificate), TLS 1.3 server and client configurations restricted to `TLS13_AES_256_GCM_SHA384`, and the verifier that pins the relay key |
//! | [`quic`] | QUIC endpoint configurations over the same TLS configurations |
//! | [`conn`] | a connection as frames in and frames out, whatever the transport: a writer task per connection, frame readers for TLS streams, QUIC streams and WebSockets (read by the relay in its own task, pumped into a bounded channel for the apps), and the client-side `connect` functions |
//!
//! **Pinning.** A client accepts a relay only if the relay signs the TLS 1.3
//! handshake with the Ed25519 key pinned in the client's signed relay list.
//! The certificate is a container and is trusted for nothing: no CA, no
//! names, no dates; what authenticates the relay is its CertificateVerify
//! signature, checked against the pinned key. This crate exists because both
//! the relay and the apps need these pieces; the apps' own logic lives in
//! `conclave-client`.
#![forbid(unsafe_code)]

pub mod conn;
pub mod quic;
pub mod tls;
